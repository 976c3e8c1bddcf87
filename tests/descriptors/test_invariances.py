"""Symmetries every descriptor must respect, checked on all registered descriptors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from scipy.spatial.transform import Rotation

from fmpretrain.descriptors import available_descriptors, get_descriptor
from fmpretrain.structures import Structure
from tests.descriptors.reference import reference_structures

DESCRIPTORS = ["wacsf", "gmp", "ead"]
RTOL = 1e-9


def fingerprint(name: str, atoms: Atoms, **params) -> np.ndarray:
    return get_descriptor(name, **params)(Structure.from_ase(atoms)).numpy()


def assert_same(a: np.ndarray, b: np.ndarray, rtol: float = RTOL) -> None:
    scale = max(np.abs(a).max(), np.abs(b).max(), 1e-300)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)


def test_all_descriptors_registered():
    assert set(DESCRIPTORS) <= set(available_descriptors())


@pytest.fixture(params=DESCRIPTORS)
def name(request) -> str:
    return request.param


@pytest.mark.parametrize("kind", ["perovskite", "triclinic", "slab", "molecule"])
def test_rotation(name, kind):
    atoms = reference_structures()[kind]
    rot = Rotation.random(random_state=7).as_matrix()
    turned = atoms.copy()
    turned.positions = atoms.positions @ rot.T
    turned.cell = np.asarray(atoms.cell) @ rot.T
    assert_same(fingerprint(name, atoms), fingerprint(name, turned))


@pytest.mark.parametrize("kind", ["perovskite", "triclinic", "molecule"])
def test_translation(name, kind):
    atoms = reference_structures()[kind]
    moved = atoms.copy()
    moved.positions += np.array([1.37, -2.11, 0.53])
    if moved.pbc.all():
        moved.wrap()
    assert_same(fingerprint(name, atoms), fingerprint(name, moved))


def test_permutation_permutes_rows(name):
    atoms = reference_structures()["triclinic"].repeat((2, 1, 1))
    perm = np.random.default_rng(0).permutation(len(atoms))
    assert_same(fingerprint(name, atoms)[perm], fingerprint(name, atoms[perm]))


@pytest.mark.parametrize("kind", ["perovskite", "triclinic"])
def test_supercell_tiles_primitive(name, kind):
    atoms = reference_structures()[kind]
    big = atoms.repeat((2, 2, 2))  # ASE orders the supercell image-major: 8 copies in a row
    assert_same(np.tile(fingerprint(name, atoms), (8, 1)), fingerprint(name, big))


def test_equivalent_skewed_cell(name):
    atoms = reference_structures()["perovskite"]
    skewed = atoms.copy()
    shear = np.array([[1, 2, 0], [0, 1, -1], [1, 1, 0]])  # unimodular: same lattice
    assert round(abs(np.linalg.det(shear))) == 1
    skewed.set_cell(shear @ np.asarray(atoms.cell), scale_atoms=False)
    skewed.wrap()
    assert_same(fingerprint(name, atoms), fingerprint(name, skewed))


def test_one_atom_cell_smaller_than_cutoff(name):
    one = bulk("Cu", "fcc", a=3.6)  # 1 atom, cell heights ~2.1 Å << cutoff
    d = get_descriptor(name)
    assert d.cutoff > 2 * 2.1
    fp = fingerprint(name, one)
    assert fp.shape == (1, d.dim)
    assert np.isfinite(fp).all() and np.abs(fp).max() > 0
    assert_same(np.tile(fp, (27, 1)), fingerprint(name, one.repeat((3, 3, 3))))


def test_continuity_across_cutoff(name):
    """A neighbour sliding through the cutoff changes the fingerprint smoothly (f_c -> 0)."""
    d = get_descriptor(name)
    rc = d.cutoff

    def trimer(r: float) -> np.ndarray:
        # atom 2 at distance r from atom 0; the third keeps angular terms alive
        atoms = Atoms("CuOO", positions=[[0, 0, 0], [1.4, 0.9, 0.0], [r, 0, 0]])
        return fingerprint(name, atoms)

    scale = np.abs(trimer(rc - 0.5)).max()
    deltas = (1e-2, 1e-3, 1e-4)
    jumps = [np.abs(trimer(rc - dt) - trimer(rc + dt)).max() / scale for dt in deltas]
    # Continuous: the change shrinks with the gap (linearly, from the other pairs that move
    # with the atom); a step at r_c would leave it constant.
    assert jumps[1] < jumps[0] / 5 and jumps[2] < jumps[1] / 5, jumps
    assert jumps[2] < 1e-3, jumps


def test_dimer_crossing_cutoff_is_smooth(name):
    """With one pair only, the change is f_c's alone: it vanishes quadratically at r_c."""
    rc = get_descriptor(name).cutoff

    def dimer(r: float) -> np.ndarray:
        return fingerprint(name, Atoms("CuO", positions=[[0, 0, 0], [r, 0, 0]]))

    scale = np.abs(dimer(rc - 1.0)).max()
    jumps = [np.abs(dimer(rc - dt) - dimer(rc + dt)).max() / scale for dt in (1e-2, 1e-3)]
    assert jumps[1] < jumps[0] / 50, jumps


def test_single_isolated_atom(name):
    fp = fingerprint(name, Atoms("Fe", positions=[[0, 0, 0]]))
    assert fp.shape == (1, get_descriptor(name).dim)
    assert np.isfinite(fp).all()


def test_empty_structure_gives_empty_rows(name):
    d = get_descriptor(name)
    empty = Structure(numbers=np.zeros(0), positions=np.zeros((0, 3)))
    assert tuple(d(empty).shape) == (0, d.dim)


def test_hash_is_stable_and_sensitive(name):
    a, b = get_descriptor(name), get_descriptor(name)
    assert a.hash == b.hash and len(a.hash) == 16
    assert get_descriptor(name, dtype=torch.float32).hash == a.hash  # precision is not a param
    assert get_descriptor(name, cutoff=5.0).hash != a.hash


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(name):
    s = Structure.from_ase(reference_structures()["perovskite"].repeat((2, 2, 2)))
    cpu = get_descriptor(name)(s)
    gpu = get_descriptor(name, device="cuda")(s)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-9, atol=1e-9 * cpu.abs().max().item())
