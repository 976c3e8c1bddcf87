"""Evaluation commands: demo, finetune, benchmark, predict, embed."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fmpretrain.cli.common import _plain


def demo_config(args: argparse.Namespace) -> dict[str, Any]:
    """``demo``'s settings and the sizes of its stages."""
    import dataclasses

    from fmpretrain.demo import SIZES

    size = "tiny" if args.quick else "full"
    return {
        "out": str(args.out),
        "descriptor": args.descriptor,
        "size": size,
        "workers": args.workers,
        "wandb_mode": args.wandb,
        "stages": _plain(dataclasses.asdict(SIZES[size])),
    }


def cmd_demo(args: argparse.Namespace) -> int:
    from fmpretrain.extras import require_extra

    cfg = demo_config(args)
    require_extra("demo", "all")
    from fmpretrain.demo import run_demo

    run_demo(
        cfg["out"],
        descriptor=cfg["descriptor"],
        size=cfg["size"],
        workers=cfg["workers"],
        wandb_mode=cfg["wandb_mode"],
    )
    return 0


def finetune_config(args: argparse.Namespace) -> Any:
    """``finetune``/``benchmark``'s configuration (``--data FILE`` is ``data=FILE``); without a
    release, the from-scratch model it names must resolve."""
    from fmpretrain.finetune.config import load_finetune_config

    overrides = list(args.overrides)
    if args.data is not None:
        overrides.append(f"data={args.data}")
        if not any(o.split("=", 1)[0] == "task" for o in overrides):
            overrides.append("task=null")  # the dataset is named after the file
    return load_finetune_config(args.config, overrides)


def _finetune_config(args: argparse.Namespace) -> Any:
    """The fine-tuning configuration, once the extra modules it needs are known to be there."""
    from fmpretrain.extras import require_extra

    cfg = finetune_config(args)
    modules = ["wandb"] if cfg.wandb.mode != "disabled" else []
    if args.command == "benchmark":
        modules += ["matplotlib", *(["sklearn"] if cfg.baselines else [])]
    require_extra(args.command, "train", modules)
    return cfg


def cmd_finetune(args: argparse.Namespace) -> int:
    from fmpretrain.finetune.benchmark import run_finetune

    cfg = _finetune_config(args)
    report = run_finetune(cfg)
    for task in report["tasks"]:
        metric = task["metric"]
        for mode in ("pretrained", "scratch"):
            if task.get(mode):
                print(f"{task['task']} {mode}: test {metric} {task[mode]['mean']:.5g}")
        if task["improvement_pct"] is not None:
            print(f"{task['task']} improvement over scratch: {task['improvement_pct']:+.1f}%")
    print(f"wrote {Path(cfg.out) / 'finetune.json'} and the fine-tuned weights under {cfg.out}")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from fmpretrain.finetune.stages import BenchmarkStage

    cfg = _finetune_config(args)
    BenchmarkStage(cfg, releases=args.releases).run()
    out = Path(cfg.out)
    print((out / "results.md").read_text())
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'results.png'}")
    return 0


def _load_model(args: argparse.Namespace):
    """The model and the structures of a ``predict``/``embed`` command (hub errors: one line)."""
    from fmpretrain.api import as_structures, load
    from fmpretrain.hub import HubError

    for path in args.files:
        if not path.exists():
            raise FileNotFoundError(f"no such file: {path}")
    try:
        model = load(args.model, device=args.device, max_atoms=args.max_atoms)
    except HubError as err:
        raise ValueError(str(err)) from err
    return model, as_structures(list(args.files))


def cmd_predict(args: argparse.Namespace) -> int:
    import csv

    model, structures = _load_model(args)
    predictions = model.predict(structures)
    target = model.target
    has_target = any(target in s.properties for s in structures)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "prediction"] + (["target"] if has_target else []))
        for s, value in zip(structures, predictions, strict=True):
            row = [s.id, value] + ([s.properties.get(target, "")] if has_target else [])
            writer.writerow(row)
    unit = f" ({model.unit})" if model.unit else ""
    print(f"wrote {len(structures)} predictions of {target}{unit} to {args.out}")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np

    model, structures = _load_model(args)
    embeddings = model.embed(structures, per_atom=args.per_atom)
    arrays = {"ids": np.asarray([s.id for s in structures], dtype=str)}
    if args.per_atom:
        arrays["embeddings"] = np.concatenate(embeddings).astype(np.float32)
        arrays["n_atoms"] = np.asarray([len(s) for s in structures], dtype=np.int64)
    else:
        arrays["embeddings"] = np.asarray(embeddings, dtype=np.float32)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as handle:  # the exact name (np.savez would add .npz)
        np.savez(handle, **arrays)
    shape = tuple(arrays["embeddings"].shape)
    print(f"wrote embeddings {shape} of {len(structures)} structures to {args.out}")
    return 0
