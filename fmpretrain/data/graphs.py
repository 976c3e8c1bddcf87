"""Graphs built at load time with the model's cutoff, through the project's one neighbour list.

The contract between the loader and the models, as a ``torch_geometric.data.Data``:

- ``z`` ``[N]`` int64 atomic numbers; ``pos`` ``[N, 3]`` float32 Cartesian positions (Å)
- ``edge_index`` ``[2, E]`` int64, PyG's source-to-target flow: ``edge_index[0]`` is the
  neighbour ``j``, ``edge_index[1]`` the center ``i`` that receives the message
- ``edge_shift`` ``[E, 3]`` float32 Cartesian image offset, so the edge vector is
  ``pos[j] - pos[i] + edge_shift`` (differentiable in ``pos``; all periodic images included)
- ``y`` ``[N, D]`` float32 per-atom targets (normalized fingerprints), when present
- ``natoms`` ``[1]`` int64; batching adds ``batch`` and ``ptr`` as usual in PyG
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

from fmpretrain.neighbors import neighbor_list


def build_graph(
    numbers: np.ndarray,
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    cutoff: float,
    y: np.ndarray | torch.Tensor | None = None,
    **extra: torch.Tensor,
) -> Data:
    """A radius graph over all periodic images within ``cutoff`` (see the module contract)."""
    nl = neighbor_list(positions, cell, pbc, cutoff)
    shifts = nl.shifts.astype(np.float64) @ np.asarray(cell, dtype=np.float64).reshape(3, 3)
    data = Data(
        z=torch.as_tensor(np.asarray(numbers), dtype=torch.long),
        pos=torch.as_tensor(np.asarray(positions), dtype=torch.float32),
        edge_index=torch.as_tensor(np.stack([nl.neighbors, nl.centers]), dtype=torch.long),
        edge_shift=torch.as_tensor(shifts, dtype=torch.float32),
        natoms=torch.tensor([len(numbers)], dtype=torch.long),
        **extra,
    )
    if y is not None:
        data.y = torch.as_tensor(y, dtype=torch.float32)
    return data


def edge_vectors(data: Data) -> torch.Tensor:
    """``pos[j] - pos[i] + edge_shift`` for every edge (vector from center to neighbour)."""
    source, target = data.edge_index
    return data.pos[source] - data.pos[target] + data.edge_shift
