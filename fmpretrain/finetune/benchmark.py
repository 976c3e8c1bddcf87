"""The benchmark harness: MatBench folds, pre-trained vs scratch, results JSON/markdown/PNG.

Protocol (MatBench v0.1): the dataset is split by
``sklearn.model_selection.KFold(n_splits=5, shuffle=True, random_state=18012019)``
(:func:`kfold_splits`). In fold ``k`` the training
part is split again, seeded, into train and validation (``val_fraction``) for early stopping;
the test part is used once, at the end. In each fold the pre-trained model and the from-scratch
baseline (identical architecture, data, seed, head initialisation and budget) are trained and
their test metric is recorded: MAE for regression, error rate (1 - accuracy) for
classification (accuracy and, for two classes, ROC-AUC are recorded too). With ``baselines``
(default), two non-GNN baselines are trained on the same train/validation/test indices of each
fold (:mod:`fmpretrain.finetune.baselines`): ``gbm`` (pooled fingerprint + element fractions,
histogram gradient boosting) and ``mean`` (a dummy predictor).

Outputs under ``out/``:

- ``<task>/fold_<k>.json``: one fold: split sizes, every model's test/validation metrics,
  epochs, per-epoch history (GNNs), time, and the test predictions (ids, targets,
  predictions); reused on a re-run when the configuration hash matches (``resume``; missing
  or outdated baselines of a reused fold are computed and added, the GNNs are not retrained);
- ``predictions/<task>_fold<k>_<model>.csv``: ``id,target,prediction`` of the test fold (the
  class index for classification);
- ``results.json``: every task: per-fold metrics, mean ± std (population std over folds) for
  pre-trained, scratch, gbm and mean, improvement ``(scratch - pretrained) / scratch * 100``;
- ``results.md``: the markdown table; ``results.png``: bars with error bars, one panel per task;
  ``plots/<task>_parity.png``, ``_curves.png``, ``_folds.png``
  (:mod:`fmpretrain.finetune.plots`);
- ``<task>/baseline_features.npz``: the GBM's pooled features, reused while data and
  descriptor are unchanged;
- ``metrics.jsonl`` and ``wandb/`` (offline unless configured): per-epoch training curves.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmpretrain.config import config_dict
from fmpretrain.data.batching import derive_seed
from fmpretrain.files import atomic_write_text
from fmpretrain.finetune import baselines as baselines_mod
from fmpretrain.finetune.data import LabelledDataset, build_graphs
from fmpretrain.finetune.plots import plot_results, write_task_plots
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
from fmpretrain.threads import set_threads

__all__ = [
    "MODELS",
    "MODES",
    "kfold_splits",
    "markdown_table",
    "plot_results",
    "random_split",
    "run_benchmark",
    "run_finetune",
    "summarize_task",
    "train_val_split",
    "write_predictions",
]

log = logging.getLogger(__name__)

MODES = ("pretrained", "scratch")
#: Every model of a benchmark table: the GNNs, then the baselines.
MODELS = (*MODES, *baselines_mod.BASELINES)
MATBENCH_SEED = 18012019
#: Config entries that do not change a fold's GNN numbers (excluded from the resume hash):
#: ``task_size`` changes the data, which the hash covers; the baselines have their own hash.
_NOT_HASHED = (
    "out", "folds", "resume", "wandb", "device", "data", "cache_dir", "matbench_url", "pretrained",
    "baselines", "task_size", "threads",
)  # fmt: skip
#: Model settings that choose how, not what, is computed (equal by test): a fold finished
#: with one implementation is reused with another.
_MODEL_NOT_HASHED = ("attention_impl",)


# ============================================================================ splits
def kfold_splits(
    n: int, n_splits: int = 5, seed: int = MATBENCH_SEED
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(train indices, test indices)]`` of scikit-learn's
    ``KFold(n_splits, shuffle=True, random_state=seed)``: MatBench's folds."""
    from sklearn.model_selection import KFold

    if n_splits < 2:
        raise ValueError(f"n_splits must be at least 2, got {n_splits}")
    if n < n_splits:
        raise ValueError(f"cannot make {n_splits} folds of {n} samples")
    return list(KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(np.zeros(n)))


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
        size=cfg.task_size,
        size_seed=cfg.seed,
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
    """``metrics.jsonl`` of the whole output folder plus one W&B run per task, fold and model.

    Every :meth:`scoped` call (``prefix`` = ``task/fold<k>/model`` in the benchmark,
    ``task/model`` for ``finetune``) finishes the previous W&B run and starts one with
    ``group`` = task, ``name`` = prefix, ``job_type`` = the model (``tags``: the command), its
    own step (the epoch) and a stable id, so a re-run continues the same W&B run. W&B runs
    offline unless ``wandb.mode=online`` and an API key is set; ``disabled`` skips W&B.
    ``metrics.jsonl`` lines carry a monotonic ``step`` over the folder and prefixed keys.
    """

    def __init__(self, cfg: FinetuneConfig, out: Path, job_type: str):
        self.cfg, self.out, self.job_type = cfg, out, job_type
        self.metrics = out / "metrics.jsonl"
        self.step = 0
        if self.metrics.exists():
            with open(self.metrics) as handle:
                self.step = sum(1 for _ in handle)
        self._run: Any = None

    def scoped(self, prefix: str) -> Callable[[dict[str, float]], None]:
        self._finish()
        self._run = self._start(prefix)

        def log(record: dict[str, float]) -> None:
            line = {"step": self.step, **{f"{prefix}/{k}": v for k, v in record.items()}}
            with open(self.metrics, "a") as handle:
                handle.write(json.dumps(line) + "\n")
            self.step += 1
            if self._run is not None:
                self._run.log(dict(record), step=int(record.get("epoch", 0)))

        return log

    def summary(self, values: dict[str, Any]) -> None:
        """Summary values of the current W&B run (e.g. the test metrics of its model)."""
        if self._run is not None:
            self._run.summary.update(values)

    def _start(self, prefix: str, job_type: str | None = None) -> Any:
        wandb_cfg = self.cfg.wandb
        if wandb_cfg.mode == "disabled":
            return None
        import wandb

        parts = prefix.split("/")
        online = wandb_cfg.mode == "online" and _has_wandb_key()
        run_id = hashlib.sha1(f"{self.out.resolve()}:{prefix}".encode()).hexdigest()[:16]
        return wandb.init(
            project=wandb_cfg.project,
            entity=wandb_cfg.entity,
            group=parts[0],
            name=f"{wandb_cfg.name}/{prefix}" if wandb_cfg.name else prefix,
            job_type=job_type or parts[-1],
            tags=[self.job_type],
            dir=str(self.out),
            mode="online" if online else "offline",
            config={**config_dict(self.cfg), "run": {"task": parts[0], "prefix": prefix}},
            resume="allow",
            id=run_id,
            settings=wandb.Settings(silent=True, console="off"),
        )

    def _finish(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None

    def close(self, summary: dict[str, Any] | None = None) -> None:
        """Finish the open run; ``summary`` goes to a last run named ``summary``."""
        self._finish()
        if summary:
            run = self._start(f"{self.job_type}/summary", job_type="summary")
            if run is not None:
                run.summary.update(summary)
                run.finish()


def _has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


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
        if logger is not None:
            logger.summary({f"test_{k}": v for k, v in metrics.items()})
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
            "history": outcome.history,
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
            "model": {
                k: v for k, v in prep.model_config.to_dict().items() if k not in _MODEL_NOT_HASHED
            },
            "fold": fold,
        }
    )


