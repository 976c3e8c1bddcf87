"""Periodic neighbour lists: the one implementation used by descriptors, validation and models.

Backed by `vesin <https://github.com/Luthaf/vesin>`_ (cell lists, all periodic images, mixed
pbc, cutoffs longer than the cell). This module works on plain arrays and imports nothing else
from the project, so every layer can use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import vesin


@dataclass(frozen=True)
class NeighborList:
    """A full (both directions) neighbour list, sorted by center atom.

    ``vectors[p] = positions[neighbors[p]] + shifts[p] @ cell - positions[centers[p]]``.
    """

    centers: np.ndarray  # [P] int64
    neighbors: np.ndarray  # [P] int64
    shifts: np.ndarray  # [P, 3] int64, cell-vector multiples of the neighbour's image
    vectors: np.ndarray  # [P, 3] float64, Å
    distances: np.ndarray  # [P] float64, Å

    def __len__(self) -> int:
        return len(self.centers)

    def to_torch(
        self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float64
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(centers, neighbors, vectors, distances)`` as tensors on ``device``."""
        return (
            torch.as_tensor(self.centers, device=device),
            torch.as_tensor(self.neighbors, device=device),
            torch.as_tensor(self.vectors, device=device, dtype=dtype),
            torch.as_tensor(self.distances, device=device, dtype=dtype),
        )


def neighbor_list(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray | bool,
    cutoff: float,
) -> NeighborList:
    """All pairs ``(i, j, image)`` with ``|r_j + S·cell - r_i| < cutoff``, except ``i`` with itself.

    Every periodic image within the cutoff is included, so cells smaller than the cutoff and
    one-atom cells work; an atom's own images count as neighbours. Non-periodic directions
    (``pbc[k] = False``) may have a zero cell vector.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64).reshape(-1, 3)
    cell = np.ascontiguousarray(cell, dtype=np.float64).reshape(3, 3)
    pbc_arr = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    if cutoff <= 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    if len(positions) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return NeighborList(empty, empty, np.zeros((0, 3), np.int64), np.zeros((0, 3)), empty * 0.0)
    if not pbc_arr.any():
        cell = np.zeros((3, 3))
    calculator = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, shifts, vectors, distances = calculator.compute(
        positions, cell, [bool(p) for p in pbc_arr], "ijSDd"
    )
    # deterministic order: by center, then neighbour, then image
    order = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], j, i))
    return NeighborList(
        centers=i[order].astype(np.int64),
        neighbors=j[order].astype(np.int64),
        shifts=shifts[order].astype(np.int64),
        vectors=vectors[order],
        distances=distances[order],
    )
