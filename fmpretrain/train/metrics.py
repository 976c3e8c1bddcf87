"""Per-channel validation metrics (MAE, R²) that reduce exactly across ranks."""

from __future__ import annotations

import torch


class ChannelMetrics:
    """Running sums per output channel; ``all_reduce`` then ``compute``."""

    def __init__(self, dim: int, device: torch.device | str = "cpu"):
        # rows: count, sum|e|, sum e², sum y, sum y²
        self.sums = torch.zeros(5, dim, dtype=torch.float64, device=device)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        err = prediction.double() - target.double()
        y = target.double()
        self.sums[0] += y.shape[0]
        self.sums[1] += err.abs().sum(0)
        self.sums[2] += (err**2).sum(0)
        self.sums[3] += y.sum(0)
        self.sums[4] += (y**2).sum(0)

    def all_reduce(self) -> None:
        if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            torch.distributed.all_reduce(self.sums)

    def compute(self) -> dict[str, torch.Tensor]:
        """``mae``, ``rmse`` and ``r2`` per channel (R² is nan for a constant channel)."""
        n = self.sums[0].clamp(min=1)
        sst = self.sums[4] - self.sums[3] ** 2 / n
        r2 = 1 - self.sums[2] / sst
        r2 = torch.where(sst > 1e-12 * n, r2, torch.full_like(r2, float("nan")))
        return {"mae": self.sums[1] / n, "rmse": (self.sums[2] / n).sqrt(), "r2": r2}
