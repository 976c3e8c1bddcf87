"""Prototype crystal families for :mod:`fmpretrain.generate`: radii tables, element pools per
site role, and the site templates (cells in units of the lattice constant).

The data of the generator, apart from its logic: metallic, Shannon ionic and covalent radii,
the elements allowed on each site of each prototype (charge-balanced for ionic ones), and
conventional / primitive templates of the cubic, hexagonal and spinel families.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from ase.data import atomic_numbers, covalent_radii, reference_states

SQRT3 = math.sqrt(3.0)

# ============================================================================ radii tables
#: Metallic radii for 12-fold coordination (Å, Pauling/Teatum-style values).
METALLIC = {
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
CATIONS: dict[tuple[str, int], dict[int, float]] = {
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
ANIONS = {
    "N": 1.46, "O": 1.40, "F": 1.33, "S": 1.84, "Cl": 1.81,
    "Se": 1.98, "Br": 1.96, "Te": 2.21, "I": 2.20,
}  # fmt: skip

#: Correction when a cation radius is missing for a coordination number (Å, added to CN 6).
CN_SHIFT = {4: -0.13, 6: 0.0, 8: 0.12, 12: 0.28}


def cation_radius(symbol: str, charge: int, cn: int) -> float:
    radii = CATIONS[(symbol, charge)]
    if cn in radii:
        return radii[cn]
    return radii[6] + CN_SHIFT[cn]


def covalent_radius(symbol: str) -> float:
    return float(covalent_radii[atomic_numbers[symbol]])


def atomic_number(symbol: str) -> int:
    return atomic_numbers[symbol]


def reference_state(symbol: str, symmetry: str) -> dict | None:
    ref = reference_states[atomic_numbers[symbol]]
    return ref if ref is not None and ref.get("symmetry") == symmetry else None


# ============================================================================ element pools
FCC_METALS = ("Al", "Ca", "Ni", "Cu", "Sr", "Rh", "Pd", "Ag", "Ir", "Pt", "Au", "Pb")
BCC_METALS = ("Li", "Na", "K", "V", "Cr", "Fe", "Rb", "Nb", "Mo", "Cs", "Ba", "Ta", "W", "Eu")
HCP_METALS = ("Be", "Mg", "Sc", "Ti", "Co", "Zn", "Y", "Zr", "Ru", "Cd", "Hf", "Re", "Os", "Tl")
DIAMOND = ("C", "Si", "Ge", "Sn")
HALIDES = ("F", "Cl", "Br", "I")
CHALCOGENIDES = ("O", "S", "Se", "Te")


def cations_of(charge: int, symbols: str) -> tuple[tuple[str, int], ...]:
    return tuple((s, charge) for s in symbols.split())


# Ionic recipes: (cation pool, anion pool), charge balanced for the prototype's stoichiometry.
ROCKSALT = (
    (cations_of(1, "Li Na K Rb Ag"), HALIDES),
    (cations_of(1, "Cs"), ("F",)),
    (cations_of(2, "Mg Ca Sr Ba Mn Fe Co Ni Cd Eu Pb"), ("O", "S", "Se")),
    (cations_of(2, "Ca Sr Ba Pb"), ("Te",)),
    (cations_of(3, "Sc Ti Y Gd La"), ("N",)),
)
CSCL_IONIC = (cations_of(1, "Cs Tl"), ("Cl", "Br", "I"))
CSCL_METAL_A = ("Fe", "Co", "Ni", "Cu", "Ag", "Au", "Pd", "Ru", "Rh")
CSCL_METAL_B = ("Al", "Zn", "Mg", "Ti", "Ga", "Be", "Zr", "Sc")
# Tetrahedral (sp3) compounds, sized with covalent radii: (cation elements, anion elements).
ZINCBLENDE = (
    (("B",), ("N", "P", "As")),
    (("Al", "Ga", "In"), ("N", "P", "As", "Sb")),
    (("Be", "Zn", "Cd", "Hg"), ("S", "Se", "Te")),
    (("Cu", "Ag"), ("Cl", "Br", "I")),
    (("Si",), ("C",)),
)
WURTZITE = (
    (("Al", "Ga", "In"), ("N",)),
    (("Be", "Zn"), ("O",)),
    (("Zn", "Cd", "Mg"), ("S", "Se")),
    (("Ag", "Cu"), ("I",)),
    (("Si",), ("C",)),
)
FLUORITE = (
    (cations_of(2, "Ca Sr Ba Cd Pb Eu"), ("F",)),
    (cations_of(2, "Sr Ba"), ("Cl",)),
    (cations_of(4, "Ce Th U Zr Hf"), ("O",)),
)
ANTIFLUORITE = ((cations_of(1, "Li Na K"), CHALCOGENIDES),)
RUTILE = (
    (cations_of(4, "Ti Sn Ge Ru Ir Mn Cr V Pb Os Nb"), ("O",)),
    (cations_of(2, "Mg Zn Mn Fe Co Ni"), ("F",)),
)
# Perovskite ABX3: (A pool, B pool, X pool).
PEROVSKITE = (
    (cations_of(1, "Na K Rb"), cations_of(5, "Nb Ta V Sb"), ("O",)),
    (cations_of(2, "Ca Sr Ba Pb Eu"), cations_of(4, "Ti Zr Hf Sn Mn Mo Ru Ir V Ce Pb"), ("O",)),
    (cations_of(3, "La Pr Nd Sm Bi"), cations_of(3, "Al Ga Sc Ti V Cr Mn Fe Co Rh In"), ("O",)),
    (cations_of(1, "Na K Rb Cs"), cations_of(2, "Mg Mn Fe Co Ni Cu Zn Cd Ca"), ("F",)),
    (cations_of(1, "K Rb Cs"), cations_of(2, "Pb Sn Cd Ge"), ("Cl", "Br", "I")),
    (cations_of(2, "Ca Sr Ba"), cations_of(4, "Zr Hf Ti"), ("S", "Se")),
)
# Normal spinel AB2X4: (A, tetrahedral pool; B, octahedral pool; X pool).
SPINEL = (
    (
        cations_of(2, "Mg Zn Mn Fe Co Cd Cu"),
        cations_of(3, "Al Ga Cr Fe Mn V Co Rh"),
        ("O",),
    ),
    (cations_of(2, "Mg Zn Mn Fe Cd Cu"), cations_of(3, "Cr In Al"), ("S", "Se")),
    (cations_of(4, "Si Ge"), cations_of(2, "Mg Fe Co Ni"), ("O",)),
)
LAYERED_1T = (
    (cations_of(4, "Ti Zr Hf Sn Pt V Ta"), ("S", "Se", "Te")),
    (cations_of(2, "Mg Mn Fe Co Ni Cd Pb"), ("Cl", "Br", "I")),
)
LAYERED_2H = ((cations_of(4, "Mo W Nb Ta"), ("S", "Se", "Te")),)
L12_A = ("Ni", "Cu", "Pd", "Pt", "Co", "Au", "Ir", "Rh")
L12_B = ("Al", "Ga", "Ti", "Fe", "Mn", "Au", "Sn", "In", "Ge", "Si", "Zn", "Cu", "V", "Nb")
HEUSLER_X = ("Fe", "Co", "Ni", "Cu", "Ru", "Rh", "Pd")
HEUSLER_Y = ("Ti", "V", "Cr", "Mn", "Fe", "Zr", "Hf", "Nb")
HEUSLER_Z = ("Al", "Ga", "In", "Si", "Ge", "Sn", "Sb")
ALLOY_POOLS = {
    "fcc": ("Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au", "Co", "Rh", "Ir", "Fe", "Cr", "Mn"),
    "bcc": ("V", "Cr", "Fe", "Nb", "Mo", "Ta", "W", "Ti", "Zr", "Hf", "Al", "Mn"),
    "hcp": ("Mg", "Ti", "Zr", "Hf", "Co", "Ru", "Re", "Sc", "Y", "Os"),
}


# ============================================================================ templates
@dataclass(frozen=True)
class Template:
    """A cell in units of the lattice constant, fractional coordinates and site roles."""

    cell: np.ndarray
    frac: np.ndarray
    roles: np.ndarray


F_SHIFTS = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
I_SHIFTS = np.array([[0, 0, 0], [0.5, 0.5, 0.5]])
FCC_PRIM = 0.5 * np.array([[0.0, 1, 1], [1, 0, 1], [1, 1, 0]])
BCC_PRIM = 0.5 * np.array([[-1.0, 1, 1], [1, -1, 1], [1, 1, -1]])


def dedupe_sites(frac: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct position modulo 1, in order."""
    key = np.round(frac % 1.0, 6) % 1.0
    _, idx = np.unique(key, axis=0, return_index=True)
    return np.sort(idx)