def _write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=1, default=_json_default, allow_nan=True))


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
    set_threads(cfg.threads)
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
            task_cache: dict[str, Any] = {}  # the task's baseline descriptor and features
            for fold in folds:
                path = out / name / f"fold_{fold}.json"
                digest = _fold_hash(cfg, prep, fold)
                train_part, test = splits[fold]
                seed = derive_seed(cfg.seed, fold)
                train, val = train_val_split(train_part, cfg.val_fraction, seed)
                result = None
                if cfg.resume and path.exists():
                    previous = json.loads(path.read_text())
                    if previous.get("config_hash") == digest:
                        print(f"{name} fold {fold}: reusing {path}")
                        result = previous
                if result is None:
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
                if not cfg.baselines:
                    result["modes"] = {m: v for m, v in result["modes"].items() if m in MODES}
                elif _add_baselines(prep, result, train, val, test, seed, task_cache, out):
                    _write_json(path, result)
                write_predictions(out, result)
                _log_fold(result)
                fold_results.append(result)
            saver.finish(fold_results)
            summaries.append(summarize_task(prep, fold_results))
            write_task_plots(out, name, fold_results, unit=prep.spec.unit)
        results = _results(cfg, release, summaries, folds)
        _write_json(out / "results.json", results)
        (out / "results.md").write_text(markdown_table(summaries))
        plot_results(summaries, out / "results.png")
        logger.close(
            {
                f"{s['task']}/{mode}_{s['metric']}_mean": s[mode]["mean"]
                for s in summaries
                for mode in MODELS
                if s.get(mode)
            }
        )
    except BaseException:
        logger.close()
        raise
    return results


