"""Batched descriptors (``d(list)``, ``d.batch``) equal the per-structure path."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from fmpretrain.descriptors import get_descriptor
from fmpretrain.generate import generate_structure, generate_structures
from fmpretrain.structures import Structure

DESCRIPTORS = ["wacsf", "gmp", "ead"]
DATA = Path("/work/shared/data")
RTOL = 1e-12


def _real_cells() -> list[Structure]:
    """A few rows of the shared perov_5 / carbon_24 sets, else generated cells of 5-24 atoms."""
    cells: list[Structure] = []
    for name in ("perov_5-val.csv", "carbon_24-val.csv"):
        path = DATA / name
        if path.exists():
            from fmpretrain.io import read_structures

            cells += list(itertools.islice(read_structures(path), 4))
    return cells or list(generate_structures(8, seed=3, min_atoms=5, max_atoms=24))


def _edge_cells() -> list[Structure]:
    one_atom = Structure.from_ase(bulk("Cu", "fcc", a=3.6), id="one-atom")  # 1 atom, periodic
    isolated = Structure(numbers=[26], positions=[[0.0, 0.0, 0.0]], id="isolated")  # no pairs
    water = Structure.from_ase(molecule("H2O"), id="molecule")
    empty = Structure(numbers=np.zeros(0), positions=np.zeros((0, 3)), id="empty")
    large = generate_structure(4, seed=0, min_atoms=320, max_atoms=320, families="perovskite")
    return [one_atom, isolated, water, empty, large]


@pytest.fixture(scope="module")
def structures() -> list[Structure]:
    """Real cells with the edge cases between them (so offsets are exercised after each)."""
    real, edge = _real_cells(), _edge_cells()
    mixed: list[Structure] = []
    for k in range(max(len(real), len(edge))):
        mixed += real[k : k + 1] + edge[k : k + 1]
    return mixed


def assert_rows_equal(batched: list[torch.Tensor], single: list[torch.Tensor]) -> None:
    assert len(batched) == len(single)
    for b, s in zip(batched, single, strict=True):
        assert b.shape == s.shape and b.dtype == s.dtype and b.device == s.device
        if s.numel():
            scale = max(s.abs().max().item(), 1e-300)
            torch.testing.assert_close(b, s, rtol=RTOL, atol=RTOL * scale)


@pytest.mark.parametrize("name", DESCRIPTORS)
def test_batch_equals_per_structure(name, structures):
    d = get_descriptor(name, dtype=torch.float64)
    single = [d(s) for s in structures]
    assert any(len(s) and (x != 0).any() for s, x in zip(structures, single, strict=True))
    assert_rows_equal(d.batch(structures), single)
    assert_rows_equal(d(structures), single)  # a list goes through the batch path
    assert_rows_equal(d(tuple(structures)), single)


@pytest.mark.parametrize("name", DESCRIPTORS)
def test_small_pair_budget_splits_into_chunks(name, structures, monkeypatch):
    """A budget below one structure's pairs: one chunk per structure, and mixed chunk sizes."""
    d = get_descriptor(name)
    single = [d(s) for s in structures]
    chunks: list[int] = []
    original = d._chunks

    def counting(items):
        for atoms in original(items):
            chunks.append(len(atoms.sizes))
            yield atoms

    monkeypatch.setattr(d, "_chunks", counting)
    for budget in (1, 2000):
        chunks.clear()
        d.batch_pairs = budget
        assert_rows_equal(d.batch(structures), single)
        assert sum(chunks) == len(structures)
        assert len(chunks) > 1 if budget == 2000 else len(chunks) == len(structures)


@pytest.mark.parametrize("name", DESCRIPTORS)
def test_batch_of_ase_atoms_and_empty_list(name):
    d = get_descriptor(name)
    atoms = [bulk("NaCl", "rocksalt", a=5.64), bulk("Si", "diamond", a=5.43)]
    out = d.batch(atoms)
    assert [tuple(x.shape) for x in out] == [(2, d.dim), (2, d.dim)]
    assert_rows_equal(out, [d(a) for a in atoms])
    assert d.batch([]) == []


def test_batch_changes_when_a_structure_changes(structures):
    """The check can fail: a moved atom changes its own structure's rows only."""
    d = get_descriptor("wacsf")
    before = d.batch(structures)
    moved = [s.copy() for s in structures]
    k = next(i for i, s in enumerate(moved) if len(s) > 3)
    moved[k].positions[0] += 0.1
    after = d.batch(moved)
    for i, (a, b) in enumerate(zip(before, after, strict=True)):
        assert torch.equal(a, b) != (i == k)


def test_batch_raises_for_a_bad_structure():
    """An error in one structure fails the batch (callers retry one by one)."""
    d = get_descriptor("gmp")
    good = Structure.from_ase(bulk("Cu", "fcc", a=3.6))
    bad = Structure(numbers=[0], positions=[[0.0, 0.0, 0.0]], id="no-element")
    with pytest.raises(ValueError, match="no electron density"):
        d.batch([good, bad])
    assert d.batch([good])[0].shape == (1, d.dim)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", DESCRIPTORS)
def test_cuda_batch_equals_per_structure(name, structures):
    d = get_descriptor(name, device="cuda", dtype=torch.float64)
    single = [d(s) for s in structures]
    assert all(x.device.type == "cuda" for x in single)
    assert_rows_equal(d.batch(structures), single)
    cpu = get_descriptor(name).batch(structures)
    for g, c in zip(d.batch(structures), cpu, strict=True):
        if c.numel():
            scale = c.abs().max().item()
            torch.testing.assert_close(g.cpu(), c, rtol=1e-9, atol=1e-9 * scale)
