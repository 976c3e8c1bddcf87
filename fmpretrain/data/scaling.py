"""Target scaling of the per-atom fingerprints: what the network regresses.

``y = (T(x) - center) / scale`` per feature, with ``T`` the identity or a signed ``log1p``:

- ``zscore``: mean and standard deviation (exact, from the manifest's statistics);
- ``minmax``: minimum and range (exact, from the manifest; the paper's scripts use it);
- ``robust``: median and interquartile range, the standard deviation where the IQR is 0 (a
  feature that is mostly one value); estimated from a sample of the training shards;
- ``log``: z-score of ``sign(x) log1p(|x|)`` (for heavy-tailed features such as EAD's squared
  densities); estimated from a sample of the training shards.

Releases store :meth:`Normalizer.to_dict` (``mean`` and ``std`` hold the center and the scale,
``scaling`` the kind; releases written before it existed are z-scored).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

#: The target scalings pre-training knows.
SCALINGS = ("zscore", "minmax", "robust", "log")

#: Scalings whose statistics are estimated from the fingerprints themselves (not the manifest).
SAMPLED_SCALINGS = ("robust", "log")


class Normalizer:
    """Per-feature target scaling ``y = (T(x) - mean) / std`` (``mean``/``std``: center, scale).

    ``std`` below ``min_std`` (constant features) is replaced by 1, so such features are
    centred but not blown up. ``scaling="log"`` applies ``T(x) = sign(x) log1p(|x|)`` first.
    """

    def __init__(
        self, mean: Any, std: Any, *, min_std: float = 1e-8, scaling: str = "zscore"
    ) -> None:
        check_scaling(scaling)
        mean64 = np.asarray(mean, dtype=np.float64).reshape(-1)
        std64 = np.asarray(std, dtype=np.float64).reshape(-1)
        if mean64.shape != std64.shape:
            raise ValueError(f"mean {mean64.shape} and std {std64.shape} differ in shape")
        if not (np.isfinite(mean64).all() and np.isfinite(std64).all()):
            raise ValueError("normalization statistics contain NaN or inf")
        std64 = np.where(std64 < min_std, 1.0, std64)
        self.min_std = float(min_std)
        self.scaling = scaling
        self._log = scaling == "log"
        self._mean, self._std = mean64, std64
        self.mean = torch.from_numpy(mean64.astype(np.float32))
        self.std = torch.from_numpy(std64.astype(np.float32))
        self._mean_t, self._std_t = torch.from_numpy(mean64), torch.from_numpy(std64)

    @classmethod
    def from_manifest(
        cls, manifest: Any, *, scaling: str = "zscore", min_std: float = 1e-8
    ) -> Normalizer:
        """``zscore`` or ``minmax`` from a manifest's exact statistics."""
        stats = manifest.statistics()
        if stats.count == 0:
            raise ValueError("the manifest holds no statistics (no atoms): cannot normalize")
        if scaling == "zscore":
            return cls(stats.mean, stats.std, min_std=min_std)
        if scaling == "minmax":
            return cls(
                stats.minimum, stats.maximum - stats.minimum, min_std=min_std, scaling="minmax"
            )
        check_scaling(scaling)
        raise ValueError(
            f"target_scaling={scaling!r} is estimated from the fingerprints: use fit_normalizer"
        )

    @property
    def dim(self) -> int:
        return len(self._mean)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """In ``x``'s dtype and device (the statistics are kept in float64)."""
        if self._log:
            x = torch.sign(x) * torch.log1p(x.abs())
        return (x - self._mean_t.to(x)) / self._std_t.to(x)

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        x = y * self._std_t.to(y) + self._mean_t.to(y)
        if self._log:
            x = torch.sign(x) * torch.expm1(x.abs())
        return x

    def normalize_numpy(self, x: np.ndarray) -> np.ndarray:
        """``float32`` normalized copy of a ``[n, dim]`` array, computed in float64 (the loader's
        path; a feature with a large mean and a small spread keeps its precision)."""
        x64 = np.asarray(x, dtype=np.float64)
        if self._log:
            x64 = signed_log1p(x64)
        return ((x64 - self._mean) / self._std).astype(np.float32)

    def denormalize_numpy(self, y: np.ndarray) -> np.ndarray:
        """``float64`` fingerprints in descriptor units from normalized ``[n, dim]`` values."""
        x = np.asarray(y, dtype=np.float64) * self._std + self._mean
        return np.sign(x) * np.expm1(np.abs(x)) if self._log else x

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self._mean.tolist(),
            "std": self._std.tolist(),
            "min_std": self.min_std,
            "scaling": self.scaling,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Normalizer:
        return cls(
            d["mean"],
            d["std"],
            min_std=d.get("min_std", 1e-8),
            scaling=str(d.get("scaling", "zscore")),
        )

    def __repr__(self) -> str:
        return f"Normalizer(dim={self.dim}, scaling={self.scaling})"


def check_scaling(scaling: str) -> None:
    if scaling not in SCALINGS:
        raise ValueError(f"target_scaling={scaling!r}: choose one of {list(SCALINGS)}")


def signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def fit_normalizer(
    scaling: str,
    manifest: Any,
    fingerprints: Iterable[np.ndarray] = (),
    *,
    min_std: float = 1e-8,
) -> Normalizer:
    """The normalizer of ``scaling``: from the manifest for ``zscore``/``minmax``, else from
    ``fingerprints`` (``[n_atoms, dim]`` arrays, e.g. a sample of the training shards)."""
    check_scaling(scaling)
    if scaling not in SAMPLED_SCALINGS:
        return Normalizer.from_manifest(manifest, scaling=scaling, min_std=min_std)
    rows = [np.asarray(f, dtype=np.float64) for f in fingerprints]
    values = np.concatenate(rows) if rows else np.zeros((0, manifest.dim))
    if len(values) < 2:
        raise ValueError(f"target_scaling={scaling!r} needs fingerprints of at least 2 atoms")
    if scaling == "log":
        values = signed_log1p(values)
        return Normalizer(values.mean(0), values.std(0), min_std=min_std, scaling="log")
    q25, median, q75 = np.quantile(values, [0.25, 0.5, 0.75], axis=0)
    iqr = q75 - q25
    scale = np.where(iqr < min_std, values.std(0), iqr)
    return Normalizer(median, scale, min_std=min_std, scaling="robust")
