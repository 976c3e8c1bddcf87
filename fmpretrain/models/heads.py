"""Output heads and the backbone + head wrappers.

Pre-training regresses the fingerprint of every atom (:class:`FingerprintHead`, node level);
fine-tuning predicts one value (or one vector of class logits) per structure
(:class:`PropertyHead`, per-atom MLP then pooling over each graph). The backbone is the
``backbone`` attribute of either wrapper, so it saves and loads by ``state_dict`` apart from
the head, and fine-tuning swaps only the head.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from fmpretrain.models.et import get_activation

POOLINGS = ("mean", "sum")


class MLP(nn.Module):
    """``Linear -> act -> ... -> Linear`` with ``num_hidden_layers`` hidden layers of ``hidden``."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: int,
        num_hidden_layers: int = 1,
        activation: str = "silu",
    ):
        super().__init__()
        dims = [in_dim] + [hidden] * num_hidden_layers + [out_dim]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.act = get_activation(activation)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in self.linears:
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: Tensor) -> Tensor:
        for lin in self.linears[:-1]:
            x = self.act(lin(x))
        return self.linears[-1](x)


class FingerprintHead(nn.Module):
    """Per-atom MLP ``[N, H] -> [N, D]``: the pre-training target (normalized fingerprints)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: int | None = None,
        num_hidden_layers: int = 1,
        activation: str = "silu",
    ):
        super().__init__()
        self.out_dim = out_dim
        self.mlp = MLP(
            in_dim, out_dim, hidden or max(in_dim // 2, 1), num_hidden_layers, activation
        )

    def forward(self, h: Tensor) -> Tensor:
        return self.mlp(h)


def pool(values: Tensor, batch: Tensor, num_graphs: int, pooling: str) -> Tensor:
    """Sum or mean of per-atom rows over each graph: ``[N, F] -> [num_graphs, F]`` (PyG's
    global pooling; a graph without atoms pools to zeros)."""
    from torch_geometric.nn import global_add_pool, global_mean_pool

    if pooling == "sum":
        return global_add_pool(values, batch, size=num_graphs)
    if pooling == "mean":
        return global_mean_pool(values, batch, size=num_graphs)
    raise ValueError(f"unknown pooling {pooling!r}; choose from {POOLINGS}")


class PropertyHead(nn.Module):
    """Per-atom MLP ``[N, H] -> [N, out_dim]``, then ``mean`` or ``sum`` over each graph.

    ``out_dim`` is 1 for a scalar regression, ``C`` for the logits of a ``C``-class task.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 1,
        pooling: str = "mean",
        hidden: int | None = None,
        num_hidden_layers: int = 1,
        activation: str = "silu",
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose from {POOLINGS}")
        self.out_dim = out_dim
        self.pooling = pooling
        self.mlp = MLP(
            in_dim, out_dim, hidden or max(in_dim // 2, 1), num_hidden_layers, activation
        )

    def forward(self, h: Tensor, batch: Tensor | None = None, num_graphs: int | None = None):
        """``[N, H] -> [num_graphs, out_dim]``; ``batch`` maps atoms to graphs (default: one)."""
        if batch is None:
            batch = torch.zeros(h.shape[0], dtype=torch.long, device=h.device)
            num_graphs = 1
        elif num_graphs is None:
            num_graphs = int(batch.max()) + 1 if batch.numel() else 0
        return pool(self.mlp(h), batch, num_graphs, self.pooling)


def _batch_info(data) -> tuple[Tensor | None, int | None]:
    batch = getattr(data, "batch", None)
    if batch is None:
        return None, 1
    num_graphs = getattr(data, "num_graphs", None)
    return batch, (int(num_graphs) if num_graphs is not None else None)


class FingerprintModel(nn.Module):
    """``backbone`` + :class:`FingerprintHead`: ``forward(batch) -> [N, D]``."""

    def __init__(self, backbone: nn.Module, head: FingerprintHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, data) -> Tensor:
        return self.head(self.backbone(data))


class PropertyModel(nn.Module):
    """``backbone`` + :class:`PropertyHead`: ``forward(batch) -> [num_graphs, out_dim]``."""

    def __init__(self, backbone: nn.Module, head: PropertyHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, data) -> Tensor:
        batch, num_graphs = _batch_info(data)
        return self.head(self.backbone(data), batch, num_graphs)
