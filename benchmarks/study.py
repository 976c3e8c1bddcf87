"""The small study of docs/results.md: pre-train on wACSF, GMP and EAD, fine-tune over 5 folds.

Same generated corpus for every descriptor, the demo's pre-training budget, the offline EMT
energy task with the MatBench 5-fold protocol, and one from-scratch baseline per fold shared
by all three (the architecture and budget are identical). Writes OUT/study.json and
OUT/study.md; every stage resumes, so an interrupted study can be re-run.

    python benchmarks/study.py --out runs/study
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/study"))
    parser.add_argument("--descriptors", nargs="+", default=["wacsf", "gmp", "ead"])
    parser.add_argument("--structures", type=int, default=800, help="pre-training corpus")
    parser.add_argument("--steps", type=int, default=240, help="pre-training steps")
    parser.add_argument("--task-structures", type=int, default=300, help="EMT task size")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()

    from data_pipeline.config import FeaturizeConfig, SourceConfig
    from data_pipeline.driver import run_featurize
    from fmpretrain.finetune.benchmark import run_benchmark
    from fmpretrain.finetune.trainer import load_finetune_config
    from fmpretrain.train.config import PretrainConfig, WandbConfig
    from fmpretrain.train.export import export_release
    from fmpretrain.train.trainer import pretrain

    start = time.perf_counter()
    summary: dict[str, dict] = {}
    for index, name in enumerate(args.descriptors):
        root = args.out / name
        run_featurize(
            FeaturizeConfig(
                descriptor=name,
                source=SourceConfig(kind="generated", n=args.structures, seed=0, max_atoms=24),
                out=str(root / "shards"),
                chunk_size=50,
                workers=2,
            ),
            progress=False,
        )
        status = root / "pretrain" / "status.json"
        if not (status.exists() and json.loads(status.read_text())["status"] == "finished"):
            pretrain(
                PretrainConfig(
                    data=str(root / "shards"),
                    out=str(root / "pretrain"),
                    max_steps=args.steps,
                    warmup_steps=args.steps // 10,
                    max_atoms_per_batch=384,
                    eval_every=args.steps // 4,
                    checkpoint_every=args.steps // 4,
                    log_every=10,
                    wandb=WandbConfig(mode="offline", name=f"study-{name}"),
                ),
                progress=False,
            )
        if not (root / "release" / "model.safetensors").exists():
            export_release(root / "pretrain", root / "release")
        cfg = load_finetune_config(
            None,
            [
                f"out={root / 'finetune'}",
                f"pretrained={root / 'release'}",
                f"scratch={'true' if index == 0 else 'false'}",
                "task=emt_energy",
                f"emt.n={args.task_structures}",
                f"max_epochs={args.epochs}",
                f"folds=[{','.join(str(f) for f in args.folds)}]",
                f"cache_dir={args.out / 'cache'}",
                "wandb.mode=offline",
            ],
        )
        results = run_benchmark(cfg)
        summary[name] = results["tasks"][0]
        print(f"{name}: done after {(time.perf_counter() - start) / 60:.1f} min", flush=True)

    scratch = summary[args.descriptors[0]]["scratch"]
    rows = [
        "| Pre-training fingerprint | Test MAE (eV/atom), mean ± std over folds | "
        "Improvement over scratch |",
        "|---|---:|---:|",
        f"| none (from scratch) | {scratch['mean']:.4f} ± {scratch['std']:.4f} | — |",
    ]
    for name in args.descriptors:
        pre = summary[name]["pretrained"]
        gain = (scratch["mean"] - pre["mean"]) / scratch["mean"] * 100
        rows.append(f"| {name} | {pre['mean']:.4f} ± {pre['std']:.4f} | {gain:+.1f}% |")
    table = "\n".join(rows) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "study.md").write_text(table)
    (args.out / "study.json").write_text(json.dumps(summary, indent=1))
    print(table)
    print(f"total {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
