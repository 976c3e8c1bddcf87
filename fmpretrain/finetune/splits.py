"""MatBench splits: the k folds, the validation part of a fold's training data, one random split."""

from __future__ import annotations

import numpy as np

__all__ = ["MATBENCH_SEED", "kfold_splits", "random_split", "train_val_split"]

MATBENCH_SEED = 18012019


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
