"""EAD against a loop-over-neighbours reference written from the formula."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from fmpretrain.descriptors import get_descriptor
from fmpretrain.structures import Structure
from tests.descriptors.reference import fc, neighbours, reference_structures

CONFIG = Path(__file__).parents[2] / "configs" / "descriptors" / "ead.yaml"

# Small parameter set so the Python loops stay fast; l_max 3 exercises every order.
PARAMS = dict(cutoff=4.5, l_max=3, alpha=(0.8, 2.0), r_s=(0.0, 1.5, 3.0))


def ead_reference(atoms, cutoff, l_max, alpha, r_s, weight=lambda z: float(z)) -> np.ndarray:
    pos, cell, pbc = atoms.positions, np.asarray(atoms.cell), atoms.pbc
    numbers = atoms.numbers
    out = []
    for i in range(len(atoms)):
        entries = list(neighbours(pos, cell, pbc, i, cutoff))
        row = []
        for order in range(l_max + 1):
            for a in alpha:
                for rs in r_s:
                    rho = 0.0
                    for lx in range(order + 1):
                        for ly in range(order - lx + 1):
                            lz = order - lx - ly
                            coef = math.factorial(order) / (
                                math.factorial(lx) * math.factorial(ly) * math.factorial(lz)
                            )
                            inner = 0.0
                            for j, v, r in entries:
                                inner += (
                                    weight(numbers[j])
                                    * v[0] ** lx
                                    * v[1] ** ly
                                    * v[2] ** lz
                                    * math.exp(-a * (r - rs) ** 2)
                                    * fc(r, cutoff)
                                )
                            rho += coef * inner**2
                    row.append(rho)
        out.append(row)
    return np.array(out)


@pytest.mark.parametrize("name", list(reference_structures()))
def test_matches_reference(name):
    atoms = reference_structures()[name]
    d = get_descriptor("ead", **PARAMS)
    got = d(Structure.from_ase(atoms)).numpy()
    want = ead_reference(atoms, **PARAMS)
    assert got.shape == (len(atoms), d.dim) == want.shape
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-12 * np.abs(want).max())


def test_unit_weights_match_reference():
    atoms = reference_structures()["perovskite"]
    d = get_descriptor("ead", weights="unit", **PARAMS)
    want = ead_reference(atoms, **PARAMS, weight=lambda z: 1.0)
    got = d(Structure.from_ase(atoms)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-12 * np.abs(want).max())


def test_chunking_does_not_change_result():
    s = Structure.from_ase(reference_structures()["triclinic"])
    whole = get_descriptor("ead")(s)
    chunked = get_descriptor("ead", chunk_elements=500)(s)
    torch.testing.assert_close(whole, chunked, rtol=1e-12, atol=0)


def test_float32_close_to_float64():
    s = Structure.from_ase(reference_structures()["rocksalt"])
    f64 = get_descriptor("ead")(s)
    f32 = get_descriptor("ead", dtype=torch.float32)(s)
    assert f32.dtype == torch.float32
    torch.testing.assert_close(f32.double(), f64, rtol=1e-4, atol=1e-4 * f64.abs().max().item())


def test_yaml_matches_code_defaults():
    from fmpretrain.descriptors.ead import EADParams

    yaml = OmegaConf.to_container(OmegaConf.load(CONFIG))
    assert get_descriptor("ead", **yaml).params == EADParams()
    assert get_descriptor("ead").dim == 64


@pytest.mark.parametrize(
    "bad", [dict(l_max=-1), dict(alpha=()), dict(alpha=(0.0,)), dict(weights="mass")]
)
def test_bad_params(bad):
    with pytest.raises(ValueError):
        get_descriptor("ead", **bad)


def test_unknown_param():
    with pytest.raises(TypeError, match="valid parameters"):
        get_descriptor("ead", zeta=3)