def centred_templates(basis, roles, shifts: np.ndarray, prim: np.ndarray) -> dict[str, Template]:
    """Conventional cubic and primitive templates of a centred cubic lattice with a basis."""
    basis = np.asarray(basis, dtype=float)
    roles = np.asarray(roles, dtype=np.int64)
    frac = ((basis[None] + shifts[:, None]).reshape(-1, 3)) % 1.0
    all_roles = np.tile(roles, len(shifts))
    pfrac = (frac @ np.linalg.inv(prim)) % 1.0  # Cartesian (a = 1) == conventional frac
    idx = dedupe_sites(pfrac)
    assert len(idx) == len(basis)
    return {
        "primitive": Template(prim.copy(), pfrac[idx] % 1.0, all_roles[idx]),
        "conventional": Template(np.eye(3), frac, all_roles),
    }


def simple_templates(basis, roles) -> dict[str, Template]:
    return {
        "conventional": Template(
            np.eye(3), np.asarray(basis, dtype=float), np.asarray(roles, dtype=np.int64)
        )
    }


QUARTER = [[0.25, 0.25, 0.25], [0.75, 0.75, 0.75]]
T_FCC = centred_templates([[0, 0, 0]], [0], F_SHIFTS, FCC_PRIM)
T_BCC = centred_templates([[0, 0, 0]], [0], I_SHIFTS, BCC_PRIM)
T_ROCKSALT = centred_templates([[0, 0, 0], [0.5, 0.5, 0.5]], [0, 1], F_SHIFTS, FCC_PRIM)
T_ZINCBLENDE = centred_templates([[0, 0, 0], [0.25, 0.25, 0.25]], [0, 1], F_SHIFTS, FCC_PRIM)
T_FLUORITE = centred_templates([[0, 0, 0], *QUARTER], [0, 1, 1], F_SHIFTS, FCC_PRIM)
T_HEUSLER = centred_templates(
    [[0, 0, 0], [0.5, 0.5, 0.5], *QUARTER], [2, 1, 0, 0], F_SHIFTS, FCC_PRIM
)  # roles: 0 = X (2 sites), 1 = Y, 2 = Z
T_CSCL = simple_templates([[0, 0, 0], [0.5, 0.5, 0.5]], [0, 1])
T_PEROVSKITE = simple_templates(
    [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]], [0, 1, 2, 2, 2]
)
T_L12 = simple_templates([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]], [1, 0, 0, 0])


def hexagonal_cell(a: float, c: float) -> np.ndarray:
    return np.array([[a, 0.0, 0.0], [-0.5 * a, 0.5 * SQRT3 * a, 0.0], [0.0, 0.0, c]])


# Normal spinel, Fd-3m origin choice 2, one representative per F-centring translation:
# A on 8a, B on 16d, X on 32e at ``u * dir + offset`` (u ~ 0.26; 0.25 is the ideal fcc X net).
SPINEL_A = np.array([[0.125, 0.125, 0.125], [0.875, 0.375, 0.375]])
SPINEL_B = np.array([[0.5, 0.5, 0.5], [0.25, 0.75, 0], [0.75, 0, 0.25], [0, 0.25, 0.75]])
SPINEL_X_DIR = np.array(
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
SPINEL_X_OFFSET = np.array(
    [
        [0, 0, 0], [0.75, 0.25, 0.5], [0.25, 0.5, 0.75], [0.5, 0.75, 0.25],
        [0.75, 0.25, 0.5], [0, 0, 0], [0.25, 0.5, 0.75], [0.5, 0.75, 0.25],
    ]
)  # fmt: skip
