"""The periodic neighbour list against brute-force image enumeration."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk, molecule

from fmpretrain.neighbors import neighbor_list
from tests.descriptors.reference import image_range, reference_structures


def brute_force(positions, cell, pbc, cutoff) -> set[tuple[int, int, tuple[int, int, int]]]:
    pairs = set()
    ranges = image_range(np.asarray(cell), np.asarray(pbc), cutoff)
    for a in ranges[0]:
        for b in ranges[1]:
            for c in ranges[2]:
                offset = np.array([a, b, c], float) @ np.asarray(cell)
                for i in range(len(positions)):
                    for j in range(len(positions)):
                        if i == j and (a, b, c) == (0, 0, 0):
                            continue
                        if np.linalg.norm(positions[j] + offset - positions[i]) < cutoff:
                            pairs.add((i, j, (a, b, c)))
    return pairs


CASES = {
    **{k: (v, 4.0) for k, v in reference_structures().items()},
    "cutoff_longer_than_cell": (bulk("Li", "bcc", a=3.5), 7.5),
    "one_atom": (bulk("Cu", "fcc", a=3.6), 5.0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_brute_force(case):
    atoms, cutoff = CASES[case]
    cell = np.asarray(atoms.cell)
    nl = neighbor_list(atoms.positions, cell, atoms.pbc, cutoff)
    got = {
        (int(i), int(j), tuple(int(x) for x in s))
        for i, j, s in zip(nl.centers, nl.neighbors, nl.shifts, strict=True)
    }
    assert len(got) == len(nl)  # no duplicates
    assert got == brute_force(atoms.positions, cell, atoms.pbc, cutoff)
    expected = atoms.positions[nl.neighbors] + nl.shifts @ cell - atoms.positions[nl.centers]
    np.testing.assert_allclose(nl.vectors, expected, atol=1e-10)
    np.testing.assert_allclose(nl.distances, np.linalg.norm(expected, axis=1), atol=1e-10)
    assert (np.diff(nl.centers) >= 0).all()  # sorted by center


def test_non_periodic_ignores_cell():
    mol = molecule("H2O")
    a = neighbor_list(mol.positions, np.zeros((3, 3)), False, 3.0)
    b = neighbor_list(mol.positions, np.eye(3) * 1.0, False, 3.0)
    assert len(a) == len(b) == 6
    assert not a.shifts.any()


def test_empty_and_bad_cutoff():
    assert len(neighbor_list(np.zeros((0, 3)), np.eye(3), True, 3.0)) == 0
    with pytest.raises(ValueError, match="cutoff"):
        neighbor_list(np.zeros((1, 3)), np.eye(3), True, 0.0)


def test_to_torch():
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    nl = neighbor_list(atoms.positions, atoms.cell, True, 4.0)
    centers, neighbors, vectors, distances = nl.to_torch()
    assert centers.shape == neighbors.shape == distances.shape == (len(nl),)
    assert vectors.shape == (len(nl), 3)
