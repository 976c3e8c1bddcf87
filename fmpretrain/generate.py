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
from ase.data import atomic_numbers, chemical_symbols, covalent_radii, reference_states

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

# ============================================================================ radii tables
#: Metallic radii for 12-fold coordination (Å, Pauling/Teatum-style values).
_METALLIC = {
    "Li": 1.56, "Na": 1.91, "K": 2.38, "Rb": 2.55, "Cs": 2.73,
    "Be": 1.13, "Mg": 1.60, "Ca": 1.97, "Sr": 2.15, "Ba": 2.24,
    "Sc": 1.64, "Y": 1.80, "La": 1.88, "Eu": 2.04, "Gd": 1.80,
    "Ti": 1.47, "Zr": 1.60, "Hf": 1.58, "V": 1.35, "Nb": 1.47, "Ta": 1.47,
    "Cr": 1.29, "Mo": 1.40, "W": 1.41, "Mn": 1.35, "Re": 1.38,
    "Fe": 1.27, "Ru": 1.34, "Os": 1.35, "Co": 1.25, "Rh": 1.35, "Ir": 1.36,
    "Ni": 1.25, "Pd": 1.38, "Pt": 1.39, "Cu": 1.28, "Ag": 1.45, "Au": 1.44,
    "Zn": 1.39, "Cd": 1.57, "Al": 1.43, "Ga": 1.40, "In": 1.66, "Tl": 1.72,
    "Si": 1.32, "Ge": 1.40, "Sn": 1.62, "Pb": 1.75, "Sb": 1.61,
}  # fmt: skip

#: Shannon ionic radii (Å) of cations: (element, charge) -> {coordination number: radius}.
_CATIONS: dict[tuple[str, int], dict[int, float]] = {
    ("Li", 1): {4: 0.59, 6: 0.76, 8: 0.92},
    ("Na", 1): {4: 0.99, 6: 1.02, 8: 1.18, 12: 1.39},
    ("K", 1): {4: 1.37, 6: 1.38, 8: 1.51, 12: 1.64},
    ("Rb", 1): {6: 1.52, 8: 1.61, 12: 1.72},
    ("Cs", 1): {6: 1.67, 8: 1.74, 12: 1.88},
    ("Ag", 1): {4: 1.00, 6: 1.15, 8: 1.28},
    ("Tl", 1): {6: 1.50, 8: 1.59, 12: 1.70},
    ("Be", 2): {4: 0.27, 6: 0.45},
    ("Mg", 2): {4: 0.57, 6: 0.72, 8: 0.89},
    ("Ca", 2): {6: 1.00, 8: 1.12, 12: 1.34},
    ("Sr", 2): {6: 1.18, 8: 1.26, 12: 1.44},
    ("Ba", 2): {6: 1.35, 8: 1.42, 12: 1.61},
    ("Eu", 2): {6: 1.17, 8: 1.25, 12: 1.40},
    ("Pb", 2): {6: 1.19, 8: 1.29, 12: 1.49},
    ("Sn", 2): {6: 1.10, 8: 1.22},
    ("Ge", 2): {6: 0.73},
    ("Mn", 2): {4: 0.66, 6: 0.83, 8: 0.96},
    ("Fe", 2): {4: 0.63, 6: 0.78, 8: 0.92},
    ("Co", 2): {4: 0.58, 6: 0.745, 8: 0.90},
    ("Ni", 2): {4: 0.55, 6: 0.69},
    ("Cu", 2): {4: 0.57, 6: 0.73},
    ("Zn", 2): {4: 0.60, 6: 0.74, 8: 0.90},
    ("Cd", 2): {4: 0.78, 6: 0.95, 8: 1.10},
    ("Al", 3): {4: 0.39, 6: 0.535},
    ("Ga", 3): {4: 0.47, 6: 0.62},
    ("In", 3): {4: 0.62, 6: 0.80},
    ("Sc", 3): {6: 0.745, 8: 0.87},
    ("Y", 3): {6: 0.90, 8: 1.019},
    ("La", 3): {6: 1.032, 8: 1.16, 12: 1.36},
    ("Pr", 3): {6: 0.99, 8: 1.126, 12: 1.29},
    ("Nd", 3): {6: 0.983, 8: 1.109, 12: 1.27},
    ("Sm", 3): {6: 0.958, 8: 1.079, 12: 1.24},
    ("Gd", 3): {6: 0.938, 8: 1.053},
    ("Bi", 3): {6: 1.03, 8: 1.17, 12: 1.30},
    ("Ti", 3): {6: 0.67},
    ("V", 3): {6: 0.64},
    ("Cr", 3): {6: 0.615},
    ("Mn", 3): {6: 0.645},
    ("Fe", 3): {4: 0.49, 6: 0.645},
    ("Co", 3): {6: 0.61},
    ("Rh", 3): {6: 0.665},
    ("Si", 4): {4: 0.26, 6: 0.40},
    ("Ge", 4): {4: 0.39, 6: 0.53},
    ("Ti", 4): {4: 0.42, 6: 0.605, 8: 0.74},
    ("Zr", 4): {4: 0.59, 6: 0.72, 8: 0.84},
    ("Hf", 4): {6: 0.71, 8: 0.83},
    ("Sn", 4): {4: 0.55, 6: 0.69, 8: 0.81},
    ("Pb", 4): {6: 0.775, 8: 0.94},
    ("Ce", 4): {6: 0.87, 8: 0.97},
    ("Th", 4): {6: 0.94, 8: 1.05},
    ("U", 4): {6: 0.89, 8: 1.00},
    ("V", 4): {6: 0.58},
    ("Cr", 4): {6: 0.55},
    ("Mn", 4): {6: 0.53},
    ("Mo", 4): {6: 0.65},
    ("W", 4): {6: 0.66},
    ("Nb", 4): {6: 0.68},
    ("Ta", 4): {6: 0.68},
    ("Ru", 4): {6: 0.62},
    ("Os", 4): {6: 0.63},
    ("Ir", 4): {6: 0.625},
    ("Pt", 4): {6: 0.625},
    ("V", 5): {6: 0.54},
    ("Nb", 5): {6: 0.64},
    ("Ta", 5): {6: 0.64},
    ("Sb", 5): {6: 0.60},
}

