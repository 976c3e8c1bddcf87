"""Shared pieces of the independent reference implementations: periodic images and fixtures.

Nothing here uses fmpretrain's neighbour lists: images are enumerated by brute force from the
cell's plane spacings, so the references check the production code rather than mirror it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np
from ase import Atoms
from ase.build import bulk, fcc111, molecule


def image_range(cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> list[range]:
    """How many images to enumerate along each cell vector to reach ``cutoff``."""
    ranges = []
    for axis in range(3):
        if not pbc[axis]:
            ranges.append(range(0, 1))
            continue
        others = [cell[k] for k in range(3) if k != axis]
        normal = np.cross(*others)
        height = abs(cell[axis] @ normal) / np.linalg.norm(normal)
        n = math.ceil(cutoff / height) + 1
        ranges.append(range(-n, n + 1))
    return ranges


def neighbours(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, i: int, cutoff: float
) -> Iterator[tuple[int, np.ndarray, float]]:
    """Yield ``(j, r_j_image - r_i, distance)`` for every neighbour entry of atom ``i``."""
    for shift in itertools.product(*image_range(cell, pbc, cutoff)):
        offset = np.asarray(shift, dtype=float) @ cell
        for j in range(len(positions)):
            if j == i and not any(shift):
                continue
            vec = positions[j] + offset - positions[i]
            dist = float(np.sqrt(vec @ vec))
            if dist < cutoff:
                yield j, vec, dist


def fc(r: float, cutoff: float) -> float:
    return 0.5 * (math.cos(math.pi * r / cutoff) + 1.0) if r < cutoff else 0.0


def reference_structures() -> dict[str, Atoms]:
    """Small structures of every kind the descriptors must handle."""
    perovskite = Atoms(
        "SrTiO3",
        scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
        cell=np.eye(3) * 3.905,
        pbc=True,
    )
    triclinic = Atoms(
        "MgO2",
        scaled_positions=[[0.1, 0.05, 0.0], [0.55, 0.45, 0.5], [0.3, 0.8, 0.7]],
        cell=[[3.1, 0.0, 0.0], [1.2, 3.3, 0.0], [0.7, -0.9, 3.6]],
        pbc=True,
    )
    slab = fcc111("Cu", size=(1, 1, 3), vacuum=4.0, periodic=False)
    slab.pbc = [True, True, False]
    rng = np.random.default_rng(3)
    mol = molecule("CH3CH2OH")
    mol.positions += rng.normal(scale=0.02, size=mol.positions.shape)
    return {
        "rocksalt": bulk("NaCl", "rocksalt", a=5.64),
        "perovskite": perovskite,
        "triclinic": triclinic,
        "slab": slab,
        "molecule": mol,
    }
