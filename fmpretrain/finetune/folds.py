"""Training on one split: the GNN modes (pre-trained, scratch) and the non-GNN baselines."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from fmpretrain.finetune import baselines as baselines_mod
from fmpretrain.finetune.config import FinetuneConfig
from fmpretrain.finetune.prepare import Prepared
from fmpretrain.finetune.release import Release
from fmpretrain.finetune.trainer import (
    build_model,
    evaluate,
    evaluation_batches,
    fit,
)
from fmpretrain.finetune.wandb_runs import _Logger

log = logging.getLogger("fmpretrain.finetune.benchmark")


def _modes(cfg: FinetuneConfig, release: Release | None) -> list[str]:
    modes = []
    if release is not None:
        modes.append("pretrained")
    if cfg.scratch or release is None:
        modes.append("scratch")
    return modes


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
            evaluation_batches([graphs[i] for i in test], cfg),
            task_type=prep.spec.task_type,
            scaler=outcome.scaler,
            device=next(model.parameters()).device,
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
        log.info(
            "%s %-10s test %s=%.5g (best epoch %d/%d, %.1f s)",
            prefix, mode, prep.metric, metrics[prep.metric], outcome.best_epoch, outcome.epochs,
            outcome.seconds,
        )  # fmt: skip
    if keep_models:
        result["_models"] = models
    return result


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
