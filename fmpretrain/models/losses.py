"""The regression losses pre-training and fine-tuning offer, by name."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

#: Loss names a configuration may give.
LOSSES = ("mse", "l1", "smooth_l1")


def loss_function(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The mean-reduced loss ``name`` (one of :data:`LOSSES`)."""
    functions = {
        "mse": torch.nn.functional.mse_loss,
        "l1": torch.nn.functional.l1_loss,
        "smooth_l1": torch.nn.functional.smooth_l1_loss,
    }
    if name not in functions:
        raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
    return functions[name]
