"""Non-GNN baselines of the benchmark, trained on the same folds as the GNNs.

- ``mean``: :class:`sklearn.dummy.DummyRegressor` (``strategy="mean"``: every prediction is the
  training split's mean target) or, for classification,
  :class:`~sklearn.dummy.DummyClassifier` (``strategy="prior"``: the training class
  frequencies as probabilities, hence the most frequent class as the label).
- ``gbm``: pooled fingerprints + gradient boosting. Per structure: the mean and the
  (population) std over atoms of a per-atom fingerprint, followed by the element fractions over
  Z = 1..94 (:func:`composition_features`). The fingerprint is the release's descriptor (name
  and parameters from its ``config.yaml``) when a release is given, else EAD with its default
  parameters (:data:`DEFAULT_DESCRIPTOR`, via :func:`fmpretrain.descriptors.get_descriptor`).
  The model is :class:`~sklearn.ensemble.HistGradientBoostingRegressor` /
  ``HistGradientBoostingClassifier`` with ``random_state`` = the fold's seed (mod 2**32) and
  no internal split (``early_stopping=False``): it is fit on the GNN's training split with up
  to ``GBM_PARAMS["max_iter"]`` boosting iterations, and the number of iterations is chosen on
  the GNN's validation split (lowest validation MAE, or log-loss for classification, over the
  staged predictions): early stopping on the same validation split as the GNN's. The test fold
  is predicted with that many iterations.

Every baseline sees exactly the train / validation / test indices of the GNNs of the fold; the
mean baseline only uses the training split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fmpretrain.files import atomic_open
from fmpretrain.structures import Structure

__all__ = [
    "BASELINES",
    "BASELINE_VERSION",
    "DEFAULT_DESCRIPTOR",
    "GBM_PARAMS",
    "MAX_Z",
    "baseline_descriptor",
    "baselines_hash",
    "composition_features",
    "fit_baselines",
    "fit_gbm",
    "fit_mean",
    "pooled_features",
    "prediction_metrics",
]

logger = logging.getLogger(__name__)

BASELINES = ("gbm", "mean")
#: Bumped whenever a change alters the baselines' numbers (part of their resume hash).
BASELINE_VERSION = 1
#: Fingerprint of the GBM baseline without a release: EAD with its default parameters.
DEFAULT_DESCRIPTOR: dict[str, Any] = {"name": "ead", "params": {}}
#: Element fractions cover Z = 1..MAX_Z (heavier elements are counted in no column).
MAX_Z = 94
#: HistGradientBoosting settings (besides ``random_state`` and ``early_stopping=False``).
GBM_PARAMS: dict[str, Any] = {"max_iter": 500, "learning_rate": 0.05, "max_leaf_nodes": 31}


# ============================================================================ features
def baseline_descriptor(release_descriptor: dict[str, Any] | None = None) -> Any:
    """The fingerprint of the GBM baseline: the release's (``name`` + ``params``) or EAD."""
    from fmpretrain.descriptors import get_descriptor

    spec = release_descriptor if release_descriptor and release_descriptor.get("name") else None
    if spec is None:
        return get_descriptor(DEFAULT_DESCRIPTOR["name"], **DEFAULT_DESCRIPTOR["params"])
    descriptor = get_descriptor(str(spec["name"]), **dict(spec.get("params") or {}))
    expected = spec.get("hash")
    if expected and expected != descriptor.hash and spec.get("params"):
        logger.warning(
            "descriptor %s rebuilt from the release has hash %s, the release says %s",
            spec["name"], descriptor.hash, expected,
        )  # fmt: skip
    return descriptor


def composition_features(structure: Structure, max_z: int = MAX_Z) -> np.ndarray:
    """Element fractions ``[max_z]``: column ``Z - 1`` holds the fraction of atoms with ``Z``."""
    numbers = np.asarray(structure.numbers, dtype=np.int64)
    counts = np.bincount(numbers[(numbers >= 1) & (numbers <= max_z)] - 1, minlength=max_z)
    return counts[:max_z].astype(np.float64) / max(len(numbers), 1)


def pooled_features(
    structures: Sequence[Structure],
    descriptor: Any,
    *,
    cache: str | Path | None = None,
) -> np.ndarray:
    """``[n, 2 * dim + MAX_Z]``: per-structure mean and std over atoms of ``descriptor``,
    then the element fractions.

    With ``cache`` (an ``.npz`` path) the matrix is reused when the structures (ids, numbers,
    positions, cells) and the descriptor's hash are the same as when it was written.
    """
    key = _features_key(structures, descriptor)
    if cache is not None:
        cache = Path(cache)
        if cache.is_file():
            with np.load(cache) as saved:
                if str(saved["key"]) == key:
                    return saved["features"]
    start = time.perf_counter()
    rows = []
    for structure in structures:
        atoms = np.asarray(descriptor(structure).detach().cpu().numpy(), dtype=np.float64)
        rows.append(np.concatenate([atoms.mean(0), atoms.std(0), composition_features(structure)]))
    features = np.stack(rows) if rows else np.zeros((0, 2 * descriptor.dim + MAX_Z))
    logger.info(
        "baseline features: %d structures, %s (dim %d) pooled + %d element fractions in %.1f s",
        len(structures), descriptor.name, descriptor.dim, MAX_Z, time.perf_counter() - start,
    )  # fmt: skip
    if cache is not None:
        with atomic_open(cache) as handle:  # concurrent folds may write it together
            np.savez_compressed(handle, features=features, key=np.array(key))
    return features


def _features_key(structures: Sequence[Structure], descriptor: Any) -> str:
    digest = hashlib.sha256(f"{descriptor.hash}:{MAX_Z}:{BASELINE_VERSION}".encode())
    for s in structures:
        digest.update(s.id.encode())
        for array in (s.numbers, s.positions, s.cell):
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


