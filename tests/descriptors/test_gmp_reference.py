"""GMP against a loop-over-neighbours reference written from the formulas, plus a quadrature check.

The reference sums, for every atom ``i``, over the atom itself (``d = 0``, ``f_c = 1``) and its
neighbours in all periodic images (brute-force image enumeration from ``reference.py``), over each
neighbour's density Gaussians, with the MCSH written out as explicit polynomials evaluated at
``λ·d``. Nothing from fmpretrain is used to build it.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.data import covalent_radii
from omegaconf import OmegaConf

from fmpretrain.descriptors import get_descriptor
from fmpretrain.structures import Structure
from tests.descriptors.reference import fc, neighbours, reference_structures

CONFIG = Path(__file__).parents[2] / "configs" / "descriptors" / "gmp.yaml"

# Small parameter set so the Python loops stay fast; orders up to 3 exercise every MCSH type.
PARAMS = dict(cutoff=4.5, orders=(-1, 0, 1, 2, 3), sigmas=(0.3, 0.8, 1.5))


def mcsh(order: int, x: float, y: float, z: float) -> list[tuple[float, float]]:
    """``(weight, S_{l,m}(x, y, z))`` for every Cartesian component of the MCSH of ``order``."""
    if order == 0:
        return [(1, 1.0)]
    if order == 1:
        return [(1, x), (1, y), (1, z)]
    if order == 2:
        return [
            (1, 2 * x * x - y * y - z * z),
            (1, 2 * y * y - x * x - z * z),
            (1, 2 * z * z - x * x - y * y),
            (2, 3 * x * y),
            (2, 3 * x * z),
            (2, 3 * y * z),
        ]
    if order == 3:
        return [
            (1, 6 * x**3 - 9 * x * (y * y + z * z)),
            (1, 6 * y**3 - 9 * y * (x * x + z * z)),
            (1, 6 * z**3 - 9 * z * (x * x + y * y)),
            (3, 12 * x * x * y - 3 * y**3 - 3 * y * z * z),
            (3, 12 * x * x * z - 3 * z**3 - 3 * z * y * y),
            (3, 12 * y * y * x - 3 * x**3 - 3 * x * z * z),
            (3, 12 * y * y * z - 3 * z**3 - 3 * z * x * x),
            (3, 12 * z * z * x - 3 * x**3 - 3 * x * y * y),
            (3, 12 * z * z * y - 3 * y**3 - 3 * y * x * x),
            (6, 15 * x * y * z),
        ]
    raise NotImplementedError(order)


def covalent_table(numbers) -> dict[int, list[tuple[float, float]]]:
    """The documented built-in densities: Z electrons in one Gaussian with β = 1/r_cov²."""
    table = {}
    for z in set(int(n) for n in numbers):
        beta = 1.0 / covalent_radii[z] ** 2
        table[z] = [(z * (beta / math.pi) ** 1.5, beta)]
    return table


def gmp_reference(atoms, cutoff, orders, sigmas, table=None, square=False) -> np.ndarray:
    pos, cell, pbc, numbers = atoms.positions, np.asarray(atoms.cell), atoms.pbc, atoms.numbers
    table = table or covalent_table(numbers)
    out = []
    for i in range(len(atoms)):
        entries = [(i, np.zeros(3), 0.0), *neighbours(pos, cell, pbc, i, cutoff)]
        row = []
        if -1 in orders:  # local density at the atom
            rho = 0.0
            for j, _, r in entries:
                for b, beta in table[numbers[j]]:
                    rho += fc(r, cutoff) * b * math.exp(-beta * r * r)
            row.append(rho * rho if square else abs(rho))
        for order in orders:
            if order < 0:
                continue
            for sigma in sigmas:
                alpha = 1.0 / (2.0 * sigma * sigma)
                norm = (sigma * math.sqrt(2.0 * math.pi)) ** -3
                mu = np.zeros(len(mcsh(order, 0.0, 0.0, 0.0)))
                weights = np.array([w for w, _ in mcsh(order, 0.0, 0.0, 0.0)], dtype=float)
                for j, v, r in entries:
                    for b, beta in table[numbers[j]]:
                        gamma = alpha + beta
                        lam = beta / gamma
                        pref = (
                            fc(r, cutoff)
                            * norm
                            * b
                            * (math.pi / gamma) ** 1.5
                            * math.exp(-alpha * beta * r * r / gamma)
                        )
                        for c, (_, s) in enumerate(mcsh(order, *(lam * v))):
                            mu[c] += pref * s
                total = float((weights * mu * mu).sum())
                row.append(total if square else math.sqrt(total))
        out.append(row)
    return np.array(out)


def fingerprint(atoms, **params) -> np.ndarray:
    return get_descriptor("gmp", **params)(Structure.from_ase(atoms)).numpy()


def assert_matches(got, want, rtol=1e-8):
    assert got.shape == want.shape
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("name", list(reference_structures()))
def test_matches_reference(name):
    atoms = reference_structures()[name]
    got = fingerprint(atoms, **PARAMS)
    want = gmp_reference(atoms, **PARAMS)
    assert got.shape == (len(atoms), get_descriptor("gmp", **PARAMS).dim) == (len(atoms), 13)
    assert_matches(got, want)


def test_square_option_matches_reference():
    atoms = reference_structures()["triclinic"]
    assert_matches(
        fingerprint(atoms, square=True, **PARAMS), gmp_reference(atoms, square=True, **PARAMS)
    )


# ---------------------------------------------------------------------- .gpsp pseudo-densities
# Same layout as the files shipped with GMPFeaturizer (QE-kjpaw.gpsp, NC-SR.gpsp): comment lines,
# "! N elements" (X included), "****" before each block, "symbol<TAB>Z<TAB>n", then "B<TAB>beta".
GPSP_TABLE = {
    8: [(0.166, 41.2), (-0.813, 12.5), (0.543, 2.16), (0.104, 0.754)],
    11: [(-1.33, 22.4), (1.02, 5.15), (0.0960, 0.320)],
    12: [(1.67, 50.2), (-1.36, 0.462), (1.42, 0.432)],
    17: [(0.696, 1.24), (0.110, 0.522)],
}


def gpsp_text(table: dict[int, list[tuple[float, float]]]) -> str:
    from ase.data import chemical_symbols

    lines = [
        "# GMP_psp_test",
        "# pseudo density, made up for the tests",
        f"! {len(table) + 1} elements",
    ]
    lines += ["****", "X\t0\t1", "0.0\t1.0"]
    for z, gaussians in sorted(table.items()):
        lines += ["****", f"{chemical_symbols[z]}\t{z}\t{len(gaussians)}"]
        lines += [f"{b!r}\t{beta!r}" for b, beta in gaussians]
    return "\n".join(lines) + "\n"


@pytest.fixture
def gpsp_file(tmp_path) -> Path:
    path = tmp_path / "test.gpsp"
    path.write_text(gpsp_text(GPSP_TABLE))
    return path


def test_gpsp_parsing(gpsp_file):
    from fmpretrain.descriptors.gmp_densities import load_densities, read_gpsp

    table = read_gpsp(gpsp_file)
    assert set(table.gaussians) == set(GPSP_TABLE)  # the X placeholder is skipped
    for z, gaussians in GPSP_TABLE.items():
        assert table.gaussians[z] == tuple(gaussians)
    # a directory of .gpsp files gives the same table
    assert load_densities(str(gpsp_file.parent)).gaussians == table.gaussians


def test_write_gpsp_round_trips(tmp_path):
    from fmpretrain.descriptors.gmp_densities import read_gpsp, write_gpsp

    path = write_gpsp(tmp_path / "out.gpsp", {z: tuple(g) for z, g in GPSP_TABLE.items()})
    assert read_gpsp(path).gaussians == {z: tuple(g) for z, g in GPSP_TABLE.items()}


def test_builtin_densities_cover_every_element():
    from fmpretrain.descriptors.gmp_densities import covalent_densities

    table = covalent_densities().gaussians
    assert sorted(table) == list(range(1, 119))
    assert table[6] == tuple(covalent_table([6])[6])
    for z, [(b, beta)] in table.items():  # one Gaussian holding Z electrons
        assert b * (math.pi / beta) ** 1.5 == pytest.approx(z, rel=1e-12)


@pytest.mark.parametrize("name", ["rocksalt", "triclinic"])
def test_gpsp_densities_match_reference(gpsp_file, name):
    atoms = reference_structures()[name]
    got = fingerprint(atoms, densities=str(gpsp_file), **PARAMS)
    want = gmp_reference(atoms, table=GPSP_TABLE, **PARAMS)
    assert_matches(got, want)


def test_hash_follows_density_content_not_path(gpsp_file, tmp_path):
    base = get_descriptor("gmp", densities=str(gpsp_file))
    copy = tmp_path / "elsewhere" / "copy.gpsp"
    copy.parent.mkdir()
    shutil.copy(gpsp_file, copy)
    assert get_descriptor("gmp", densities=str(copy)).hash == base.hash
    assert get_descriptor("gmp", densities=str(copy.parent)).hash == base.hash
    changed = dict(GPSP_TABLE)
    changed[17] = [(0.696, 1.24), (0.111, 0.522)]
    other = tmp_path / "changed.gpsp"
    other.write_text(gpsp_text(changed))
    assert get_descriptor("gmp", densities=str(other)).hash != base.hash
    assert get_descriptor("gmp").hash != base.hash


def test_missing_element_density(gpsp_file):
    d = get_descriptor("gmp", densities=str(gpsp_file))
    with pytest.raises(ValueError, match="no electron density"):
        d(Structure.from_ase(reference_structures()["perovskite"]))  # Sr, Ti not in the file


@pytest.mark.parametrize(
    "text",
    [
        "****\nH\t2\t1\n1.0\t1.0\n",  # wrong Z for the symbol
        "****\nH\t1\t2\n1.0\t1.0\n",  # fewer Gaussians than declared
        "****\nQq\t1\t1\n1.0\t1.0\n",  # unknown symbol
        "! 3 elements\n****\nH\t1\t1\n1.0\t1.0\n",  # element count
        "****\nH\t1\t1\n1.0\t-1.0\n",  # non-positive exponent
        "H\t1\t1\n1.0\t1.0\n",  # no block marker
    ],
)
def test_malformed_gpsp(tmp_path, text):
    path = tmp_path / "bad.gpsp"
    path.write_text(text)
    with pytest.raises(ValueError):
        get_descriptor("gmp", densities=str(path))


# ---------------------------------------------------------------------- the integral itself
def test_overlap_integral_by_quadrature():
    """μ_{l,m,σ} = ∫ S(u) A e^{−u²/2σ²} ρ(r_0 + u) du on a grid reproduces the analytic features."""
    cutoff, sigmas, orders = 6.0, (0.5, 1.0), (-1, 0, 1, 2, 3)
    d = np.array([1.1, -0.6, 0.9])
    atoms = Atoms("OSi", positions=[np.zeros(3), d])
    got = fingerprint(atoms, cutoff=cutoff, orders=orders, sigmas=sigmas, square=True)[0]

    table = covalent_table(atoms.numbers)
    weight_si = fc(float(np.linalg.norm(d)), cutoff)  # the pair carries f_c, the atom itself 1

    def density(x, y, z):
        rho = sum(b * np.exp(-beta * (x * x + y * y + z * z)) for b, beta in table[8])
        dx, dy, dz = x - d[0], y - d[1], z - d[2]
        return rho + weight_si * sum(
            b * np.exp(-beta * (dx * dx + dy * dy + dz * dz)) for b, beta in table[14]
        )

    h = 0.12
    axis = np.arange(-6.0, 6.0 + h / 2, h)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij", sparse=True)
    rho = density(x, y, z)
    want = [float(density(0.0, 0.0, 0.0)) ** 2]  # order −1: ρ at the atom
    for order in orders[1:]:
        for sigma in sigmas:
            probe = (sigma * math.sqrt(2 * math.pi)) ** -3 * np.exp(
                -(x * x + y * y + z * z) / (2 * sigma**2)
            )
            integrand = probe * rho
            total = 0.0
            for w, s in mcsh(order, x, y, z):
                mu = float((s * integrand).sum()) * h**3
                total += w * mu * mu
            want.append(total)
    np.testing.assert_allclose(got, np.array(want), rtol=1e-6, atol=1e-10 * max(want))


def test_order_zero_tends_to_local_density():
    """Order −1 is the σ → 0 limit of order 0 (normalized probe)."""
    atoms = reference_structures()["molecule"]
    fp = fingerprint(atoms, orders=(-1, 0), sigmas=(1e-3,))
    np.testing.assert_allclose(fp[:, 1], fp[:, 0], rtol=1e-4)


# ---------------------------------------------------------------------- numerics and params
def test_float32_close_to_float64():
    s = Structure.from_ase(reference_structures()["rocksalt"])
    f64 = get_descriptor("gmp")(s)
    f32 = get_descriptor("gmp", dtype=torch.float32)(s)
    assert f32.dtype == torch.float32
    torch.testing.assert_close(f32.double(), f64, rtol=1e-5, atol=1e-5 * f64.abs().max().item())


def test_chunking_does_not_change_result():
    s = Structure.from_ase(reference_structures()["triclinic"])
    whole = get_descriptor("gmp")(s)
    chunked = get_descriptor("gmp", chunk_elements=300)(s)
    torch.testing.assert_close(whole, chunked, rtol=1e-12, atol=0)


def test_yaml_matches_code_defaults():
    from fmpretrain.descriptors.gmp import GMPParams

    yaml = OmegaConf.to_container(OmegaConf.load(CONFIG))
    d = get_descriptor("gmp", **yaml)
    assert d.params == GMPParams()
    assert d.dim == 25 == len(d.feature_names)
    np.testing.assert_allclose(d.sigmas, np.linspace(0, 2.0, 9)[1:])


def test_explicit_sigmas_hash_like_the_grid_they_equal():
    default = get_descriptor("gmp")
    explicit = get_descriptor("gmp", sigmas=tuple(np.linspace(0, 2.0, 9)[1:]))
    assert explicit.hash == default.hash
    assert get_descriptor("gmp", n_sigmas=4).hash != default.hash


@pytest.mark.parametrize(
    "bad",
    [
        dict(orders=()),
        dict(orders=(-2, 0)),
        dict(orders=(0, 10)),
        dict(orders=(2, 1)),
        dict(orders=(0, 0)),
        dict(sigmas=()),
        dict(sigmas=(0.0, 1.0)),
        dict(sigmas=(1.0, 0.5)),
        dict(n_sigmas=0),
        dict(sigma_max=-1.0),
        dict(square="yes"),
        dict(densities="no-such-scheme-or-file"),
        dict(cutoff=0.0),
    ],
)
def test_bad_params(bad):
    with pytest.raises(ValueError):
        get_descriptor("gmp", **bad)


def test_unknown_param():
    with pytest.raises(TypeError, match="valid parameters"):
        get_descriptor("gmp", l_max=3)
