"""Per-channel validation metrics (MAE, R²) that reduce exactly across ranks."""

from __future__ import annotations

import math

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


def validation_record(
    values: dict[str, torch.Tensor], std: torch.Tensor, loss_sum: float, atoms: int
) -> dict[str, float]:
    """The ``val/*`` record from :meth:`ChannelMetrics.compute` values, the fingerprints' std
    (for MAE/std), and the atom-weighted loss sum over ``atoms`` atoms."""
    mae, r2_all = values["mae"], values["r2"]
    r2 = r2_all[~r2_all.isnan()]
    mae_normalized = mae / std.to(mae)
    record: dict[str, float] = {
        "val/loss": float(loss_sum / max(atoms, 1)),
        "val/mae_mean": float(mae.mean()),
        "val/mae_normalized_mean": float(mae_normalized.mean()),
        "val/r2_mean": float(r2.mean()) if len(r2) else math.nan,
        "val/r2_median": float(r2.median()) if len(r2) else math.nan,
        "val/atoms": int(atoms),
    }
    for k in range(len(mae)):
        record[f"val/mae/{k}"] = float(mae[k])
        record[f"val/r2/{k}"] = float(r2_all[k])
    return record
