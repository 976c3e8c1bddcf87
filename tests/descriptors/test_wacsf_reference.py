"""wACSF against an independent loop-over-images-and-triplets reference written from the formulas.

The reference below uses nothing from fmpretrain: it enumerates periodic images itself (image
ranges from the cell's plane spacings, i.e. the reciprocal-vector heights), loops over atoms,
neighbour entries and ordered entry pairs in plain Python, and computes r_jk from the vectors.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from omegaconf import OmegaConf

from fmpretrain.descriptors import get_descriptor
from fmpretrain.descriptors.wacsf import WACSF, WACSFParams
from fmpretrain.structures import Structure

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "descriptors" / "wacsf.yaml"

# A small explicit parameter set: shifted (μ != 0) and centred Gaussians, odd, even and
# non-integer ζ, λ in reverse order; a short cutoff keeps the Python triplet loops fast.
CUSTOM = dict(
    cutoff=4.5,
    radial_eta=(0.5, 1.0, 4.0),
    radial_mu=(0.0, 1.5, 3.0),
    angular_eta=(0.05, 0.3, 1.0),
    angular_mu=(0.0, 1.0, 2.5),
    zeta=(1.0, 3.0, 4.5, 8.0),
    lambdas=(1.0, -1.0),
)


# ---------------------------------------------------------------------- reference
def image_shifts(positions: np.ndarray, cell: np.ndarray, pbc, cutoff: float):
    """Every lattice shift (n1, n2, n3) that can bring an image of an atom within ``cutoff``.

    Along a periodic axis k a displacement d has fractional coordinate d·b_k with
    |d·b_k| <= |d| |b_k| = |d| / h_k (b_k: reciprocal vector, h_k: plane spacing), so
    |n_k| <= r_c / h_k + (spread of the atoms' fractional coordinates).
    """
    ranges = []
    recip = np.linalg.inv(cell).T if any(pbc) else None
    for k in range(3):
        if not pbc[k]:
            ranges.append([0])
            continue
        frac = positions @ recip[k]
        reach = math.ceil(cutoff * np.linalg.norm(recip[k]) + frac.max() - frac.min()) + 1
        ranges.append(range(-reach, reach + 1))
    return itertools.product(*ranges)


def f_cut(r: float, cutoff: float) -> float:
    return 0.5 * (math.cos(math.pi * r / cutoff) + 1.0) if r < cutoff else 0.0


def wacsf_reference(atoms, cutoff, radial, angular, zetas, lambdas, weight) -> np.ndarray:
    """Rows ``[G2 per (η, μ) in radial] + [G4 per (η, μ) in angular, ζ, λ]``."""
    pos = atoms.positions
    cell = np.asarray(atoms.cell)
    numbers = atoms.numbers
    shifts = [np.asarray(s, dtype=float) @ cell for s in image_shifts(pos, cell, atoms.pbc, cutoff)]
    rows = []
    for i in range(len(atoms)):
        entries = []  # (weight, vector, distance) of every neighbour entry (atom + image)
        for offset in shifts:
            for j in range(len(atoms)):
                vec = pos[j] + offset - pos[i]
                dist = math.sqrt(vec @ vec)
                if 0.0 < dist < cutoff:
                    entries.append((weight(numbers[j]), vec, dist))
        g2 = [
            sum(w * math.exp(-eta * (r - mu) ** 2) * f_cut(r, cutoff) for w, _, r in entries)
            for eta, mu in radial
        ]
        g4 = np.zeros((len(angular), len(zetas), len(lambdas)))
        for a, (wj, vj, rj) in enumerate(entries):
            for b, (wk, vk, rk) in enumerate(entries):
                if a == b:
                    continue
                rjk = math.sqrt((vk - vj) @ (vk - vj))
                if rjk >= cutoff:
                    continue  # f_c(r_jk) = 0
                cos = (vj @ vk) / (rj * rk)
                fcs = f_cut(rj, cutoff) * f_cut(rk, cutoff) * f_cut(rjk, cutoff)
                for e, (eta, mu) in enumerate(angular):
                    gauss = math.exp(-eta * ((rj - mu) ** 2 + (rk - mu) ** 2 + (rjk - mu) ** 2))
                    for z, zeta in enumerate(zetas):
                        for lam_index, lam in enumerate(lambdas):
                            g4[e, z, lam_index] += (
                                2.0 ** (1.0 - zeta)
                                * wj
                                * wk
                                * max(1.0 + lam * cos, 0.0) ** zeta
                                * gauss
                                * fcs
                            )
        rows.append(np.concatenate([g2, g4.ravel()]))
    return np.array(rows)


def reference_for(atoms, params: dict, weight=float) -> np.ndarray:
    pairs = lambda eta, mu: list(zip(eta, mu, strict=True))  # noqa: E731
    return wacsf_reference(
        atoms,
        params["cutoff"],
        pairs(params["radial_eta"], params["radial_mu"]),
        pairs(params["angular_eta"], params["angular_mu"]),
        params["zeta"],
        params["lambdas"],
        weight,
    )


# ---------------------------------------------------------------------- structures
def structures() -> dict[str, Atoms]:
    perovskite = Atoms(
        "SrTiO3",
        scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
        cell=np.eye(3) * 3.905,
        pbc=True,
    )
    perovskite.rattle(0.03, seed=1)
    triclinic = Atoms(
        "MgO2",
        scaled_positions=[[0.1, 0.05, 0.0], [0.55, 0.45, 0.5], [0.3, 0.8, 0.7]],
        cell=[[3.1, 0.0, 0.0], [1.6, 2.9, 0.0], [-1.1, 0.9, 3.4]],
        pbc=True,
    )
    slab = fcc111("Cu", size=(1, 1, 3), vacuum=4.0)
    slab.pbc = [True, True, False]
    mol = molecule("CH3CH2OH")
    mol.rattle(0.02, seed=3)
    return {
        "rocksalt": bulk("NaCl", "rocksalt", a=5.64),
        "perovskite": perovskite,
        "triclinic": triclinic,
        "slab": slab,
        "molecule": mol,
    }


def compute(atoms, **params) -> np.ndarray:
    return WACSF(**params)(Structure.from_ase(atoms)).numpy()


def assert_matches(got: np.ndarray, want: np.ndarray, rtol: float = 1e-8) -> None:
    assert got.shape == want.shape
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-250)


# ---------------------------------------------------------------------- against the reference
@pytest.mark.parametrize("kind", ["rocksalt", "perovskite", "triclinic", "slab", "molecule"])
def test_matches_reference(kind):
    atoms = structures()[kind]
    got = compute(atoms, **CUSTOM)
    assert_matches(got, reference_for(atoms, CUSTOM))
    assert (got[:, 3:] > 0).any()  # the angular block is exercised


def test_unit_weights_match_reference():
    atoms = structures()["triclinic"]
    got = compute(atoms, weights="unit", **CUSTOM)
    assert_matches(got, reference_for(atoms, CUSTOM, weight=lambda z: 1.0))


def test_defaults_match_reference():
    """Default grids (written out from the documented rules) on a two-element crystal."""
    atoms = structures()["rocksalt"]
    mu_r = np.linspace(0.5, 6.0, 18)
    sigma_a = np.linspace(0.5, 6.0, 4)
    params = dict(
        cutoff=6.0,
        radial_eta=[1.0 / (2.0 * (5.5 / 17) ** 2)] * 18,
        radial_mu=mu_r,
        angular_eta=1.0 / (2.0 * sigma_a**2),
        angular_mu=[0.0] * 4,
        zeta=(1.0, 2.0, 4.0, 8.0),
        lambdas=(-1.0, 1.0),
    )
    d = WACSF()
    assert d.dim == 18 + 4 * 4 * 2 == 50
    assert_matches(d(Structure.from_ase(atoms)).numpy(), reference_for(atoms, params))


def test_counts_each_unordered_pair_twice():
    """Three atoms in a line: centre 0 has one pair of entries (1, 2), counted as (1,2), (2,1)."""
    atoms = Atoms("H3", positions=[[0, 0, 0], [1.0, 0, 0], [-1.5, 0, 0]])
    d = WACSF(weights="unit", angular_eta=(0.1,), zeta=(1.0,), lambdas=(-1.0,), cutoff=6.0)
    got = d(Structure.from_ase(atoms)).numpy()[0, -1]
    fc = lambda r: 0.5 * (math.cos(math.pi * r / 6.0) + 1.0)  # noqa: E731
    # cos θ = −1, so (1 − cos θ)^1 = 2 and 2^(1−ζ) = 1
    one_pair = 2.0 * math.exp(-0.1 * (1.0 + 1.5**2 + 2.5**2)) * fc(1) * fc(1.5) * fc(2.5)
    assert got == pytest.approx(2 * one_pair, rel=1e-12)


# ---------------------------------------------------------------------- grids and parameters
def test_grids_follow_the_documented_rules():
    d = WACSF(cutoff=5.0, n_radial=6, r_min=1.0, n_angular_eta=3)
    np.testing.assert_allclose(d.radial_mu, [1.0, 1.8, 2.6, 3.4, 4.2, 5.0])
    np.testing.assert_allclose(d.radial_eta, np.full(6, 1.0 / (2 * 0.8**2)))
    np.testing.assert_allclose(d.angular_mu, np.zeros(3))
    np.testing.assert_allclose(d.angular_eta, 1.0 / (2.0 * np.array([1.0, 3.0, 5.0]) ** 2))

    d = WACSF(cutoff=5.0, n_radial=3, r_min=1.0, radial_grid="centred", angular_grid="shifted")
    np.testing.assert_allclose(d.radial_mu, np.zeros(3))
    np.testing.assert_allclose(d.radial_eta, 1.0 / (2.0 * np.array([1.0, 3.0, 5.0]) ** 2))
    np.testing.assert_allclose(d.angular_mu, np.linspace(1.0, 5.0, 4))
    np.testing.assert_allclose(d.angular_eta, np.full(4, 1.0 / (2 * (4.0 / 3) ** 2)))

    d = WACSF(cutoff=5.0, n_radial=1, r_min=1.0, n_angular_eta=1, angular_grid="shifted")
    np.testing.assert_allclose([d.radial_mu[0], d.radial_eta[0]], [1.0, 1.0 / (2 * 4.0**2)])
    np.testing.assert_allclose([d.angular_mu[0], d.angular_eta[0]], [1.0, 1.0 / (2 * 4.0**2)])


def test_explicit_lists_override_grids():
    d = WACSF(radial_eta=(0.5, 2.0), angular_eta=(0.1,), angular_mu=(0.0, 1.0, 2.0))
    np.testing.assert_array_equal(d.radial_eta, [0.5, 2.0])
    np.testing.assert_array_equal(d.radial_mu, [0.0, 0.0])  # μ defaults to 0 (centred)
    np.testing.assert_array_equal(d.angular_eta, [0.1, 0.1, 0.1])  # one value broadcasts
    np.testing.assert_array_equal(d.angular_mu, [0.0, 1.0, 2.0])
    assert d.dim == 2 + 3 * 4 * 2
    assert WACSF(radial_eta=[1.0]).hash != WACSF(radial_eta=[2.0]).hash


def test_dim_and_feature_names():
    d = WACSF()
    names = d.feature_names
    assert d.dim == 50 and len(names) == 50 and len(set(names)) == 50
    assert all(n.startswith("wacsf_g2_") for n in names[:18])
    assert all(n.startswith("wacsf_g4_") for n in names[18:])
    assert names[18].endswith("_zeta1_lambda-1") and names[19].endswith("_zeta1_lambda+1")
    assert get_descriptor("wacsf").dim == 50


def test_radial_only():
    atoms = structures()["triclinic"]
    full = compute(atoms, **CUSTOM)
    radial = compute(atoms, **{**CUSTOM, "angular_eta": None, "angular_mu": None}, n_angular_eta=0)
    assert radial.shape == (len(atoms), 3)
    np.testing.assert_array_equal(radial, full[:, :3])


def test_unknown_parameter_is_a_type_error():
    with pytest.raises(TypeError, match="unknown parameter"):
        WACSF(eta=1.0)


@pytest.mark.parametrize(
    "bad",
    [
        dict(n_radial=0),
        dict(n_radial=2.5),
        dict(n_angular_eta=-1),
        dict(zeta=(0.0, 1.0)),
        dict(zeta=(-2.0,)),
        dict(zeta=()),
        dict(zeta=(2.0, 2.0)),
        dict(lambdas=(0.5,)),
        dict(lambdas=(1.0, 2.0)),
        dict(lambdas=()),
        dict(radial_grid="log"),
        dict(angular_grid="uniform"),
        dict(weights="electronegativity"),
        dict(r_min=-0.1),
        dict(r_min=6.0),
        dict(r_min=0.0, angular_grid="centred"),
        dict(cutoff=0.0),
        dict(radial_eta=(-1.0,)),
        dict(radial_eta=()),
        dict(radial_mu=(1.0, 2.0)),  # μ without η
        dict(angular_eta=(0.1, 0.2), angular_mu=(0.0, 1.0, 2.0)),
        dict(angular_eta=(float("nan"),)),
    ],
)
def test_invalid_parameters_are_value_errors(bad):
    with pytest.raises(ValueError):
        WACSF(**bad)


def test_yaml_equals_code_defaults():
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIG), resolve=True)
    fields = set(WACSFParams().as_dict())
    assert set(cfg) == fields
    assert WACSFParams(**cfg) == WACSFParams()
    assert WACSF(**cfg).hash == WACSF().hash


# ---------------------------------------------------------------------- precision and chunking
def test_float32_agrees_with_float64():
    atoms = structures()["perovskite"].repeat((2, 1, 1))
    s = Structure.from_ase(atoms)
    for params in ({}, CUSTOM):
        f64 = WACSF(**params)(s).numpy()
        f32 = WACSF(dtype=torch.float32, **params)(s)
        assert f32.dtype == torch.float32
        # element-wise relative (observed: a few 1e-6); atol only for float32 underflow
        np.testing.assert_allclose(f32.numpy(), f64, rtol=2e-5, atol=1e-30)


@pytest.mark.parametrize("kind", ["slab", "molecule", "triclinic"])
def test_small_chunks_give_identical_results(kind):
    atoms = structures()[kind]
    if kind == "triclinic":
        atoms = atoms.repeat((2, 1, 1))
    s = Structure.from_ase(atoms)
    whole = WACSF(**CUSTOM)(s).numpy()
    for chunk in (1, 5_000, 50_000):
        chunked = WACSF(chunk_elements=chunk, **CUSTOM)(s).numpy()
        np.testing.assert_allclose(chunked, whole, rtol=1e-13, atol=0.0)


def test_isolated_atoms_and_pairs():
    d = WACSF()
    single = d(Structure.from_ase(Atoms("Fe", positions=[[0, 0, 0]])))
    assert single.shape == (1, 50) and not single.any()
    dimer = d(Structure.from_ase(Atoms("CO", positions=[[0, 0, 0], [1.1, 0, 0]]))).numpy()
    assert (dimer[:, :18] > 0).any() and not dimer[:, 18:].any()  # no triplet: G4 = 0


def test_matches_dscribe_acsf_for_one_element():
    """Cross-check with DScribe (optional): same G2; G4 twice DScribe's k < j sum."""
    dscribe = pytest.importorskip("dscribe.descriptors")
    atoms = bulk("Cu", "fcc", a=3.61).repeat((2, 1, 1))
    atoms.rattle(0.05, seed=2)
    d = WACSF(weights="unit", cutoff=5.0)
    acsf = dscribe.ACSF(
        species=["Cu"],
        r_cut=5.0,
        g2_params=[[e, m] for e, m in zip(d.radial_eta, d.radial_mu, strict=True)],
        g4_params=[[e, z, lam] for e in d.angular_eta for z in d.params.zeta for lam in (-1, 1)],
        periodic=True,
    )
    ref = acsf.create(atoms)  # [G1, G2..., G4...]
    got = d(Structure.from_ase(atoms)).numpy()
    np.testing.assert_allclose(got[:, :18], ref[:, 1:19], rtol=1e-10)
    np.testing.assert_allclose(got[:, 18:], 2.0 * ref[:, 19:], rtol=1e-10, atol=1e-250)