#: Shannon ionic radii (Å) of anions (six-fold coordination).
_ANIONS = {
    "N": 1.46, "O": 1.40, "F": 1.33, "S": 1.84, "Cl": 1.81,
    "Se": 1.98, "Br": 1.96, "Te": 2.21, "I": 2.20,
}  # fmt: skip

#: Correction when a cation radius is missing for a coordination number (Å, added to CN 6).
_CN_SHIFT = {4: -0.13, 6: 0.0, 8: 0.12, 12: 0.28}


def _r_cation(symbol: str, charge: int, cn: int) -> float:
    radii = _CATIONS[(symbol, charge)]
    if cn in radii:
        return radii[cn]
    return radii[6] + _CN_SHIFT[cn]


def _r_cov(symbol: str) -> float:
    return float(covalent_radii[atomic_numbers[symbol]])


def _z(symbol: str) -> int:
    return atomic_numbers[symbol]


def _reference(symbol: str, symmetry: str) -> dict | None:
    ref = reference_states[atomic_numbers[symbol]]
    return ref if ref is not None and ref.get("symmetry") == symmetry else None


# ============================================================================ element pools
_FCC_METALS = ("Al", "Ca", "Ni", "Cu", "Sr", "Rh", "Pd", "Ag", "Ir", "Pt", "Au", "Pb")
_BCC_METALS = ("Li", "Na", "K", "V", "Cr", "Fe", "Rb", "Nb", "Mo", "Cs", "Ba", "Ta", "W", "Eu")
_HCP_METALS = ("Be", "Mg", "Sc", "Ti", "Co", "Zn", "Y", "Zr", "Ru", "Cd", "Hf", "Re", "Os", "Tl")
_DIAMOND = ("C", "Si", "Ge", "Sn")
_HALIDES = ("F", "Cl", "Br", "I")
_CHALCOGENIDES = ("O", "S", "Se", "Te")


def _cations(charge: int, symbols: str) -> tuple[tuple[str, int], ...]:
    return tuple((s, charge) for s in symbols.split())