def _add_baselines(
    prep: Prepared,
    result: dict[str, Any],
    train: np.ndarray,
    val: np.ndarray,
    test: np.ndarray,
    seed: int,
    task_cache: dict[str, Any],
    out: Path,
) -> bool:
    """Fit the baselines of one fold into ``result["modes"]`` unless they are there and
    current (same baseline hash); True when ``result`` changed."""
    if "descriptor" not in task_cache:
        task_cache["descriptor"] = baselines_mod.baseline_descriptor(
            prep.release.descriptor if prep.release else None
        )
    descriptor = task_cache["descriptor"]
    digest = baselines_mod.baselines_hash(descriptor, seed)
    if result.get("baselines_hash") == digest and all(
        m in result["modes"] for m in baselines_mod.BASELINES
    ):
        return False
    if "features" not in task_cache:
        task_cache["features"] = baselines_mod.pooled_features(
            prep.dataset.structures,
            descriptor,
            cache=out / prep.spec.name / "baseline_features.npz",
        )
    fitted = baselines_mod.fit_baselines(
        task_cache["features"],
        prep.dataset.targets,
        train,
        val,
        test,
        task_type=prep.spec.task_type,
        n_classes=prep.dataset.n_classes,
        seed=seed,
    )
    result["modes"].update(fitted)
    result["baselines_hash"] = digest
    result["baseline_descriptor"] = descriptor.config()
    return True


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


def _log_fold(result: dict[str, Any]) -> None:
    metric = result["metric"]
    scores = ", ".join(
        f"{m} {result['modes'][m]['test'][metric]:.5g}" for m in MODELS if m in result["modes"]
    )
    log.info(
        "%s fold %d (train %d, val %d, test %d): test %s: %s",
        result["task"], result["fold"], result["n_train"], result["n_val"], result["n_test"],
        metric, scores,
    )  # fmt: skip


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


# ============================================================================ reports
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


# ============================================================================ one split
def run_finetune(cfg: FinetuneConfig) -> dict[str, Any]:
    """Fine-tune on one seeded train/val/test split (pre-trained and scratch); save the models.

    Writes ``out/finetune.json`` (metrics of every task and mode) and, per task and mode,
    ``out/<task>/<mode>/model.safetensors`` + ``config.yaml`` (architecture, head, target
    scaling, class labels) + ``README.md`` + ``SHA256SUMS``: a release ``fmpretrain.load`` opens.
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    set_threads(cfg.threads)
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
