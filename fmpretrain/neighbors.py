"""Periodic neighbour lists: the one implementation used by descriptors, validation and models.

Backed by `vesin <https://github.com/Luthaf/vesin>`_ (cell lists, all periodic images, mixed
pbc, cutoffs longer than the cell). This module works on plain arrays and imports nothing else
from the project, so every layer can use it.

Memory is bounded before anything is allocated: the cutoff must be finite, positive and at most
:data:`MAX_CUTOFF` (15 Å), and the number of pairs, estimated from the density as
``n_atoms * (4/3 π rc³) * n_atoms / volume`` (an area or a length for partly periodic cells,
the atoms' bounding box without periodicity), must stay within ``max_neighbors`` (default
:data:`DEFAULT_MAX_NEIGHBORS`, or the ``FMPRETRAIN_MAX_NEIGHBORS`` environment variable);
otherwise :class:`NeighborBudgetError` names the structure, its estimate and what to change.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import vesin

#: Largest accepted cutoff (Å). Pair and triplet work grows as ``rc³`` and ``rc⁶``.
MAX_CUTOFF = 15.0
#: Default budget of neighbour pairs per structure (about 1.5 GB at the list's peak).
DEFAULT_MAX_NEIGHBORS = 10_000_000
MAX_NEIGHBORS_ENV = "FMPRETRAIN_MAX_NEIGHBORS"


class NeighborBudgetError(ValueError):
    """A structure would have more neighbour pairs than the budget allows."""


def check_cutoff(cutoff: float, what: str = "cutoff") -> float:
    """``cutoff`` as a float if finite, positive and at most :data:`MAX_CUTOFF`, else a
    ``ValueError`` naming ``what``."""
    try:
        value = float(cutoff)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number of Å, got {cutoff!r}") from None
    if not (math.isfinite(value) and 0.0 < value <= MAX_CUTOFF):
        raise ValueError(
            f"{what} must be finite, positive and at most {MAX_CUTOFF} Å (pair work grows as "
            f"its cube), got {cutoff!r}"
        )
    return value


def max_neighbors_budget() -> int:
    """``FMPRETRAIN_MAX_NEIGHBORS`` if set, else :data:`DEFAULT_MAX_NEIGHBORS`."""
    raw = os.environ.get(MAX_NEIGHBORS_ENV)
    if raw is None:
        return DEFAULT_MAX_NEIGHBORS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{MAX_NEIGHBORS_ENV}={raw!r}: must be a positive integer (pairs)")
    return value


def estimate_pairs(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> float:
    """Neighbour pairs expected within ``cutoff`` at the structure's mean density (without
    periodicity: at the density of the atoms' bounding box, at most ``n_atoms²``)."""
    n = float(len(positions))
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    periodic = [k for k in range(3) if pbc[k] and np.linalg.norm(cell[k]) > 0]
    if len(periodic) == 3:
        volume = abs(float(np.linalg.det(cell)))
        if volume > 0:
            return n * n * (4.0 / 3.0) * math.pi * cutoff**3 / volume
    elif len(periodic) == 2:
        area = float(np.linalg.norm(np.cross(cell[periodic[0]], cell[periodic[1]])))
        if area > 0:
            return n * n * math.pi * cutoff**2 / area + n * (n - 1)
    elif len(periodic) == 1:
        return n * n * 2.0 * cutoff / float(np.linalg.norm(cell[periodic[0]])) + n * (n - 1)
    if n < 2:
        return 0.0
    box = float(np.prod(np.maximum(np.ptp(positions, axis=0), 1.0)))
    return n * min(n - 1, (4.0 / 3.0) * math.pi * cutoff**3 * n / box)


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
    *,
    max_neighbors: int | None = None,
    label: str | None = None,
) -> NeighborList:
    """All pairs ``(i, j, image)`` with ``|r_j + S·cell - r_i| < cutoff``, except ``i`` with itself.

    Every periodic image within the cutoff is included, so cells smaller than the cutoff and
    one-atom cells work; an atom's own images count as neighbours. Non-periodic directions
    (``pbc[k] = False``) may have a zero cell vector. ``max_neighbors`` bounds the estimated
    number of pairs (default :func:`max_neighbors_budget`); ``label`` names the structure in
    errors.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64).reshape(-1, 3)
    cell = np.ascontiguousarray(cell, dtype=np.float64).reshape(3, 3)
    pbc_arr = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    cutoff = check_cutoff(cutoff)
    budget = max_neighbors_budget() if max_neighbors is None else int(max_neighbors)
    estimate = estimate_pairs(positions, cell, pbc_arr, cutoff)
    if estimate > budget:
        name = label or f"a structure of {len(positions)} atoms"
        raise NeighborBudgetError(
            f"{name}: about {estimate:,.0f} neighbour pairs estimated within the {cutoff} Å "
            f"cutoff ({len(positions)} atoms), over the budget max_neighbors={budget:,}: lower "
            f"the cutoff, or raise max_neighbors ({MAX_NEIGHBORS_ENV})"
        )
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
