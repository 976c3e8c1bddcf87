"""Benchmark results: per-task summaries (mean ± std, improvement), results JSON, the markdown
table and the per-fold prediction CSVs."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fmpretrain.config import config_dict
from fmpretrain.files import atomic_write_text
from fmpretrain.finetune import baselines as baselines_mod
from fmpretrain.finetune.config import FinetuneConfig
from fmpretrain.finetune.prepare import Prepared
from fmpretrain.finetune.release import Release

__all__ = [
    "MODELS",
    "MODES",
    "improvement",
    "markdown_table",
    "summarize_task",
    "write_predictions",
]

MODES = ("pretrained", "scratch")
#: Every model of a benchmark table: the GNNs, then the baselines.
MODELS = (*MODES, *baselines_mod.BASELINES)


def _write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=1, default=_json_default, allow_nan=True))


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def write_predictions(out: str | Path, result: dict[str, Any]) -> list[Path]:
    """``predictions/<task>_fold<k>_<model>.csv`` (``id,target,prediction``) of every model of
    a fold result; classification predictions are the most probable class index."""
    folder = Path(out) / "predictions"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for model, values in result["modes"].items():
        pred = np.asarray(values["predictions"], dtype=np.float64)
        if pred.ndim == 2:
            pred = pred.argmax(-1)
        path = folder / f"{result['task']}_fold{result['fold']}_{model}.csv"
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "target", "prediction"])
            for row in zip(result["test_ids"], result["test_targets"], pred.tolist(), strict=True):
                writer.writerow(row)
        paths.append(path)
    return paths


def _stats(values: Sequence[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std()),  # population std over folds
        "per_fold": [float(v) for v in arr],
    }


def summarize_task(prep: Prepared, fold_results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    metric = prep.metric
    summary: dict[str, Any] = {
        "task": prep.spec.name,
        "target": prep.spec.target,
        "unit": prep.spec.unit,
        "task_type": prep.spec.task_type,
        "pooling": prep.spec.pooling,
        "metric": metric,
        "n_structures": len(prep.dataset),
        "folds": [r["fold"] for r in fold_results],
    }
    if prep.spec.task_type == "classification":
        summary["classes"] = list(prep.dataset.classes)  # labels of class indices 0, 1, ...
    for mode in MODELS:
        values = [r["modes"][mode]["test"][metric] for r in fold_results if mode in r["modes"]]
        summary[mode] = _stats(values) if values else None
    summary["improvement_pct"] = improvement(summary["pretrained"], summary["scratch"])
    return summary


def improvement(pretrained: dict[str, Any] | None, scratch: dict[str, Any] | None) -> float | None:
    """``(scratch - pretrained) / scratch * 100`` of the mean errors, or None."""
    if not pretrained or not scratch or scratch["mean"] == 0:
        return None
    return (scratch["mean"] - pretrained["mean"]) / scratch["mean"] * 100.0


def _results(
    cfg: FinetuneConfig, release: Release | None, summaries: list[dict[str, Any]], folds: list[int]
) -> dict[str, Any]:
    gains = [s["improvement_pct"] for s in summaries if s["improvement_pct"] is not None]
    return {
        "protocol": {
            "splitter": "KFold",
            "n_splits": cfg.n_folds,
            "shuffle": True,
            "random_state": cfg.fold_seed,
            "folds_run": folds,
            "val_fraction": cfg.val_fraction,
        },
        "release": release.summary() if release else None,
        "tasks": summaries,
        "average_improvement_pct": float(np.mean(gains)) if gains else None,
        "config": config_dict(cfg),
    }


def _fmt(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "n/a"
    return f"{stats['mean']:.4g} ± {stats['std']:.2g}"


def markdown_table(summaries: Sequence[dict[str, Any]]) -> str:
    """The results table: task, metric, size, folds, mean ± std of the GNNs and baselines,
    improvement of pre-trained over scratch."""
    lines = [
        "| Task | Metric | N | Folds | Pre-trained | Scratch | GBM | Mean | Improvement |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        metric = "MAE" if s["metric"] == "mae" else "error rate"
        if s.get("unit") and s["metric"] == "mae":
            metric += f" ({s['unit']})"
        gain = s["improvement_pct"]
        lines.append(
            f"| {s['task']} | {metric} | {s['n_structures']} | {len(s['folds'])} | "
            f"{_fmt(s['pretrained'])} | {_fmt(s['scratch'])} | "
            f"{_fmt(s.get('gbm'))} | {_fmt(s.get('mean'))} | "
            f"{'n/a' if gain is None else f'{gain:+.1f}%'} |"
        )
    gains = [s["improvement_pct"] for s in summaries if s["improvement_pct"] is not None]
    if len(summaries) > 1 and gains:
        lines.append(f"| **average** | | | | | | | | **{np.mean(gains):+.1f}%** |")
    note = (
        "\nMean ± population std over the folds run. Improvement = (scratch - pre-trained) / "
        "scratch × 100 of the mean test error; positive means pre-training helped. GBM: pooled "
        "fingerprint + element fractions, gradient boosting; Mean: dummy predictor (training "
        "mean / most frequent class); both on the GNNs' folds.\n"
    )
    return "\n".join(lines) + "\n" + note