# ============================================================================ metrics
def prediction_metrics(pred: np.ndarray, y: np.ndarray, task_type: str) -> dict[str, float]:
    """The trainer's test metrics from predictions (values, or class probabilities).

    Regression: ``mae``, ``rmse``; classification: ``error``, ``accuracy``, ``loss``
    (cross-entropy) and for two classes ``roc_auc``.
    """
    from fmpretrain.finetune.trainer import roc_auc

    pred = np.asarray(pred, dtype=np.float64)
    if task_type == "classification":
        labels = np.asarray(y).astype(np.int64)
        accuracy = float((pred.argmax(-1) == labels).mean())
        probs = np.clip(pred[np.arange(len(labels)), labels], 1e-15, 1.0)
        metrics = {
            "accuracy": accuracy,
            "error": 1.0 - accuracy,
            "loss": float(-np.log(probs).mean()),
        }
        if pred.shape[1] == 2:
            metrics["roc_auc"] = roc_auc(labels, pred[:, 1])
        return metrics
    err = pred - np.asarray(y, dtype=np.float64)
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean()))}


def _full_proba(model: Any, proba: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities over all ``n_classes`` (a training split may lack some classes)."""
    out = np.zeros((len(proba), n_classes))
    out[:, np.asarray(model.classes_, dtype=np.int64)] = proba
    return out


# ============================================================================ models
def fit_mean(
    targets: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    test: np.ndarray,
    *,
    task_type: str = "regression",
    n_classes: int = 0,
) -> dict[str, Any]:
    """The dummy baseline on one split: its test/validation metrics and test predictions."""
    from sklearn.dummy import DummyClassifier, DummyRegressor

    start = time.perf_counter()
    dummy = np.zeros((len(targets), 1))
    if task_type == "classification":
        model: Any = DummyClassifier(strategy="prior").fit(dummy[train], targets[train])
        n_classes = max(n_classes, int(np.max(targets)) + 1)

        def predict(idx: np.ndarray) -> np.ndarray:
            return _full_proba(model, model.predict_proba(dummy[idx]), n_classes)
    else:
        model = DummyRegressor(strategy="mean").fit(dummy[train], targets[train])

        def predict(idx: np.ndarray) -> np.ndarray:
            return model.predict(dummy[idx]).astype(np.float64)

    pred = predict(test)
    return {
        "test": prediction_metrics(pred, targets[test], task_type),
        "val": prediction_metrics(predict(val), targets[val], task_type),
        "model": f"{type(model).__name__}(strategy={model.strategy!r})",
        "seconds": round(time.perf_counter() - start, 3),
        "predictions": pred.tolist(),
    }


def fit_gbm(
    features: np.ndarray,
    targets: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    test: np.ndarray,
    *,
    task_type: str = "regression",
    n_classes: int = 0,
    seed: int = 0,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Gradient boosting on ``features``: fit on ``train``, iterations chosen on ``val``."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    # sklearn seeds are 32-bit; fold seeds (derive_seed) are 64-bit
    settings = {**GBM_PARAMS, **(params or {}), "early_stopping": False}
    settings["random_state"] = int(seed) % 2**32
    start = time.perf_counter()
    x, y = np.asarray(features, dtype=np.float64), np.asarray(targets)
    classification = task_type == "classification"
    if classification:
        n_classes = max(n_classes, int(np.max(y)) + 1)
        model: Any = HistGradientBoostingClassifier(**settings).fit(x[train], y[train])
        if len(model.classes_) < 2:
            raise ValueError("the GBM baseline needs at least two classes in the training split")

        def staged(idx: np.ndarray) -> list[np.ndarray]:
            return [_full_proba(model, p, n_classes) for p in model.staged_predict_proba(x[idx])]

        def score(pred: np.ndarray) -> float:
            return prediction_metrics(pred, y[val], task_type)["loss"]
    else:
        model = HistGradientBoostingRegressor(**settings).fit(x[train], y[train])

        def staged(idx: np.ndarray) -> list[np.ndarray]:
            return list(model.staged_predict(x[idx]))

        def score(pred: np.ndarray) -> float:
            return float(np.abs(pred - y[val]).mean())

    val_stages = staged(val)
    best = int(np.argmin([score(p) for p in val_stages]))
    test_pred = np.asarray(staged(test)[best], dtype=np.float64)
    return {
        "test": prediction_metrics(test_pred, y[test], task_type),
        "val": prediction_metrics(val_stages[best], y[val], task_type),
        "model": type(model).__name__,
        "best_iteration": best + 1,
        "iterations": int(model.n_iter_),
        "n_features": int(x.shape[1]),
        "seconds": round(time.perf_counter() - start, 3),
        "predictions": test_pred.tolist(),
    }


def fit_baselines(
    features: np.ndarray | None,
    targets: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    test: np.ndarray,
    *,
    task_type: str = "regression",
    n_classes: int = 0,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """``{"gbm": ..., "mean": ...}`` on one split (``gbm`` only when ``features`` are given)."""
    targets = np.asarray(targets)
    out: dict[str, dict[str, Any]] = {}
    if features is not None:
        out["gbm"] = fit_gbm(
            features, targets, train, val, test, task_type=task_type, n_classes=n_classes,
            seed=seed,
        )  # fmt: skip
    out["mean"] = fit_mean(targets, train, val, test, task_type=task_type, n_classes=n_classes)
    return out


def baselines_hash(descriptor: Any, seed: int) -> str:
    """What determines the baselines' numbers of a fold besides its data and indices."""
    payload = {
        "version": BASELINE_VERSION,
        "descriptor": descriptor.config(),
        "max_z": MAX_Z,
        "gbm": GBM_PARAMS,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]
