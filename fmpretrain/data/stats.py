"""Per-feature running moments that merge exactly across shards and workers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class RunningMoments:
    """Count, mean and sum of squared deviations (M2) per feature, in float64.

    ``merge`` combines two sets of moments exactly (Chan et al.'s parallel update), so the
    statistics of a dataset do not depend on how it was split into shards or workers.
    """

    dim: int
    count: int = 0
    mean: np.ndarray = field(default=None)  # type: ignore[assignment]
    m2: np.ndarray = field(default=None)  # type: ignore[assignment]
    minimum: np.ndarray = field(default=None)  # type: ignore[assignment]
    maximum: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        zeros = np.zeros(self.dim, dtype=np.float64)
        self.mean = zeros.copy() if self.mean is None else np.asarray(self.mean, np.float64)
        self.m2 = zeros.copy() if self.m2 is None else np.asarray(self.m2, np.float64)
        inf = np.full(self.dim, np.inf)
        self.minimum = inf.copy() if self.minimum is None else np.asarray(self.minimum, np.float64)
        self.maximum = -inf if self.maximum is None else np.asarray(self.maximum, np.float64)

    def update(self, rows: np.ndarray) -> None:
        """Add the rows of a ``[n, dim]`` array."""
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, self.dim)
        if len(rows) == 0:
            return
        batch = RunningMoments(
            self.dim,
            count=len(rows),
            mean=rows.mean(axis=0),
            m2=((rows - rows.mean(axis=0)) ** 2).sum(axis=0),
            minimum=rows.min(axis=0),
            maximum=rows.max(axis=0),
        )
        self.merge(batch)

    def merge(self, other: RunningMoments) -> RunningMoments:
        """Fold ``other`` into ``self`` (in place) and return ``self``."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge moments of dim {other.dim} into dim {self.dim}")
        if other.count == 0:
            return self
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.count / total)
        self.m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / total)
        self.count = total
        self.minimum = np.minimum(self.minimum, other.minimum)
        self.maximum = np.maximum(self.maximum, other.maximum)
        return self

    @property
    def variance(self) -> np.ndarray:
        """Population variance (zero where fewer than one sample)."""
        return self.m2 / self.count if self.count else np.zeros(self.dim)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.variance)

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "mean": self.mean.tolist(),
            "m2": self.m2.tolist(),
            "std": self.std.tolist(),
            "min": self.minimum.tolist() if self.count else [None] * self.dim,
            "max": self.maximum.tolist() if self.count else [None] * self.dim,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunningMoments:
        dim = len(d["mean"])
        if not d["count"]:
            return cls(dim)
        return cls(
            dim,
            count=int(d["count"]),
            mean=np.asarray(d["mean"], np.float64),
            m2=np.asarray(d["m2"], np.float64),
            minimum=np.asarray(d["min"], np.float64),
            maximum=np.asarray(d["max"], np.float64),
        )
