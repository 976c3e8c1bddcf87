"""A seedable, offline, streamable generator of realistic crystal structures.

Serves demos, tests and benchmarks without any download. Structures come from prototype
families (fcc, rock-salt, perovskite, spinel, layered MX2, Heusler, ...) decorated with
chemically plausible elements: every site role has its own pool (metals on metal sites,
cations and anions in charge-balanced combinations on ionic prototypes) and lattice constants
follow from tabulated radii (metallic, Shannon ionic, covalent; elemental lattice constants
from :data:`ase.data.reference_states`) times a small random family factor, so nearest-neighbour
distances are close to the real compounds'. Each structure then gets random variations: cell
setting (primitive or conventional), a supercell, vacancies, a small symmetric strain,
Gaussian rattling and sometimes a rigid rotation.

Determinism: structure ``k`` of seed ``s`` depends only on ``(s, k)`` and the generation options
(``min_atoms``, ``max_atoms``, ``families``, ``min_distance``), never on how many structures are
requested or how the stream is chunked, so a pipeline can split the index range into chunks and
regenerate any of them. Its random stream is
``np.random.default_rng(np.random.SeedSequence(s, spawn_key=(k,)))``, i.e. child ``k`` of
``SeedSequence(s).spawn``. Outputs are reproducible for a given version of this module.

Every returned structure passes :func:`fmpretrain.structures.validate` with ``min_distance``
(0.7 Å by default); candidates that fail are redrawn from the same per-structure stream.

>>> from fmpretrain.generate import generate_structures
>>> for s in generate_structures(3, seed=1, max_atoms=64):
...     print(s.id, s.properties["family"], len(s) <= 64)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np
from ase.data import chemical_symbols

from fmpretrain.prototypes import (
    ALLOY_POOLS,
    ANIONS,
    ANTIFLUORITE,
    BCC_METALS,
    CSCL_IONIC,
    CSCL_METAL_A,
    CSCL_METAL_B,
    DIAMOND,
    F_SHIFTS,
    FCC_METALS,
    FCC_PRIM,
    FLUORITE,
    HCP_METALS,
    HEUSLER_X,
    HEUSLER_Y,
    HEUSLER_Z,
    L12_A,
    L12_B,
    LAYERED_1T,
    LAYERED_2H,
    METALLIC,
    PEROVSKITE,
    ROCKSALT,
    RUTILE,
    SPINEL,
    SPINEL_A,
    SPINEL_B,
    SPINEL_X_DIR,
    SPINEL_X_OFFSET,
    T_BCC,
    T_CSCL,
    T_FCC,
    T_FLUORITE,
    T_HEUSLER,
    T_L12,
    T_PEROVSKITE,
    T_ROCKSALT,
    T_ZINCBLENDE,
    WURTZITE,
    ZINCBLENDE,
    Template,
    atomic_number,
    cation_radius,
    centred_templates,
    covalent_radius,
    hexagonal_cell,
    reference_state,
)
from fmpretrain.structures import InvalidStructureError, Structure, validate

__all__ = [
    "GENERATED_MIN_DISTANCE",
    "generate_structure",
    "generate_structures",
    "list_families",
]

#: Minimum interatomic distance (Å) every generated structure keeps by default: stricter than
#: the validation floor ``structures.DEFAULT_MIN_DISTANCE`` (0.5 Å), so generated crystals pass it.
GENERATED_MIN_DISTANCE = 0.7

#: Above this many atoms, a cheap distance bound replaces the neighbour search when it can.
_BOUND_MIN_ATOMS = 24

#: Redraws per structure before giving up (in practice one attempt almost always suffices).
_MAX_ATTEMPTS = 50

_SQRT2 = math.sqrt(2.0)
_SQRT3 = math.sqrt(3.0)


# ============================================================================ builders
@dataclass
class _Cell:
    """A decorated unit cell produced by a family builder."""

    cell: np.ndarray  # rows, Å
    frac: np.ndarray
    numbers: np.ndarray
    setting: str
    sites: str  # e.g. "A=Sr B=Ti X=O"
    alloy: tuple[np.ndarray, np.ndarray] | None = None  # (atomic numbers, fractions)


Fits = Callable[[int], bool]


def _pick_template(rng: np.random.Generator, templates: dict[str, Template], fits: Fits):
    names = [k for k, t in templates.items() if fits(len(t.frac))]
    name = names[int(rng.integers(len(names)))]
    return name, templates[name]


def _choice(rng: np.random.Generator, pool):
    return pool[int(rng.integers(len(pool)))]


def _decorate(rng, templates, fits, a: float, symbols: list[str], labels: str) -> _Cell:
    setting, t = _pick_template(rng, templates, fits)
    zs = np.array([atomic_number(s) for s in symbols], dtype=np.int64)
    sites = " ".join(f"{lab}={s}" for lab, s in zip(labels.split(), symbols, strict=True))
    return _Cell(a * t.cell, t.frac.copy(), zs[t.roles], setting, sites)


def _build_fcc(rng, fits) -> _Cell:
    sym = _choice(rng, FCC_METALS)
    ref = reference_state(sym, "fcc")
    a = ref["a"] if ref else 2 * _SQRT2 * METALLIC[sym]
    return _decorate(rng, T_FCC, fits, a * rng.uniform(0.98, 1.02), [sym], "M")


def _build_bcc(rng, fits) -> _Cell:
    sym = _choice(rng, BCC_METALS)
    ref = reference_state(sym, "bcc")
    a = ref["a"] if ref else 4 * 0.97 * METALLIC[sym] / _SQRT3
    return _decorate(rng, T_BCC, fits, a * rng.uniform(0.98, 1.02), [sym], "M")


def _build_hcp(rng, fits) -> _Cell:
    sym = _choice(rng, HCP_METALS)
    ref = reference_state(sym, "hcp")
    a, c_a = (ref["a"], ref["c/a"]) if ref else (2 * METALLIC[sym], 1.63)
    a *= rng.uniform(0.98, 1.02)
    c = a * c_a * rng.uniform(0.99, 1.01)
    frac = np.array([[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])
    return _Cell(
        hexagonal_cell(a, c), frac, np.full(2, atomic_number(sym)), "conventional", f"M={sym}"
    )


def _build_diamond(rng, fits) -> _Cell:
    sym = _choice(rng, DIAMOND)
    ref = reference_state(sym, "diamond")
    a = ref["a"] if ref else 8 * covalent_radius(sym) / _SQRT3
    return _decorate(rng, T_ZINCBLENDE, fits, a * rng.uniform(0.98, 1.02), [sym, sym], "A B")


def _ionic_pair(rng, recipes):
    cations, anions = _choice(rng, recipes)
    (cat, q), an = _choice(rng, cations), _choice(rng, anions)
    return cat, q, an


def _build_rocksalt(rng, fits) -> _Cell:
    cat, q, an = _ionic_pair(rng, ROCKSALT)
    d = (cation_radius(cat, q, 6) + ANIONS[an]) * rng.uniform(0.97, 1.02)
    return _decorate(rng, T_ROCKSALT, fits, 2 * d, [cat, an], "A X")


def _build_cscl(rng, fits) -> _Cell:
    if rng.random() < 0.5:  # ionic halide (CsCl, TlBr, ...)
        cat, q, an = _ionic_pair(rng, (CSCL_IONIC,))
        d = (cation_radius(cat, q, 8) + ANIONS[an]) * rng.uniform(0.97, 1.02)
        symbols = [cat, an]
    else:  # B2 intermetallic (NiAl, CuZn, ...)
        symbols = [_choice(rng, CSCL_METAL_A), _choice(rng, CSCL_METAL_B)]
        d = (METALLIC[symbols[0]] + METALLIC[symbols[1]]) * rng.uniform(0.92, 0.97)
    return _decorate(rng, T_CSCL, fits, 2 * d / _SQRT3, symbols, "A B")


def _tetrahedral_pair(rng, recipes) -> tuple[list[str], float]:
    cations, anions = _choice(rng, recipes)
    symbols = [_choice(rng, cations), _choice(rng, anions)]
    d = (covalent_radius(symbols[0]) + covalent_radius(symbols[1])) * rng.uniform(0.99, 1.05)
    return symbols, d


def _build_zincblende(rng, fits) -> _Cell:
    symbols, d = _tetrahedral_pair(rng, ZINCBLENDE)
    return _decorate(rng, T_ZINCBLENDE, fits, 4 * d / _SQRT3, symbols, "A X")


def _build_wurtzite(rng, fits) -> _Cell:
    symbols, d = _tetrahedral_pair(rng, WURTZITE)
    c_a, u = rng.uniform(1.60, 1.65), rng.uniform(0.374, 0.383)
    # bond lengths at a = 1: one along c, three inclined
    bonds = np.array([u * c_a] + [math.sqrt(1 / 3 + ((0.5 - u) * c_a) ** 2)] * 3)
    a = d / bonds.mean()
    frac = np.array(
        [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, u], [2 / 3, 1 / 3, 0.5 + u]]
    )
    numbers = np.array([atomic_number(symbols[0])] * 2 + [atomic_number(symbols[1])] * 2)
    sites = f"A={symbols[0]} X={symbols[1]}"
    return _Cell(hexagonal_cell(a, a * c_a), frac, numbers, "conventional", sites)


def _build_fluorite(rng, fits) -> _Cell:
    cat, q, an = _ionic_pair(rng, FLUORITE)
    d = (cation_radius(cat, q, 8) + ANIONS[an]) * rng.uniform(0.95, 1.0)
    return _decorate(rng, T_FLUORITE, fits, 4 * d / _SQRT3, [cat, an], "A X")


def _build_antifluorite(rng, fits) -> _Cell:
    cat, q, an = _ionic_pair(rng, ANTIFLUORITE)
    d = (cation_radius(cat, q, 4) + ANIONS[an]) * rng.uniform(0.97, 1.02)
    return _decorate(rng, T_FLUORITE, fits, 4 * d / _SQRT3, [an, cat], "X A")


def _build_rutile(rng, fits) -> _Cell:
    cat, q, an = _ionic_pair(rng, RUTILE)
    d = (cation_radius(cat, q, 6) + ANIONS[an]) * rng.uniform(0.95, 1.0)
    c_a, u = rng.uniform(0.63, 0.68), rng.uniform(0.300, 0.307)
    # octahedron at a = 1: two apical bonds, four equatorial ones
    bonds = np.array([_SQRT2 * u] * 2 + [math.sqrt(2 * (0.5 - u) ** 2 + c_a**2 / 4)] * 4)
    a = d / bonds.mean()
    frac = np.array(
        [
            [0, 0, 0],
            [0.5, 0.5, 0.5],
            [u, u, 0],
            [1 - u, 1 - u, 0],
            [0.5 + u, 0.5 - u, 0.5],
            [0.5 - u, 0.5 + u, 0.5],
        ]
    )
    numbers = np.array([atomic_number(cat)] * 2 + [atomic_number(an)] * 4)
    cell = np.diag([a, a, a * c_a])
    return _Cell(cell, frac, numbers, "conventional", f"A={cat} X={an}")


def _build_perovskite(rng, fits) -> _Cell:
    for _ in range(100):  # keep Goldschmidt tolerance factors of real cubic-ish perovskites
        a_pool, b_pool, x_pool = _choice(rng, PEROVSKITE)
        (sa, qa), (sb, qb), sx = _choice(rng, a_pool), _choice(rng, b_pool), _choice(rng, x_pool)
        rb_x = cation_radius(sb, qb, 6) + ANIONS[sx]
        tolerance = (cation_radius(sa, qa, 12) + ANIONS[sx]) / (_SQRT2 * rb_x)
        if 0.82 <= tolerance <= 1.08:
            break
    a = 2 * rb_x * rng.uniform(0.95, 1.0)
    return _decorate(rng, T_PEROVSKITE, fits, a, [sa, sb, sx], "A B X")


def _spinel_u(ratio: float) -> float:
    """Oxygen parameter u (origin choice 2) giving R_tet / R_oct == ratio (bisection)."""

    def f(u: float) -> float:
        return _SQRT3 * (u - 0.125) / math.sqrt(3 * u * u - 2 * u + 0.375) - ratio

    lo, hi = 0.24, 0.29
    if f(lo) >= 0:
        return lo
    if f(hi) <= 0:
        return hi
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)


@cache
def _spinel_templates(u_milli: int) -> dict[str, Template]:
    u = u_milli / 1000.0
    basis = np.concatenate([SPINEL_A, SPINEL_B, u * SPINEL_X_DIR + SPINEL_X_OFFSET])
    roles = np.repeat([0, 1, 2], [len(SPINEL_A), len(SPINEL_B), len(SPINEL_X_DIR)])
    return centred_templates(basis, roles, F_SHIFTS, FCC_PRIM)


def _build_spinel(rng, fits) -> _Cell:
    a_pool, b_pool, x_pool = _choice(rng, SPINEL)
    (sa, qa), (sb, qb), sx = _choice(rng, a_pool), _choice(rng, b_pool), _choice(rng, x_pool)
    factor = rng.uniform(0.97, 1.01)
    r_tet = (cation_radius(sa, qa, 4) + ANIONS[sx]) * factor
    r_oct = (cation_radius(sb, qb, 6) + ANIONS[sx]) * factor
    u = round(_spinel_u(r_tet / r_oct) * 1000)  # quantised so templates can be cached
    uf = u / 1000.0
    a = 0.5 * (r_tet / (_SQRT3 * (uf - 0.125)) + r_oct / math.sqrt(3 * uf * uf - 2 * uf + 0.375))
    return _decorate(rng, _spinel_templates(u), fits, a, [sa, sb, sx], "A B X")


def _build_layered(rng, recipes, ratio_range, factor_range, trigonal_prismatic) -> _Cell:
    cat, q, an = _ionic_pair(rng, recipes)
    d = (cation_radius(cat, q, 6) + ANIONS[an]) * rng.uniform(*factor_range)  # M-X bond
    a = d * rng.uniform(*ratio_range)
    h = math.sqrt(d * d - a * a / 3)  # height of the X planes above the M plane
    xx = 2 * ANIONS[an] * rng.uniform(0.90, 0.98)  # X-X contact across the van der Waals gap
    gap = math.sqrt(max(xx * xx - a * a / 3, 0.25))
    spacing = 2 * h + gap  # one layer
    zm, zx = np.array([atomic_number(cat)]), np.array([atomic_number(an)])
    if not trigonal_prismatic:  # 1T / CdI2: octahedral M, one layer per cell
        c = spacing
        frac = np.array([[0, 0, 0], [1 / 3, 2 / 3, h / c], [2 / 3, 1 / 3, -h / c]])
        numbers = np.concatenate([zm, zx, zx])
    else:  # 2H / MoS2: trigonal prismatic M, two layers per cell
        c, hz = 2 * spacing, h / (2 * spacing)
        frac = np.array(
            [
                [1 / 3, 2 / 3, 0.25],
                [2 / 3, 1 / 3, 0.75],
                [2 / 3, 1 / 3, 0.25 + hz],
                [2 / 3, 1 / 3, 0.25 - hz],
                [1 / 3, 2 / 3, 0.75 + hz],
                [1 / 3, 2 / 3, 0.75 - hz],
            ]
        )
        numbers = np.concatenate([zm, zm, zx, zx, zx, zx])
    return _Cell(hexagonal_cell(a, c), frac % 1.0, numbers, "conventional", f"M={cat} X={an}")


def _build_layered_1t(rng, fits) -> _Cell:
    return _build_layered(rng, LAYERED_1T, (1.36, 1.46), (0.95, 1.0), trigonal_prismatic=False)


def _build_layered_2h(rng, fits) -> _Cell:
    return _build_layered(rng, LAYERED_2H, (1.28, 1.34), (0.94, 0.98), trigonal_prismatic=True)


def _build_l12(rng, fits) -> _Cell:
    sa = _choice(rng, L12_A)
    sb = _choice(rng, tuple(s for s in L12_B if s != sa))
    r_mean = 0.75 * METALLIC[sa] + 0.25 * METALLIC[sb]
    a = 2 * _SQRT2 * r_mean * rng.uniform(0.96, 1.01)
    return _decorate(rng, T_L12, fits, a, [sa, sb], "A B")


def _build_heusler(rng, fits) -> _Cell:
    sx = _choice(rng, HEUSLER_X)
    sy = _choice(rng, tuple(s for s in HEUSLER_Y if s != sx))
    sz = _choice(rng, HEUSLER_Z)
    nn = (METALLIC[sx] + 0.5 * (METALLIC[sy] + METALLIC[sz])) * rng.uniform(0.94, 0.98)
    return _decorate(rng, T_HEUSLER, fits, 4 * nn / _SQRT3, [sx, sy, sz], "X Y Z")


def _build_alloy(rng, fits) -> _Cell:
    lattices = [k for k in ("fcc", "bcc", "hcp") if fits(4 if k == "fcc" else 2)]
    lattice = _choice(rng, lattices)
    pool = ALLOY_POOLS[lattice]
    k = int(rng.choice([2, 3, 4, 5], p=[0.4, 0.3, 0.2, 0.1]))
    while True:  # Hume-Rothery: radii within 12 % of the first element's
        first = _choice(rng, pool)
        r0 = METALLIC[first]
        partners = [s for s in pool if s != first and abs(METALLIC[s] - r0) <= 0.12 * r0]
        if partners:
            break
    k = min(k, len(partners) + 1)
    chosen = [first] + [partners[i] for i in rng.choice(len(partners), k - 1, replace=False)]
    fractions = rng.dirichlet(np.full(k, 2.0))
    r_mean = float(np.dot(fractions, [METALLIC[s] for s in chosen]))
    zs = np.array([atomic_number(s) for s in chosen], dtype=np.int64)
    sites = "M=" + ",".join(chosen)
    scale = rng.uniform(0.97, 1.01)
    if lattice == "hcp":
        a = 2 * r_mean * scale
        frac = np.array([[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])
        cell = hexagonal_cell(a, a * rng.uniform(1.58, 1.65))
        return _Cell(cell, frac, np.zeros(2, np.int64), "conventional", sites, (zs, fractions))
    a = 2 * _SQRT2 * r_mean if lattice == "fcc" else 4 * 0.97 * r_mean / _SQRT3
    t = (T_FCC if lattice == "fcc" else T_BCC)["conventional"]
    numbers = np.zeros(len(t.frac), np.int64)  # assigned after the supercell is built
    return _Cell(a * scale * t.cell, t.frac.copy(), numbers, "conventional", sites, (zs, fractions))


@dataclass(frozen=True)
class _Family:
    build: Callable[[np.random.Generator, Fits], _Cell]
    sizes: tuple[int, ...]  # atoms in the possible base cells
    description: str


def _sizes(templates: dict[str, Template]) -> tuple[int, ...]:
    return tuple(sorted({len(t.frac) for t in templates.values()}))


_FAMILIES: dict[str, _Family] = {
    "fcc": _Family(_build_fcc, _sizes(T_FCC), "fcc elemental metal (Cu, Al, Pt, ...)"),
    "bcc": _Family(_build_bcc, _sizes(T_BCC), "bcc elemental metal (Fe, W, Na, ...)"),
    "hcp": _Family(_build_hcp, (2,), "hcp elemental metal (Mg, Ti, Zn, ...)"),
    "diamond": _Family(_build_diamond, _sizes(T_ZINCBLENDE), "diamond C, Si, Ge, alpha-Sn"),
    "rock-salt": _Family(_build_rocksalt, _sizes(T_ROCKSALT), "NaCl-type AX (NaCl, MgO, ScN)"),
    "cesium-chloride": _Family(_build_cscl, (2,), "CsCl/B2-type AB (CsCl, TlBr, NiAl, CuZn)"),
    "zinc-blende": _Family(
        _build_zincblende, _sizes(T_ZINCBLENDE), "sphalerite AX (GaAs, ZnS, CuCl, SiC)"
    ),
    "wurtzite": _Family(_build_wurtzite, (4,), "wurtzite AX (ZnO, GaN, CdS, AgI)"),
    "fluorite": _Family(_build_fluorite, _sizes(T_FLUORITE), "fluorite AX2 (CaF2, CeO2, UO2)"),
    "antifluorite": _Family(
        _build_antifluorite, _sizes(T_FLUORITE), "anti-fluorite A2X (Li2O, Na2S, K2Te)"
    ),
    "rutile": _Family(_build_rutile, (6,), "rutile AX2 (TiO2, SnO2, MgF2)"),
    "perovskite": _Family(_build_perovskite, (5,), "cubic perovskite ABX3 (SrTiO3, KMgF3, CsPbI3)"),
    "spinel": _Family(_build_spinel, (14, 56), "normal spinel AB2X4 (MgAl2O4, CdCr2S4)"),
    "layered-1T": _Family(_build_layered_1t, (3,), "CdI2/1T-type layered MX2 (TiS2, CdI2, MgCl2)"),
    "layered-2H": _Family(_build_layered_2h, (6,), "MoS2/2H-type layered MX2 (MoS2, WSe2, NbSe2)"),
    "L1_2": _Family(_build_l12, (4,), "L1_2 (Cu3Au-type) A3B intermetallic (Ni3Al, Pt3Fe)"),
    "heusler": _Family(
        _build_heusler, _sizes(T_HEUSLER), "L2_1 full Heusler X2YZ (Co2MnSi, Ni2MnGa)"
    ),
    "random-alloy": _Family(
        _build_alloy, (2, 4), "substitutional solid solution of 2-5 metals on fcc/bcc/hcp"
    ),
}


def list_families() -> list[str]:
    """Names of the prototype families :func:`generate_structures` can draw from."""
    return list(_FAMILIES)


# ============================================================================ variations
def _fits(base: int, lo: int, hi: int) -> bool:
    """Whether some supercell of a ``base``-atom cell has between lo and hi atoms."""
    return -(-lo // base) * base <= hi


def _choose_reps(rng, cell: np.ndarray, base: int, lo: int, hi: int) -> np.ndarray:
    """Supercell repeats: a roughly isotropic supercell near a log-uniform target size."""
    m_lo, m_hi = max(1, -(-lo // base)), hi // base
    target = math.exp(rng.uniform(math.log(max(lo, 1)), math.log(hi)))
    m_t = min(max(target / base, m_lo), m_hi)
    volume = abs(np.linalg.det(cell))
    heights = volume / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    edge = (m_t * volume) ** (1 / 3)
    reps = np.maximum(1, np.rint(edge / heights)).astype(np.int64)
    if rng.random() < 0.25:  # occasionally anisotropic
        axis = int(rng.integers(3))
        reps[axis] = max(1, reps[axis] + (1 if rng.random() < 0.5 else -1))
    for _ in range(24):
        m = int(np.prod(reps))
        if m > m_hi:
            extent = np.where(reps > 1, reps * heights, -np.inf)
            reps[int(np.argmax(extent))] -= 1
        elif m < m_lo:
            reps[int(np.argmin(reps * heights))] += 1
        else:
            return reps
    reps = np.ones(3, dtype=np.int64)  # narrow window: a line of cells along the shortest axis
    reps[int(np.argmin(heights))] = int(rng.integers(m_lo, m_hi + 1))
    return reps


def _random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _assign_alloy(rng, n: int, zs: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    k = min(len(zs), n)
    zs, fractions = zs[:k], fractions[:k] / fractions[:k].sum()
    counts = np.ones(k, dtype=np.int64)  # every chosen element present at least once
    extra = rng.multinomial(n - k, fractions)
    numbers = np.repeat(zs, counts + extra)
    return numbers[rng.permutation(n)]


def _unit_min_distance(unit: _Cell, cutoff: float = 3.0) -> float:
    """Shortest interatomic distance of the perfect unit crystal (own images included)."""
    from fmpretrain.neighbors import neighbor_list  # imports torch: only when first needed

    nl = neighbor_list(unit.frac @ unit.cell, unit.cell, True, cutoff)
    return float(nl.distances.min()) if len(nl) else cutoff


def _attempt(rng, family: str, lo: int, hi: int, seed: int, index: int) -> tuple[Structure, float]:
    """One candidate structure and a rigorous lower bound on its shortest distance."""
    fam = _FAMILIES[family]
    unit = fam.build(rng, lambda b: _fits(b, lo, hi))
    base = len(unit.frac)
    reps = _choose_reps(rng, unit.cell, base, lo, hi)
    # supercell (image-major order, like ase.Atoms.repeat)
    axes = [np.arange(r) for r in reps]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    frac = ((unit.frac[None, :, :] + grid[:, None, :]).reshape(-1, 3)) / reps
    cell = unit.cell * reps[:, None]
    n = len(frac)
    site_label = unit.sites
    if unit.alloy is not None:
        numbers = _assign_alloy(rng, n, *unit.alloy)
        used = unit.alloy[0][: min(len(unit.alloy[0]), n)]  # tiny cells hold fewer elements
        site_label = "M=" + ",".join(chemical_symbols[int(z)] for z in used)
    else:
        numbers = np.tile(unit.numbers, len(grid))

    # vacancies: a few percent of the sites of larger cells, keeping every element
    n_vac = 0
    if n >= 8 and rng.random() < 0.3:
        k = min(int(rng.integers(1, max(1, n // 20) + 1)), n - lo)
        if k > 0:
            keep = np.ones(n, dtype=bool)
            keep[rng.choice(n, k, replace=False)] = False
            if len(np.unique(numbers[keep])) == len(np.unique(numbers)):
                frac, numbers, n_vac = frac[keep], numbers[keep], k

    # small symmetric strain; it shrinks no distance by more than the factor 1 + min eig(eps)
    strain, shrink = 0.0, 1.0
    if rng.random() < 0.7:
        e = rng.normal(0.0, rng.uniform(0.005, 0.02), size=(3, 3))
        eps = np.clip(0.5 * (e + e.T), -0.04, 0.04)
        cell = cell @ (np.eye(3) + eps)
        strain = float(np.abs(eps).max())
        shrink = 1.0 + float(np.linalg.eigvalsh(eps)[0])
    positions = frac @ cell

    # Gaussian rattle, then wrap back into the cell
    sigma = rng.uniform(0.01, 0.05) if rng.random() < 0.85 else 0.0
    max_shift = 0.0
    if sigma > 0:
        shifts = rng.normal(0.0, sigma, size=positions.shape)
        max_shift = float(np.sqrt((shifts**2).sum(axis=1).max()))
        positions = ((np.linalg.solve(cell.T, (positions + shifts).T).T) % 1.0) @ cell
    # Every distance (images included) is a perfect-crystal one, strained, then changed by at
    # most two rattle shifts; vacancies, wrapping and rotation shorten nothing. Worth it only
    # for larger cells, where the neighbour search in `validate` costs more than this.
    bound = -math.inf
    if len(numbers) > _BOUND_MIN_ATOMS:
        bound = _unit_min_distance(unit) * shrink - 2 * max_shift - 1e-9

    if rng.random() < 0.2:  # arbitrary orientation
        rot = _random_rotation(rng)
        cell, positions = cell @ rot.T, positions @ rot.T

    structure = Structure(
        numbers=numbers,
        positions=positions,
        cell=cell,
        pbc=np.ones(3, dtype=bool),
        id=f"gen-{seed}-{index:08d}",
        properties={
            "family": family,
            "seed": seed,
            "index": index,
            "sites": site_label,
            "setting": unit.setting,
            "supercell": "x".join(str(int(r)) for r in reps),
            "n_vacancies": n_vac,
            "strain": strain,
            "rattle": float(sigma),
        },
    )
    return structure, bound


# ============================================================================ public API
def _feasible_families(
    families: Iterable[str] | str | None, min_atoms: int, max_atoms: int
) -> tuple[str, ...]:
    if isinstance(min_atoms, bool) or int(min_atoms) != min_atoms or min_atoms < 1:
        raise ValueError(f"min_atoms must be a positive integer, got {min_atoms!r}")
    if int(max_atoms) != max_atoms or max_atoms < min_atoms:
        raise ValueError(f"max_atoms must be an integer >= min_atoms, got {max_atoms!r}")
    if isinstance(families, str):
        families = [families]
    names = list(_FAMILIES) if families is None else list(dict.fromkeys(families))
    unknown = [f for f in names if f not in _FAMILIES]
    if unknown:
        raise ValueError(f"unknown families {unknown}; available: {list(_FAMILIES)}")
    if not names:
        raise ValueError("families is empty")
    ok = tuple(f for f in names if any(_fits(b, min_atoms, max_atoms) for b in _FAMILIES[f].sizes))
    if families is not None and len(ok) < len(names):
        bad = {f: _FAMILIES[f].sizes for f in names if f not in ok}
        raise ValueError(
            f"families {list(bad)} cannot make cells with {min_atoms}-{max_atoms} atoms "
            f"(base cell sizes {bad}; supercells are multiples of these)"
        )
    if not ok:
        raise ValueError(f"no family fits {min_atoms}-{max_atoms} atoms")
    return ok


def _check_seed(seed: int, name: str = "seed") -> int:
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {seed!r}")
    return int(seed)


def _generate(
    index: int, seed: int, families: tuple[str, ...], lo: int, hi: int, min_distance: float
) -> Structure:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    family = families[int(rng.integers(len(families)))]
    last_error: InvalidStructureError | None = None
    for _ in range(_MAX_ATTEMPTS):
        structure, bound = _attempt(rng, family, lo, hi, seed, index)
        try:  # the neighbour search is only needed when the cheap bound cannot decide
            return validate(structure, min_distance=0.0 if bound >= min_distance else min_distance)
        except InvalidStructureError as err:
            last_error = err
    raise RuntimeError(
        f"could not generate a valid {family!r} structure for seed={seed}, index={index} "
        f"in {_MAX_ATTEMPTS} attempts; last error: {last_error}"
    )


def generate_structure(
    index: int,
    seed: int = 0,
    *,
    min_atoms: int = 1,
    max_atoms: int = 200,
    families: Iterable[str] | str | None = None,
    min_distance: float = GENERATED_MIN_DISTANCE,
) -> Structure:
    """Structure number ``index`` of the stream ``seed``; depends only on (seed, index, options).

    ``families`` restricts the prototypes (see :func:`list_families`); the family is drawn
    uniformly among them. The result has between ``min_atoms`` and ``max_atoms`` atoms, id
    ``gen-{seed}-{index:08d}`` and ``properties`` with ``family``, ``seed``, ``index``,
    ``sites`` (element per site role), ``setting``, ``supercell``, ``n_vacancies``,
    ``strain`` (largest strain component) and ``rattle`` (displacement sigma, Å).
    """
    names = _feasible_families(families, min_atoms, max_atoms)
    return _generate(
        _check_seed(index, "index"),
        _check_seed(seed),
        names,
        int(min_atoms),
        int(max_atoms),
        float(min_distance),
    )


def generate_structures(
    n: int,
    seed: int = 0,
    *,
    min_atoms: int = 1,
    max_atoms: int = 200,
    families: Iterable[str] | str | None = None,
    min_distance: float = GENERATED_MIN_DISTANCE,
    start: int = 0,
) -> Iterator[Structure]:
    """Lazily yield structures ``start, ..., start + n - 1`` of the stream ``seed``.

    Equivalent to ``generate_structure(k, seed, ...)`` for each ``k``, so chunks
    ``generate_structures(m, seed, start=s)`` concatenate to the same stream whatever the split.
    Arguments are checked eagerly; structures are built one at a time as they are consumed.
    """
    names = _feasible_families(families, min_atoms, max_atoms)
    n, seed, start = _check_seed(n, "n"), _check_seed(seed), _check_seed(start, "start")
    lo, hi, dmin = int(min_atoms), int(max_atoms), float(min_distance)

    def stream() -> Iterator[Structure]:
        for k in range(start, start + n):
            yield _generate(k, seed, names, lo, hi, dmin)

    return stream()
