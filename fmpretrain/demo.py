"""``fmpretrain demo``: the whole method, offline, on a laptop CPU, in minutes.

Generate crystals -> featurize them with Ray into shards -> pre-train the small GNN on the
fingerprints with DeepSpeed -> export a release -> fine-tune it and a from-scratch twin on an
offline labelled task (ASE's EMT energies) -> table, plot, W&B offline run. Every stage keeps
its output under ``--out``; running again reuses the finished stages.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class DemoSizes:
    """How big each stage is; ``full`` is the README's demo, ``tiny`` the suite's version."""

    structures: int
    max_atoms: int
    chunk_size: int
    steps: int
    model_overrides: dict[str, Any]
    max_atoms_per_batch: int
    task_structures: int
    epochs: int
    patience: int


SIZES = {
    "full": DemoSizes(
        structures=800,
        max_atoms=24,
        chunk_size=50,
        steps=240,
        model_overrides={},
        max_atoms_per_batch=384,
        task_structures=300,
        epochs=30,
        patience=10,
    ),
    "tiny": DemoSizes(
        structures=60,
        max_atoms=12,
        chunk_size=10,
        steps=6,
        model_overrides={"hidden_channels": 32, "num_layers": 2, "num_rbf": 16, "num_heads": 4},
        max_atoms_per_batch=96,
        task_structures=40,
        epochs=2,
        patience=2,
    ),
}


def run_demo(
    out: str | Path = "runs/demo",
    descriptor: str = "wacsf",
    size: str = "full",
    workers: int = 2,
    wandb_mode: str = "offline",
) -> dict[str, Any]:
    """Run every stage (reusing finished ones) and return the fine-tuning results."""
    from data_pipeline.config import FeaturizeConfig, SourceConfig
    from data_pipeline.driver import run_featurize, summary
    from fmpretrain.finetune.benchmark import run_benchmark
    from fmpretrain.finetune.trainer import load_finetune_config
    from fmpretrain.train.config import PretrainConfig, WandbConfig
    from fmpretrain.train.export import CONFIG, export_release
    from fmpretrain.train.trainer import CHECKPOINTS, describe_validation, pretrain

    sizes = SIZES[size]
    out = Path(out)
    paths = {
        "shards": out / "shards",
        "pretrain": out / "pretrain",
        "release": out / "release",
        "finetune": out / "finetune",
    }
    start = time.perf_counter()
    timings: dict[str, float] = {}

    _stage(
        1,
        "featurize",
        f"{sizes.structures} generated crystals with {descriptor}, "
        f"{workers} Ray workers -> {paths['shards']}",
    )
    t0 = time.perf_counter()
    featurized = run_featurize(
        FeaturizeConfig(
            descriptor=descriptor,
            source=SourceConfig(
                kind="generated", n=sizes.structures, seed=0, max_atoms=sizes.max_atoms
            ),
            out=str(paths["shards"]),
            chunk_size=sizes.chunk_size,
            workers=workers,
        )
    )
    print(summary(featurized))
    timings["featurize"] = time.perf_counter() - t0

    _stage(
        2,
        "pretrain",
        f"small equivariant transformer, {sizes.steps} steps, 1 DeepSpeed "
        f"process -> {paths['pretrain']}",
    )
    t0 = time.perf_counter()
    status_file = paths["pretrain"] / "status.json"
    previous = json.loads(status_file.read_text()) if status_file.exists() else {}
    if previous.get("status") == "finished" and previous.get("step") == sizes.steps:
        print(f"reusing: pre-training already finished at step {sizes.steps}")
    else:
        result = pretrain(
            PretrainConfig(
                data=str(paths["shards"]),
                out=str(paths["pretrain"]),
                model="small",
                model_overrides=dict(sizes.model_overrides),
                max_steps=sizes.steps,
                warmup_steps=max(1, sizes.steps // 10),
                max_atoms_per_batch=sizes.max_atoms_per_batch,
                eval_every=max(1, sizes.steps // 4),
                checkpoint_every=max(1, sizes.steps // 4),
                log_every=max(1, sizes.steps // 24),
                wandb=WandbConfig(mode=wandb_mode, name="demo-pretrain"),
            )
        )
        if result.last_val:
            print(f"pre-trained to step {result.step}: {describe_validation(result.last_val)}")
    timings["pretrain"] = time.perf_counter() - t0

    _stage(3, "export", f"release (safetensors + config + sha256) -> {paths['release']}")
    latest = (paths["pretrain"] / CHECKPOINTS / "latest").read_text().strip()
    release_config = paths["release"] / CONFIG
    if release_config.exists() and (
        yaml.safe_load(release_config.read_text())["training"]["checkpoint"] == latest
    ):
        print(f"reusing: the release of checkpoint {latest}")
    else:
        export_release(paths["pretrain"], paths["release"])
        print(f"exported checkpoint {latest}")

    _stage(
        4,
        "finetune",
        f"offline EMT energy task ({sizes.task_structures} alloys), "
        f"pre-trained vs from scratch, MatBench fold 0 -> {paths['finetune']}",
    )
    t0 = time.perf_counter()
    finetune_cfg = load_finetune_config(
        None,
        [
            f"out={paths['finetune']}",
            f"pretrained={paths['release']}",
            "task=emt_energy",
            f"emt.n={sizes.task_structures}",
            f"max_epochs={sizes.epochs}",
            f"patience={sizes.patience}",
            "lr=5e-4",
            "folds=[0]",
            f"wandb.mode={wandb_mode}",
            f"cache_dir={out / 'cache'}",
        ],
    )
    results = run_benchmark(finetune_cfg)
    timings["finetune"] = time.perf_counter() - t0

    table = (paths["finetune"] / "results.md").read_text()
    total = time.perf_counter() - start
    print()
    print("=" * 78)
    print(
        f"fmpretrain demo finished in {total / 60:.1f} min "
        + "("
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + ")"
    )
    print()
    print(table.strip())
    print()
    print("where everything is:")
    print(f"  shards + manifest    {paths['shards']}")
    print(f"  pre-training run     {paths['pretrain']} (checkpoints/, metrics.jsonl, wandb/)")
    print(f"  release              {paths['release']}")
    print(f"  fine-tuning results  {paths['finetune']} (results.md, results.json, results.png)")
    print("  W&B offline runs     wandb sync <run dir>/wandb/offline-run-*")
    return results


def _stage(number: int, name: str, what: str) -> None:
    print()
    print(f"[{number}/4] {name}: {what}")
