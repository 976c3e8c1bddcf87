"""The study of docs/results.md: pre-trained releases vs scratch vs baselines on real tasks.

For every task (default: the real offline tasks ``perov_heat`` and ``carbon_energy``, a seeded
``--task-size`` subset of each, the MatBench 5-fold protocol on ``--folds``) the benchmark
trains the from-scratch GNN and the two baselines (pooled fingerprint + gradient boosting, dummy
mean) once, and fine-tunes every release given with ``--release NAME=SOURCE`` (a release
directory, a registry name such as ``et-small-ead`` or ``hf://org/repo``) on the same folds,
with the same budget. Releases cut from one pre-training run at several lengths give the
curve "downstream improvement against pre-training steps".

Reported per task and release: mean ± std of the test MAE over folds, the improvement over
scratch ((scratch - pre-trained) / scratch of the fold means), the per-fold pairs, and two
paired tests on the per-fold errors (t-test and Wilcoxon signed-rank; with 3-5 folds their
power is low: read the p-values as a guide). Settings are fixed before looking at any test
fold; nothing here is tuned on test folds. Every stage resumes (finished folds are reused), so
an interrupted study can be re-run with the same command.

    python benchmarks/study.py --out runs/study --release et-small-ead=et-small-ead
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np


def fine_tune(args: argparse.Namespace, task: str, name: str, source: str | None) -> dict[str, Any]:
    """One benchmark run: a release alone, or (``source`` None) scratch and the baselines."""
    from fmpretrain.finetune.config import load_finetune_config
    from fmpretrain.finetune.stages import BenchmarkStage
    from fmpretrain.pipeline import run_stages

    overrides = [
        f"out={args.out / task / name}",
        f"task={task}",
        f"task_size={args.task_size}",
        f"folds=[{','.join(str(f) for f in args.folds)}]",
        f"max_epochs={args.epochs}",
        f"patience={args.patience}",
        f"lr={args.lr}",
        f"scratch={str(source is None).lower()}",
        f"baselines={str(source is None).lower()}",
        f"wandb.mode={args.wandb}",
    ]
    if source is not None:
        overrides.append(f"pretrained={source}")
    cfg = load_finetune_config(None, overrides)
    results = run_stages([BenchmarkStage(cfg, releases="none")])["benchmark"]
    [summary] = [t for t in results["tasks"] if t["task"] == task]
    return summary


def paired_tests(pre: list[float], scratch: list[float]) -> dict[str, float]:
    """Two-sided paired t-test and Wilcoxon signed-rank p-values on per-fold errors."""
    from scipy import stats

    out = {"t_p": math.nan, "wilcoxon_p": math.nan}
    if len(pre) >= 2 and np.any(np.asarray(pre) != np.asarray(scratch)):
        out["t_p"] = float(stats.ttest_rel(pre, scratch).pvalue)
        out["wilcoxon_p"] = float(stats.wilcoxon(pre, scratch).pvalue)
    return out


def release_info(source: str) -> dict[str, Any]:
    """Pre-training steps, descriptor and target scaling recorded in a release's config (a
    path, registry name or URL)."""
    import yaml

    from fmpretrain.api import resolve_release

    config = yaml.safe_load((resolve_release(source) / "config.yaml").read_text())
    return {
        "steps": (config.get("training") or {}).get("steps"),
        "descriptor": (config.get("descriptor") or {}).get("name", "?"),
        "scaling": (config.get("normalization") or {}).get("scaling", "zscore"),
    }


def arm_label(row: dict[str, Any]) -> str:
    """``ead``, or ``ead/robust`` when the targets were not z-scored."""
    scaling = row.get("scaling", "zscore")
    return row.get("descriptor", "?") + ("" if scaling == "zscore" else f"/{scaling}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/study"))
    parser.add_argument(
        "--release",
        action="append",
        default=[],
        metavar="NAME=SOURCE",
        help="a pre-trained release to fine-tune (repeatable)",
    )
    parser.add_argument("--tasks", nargs="+", default=["perov_heat", "carbon_energy"])
    parser.add_argument("--task-size", type=int, default=500)
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--wandb", default="disabled", help="offline | online | disabled")
    parser.add_argument(
        "--tag", default="", help="suffix of the summary files (study{TAG}.json/.md/.png)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    releases = [tuple(r.split("=", 1)) for r in args.release]
    if not releases or any(len(r) != 2 for r in releases):
        parser.error("give at least one --release NAME=SOURCE")

    start = time.perf_counter()
    study: dict[str, Any] = {"settings": {k: str(v) for k, v in vars(args).items()}, "tasks": {}}
    for task in args.tasks:
        reference = fine_tune(args, task, "scratch", None)
        rows: dict[str, Any] = {m: reference[m] for m in ("scratch", "gbm", "mean")}
        unit = reference.get("unit", "")
        for name, source in releases:
            pre = fine_tune(args, task, name, source)["pretrained"]
            scratch = rows["scratch"]
            improvement = 100 * (scratch["mean"] - pre["mean"]) / scratch["mean"]
            rows[name] = {
                **pre,
                "source": source,
                **release_info(source),
                "improvement_pct": improvement,
                "fold_improvement_pct": [
                    100 * (s - p) / s
                    for p, s in zip(pre["per_fold"], scratch["per_fold"], strict=True)
                ],
                **paired_tests(pre["per_fold"], scratch["per_fold"]),
            }
        study["tasks"][task] = {"unit": unit, "rows": rows}
    study["seconds"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"study{args.tag}.json").write_text(json.dumps(study, indent=1) + "\n")
    text = markdown(study, releases, args)
    (args.out / f"study{args.tag}.md").write_text(text)
    plot_curve(study, releases, args.out / f"study{args.tag}_steps.png")
    plot_arms(study, releases, args.out / f"study{args.tag}_arms.png")
    print(text)


def markdown(study: dict[str, Any], releases: list[tuple[str, str]], args: Any) -> str:
    lines = [
        f"Tasks: seeded subsets of {args.task_size} structures, MatBench 5-fold protocol, folds "
        f"{args.folds}; fine-tuning lr {args.lr}, up to {args.epochs} epochs (patience "
        f"{args.patience}); machine load {os.getloadavg()[0]:.1f}; "
        f"{study['seconds'] / 60:.0f} min.",
        "",
        "| Task | Model | Fingerprint | Pre-training steps | Test MAE (mean ± std) | vs scratch | "
        "per-fold vs scratch | paired t p | Wilcoxon p |",
        "|---|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for task, entry in study["tasks"].items():
        rows, unit = entry["rows"], entry["unit"]
        for name in [n for n, _ in releases] + ["scratch", "gbm", "mean"]:
            r = rows[name]
            value = f"{r['mean']:.4g} ± {r['std']:.2g} {unit}"
            if "improvement_pct" in r:
                folds = ", ".join(f"{v:+.1f}%" for v in r["fold_improvement_pct"])
                lines.append(
                    f"| {task} | {name} | {arm_label(r)} | {r['steps'] or '?'} | {value} | "
                    f"{r['improvement_pct']:+.1f}% | {folds} | {r['t_p']:.3f} | "
                    f"{r['wilcoxon_p']:.3f} |"
                )
            else:
                ref = rows["scratch"]["mean"]
                rel = "" if name == "scratch" else f"{100 * (ref - r['mean']) / ref:+.1f}%"
                lines.append(f"| {task} | {name} | – | – | {value} | {rel} | | | |")
    return "\n".join(lines) + "\n"


def plot_curve(study: dict[str, Any], releases: list[tuple[str, str]], path: Path) -> None:
    """Improvement over scratch against pre-training steps, one line per task and fingerprint
    (target scaling included)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for task, entry in study["tasks"].items():
        arms = sorted({arm_label(r) for r in entry["rows"].values() if "improvement_pct" in r})
        for arm in arms:
            points = sorted(
                (r["steps"], r["improvement_pct"], np.std(r["fold_improvement_pct"]))
                for r in entry["rows"].values()
                if "improvement_pct" in r and r["steps"] and arm_label(r) == arm
            )
            if points:
                x, y, e = zip(*points, strict=True)
                label = task if len(arms) == 1 else f"{task} ({arm})"
                ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=label)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("pre-training steps")
    ax.set_ylabel("test MAE improvement over scratch (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_arms(study: dict[str, Any], releases: list[tuple[str, str]], path: Path) -> None:
    """Per-fold paired bars: each release's improvement over scratch, fold by fold, per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(study["tasks"].items())
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(1.2 + 1.1 * len(releases) * len(tasks), 3.8), squeeze=False
    )
    for ax, (task, entry) in zip(axes[0], tasks, strict=True):
        names = [n for n, _ in releases if "improvement_pct" in entry["rows"].get(n, {})]
        rows = [entry["rows"][n] for n in names]
        x = np.arange(len(rows))
        ax.bar(x, [r["improvement_pct"] for r in rows], color="#8cb4d8", label="mean of folds")
        for k, r in enumerate(rows):
            folds = r["fold_improvement_pct"]
            ax.plot([k] * len(folds), folds, "k.", ms=5, label="fold" if k == 0 else None)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(x, [f"{n}\n{arm_label(r)}" for n, r in zip(names, rows, strict=True)])
        ax.set_title(task)
        ax.set_ylabel("test MAE improvement over scratch (%)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
