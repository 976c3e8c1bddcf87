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

import json
import logging
from pathlib import Path
from typing import Any

from fmpretrain.config import config_dict
from fmpretrain.data.batching import derive_seed
from fmpretrain.finetune.config import FinetuneConfig
from fmpretrain.finetune.folds import _add_baselines, _train_modes
from fmpretrain.finetune.plots import plot_results, write_task_plots
from fmpretrain.finetune.prepare import _tasks, prepare
from fmpretrain.finetune.release import FoldReleases, load_release, save_finetuned
from fmpretrain.finetune.report import (
    MODELS,
    MODES,
    _results,
    _write_json,
    markdown_table,
    summarize_task,
    write_predictions,
)
from fmpretrain.finetune.resume import _fold_hash
from fmpretrain.finetune.splits import kfold_splits, random_split, train_val_split
from fmpretrain.finetune.wandb_runs import _Logger
from fmpretrain.threads import set_threads

__all__ = ["run_benchmark", "run_finetune"]

log = logging.getLogger(__name__)


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
                        log.info("%s fold %d: reusing %s", name, fold, path)
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