# Ionic recipes: (cation pool, anion pool), charge balanced for the prototype's stoichiometry.
_ROCKSALT = (
    (_cations(1, "Li Na K Rb Ag"), _HALIDES),
    (_cations(1, "Cs"), ("F",)),
    (_cations(2, "Mg Ca Sr Ba Mn Fe Co Ni Cd Eu Pb"), ("O", "S", "Se")),
    (_cations(2, "Ca Sr Ba Pb"), ("Te",)),
    (_cations(3, "Sc Ti Y Gd La"), ("N",)),
)
_CSCL_IONIC = (_cations(1, "Cs Tl"), ("Cl", "Br", "I"))
_CSCL_METAL_A = ("Fe", "Co", "Ni", "Cu", "Ag", "Au", "Pd", "Ru", "Rh")
_CSCL_METAL_B = ("Al", "Zn", "Mg", "Ti", "Ga", "Be", "Zr", "Sc")
# Tetrahedral (sp3) compounds, sized with covalent radii: (cation elements, anion elements).
_ZINCBLENDE = (
    (("B",), ("N", "P", "As")),
    (("Al", "Ga", "In"), ("N", "P", "As", "Sb")),
    (("Be", "Zn", "Cd", "Hg"), ("S", "Se", "Te")),
    (("Cu", "Ag"), ("Cl", "Br", "I")),
    (("Si",), ("C",)),
)
_WURTZITE = (
    (("Al", "Ga", "In"), ("N",)),
    (("Be", "Zn"), ("O",)),
    (("Zn", "Cd", "Mg"), ("S", "Se")),
    (("Ag", "Cu"), ("I",)),
    (("Si",), ("C",)),
)
_FLUORITE = (
    (_cations(2, "Ca Sr Ba Cd Pb Eu"), ("F",)),
    (_cations(2, "Sr Ba"), ("Cl",)),
    (_cations(4, "Ce Th U Zr Hf"), ("O",)),
)
_ANTIFLUORITE = ((_cations(1, "Li Na K"), _CHALCOGENIDES),)
_RUTILE = (
    (_cations(4, "Ti Sn Ge Ru Ir Mn Cr V Pb Os Nb"), ("O",)),
    (_cations(2, "Mg Zn Mn Fe Co Ni"), ("F",)),
)
# Perovskite ABX3: (A pool, B pool, X pool).
_PEROVSKITE = (
    (_cations(1, "Na K Rb"), _cations(5, "Nb Ta V Sb"), ("O",)),
    (_cations(2, "Ca Sr Ba Pb Eu"), _cations(4, "Ti Zr Hf Sn Mn Mo Ru Ir V Ce Pb"), ("O",)),
    (_cations(3, "La Pr Nd Sm Bi"), _cations(3, "Al Ga Sc Ti V Cr Mn Fe Co Rh In"), ("O",)),
    (_cations(1, "Na K Rb Cs"), _cations(2, "Mg Mn Fe Co Ni Cu Zn Cd Ca"), ("F",)),
    (_cations(1, "K Rb Cs"), _cations(2, "Pb Sn Cd Ge"), ("Cl", "Br", "I")),
    (_cations(2, "Ca Sr Ba"), _cations(4, "Zr Hf Ti"), ("S", "Se")),
)
# Normal spinel AB2X4: (A, tetrahedral pool; B, octahedral pool; X pool).
_SPINEL = (
    (
        _cations(2, "Mg Zn Mn Fe Co Cd Cu"),
        _cations(3, "Al Ga Cr Fe Mn V Co Rh"),
        ("O",),
    ),
    (_cations(2, "Mg Zn Mn Fe Cd Cu"), _cations(3, "Cr In Al"), ("S", "Se")),
    (_cations(4, "Si Ge"), _cations(2, "Mg Fe Co Ni"), ("O",)),
)
_LAYERED_1T = (
    (_cations(4, "Ti Zr Hf Sn Pt V Ta"), ("S", "Se", "Te")),
    (_cations(2, "Mg Mn Fe Co Ni Cd Pb"), ("Cl", "Br", "I")),
)
_LAYERED_2H = ((_cations(4, "Mo W Nb Ta"), ("S", "Se", "Te")),)
_L12_A = ("Ni", "Cu", "Pd", "Pt", "Co", "Au", "Ir", "Rh")
_L12_B = ("Al", "Ga", "Ti", "Fe", "Mn", "Au", "Sn", "In", "Ge", "Si", "Zn", "Cu", "V", "Nb")
_HEUSLER_X = ("Fe", "Co", "Ni", "Cu", "Ru", "Rh", "Pd")
_HEUSLER_Y = ("Ti", "V", "Cr", "Mn", "Fe", "Zr", "Hf", "Nb")
_HEUSLER_Z = ("Al", "Ga", "In", "Si", "Ge", "Sn", "Sb")
_ALLOY_POOLS = {
    "fcc": ("Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au", "Co", "Rh", "Ir", "Fe", "Cr", "Mn"),
    "bcc": ("V", "Cr", "Fe", "Nb", "Mo", "Ta", "W", "Ti", "Zr", "Hf", "Al", "Mn"),
    "hcp": ("Mg", "Ti", "Zr", "Hf", "Co", "Ru", "Re", "Sc", "Y", "Os"),
}


