"""The benchmark harness: MatBench folds, pre-trained vs scratch, results JSON/markdown/PNG.

Protocol (MatBench v0.1): the dataset is split by
``sklearn.model_selection.KFold(n_splits=5, shuffle=True, random_state=18012019)``
(:func:`kfold_splits` reproduces it exactly without scikit-learn). In fold ``k`` the training
part is split again, seeded, into train and validation (``val_fraction``) for early stopping;
the test part is used once, at the end. In each fold the pre-trained model and the from-scratch
baseline (identical architecture, data, seed, head initialisation and budget) are trained and
their test metric is recorded: MAE for regression, error rate (1 - accuracy) for
classification (accuracy and, for two classes, ROC-AUC are recorded too).

Outputs under ``out/``:

- ``<task>/fold_<k>.json``: one fold: split sizes, both models' test/validation metrics,
  epochs, time, and the test predictions (ids, targets, predictions); reused on a re-run when
  the configuration hash matches (``resume``);
- ``results.json``: every task: per-fold metrics, mean ± std (population std over folds) for
  pre-trained and scratch, improvement ``(scratch - pretrained) / scratch * 100``;
- ``results.md``: the markdown table; ``results.png``: bars with error bars, one panel per task;
- ``metrics.jsonl`` and ``wandb/`` (offline unless configured): per-epoch training curves.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmpretrain.config import config_dict
from fmpretrain.data.batching import derive_seed
from fmpretrain.finetune.data import LabelledDataset, build_graphs
from fmpretrain.finetune.release import FoldReleases, Release, load_release, save_finetuned
from fmpretrain.finetune.tasks import TaskSpec, load_task
from fmpretrain.finetune.trainer import (
    FinetuneConfig,
    build_model,
    evaluate,
    fit,
    resolve_model_config,
)
from fmpretrain.models import ModelConfig

__all__ = [
    "MODES",
    "kfold_splits",
    "markdown_table",
    "plot_results",
    "random_split",
    "run_benchmark",
    "run_finetune",
    "summarize_task",
    "train_val_split",
]

MODES = ("pretrained", "scratch")
MATBENCH_SEED = 18012019
#: Config entries that do not change a fold's numbers (excluded from the resume hash).
_NOT_HASHED = (
    "out", "folds", "resume", "wandb", "device", "data", "cache_dir", "matbench_url", "pretrained"
)  # fmt: skip


# ============================================================================ splits
def kfold_splits(
    n: int, n_splits: int = 5, seed: int = MATBENCH_SEED
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(train indices, test indices)]`` of ``KFold(n_splits, shuffle=True, random_state=seed)``.

    The same algorithm as scikit-learn's: shuffle ``arange(n)`` with
    ``np.random.RandomState(seed)``; fold ``k`` tests the ``k``-th consecutive chunk (the first
    ``n % n_splits`` chunks one longer). Both index arrays are returned in increasing order,
    as scikit-learn returns them (it goes through boolean masks).
    """
    if n_splits < 2:
        raise ValueError(f"n_splits must be at least 2, got {n_splits}")
    if n < n_splits:
        raise ValueError(f"cannot make {n_splits} folds of {n} samples")
    order = np.arange(n)
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(n_splits, n // n_splits, dtype=np.int64)
    sizes[: n % n_splits] += 1
    splits, start = [], 0
    for size in sizes:
        mask = np.zeros(n, dtype=bool)
        mask[order[start : start + size]] = True
        splits.append((np.nonzero(~mask)[0], np.nonzero(mask)[0]))
        start += size
    return splits


def train_val_split(
    indices: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``indices`` into (train, validation); both keep at least one entry."""
    indices = np.asarray(indices)
    if len(indices) < 2:
        raise ValueError(
            f"need at least 2 training entries for a validation split, got {len(indices)}"
        )
    perm = np.random.default_rng(seed).permutation(indices)
    n_val = min(max(1, round(val_fraction * len(indices))), len(indices) - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def random_split(
    n: int, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded (train, validation, test) split, e.g. 60/20/20."""
    if n < 3:
        raise ValueError(f"need at least 3 entries for a train/val/test split, got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = min(max(1, round(test_fraction * n)), n - 2)
    n_val = min(max(1, round(val_fraction * n)), n - n_test - 1)
    test, val, train = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
    return np.sort(train), np.sort(val), np.sort(test)


# ============================================================================ preparation
@dataclass
class Prepared:
    """One task ready to train: data, graphs (built with the model's cutoff) and the model."""

    spec: TaskSpec
    dataset: LabelledDataset
    graphs: list
    model_config: ModelConfig
    release: Release | None

    @property
    def out_dim(self) -> int:
        return self.dataset.n_classes if self.spec.task_type == "classification" else 1

    @property
    def metric(self) -> str:
        return "error" if self.spec.task_type == "classification" else "mae"


def _tasks(cfg: FinetuneConfig) -> list[str | None]:
    task = cfg.task
    if task is None:
        return [None]
    if isinstance(task, str):
        return [t.strip() for t in task.split(",")] if "," in task else [task]
    tasks = list(task)
    if cfg.data is not None and len(tasks) > 1:
        raise ValueError("data=PATH is one dataset: give a single task (or task=null)")
    return tasks


def _model_config(cfg: FinetuneConfig, release: Release | None) -> ModelConfig:
    if release is not None:
        if cfg.model_overrides:
            raise ValueError(
                "model_overrides only apply to from-scratch runs without a release; the "
                "architecture comes from the release (the scratch baseline uses it too)"
            )
        return release.model_config
    return resolve_model_config(cfg.model, dict(cfg.model_overrides))


def prepare(cfg: FinetuneConfig, task: str | None, release: Release | None) -> Prepared:
    dataset, spec = load_task(
        task,
        data=cfg.data,
        target=cfg.target,
        targets_csv=cfg.targets_csv,
        task_type=cfg.task_type,
        pooling=cfg.pooling,
        n=cfg.emt.n,
        seed=cfg.emt.seed,
        max_atoms=cfg.emt.max_atoms,
        cache=cfg.cache_dir,
        url_base=cfg.matbench_url,
        min_distance=cfg.min_distance,
    )
    model_config = _model_config(cfg, release)
    graphs = build_graphs(dataset, model_config.cutoff)
    return Prepared(spec, dataset, graphs, model_config, release)


def _modes(cfg: FinetuneConfig, release: Release | None) -> list[str]:
    modes = []
    if release is not None:
        modes.append("pretrained")
    if cfg.scratch or release is None:
        modes.append("scratch")
    return modes


class _Logger:
    """A :class:`RunLogger` with one monotonic step over the whole run (resumes included)."""

    def __init__(self, cfg: FinetuneConfig, out: Path, job_type: str):
        # RunLogger lives in fmpretrain.train but is a generic logger (metrics.jsonl + W&B);
        # it is imported as is, as the only use of that package here.
        from fmpretrain.train.logging import RunLogger

        metrics = out / "metrics.jsonl"
        self.step = 0
        if metrics.exists():
            with open(metrics) as handle:
                self.step = sum(1 for _ in handle)
        self.run = RunLogger(
            out,
            enabled=True,
            wandb_mode=cfg.wandb.mode,
            project=cfg.wandb.project,
            name=cfg.wandb.name,
            entity=cfg.wandb.entity,
            config=config_dict(cfg),
            job_type=job_type,
        )

    def scoped(self, prefix: str) -> Callable[[dict[str, float]], None]:
        def log(record: dict[str, float]) -> None:
            self.run.log({f"{prefix}/{k}": v for k, v in record.items()}, step=self.step)
            self.step += 1

        return log

    def close(self, summary: dict[str, Any] | None = None) -> None:
        if summary:
            self.run.summary(summary)
        self.run.close()


def _train_modes(
    prep: Prepared,
    cfg: FinetuneConfig,
    train: np.ndarray,
    val: np.ndarray,
    test: np.ndarray,
    *,
    seed: int,
    logger: _Logger | None,
    prefix: str,
    keep_models: bool = False,
) -> dict[str, Any]:
    """Train every mode on one split; their test metrics, predictions (and models)."""
    graphs = prep.graphs
    result: dict[str, Any] = {"n_train": len(train), "n_val": len(val), "n_test": len(test)}
    result["test_ids"] = [prep.dataset.structures[i].id for i in test]
    result["test_targets"] = prep.dataset.targets[test].tolist()
    result["modes"] = {}
    models = {}
    for mode in _modes(cfg, prep.release):
        model = build_model(
            prep.model_config,
            out_dim=prep.out_dim,
            pooling=prep.spec.pooling,
            release=prep.release if mode == "pretrained" else None,
            seed=seed,
        )
        outcome = fit(
            model,
            [graphs[i] for i in train],
            [graphs[i] for i in val],
            cfg,
            task_type=prep.spec.task_type,
            pooling=prep.spec.pooling,
            log=logger.scoped(f"{prefix}/{mode}") if logger else None,
            seed=seed,
        )
        metrics, pred, idx = evaluate(
            model,
            [graphs[i] for i in test],
            task_type=prep.spec.task_type,
            scaler=outcome.scaler,
            device=next(model.parameters()).device,
            max_atoms=cfg.max_atoms_per_batch,
        )
        position = {int(g): k for k, g in enumerate(idx)}  # back in the order of `test`
        pred = pred[[position[int(i)] for i in test]]
        result["modes"][mode] = {
            "test": metrics,
            "val": outcome.best_val,
            "best_epoch": outcome.best_epoch,
            "epochs": outcome.epochs,
            "stopped_early": outcome.stopped_early,
            "seconds": round(outcome.seconds, 3),
            "trainable_parameters": outcome.trainable_parameters,
            "scaler": outcome.scaler.to_dict() if outcome.scaler else None,
            "predictions": pred.tolist(),
        }
        if keep_models:
            models[mode] = (model, outcome)
        print(
            f"{prefix} {mode:<10} test {prep.metric}={metrics[prep.metric]:.5g} "
            f"(best epoch {outcome.best_epoch}/{outcome.epochs}, {outcome.seconds:.1f} s)"
        )
    if keep_models:
        result["_models"] = models
    return result


def _hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _fold_hash(cfg: FinetuneConfig, prep: Prepared, fold: int) -> str:
    settings = {k: v for k, v in config_dict(cfg).items() if k not in _NOT_HASHED}
    data = hashlib.sha256()
    for s, t in zip(prep.dataset.structures, prep.dataset.targets.tolist(), strict=True):
        data.update(f"{s.id}\t{t}\n".encode())
    return _hash(
        {
            "settings": settings,
            "spec": prep.spec.__dict__,
            "data": data.hexdigest(),
            "release": prep.release.weights_sha256 if prep.release else None,
            "model": prep.model_config.to_dict(),
            "fold": fold,
        }
    )


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=_json_default, allow_nan=True))
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# ============================================================================ benchmark
def run_benchmark(cfg: FinetuneConfig, *, releases: str = "best") -> dict[str, Any]:
    """Run the MatBench-style protocol for every task of ``cfg``; write and return the results.

    ``releases``: fine-tuned releases to write under ``out/<task>/release/`` (``best`` fold,
    ``all`` folds or ``none``; see :class:`~fmpretrain.finetune.release.FoldReleases`).
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    release = load_release(cfg.pretrained) if cfg.pretrained else None
    tasks = _tasks(cfg)
    if len({t for t in tasks}) != len(tasks):
        raise ValueError(f"task lists {tasks} twice")
    folds = sorted(set(cfg.folds)) if cfg.folds is not None else list(range(cfg.n_folds))
    preps = [prepare(cfg, task, release) for task in tasks]  # bad data fails before training
    logger = _Logger(cfg, out, "benchmark")
    summaries = []
    try:
        for prep in preps:
            name = prep.spec.name
            splits = kfold_splits(len(prep.dataset), cfg.n_folds, cfg.fold_seed)
            fold_results = []
            saver = FoldReleases(out / name, releases, prep, release)
            for fold in folds:
                path = out / name / f"fold_{fold}.json"
                digest = _fold_hash(cfg, prep, fold)
                if cfg.resume and path.exists():
                    previous = json.loads(path.read_text())
                    if previous.get("config_hash") == digest:
                        print(f"{name} fold {fold}: reusing {path}")
                        fold_results.append(previous)
                        continue
                train_part, test = splits[fold]
                seed = derive_seed(cfg.seed, fold)
                train, val = train_val_split(train_part, cfg.val_fraction, seed)
                result = _train_modes(
                    prep, cfg, train, val, test, seed=seed, logger=logger,
                    prefix=f"{name}/fold{fold}", keep_models=saver.keep_models,
                )  # fmt: skip
                saver.add(fold, result)
                result = {
                    "task": name,
                    "fold": fold,
                    "n_folds": cfg.n_folds,
                    "fold_seed": cfg.fold_seed,
                    "metric": prep.metric,
                    "config_hash": digest,
                    **result,
                }
                _write_json(path, result)
                fold_results.append(result)
            saver.finish(fold_results)
            summaries.append(summarize_task(prep, fold_results))
        results = _results(cfg, release, summaries, folds)
        _write_json(out / "results.json", results)
        (out / "results.md").write_text(markdown_table(summaries))
        plot_results(summaries, out / "results.png")
        logger.close(
            {
                f"{s['task']}/{mode}_{s['metric']}_mean": s[mode]["mean"]
                for s in summaries
                for mode in MODES
                if s.get(mode)
            }
        )
    except BaseException:
        logger.close()
        raise
    return results


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
    for mode in MODES:
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


# ============================================================================ reports
def _fmt(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "n/a"
    return f"{stats['mean']:.4g} ± {stats['std']:.2g}"


def markdown_table(summaries: Sequence[dict[str, Any]]) -> str:
    """The results table: task, metric, size, folds, mean ± std of both models, improvement."""
    lines = [
        "| Task | Metric | N | Folds | Pre-trained | Scratch | Improvement |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        metric = "MAE" if s["metric"] == "mae" else "error rate"
        if s.get("unit") and s["metric"] == "mae":
            metric += f" ({s['unit']})"
        gain = s["improvement_pct"]
        lines.append(
            f"| {s['task']} | {metric} | {s['n_structures']} | {len(s['folds'])} | "
            f"{_fmt(s['pretrained'])} | {_fmt(s['scratch'])} | "
            f"{'n/a' if gain is None else f'{gain:+.1f}%'} |"
        )
    gains = [s["improvement_pct"] for s in summaries if s["improvement_pct"] is not None]
    if len(summaries) > 1 and gains:
        lines.append(f"| **average** | | | | | | **{np.mean(gains):+.1f}%** |")
    note = (
        "\nMean ± population std over the folds run. Improvement = (scratch - pre-trained) / "
        "scratch × 100 of the mean test error; positive means pre-training helped.\n"
    )
    return "\n".join(lines) + "\n" + note


def plot_results(summaries: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Bars (mean) with error bars (std) of both models, one panel per task (Agg, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = max(len(summaries), 1)
    fig = Figure(figsize=(3.2 * n + 0.6, 3.6), dpi=120)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    colors = {"pretrained": "#1f77b4", "scratch": "#ff7f0e"}
    for ax, s in zip(axes, summaries, strict=False):
        modes = [m for m in MODES if s.get(m)]
        means = [s[m]["mean"] for m in modes]
        stds = [s[m]["std"] for m in modes]
        ax.bar(
            range(len(modes)),
            means,
            yerr=stds,
            capsize=6,
            color=[colors[m] for m in modes],
            edgecolor="black",
            linewidth=0.6,
        )
        ax.set_xticks(range(len(modes)), ["pre-trained" if m == "pretrained" else m for m in modes])
        label = "test MAE" if s["metric"] == "mae" else "test error rate"
        ax.set_ylabel(f"{label} ({s['unit']})" if s.get("unit") and s["metric"] == "mae" else label)
        gain = s["improvement_pct"]
        title = s["task"] + ("" if gain is None else f"\n{gain:+.1f}% vs scratch")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


# ============================================================================ one split
def run_finetune(cfg: FinetuneConfig) -> dict[str, Any]:
    """Fine-tune on one seeded train/val/test split (pre-trained and scratch); save the models.

    Writes ``out/finetune.json`` (metrics of every task and mode) and, per task and mode,
    ``out/<task>/<mode>/model.safetensors`` + ``config.yaml`` (architecture, head, target
    scaling, class labels) + ``README.md`` + ``SHA256SUMS``: a release ``fmpretrain.load`` opens.
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    release = load_release(cfg.pretrained) if cfg.pretrained else None
    preps = [prepare(cfg, task, release) for task in _tasks(cfg)]
    logger = _Logger(cfg, out, "finetune")
    report: dict[str, Any] = {
        "release": release.summary() if release else None,
        "tasks": [],
        "config": config_dict(cfg),
    }
    try:
        for prep in preps:
            name = prep.spec.name
            train, val, test = random_split(
                len(prep.dataset), cfg.val_fraction, cfg.test_fraction, cfg.seed
            )
            result = _train_modes(
                prep, cfg, train, val, test, seed=cfg.seed, logger=logger, prefix=name,
                keep_models=True,
            )  # fmt: skip
            models = result.pop("_models")
            for mode, (model, outcome) in models.items():
                save_finetuned(
                    out / name / mode, model, prep, scaler=outcome.scaler, release=release,
                    mode=mode, results={"test": result["modes"][mode]["test"]},
                )  # fmt: skip
            summary = summarize_task(prep, [{"fold": 0, **result}])
            report["tasks"].append({**summary, "split": result})
        _write_json(out / "finetune.json", report)
    finally:
        logger.close()
    return report