# ============================================================================ templates
@dataclass(frozen=True)
class _Template:
    """A cell in units of the lattice constant, fractional coordinates and site roles."""

    cell: np.ndarray
    frac: np.ndarray
    roles: np.ndarray


_F_SHIFTS = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
_I_SHIFTS = np.array([[0, 0, 0], [0.5, 0.5, 0.5]])
_FCC_PRIM = 0.5 * np.array([[0.0, 1, 1], [1, 0, 1], [1, 1, 0]])
_BCC_PRIM = 0.5 * np.array([[-1.0, 1, 1], [1, -1, 1], [1, 1, -1]])


def _dedupe(frac: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct position modulo 1, in order."""
    key = np.round(frac % 1.0, 6) % 1.0
    _, idx = np.unique(key, axis=0, return_index=True)
    return np.sort(idx)


def _centred(basis, roles, shifts: np.ndarray, prim: np.ndarray) -> dict[str, _Template]:
    """Conventional cubic and primitive templates of a centred cubic lattice with a basis."""
    basis = np.asarray(basis, dtype=float)
    roles = np.asarray(roles, dtype=np.int64)
    frac = ((basis[None] + shifts[:, None]).reshape(-1, 3)) % 1.0
    all_roles = np.tile(roles, len(shifts))
    pfrac = (frac @ np.linalg.inv(prim)) % 1.0  # Cartesian (a = 1) == conventional frac
    idx = _dedupe(pfrac)
    assert len(idx) == len(basis)
    return {
        "primitive": _Template(prim.copy(), pfrac[idx] % 1.0, all_roles[idx]),
        "conventional": _Template(np.eye(3), frac, all_roles),
    }


def _simple(basis, roles) -> dict[str, _Template]:
    return {
        "conventional": _Template(
            np.eye(3), np.asarray(basis, dtype=float), np.asarray(roles, dtype=np.int64)
        )
    }


_QUARTER = [[0.25, 0.25, 0.25], [0.75, 0.75, 0.75]]
_T_FCC = _centred([[0, 0, 0]], [0], _F_SHIFTS, _FCC_PRIM)
_T_BCC = _centred([[0, 0, 0]], [0], _I_SHIFTS, _BCC_PRIM)
_T_ROCKSALT = _centred([[0, 0, 0], [0.5, 0.5, 0.5]], [0, 1], _F_SHIFTS, _FCC_PRIM)
_T_ZINCBLENDE = _centred([[0, 0, 0], [0.25, 0.25, 0.25]], [0, 1], _F_SHIFTS, _FCC_PRIM)
_T_FLUORITE = _centred([[0, 0, 0], *_QUARTER], [0, 1, 1], _F_SHIFTS, _FCC_PRIM)
_T_HEUSLER = _centred(
    [[0, 0, 0], [0.5, 0.5, 0.5], *_QUARTER], [2, 1, 0, 0], _F_SHIFTS, _FCC_PRIM
)  # roles: 0 = X (2 sites), 1 = Y, 2 = Z
_T_CSCL = _simple([[0, 0, 0], [0.5, 0.5, 0.5]], [0, 1])
_T_PEROVSKITE = _simple(
    [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]], [0, 1, 2, 2, 2]
)
_T_L12 = _simple([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]], [1, 0, 0, 0])


def _hexagonal(a: float, c: float) -> np.ndarray:
    return np.array([[a, 0.0, 0.0], [-0.5 * a, 0.5 * _SQRT3 * a, 0.0], [0.0, 0.0, c]])


# Normal spinel, Fd-3m origin choice 2, one representative per F-centring translation:
# A on 8a, B on 16d, X on 32e at ``u * dir + offset`` (u ~ 0.26; 0.25 is the ideal fcc X net).
_SPINEL_A = np.array([[0.125, 0.125, 0.125], [0.875, 0.375, 0.375]])
_SPINEL_B = np.array([[0.5, 0.5, 0.5], [0.25, 0.75, 0], [0.75, 0, 0.25], [0, 0.25, 0.75]])
_SPINEL_X_DIR = np.array(
    [
        [1, 1, 1],
        [-1, -1, 1],
        [-1, 1, -1],
        [1, -1, -1],
        [1, 1, -1],
        [-1, -1, -1],
        [1, -1, 1],
        [-1, 1, 1],
    ],
    dtype=float,
)
_SPINEL_X_OFFSET = np.array(
    [
        [0, 0, 0], [0.75, 0.25, 0.5], [0.25, 0.5, 0.75], [0.5, 0.75, 0.25],
        [0.75, 0.25, 0.5], [0, 0, 0], [0.25, 0.5, 0.75], [0.5, 0.75, 0.25],
    ]
)  # fmt: skip


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


def _pick_template(rng: np.random.Generator, templates: dict[str, _Template], fits: Fits):
    names = [k for k, t in templates.items() if fits(len(t.frac))]
    name = names[int(rng.integers(len(names)))]
    return name, templates[name]


def _choice(rng: np.random.Generator, pool):
    return pool[int(rng.integers(len(pool)))]


def _decorate(rng, templates, fits, a: float, symbols: list[str], labels: str) -> _Cell:
    setting, t = _pick_template(rng, templates, fits)
    zs = np.array([_z(s) for s in symbols], dtype=np.int64)
    sites = " ".join(f"{lab}={s}" for lab, s in zip(labels.split(), symbols, strict=True))
    return _Cell(a * t.cell, t.frac.copy(), zs[t.roles], setting, sites)


def _build_fcc(rng, fits) -> _Cell:
    sym = _choice(rng, _FCC_METALS)
    ref = _reference(sym, "fcc")
    a = ref["a"] if ref else 2 * _SQRT2 * _METALLIC[sym]
    return _decorate(rng, _T_FCC, fits, a * rng.uniform(0.98, 1.02), [sym], "M")


def _build_bcc(rng, fits) -> _Cell:
    sym = _choice(rng, _BCC_METALS)
    ref = _reference(sym, "bcc")
    a = ref["a"] if ref else 4 * 0.97 * _METALLIC[sym] / _SQRT3
    return _decorate(rng, _T_BCC, fits, a * rng.uniform(0.98, 1.02), [sym], "M")


def _build_hcp(rng, fits) -> _Cell:
    sym = _choice(rng, _HCP_METALS)
    ref = _reference(sym, "hcp")
    a, c_a = (ref["a"], ref["c/a"]) if ref else (2 * _METALLIC[sym], 1.63)
    a *= rng.uniform(0.98, 1.02)
    c = a * c_a * rng.uniform(0.99, 1.01)
    frac = np.array([[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])
    return _Cell(_hexagonal(a, c), frac, np.full(2, _z(sym)), "conventional", f"M={sym}")


def _build_diamond(rng, fits) -> _Cell:
    sym = _choice(rng, _DIAMOND)
    ref = _reference(sym, "diamond")
    a = ref["a"] if ref else 8 * _r_cov(sym) / _SQRT3
    return _decorate(rng, _T_ZINCBLENDE, fits, a * rng.uniform(0.98, 1.02), [sym, sym], "A B")


def _ionic_pair(rng, recipes):
    cations, anions = _choice(rng, recipes)
    (cat, q), an = _choice(rng, cations), _choice(rng, anions)
    return cat, q, an


def _build_rocksalt(rng, fits) -> _Cell:
    cat, q, an = _ionic_pair(rng, _ROCKSALT)
    d = (_r_cation(cat, q, 6) + _ANIONS[an]) * rng.uniform(0.97, 1.02)
    return _decorate(rng, _T_ROCKSALT, fits, 2 * d, [cat, an], "A X")


def _build_cscl(rng, fits) -> _Cell:
    if rng.random() < 0.5:  # ionic halide (CsCl, TlBr, ...)
        cat, q, an = _ionic_pair(rng, (_CSCL_IONIC,))
        d = (_r_cation(cat, q, 8) + _ANIONS[an]) * rng.uniform(0.97, 1.02)
        symbols = [cat, an]
    else:  # B2 intermetallic (NiAl, CuZn, ...)
        symbols = [_choice(rng, _CSCL_METAL_A), _choice(rng, _CSCL_METAL_B)]
        d = (_METALLIC[symbols[0]] + _METALLIC[symbols[1]]) * rng.uniform(0.92, 0.97)
    return _decorate(rng, _T_CSCL, fits, 2 * d / _SQRT3, symbols, "A B")


def _tetrahedral_pair(rng, recipes) -> tuple[list[str], float]:
    cations, anions = _choice(rng, recipes)
    symbols = [_choice(rng, cations), _choice(rng, anions)]
    d = (_r_cov(symbols[0]) + _r_cov(symbols[1])) * rng.uniform(0.99, 1.05)
    return symbols, d


def _build_zincblende(rng, fits) -> _Cell:
    symbols, d = _tetrahedral_pair(rng, _ZINCBLENDE)
    return _decorate(rng, _T_ZINCBLENDE, fits, 4 * d / _SQRT3, symbols, "A X")


def _build_wurtzite(rng, fits) -> _Cell:
    symbols, d = _tetrahedral_pair(rng, _WURTZITE)
    c_a, u = rng.uniform(1.60, 1.65), rng.uniform(0.374, 0.383)
    # bond lengths at a = 1: one along c, three inclined
    bonds = np.array([u * c_a] + [math.sqrt(1 / 3 + ((0.5 - u) * c_a) ** 2)] * 3)
    a = d / bonds.mean()
    frac = np.array(
        [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, u], [2 / 3, 1 / 3, 0.5 + u]]
    )
    numbers = np.array([_z(symbols[0])] * 2 + [_z(symbols[1])] * 2)
    sites = f"A={symbols[0]} X={symbols[1]}"
    return _Cell(_hexagonal(a, a * c_a), frac, numbers, "conventional", sites)


def _build_fluorite(rng, fits) -> _Cell:
    cat, q, an = _ionic_pair(rng, _FLUORITE)
    d = (_r_cation(cat, q, 8) + _ANIONS[an]) * rng.uniform(0.95, 1.0)
    return _decorate(rng, _T_FLUORITE, fits, 4 * d / _SQRT3, [cat, an], "A X")


def _build_antifluorite(rng, fits) -> _Cell:
    cat, q, an = _ionic_pair(rng, _ANTIFLUORITE)
    d = (_r_cation(cat, q, 4) + _ANIONS[an]) * rng.uniform(0.97, 1.02)
    return _decorate(rng, _T_FLUORITE, fits, 4 * d / _SQRT3, [an, cat], "X A")


def _build_rutile(rng, fits) -> _Cell:
    cat, q, an = _ionic_pair(rng, _RUTILE)
    d = (_r_cation(cat, q, 6) + _ANIONS[an]) * rng.uniform(0.95, 1.0)
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
    numbers = np.array([_z(cat)] * 2 + [_z(an)] * 4)
    cell = np.diag([a, a, a * c_a])
    return _Cell(cell, frac, numbers, "conventional", f"A={cat} X={an}")


def _build_perovskite(rng, fits) -> _Cell:
    for _ in range(100):  # keep Goldschmidt tolerance factors of real cubic-ish perovskites
        a_pool, b_pool, x_pool = _choice(rng, _PEROVSKITE)
        (sa, qa), (sb, qb), sx = _choice(rng, a_pool), _choice(rng, b_pool), _choice(rng, x_pool)
        rb_x = _r_cation(sb, qb, 6) + _ANIONS[sx]
        tolerance = (_r_cation(sa, qa, 12) + _ANIONS[sx]) / (_SQRT2 * rb_x)
        if 0.82 <= tolerance <= 1.08:
            break
    a = 2 * rb_x * rng.uniform(0.95, 1.0)
    return _decorate(rng, _T_PEROVSKITE, fits, a, [sa, sb, sx], "A B X")


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
def _spinel_templates(u_milli: int) -> dict[str, _Template]:
    u = u_milli / 1000.0
    basis = np.concatenate([_SPINEL_A, _SPINEL_B, u * _SPINEL_X_DIR + _SPINEL_X_OFFSET])
    roles = np.repeat([0, 1, 2], [len(_SPINEL_A), len(_SPINEL_B), len(_SPINEL_X_DIR)])
    return _centred(basis, roles, _F_SHIFTS, _FCC_PRIM)


def _build_spinel(rng, fits) -> _Cell:
    a_pool, b_pool, x_pool = _choice(rng, _SPINEL)
    (sa, qa), (sb, qb), sx = _choice(rng, a_pool), _choice(rng, b_pool), _choice(rng, x_pool)
    factor = rng.uniform(0.97, 1.01)
    r_tet = (_r_cation(sa, qa, 4) + _ANIONS[sx]) * factor
    r_oct = (_r_cation(sb, qb, 6) + _ANIONS[sx]) * factor
    u = round(_spinel_u(r_tet / r_oct) * 1000)  # quantised so templates can be cached
    uf = u / 1000.0
    a = 0.5 * (r_tet / (_SQRT3 * (uf - 0.125)) + r_oct / math.sqrt(3 * uf * uf - 2 * uf + 0.375))
    return _decorate(rng, _spinel_templates(u), fits, a, [sa, sb, sx], "A B X")


def _build_layered(rng, recipes, ratio_range, factor_range, trigonal_prismatic) -> _Cell:
    cat, q, an = _ionic_pair(rng, recipes)
    d = (_r_cation(cat, q, 6) + _ANIONS[an]) * rng.uniform(*factor_range)  # M-X bond
    a = d * rng.uniform(*ratio_range)
    h = math.sqrt(d * d - a * a / 3)  # height of the X planes above the M plane
    xx = 2 * _ANIONS[an] * rng.uniform(0.90, 0.98)  # X-X contact across the van der Waals gap
    gap = math.sqrt(max(xx * xx - a * a / 3, 0.25))
    spacing = 2 * h + gap  # one layer
    zm, zx = np.array([_z(cat)]), np.array([_z(an)])
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
    return _Cell(_hexagonal(a, c), frac % 1.0, numbers, "conventional", f"M={cat} X={an}")


def _build_layered_1t(rng, fits) -> _Cell:
    return _build_layered(rng, _LAYERED_1T, (1.36, 1.46), (0.95, 1.0), trigonal_prismatic=False)


def _build_layered_2h(rng, fits) -> _Cell:
    return _build_layered(rng, _LAYERED_2H, (1.28, 1.34), (0.94, 0.98), trigonal_prismatic=True)


def _build_l12(rng, fits) -> _Cell:
    sa = _choice(rng, _L12_A)
    sb = _choice(rng, tuple(s for s in _L12_B if s != sa))
    r_mean = 0.75 * _METALLIC[sa] + 0.25 * _METALLIC[sb]
    a = 2 * _SQRT2 * r_mean * rng.uniform(0.96, 1.01)
    return _decorate(rng, _T_L12, fits, a, [sa, sb], "A B")


def _build_heusler(rng, fits) -> _Cell:
    sx = _choice(rng, _HEUSLER_X)
    sy = _choice(rng, tuple(s for s in _HEUSLER_Y if s != sx))
    sz = _choice(rng, _HEUSLER_Z)
    nn = (_METALLIC[sx] + 0.5 * (_METALLIC[sy] + _METALLIC[sz])) * rng.uniform(0.94, 0.98)
    return _decorate(rng, _T_HEUSLER, fits, 4 * nn / _SQRT3, [sx, sy, sz], "X Y Z")


def _build_alloy(rng, fits) -> _Cell:
    lattices = [k for k in ("fcc", "bcc", "hcp") if fits(4 if k == "fcc" else 2)]
    lattice = _choice(rng, lattices)
    pool = _ALLOY_POOLS[lattice]
    k = int(rng.choice([2, 3, 4, 5], p=[0.4, 0.3, 0.2, 0.1]))
    while True:  # Hume-Rothery: radii within 12 % of the first element's
        first = _choice(rng, pool)
        r0 = _METALLIC[first]
        partners = [s for s in pool if s != first and abs(_METALLIC[s] - r0) <= 0.12 * r0]
        if partners:
            break
    k = min(k, len(partners) + 1)
    chosen = [first] + [partners[i] for i in rng.choice(len(partners), k - 1, replace=False)]
    fractions = rng.dirichlet(np.full(k, 2.0))
    r_mean = float(np.dot(fractions, [_METALLIC[s] for s in chosen]))
    zs = np.array([_z(s) for s in chosen], dtype=np.int64)
    sites = "M=" + ",".join(chosen)
    scale = rng.uniform(0.97, 1.01)
    if lattice == "hcp":
        a = 2 * r_mean * scale
        frac = np.array([[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])
        cell = _hexagonal(a, a * rng.uniform(1.58, 1.65))
        return _Cell(cell, frac, np.zeros(2, np.int64), "conventional", sites, (zs, fractions))
    a = 2 * _SQRT2 * r_mean if lattice == "fcc" else 4 * 0.97 * r_mean / _SQRT3
    t = (_T_FCC if lattice == "fcc" else _T_BCC)["conventional"]
    numbers = np.zeros(len(t.frac), np.int64)  # assigned after the supercell is built
    return _Cell(a * scale * t.cell, t.frac.copy(), numbers, "conventional", sites, (zs, fractions))


@dataclass(frozen=True)
class _Family:
    build: Callable[[np.random.Generator, Fits], _Cell]
    sizes: tuple[int, ...]  # atoms in the possible base cells
    description: str


def _sizes(templates: dict[str, _Template]) -> tuple[int, ...]:
    return tuple(sorted({len(t.frac) for t in templates.values()}))


_FAMILIES: dict[str, _Family] = {
    "fcc": _Family(_build_fcc, _sizes(_T_FCC), "fcc elemental metal (Cu, Al, Pt, ...)"),
    "bcc": _Family(_build_bcc, _sizes(_T_BCC), "bcc elemental metal (Fe, W, Na, ...)"),
    "hcp": _Family(_build_hcp, (2,), "hcp elemental metal (Mg, Ti, Zn, ...)"),
    "diamond": _Family(_build_diamond, _sizes(_T_ZINCBLENDE), "diamond C, Si, Ge, alpha-Sn"),
    "rock-salt": _Family(_build_rocksalt, _sizes(_T_ROCKSALT), "NaCl-type AX (NaCl, MgO, ScN)"),
    "cesium-chloride": _Family(_build_cscl, (2,), "CsCl/B2-type AB (CsCl, TlBr, NiAl, CuZn)"),
    "zinc-blende": _Family(
        _build_zincblende, _sizes(_T_ZINCBLENDE), "sphalerite AX (GaAs, ZnS, CuCl, SiC)"
    ),
    "wurtzite": _Family(_build_wurtzite, (4,), "wurtzite AX (ZnO, GaN, CdS, AgI)"),
    "fluorite": _Family(_build_fluorite, _sizes(_T_FLUORITE), "fluorite AX2 (CaF2, CeO2, UO2)"),
    "antifluorite": _Family(
        _build_antifluorite, _sizes(_T_FLUORITE), "anti-fluorite A2X (Li2O, Na2S, K2Te)"
    ),
    "rutile": _Family(_build_rutile, (6,), "rutile AX2 (TiO2, SnO2, MgF2)"),
    "perovskite": _Family(_build_perovskite, (5,), "cubic perovskite ABX3 (SrTiO3, KMgF3, CsPbI3)"),
    "spinel": _Family(_build_spinel, (14, 56), "normal spinel AB2X4 (MgAl2O4, CdCr2S4)"),
    "layered-1T": _Family(_build_layered_1t, (3,), "CdI2/1T-type layered MX2 (TiS2, CdI2, MgCl2)"),
    "layered-2H": _Family(_build_layered_2h, (6,), "MoS2/2H-type layered MX2 (MoS2, WSe2, NbSe2)"),
    "L1_2": _Family(_build_l12, (4,), "L1_2 (Cu3Au-type) A3B intermetallic (Ni3Al, Pt3Fe)"),
    "heusler": _Family(
        _build_heusler, _sizes(_T_HEUSLER), "L2_1 full Heusler X2YZ (Co2MnSi, Ni2MnGa)"
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
