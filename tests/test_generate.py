"""The built-in crystal generator: determinism, coverage, validity, sizes and chemistry."""

from __future__ import annotations

import math
from collections import Counter
from functools import cache

import numpy as np
import pytest
from ase.data import atomic_numbers, chemical_symbols, reference_states

from fmpretrain import generate as gen
from fmpretrain.generate import (
    GENERATED_MIN_DISTANCE,
    generate_structure,
    generate_structures,
    list_families,
)
from fmpretrain.neighbors import neighbor_list
from fmpretrain.structures import Structure, validate

FAMILIES = list_families()
ANIONS = {"N", "O", "F", "S", "Cl", "Se", "Br", "Te", "I"}
NONMETALS = ANIONS | {"H", "C", "P", "As", "Sb", "B", "Si", "Ge"}
#: Families whose atoms all have a neighbour well within 4 Å (no big alkali/halide ions).
DENSE = [
    "diamond", "zinc-blende", "wurtzite", "rutile", "spinel", "fluorite", "layered-2H",
    "L1_2", "heusler", "random-alloy", "hcp",
]  # fmt: skip


def same(a: Structure, b: Structure) -> bool:
    return (
        a.id == b.id
        and a.properties == b.properties
        and np.array_equal(a.numbers, b.numbers)
        and np.array_equal(a.positions, b.positions)
        and np.array_equal(a.cell, b.cell)
        and np.array_equal(a.pbc, b.pbc)
    )


def nearest(s: Structure, cutoff: float = 7.0) -> np.ndarray:
    """Per-atom nearest-neighbour distance (periodic images included)."""
    nl = neighbor_list(s.positions, s.cell, s.pbc, cutoff)
    nn = np.full(len(s), np.inf)
    np.minimum.at(nn, nl.centers, nl.distances)
    return nn


def sites(s: Structure) -> dict[str, list[str]]:
    """``'A=Sr B=Ti X=O'`` -> ``{'A': ['Sr'], 'B': ['Ti'], 'X': ['O']}``."""
    pairs = (item.split("=") for item in s.properties["sites"].split())
    return {role: symbols.split(",") for role, symbols in pairs}


@cache
def sample() -> tuple[Structure, ...]:
    return tuple(generate_structures(400, seed=11))


@cache
def by_family(family: str) -> tuple[Structure, ...]:
    return tuple(generate_structures(25, seed=5, families=[family], max_atoms=120))


# ---------------------------------------------------------------------------- API
def test_families_listed():
    required = {
        "fcc", "bcc", "hcp", "diamond", "rock-salt", "cesium-chloride", "zinc-blende",
        "wurtzite", "fluorite", "rutile", "perovskite", "spinel", "L1_2", "heusler",
    }  # fmt: skip
    assert len(FAMILIES) >= 12 and len(set(FAMILIES)) == len(FAMILIES)
    assert required <= set(FAMILIES)
    assert any(f.startswith("layered") for f in FAMILIES)


def test_lazy_and_streamable():
    stream = generate_structures(10**12, seed=3)  # returns at once, builds on demand
    first = next(stream)
    assert first.id == "gen-3-00000000"
    assert same(next(stream), generate_structure(1, seed=3))


def test_ids_and_properties():
    s = generate_structure(42, seed=7)
    assert s.id == "gen-7-00000042"
    assert s.properties["family"] in FAMILIES
    assert s.properties["seed"] == 7 and s.properties["index"] == 42
    assert s.pbc.all()
    # scalar properties survive the trip through ase
    back = Structure.from_ase(s.to_ase())
    assert back.properties == s.properties and back.id == s.id


@pytest.mark.parametrize(
    "kwargs",
    [
        {"families": ["no-such-family"]},
        {"families": []},
        {"families": ["spinel"], "max_atoms": 10},  # spinel cells have 14 or 56 atoms
        {"min_atoms": 0},
        {"min_atoms": 5, "max_atoms": 4},
        {"seed": -1},
    ],
)
def test_bad_arguments_raise_eagerly(kwargs):
    with pytest.raises(ValueError):
        generate_structures(3, **kwargs)


# ---------------------------------------------------------------------------- determinism
def test_same_seed_same_structures():
    a = list(generate_structures(40, seed=123))
    b = list(generate_structures(40, seed=123))
    assert all(same(x, y) for x, y in zip(a, b, strict=True))


def test_structure_depends_only_on_seed_and_index():
    whole = list(generate_structures(30, seed=9))
    chunks = [
        *generate_structures(10, seed=9),
        *generate_structures(15, seed=9, start=10),
        *generate_structures(5, seed=9, start=25),
    ]
    assert all(same(x, y) for x, y in zip(whole, chunks, strict=True))
    assert same(whole[17], generate_structure(17, seed=9))
    assert same(list(generate_structures(5, seed=9))[4], whole[4])  # independent of n
    # a far index is reachable directly
    far = generate_structure(1_000_003, seed=9)
    assert same(far, next(generate_structures(1, seed=9, start=1_000_003)))


def test_different_seeds_differ():
    a = list(generate_structures(20, seed=1))
    b = list(generate_structures(20, seed=2))
    differing = sum(
        len(x) != len(y) or not np.array_equal(x.positions, y.positions)
        for x, y in zip(a, b, strict=True)
    )
    assert differing == 20
    assert len({s.properties["family"] for s in a + b}) > 5


# ---------------------------------------------------------------------------- coverage
def test_every_family_appears_and_all_valid():
    structures = sample()
    counts = Counter(s.properties["family"] for s in structures)
    assert set(counts) == set(FAMILIES)
    for s in structures:
        validate(s, min_distance=GENERATED_MIN_DISTANCE)
        assert 1 <= len(s) <= 200
    # the variations all occur, and perfect crystals too
    props = [s.properties for s in structures]
    assert any(p["n_vacancies"] > 0 for p in props)
    assert any(p["strain"] > 0 for p in props) and any(p["strain"] == 0 for p in props)
    assert any(p["rattle"] > 0 for p in props) and any(p["rattle"] == 0 for p in props)
    assert all(p["strain"] <= 0.04 and p["rattle"] <= 0.05 for p in props)
    assert len({p["supercell"] for p in props}) > 10
    assert {p["setting"] for p in props} == {"primitive", "conventional"}


@pytest.mark.parametrize("family", FAMILIES)
def test_family_alone(family):
    structures = by_family(family)
    for s in structures:
        assert s.properties["family"] == family
        assert len(s) <= 120
        validate(s, min_distance=GENERATED_MIN_DISTANCE)
        nn = nearest(s)
        assert nn.min() > 1.0, (s, nn.min())  # shortest real bonds here are ~1.5 Å (C-C)
        assert nn.max() < 6.0, (s, nn.max())  # no isolated atoms (bcc Cs has ~5.3 Å)
        if family in DENSE:
            assert nn.max() < 4.0, (s, nn.max())
    assert len({s.formula for s in structures}) > 3  # element substitution varies


# ---------------------------------------------------------------------------- sizes
def test_size_bounds_respected():
    for s in generate_structures(150, seed=4, min_atoms=20, max_atoms=60):
        assert 20 <= len(s) <= 60


def test_one_atom_cells():
    ones = list(generate_structures(20, seed=4, max_atoms=1))
    assert all(len(s) == 1 for s in ones)
    assert {s.properties["family"] for s in ones} <= {"fcc", "bcc"}
    for s in ones:
        validate(s, min_distance=GENERATED_MIN_DISTANCE)
    one_fcc = generate_structure(0, seed=4, families="fcc", max_atoms=1)
    assert len(one_fcc) == 1 and one_fcc.properties["setting"] == "primitive"


def test_large_cells():
    big = list(generate_structures(12, seed=4, min_atoms=200, max_atoms=300))
    assert all(200 <= len(s) <= 300 for s in big)
    for s in big:
        validate(s, min_distance=GENERATED_MIN_DISTANCE)
    # the default range reaches beyond 100 atoms as well as single digits
    sizes = [len(s) for s in sample()]
    assert min(sizes) <= 3 and max(sizes) >= 150


def test_narrow_size_window():
    for s in generate_structures(30, seed=4, min_atoms=12, max_atoms=12):
        assert len(s) == 12


# ---------------------------------------------------------------------------- chemistry
@pytest.mark.parametrize("family", ["fcc", "bcc", "hcp", "diamond"])
def test_elemental_distances_match_reference(family):
    for s in by_family(family):
        z = int(s.numbers[0])
        ref = reference_states[z]
        if ref is None or ref.get("symmetry") != family:
            continue
        a = ref["a"]
        expected = {
            "fcc": a / math.sqrt(2),
            "bcc": a * math.sqrt(3) / 2,
            "hcp": min(a, math.sqrt(a * a / 3 + (a * ref.get("c/a", 1.633)) ** 2 / 4)),
            "diamond": a * math.sqrt(3) / 4,
        }[family]
        got = float(np.median(nearest(s)))
        assert abs(got / expected - 1) < 0.1, (s, got, expected)


def test_ionic_distances_realistic():
    # textbook bond lengths (Å) vs the median over cations of the nearest anion, within 10 %
    # (that nearest one is the shortest of the shell after strain and rattle)
    known = {
        ("rock-salt", "Na", "Cl"): 2.82,
        ("rock-salt", "Mg", "O"): 2.11,
        ("perovskite", "Ti", "O"): 1.95,
        ("rutile", "Ti", "O"): 1.96,
        ("zinc-blende", "Ga", "As"): 2.45,
        ("fluorite", "Ca", "F"): 2.37,
    }
    found = set()
    for family in {k[0] for k in known}:
        for s in generate_structures(150, seed=8, families=family, max_atoms=24):
            symbols = {chemical_symbols[z] for z in s.numbers}
            for fam, cat, an in known:
                if fam == family and {cat, an} <= symbols:
                    nl = neighbor_list(s.positions, s.cell, s.pbc, 4.0)
                    zc, za = atomic_numbers[cat], atomic_numbers[an]
                    pair = (s.numbers[nl.centers] == zc) & (s.numbers[nl.neighbors] == za)
                    nn = np.full(len(s), np.inf)  # each cation's nearest anion
                    np.minimum.at(nn, nl.centers[pair], nl.distances[pair])
                    d = float(np.median(nn[s.numbers == zc]))
                    assert abs(d / known[(fam, cat, an)] - 1) < 0.1, (s, d)
                    found.add((fam, cat, an))
    assert len(found) >= 4


def test_element_pools_are_sensible():
    structures = [s for f in FAMILIES for s in by_family(f)]
    for s in structures:
        family, roles = s.properties["family"], sites(s)
        symbols = {chemical_symbols[z] for z in s.numbers}
        assert symbols == {e for els in roles.values() for e in els}
        if family in {"fcc", "bcc", "hcp", "L1_2", "heusler", "random-alloy"}:
            assert not symbols & ANIONS, s
        if family == "perovskite":
            assert roles["X"][0] in ANIONS
            assert roles["A"][0] not in NONMETALS and roles["B"][0] not in ANIONS
            counts = Counter(chemical_symbols[z] for z in s.numbers)
            assert counts.most_common(1)[0][0] == roles["X"][0]  # X3
        if family in {"rock-salt", "fluorite", "antifluorite", "rutile", "layered-1T"}:
            cation = roles["A" if "A" in roles else "M"][0]
            assert roles["X"][0] in ANIONS and cation not in ANIONS, s
        if family == "spinel":
            assert roles["X"][0] in {"O", "S", "Se"} and roles["B"][0] not in NONMETALS
            assert roles["A"][0] not in ANIONS
        if family == "random-alloy":
            assert 2 <= len(symbols) <= 5
        if family == "heusler":
            assert len(symbols) == 3


#: Coordination in the perfect prototypes: role -> (role of the neighbours counted or None for
#: any atom, how many in the first shell).
COORDINATION = {
    "fcc": {"M": (None, 12)},
    "bcc": {"M": (None, 8)},
    "hcp": {"M": (None, 12)},
    "diamond": {"A": (None, 4)},
    "rock-salt": {"A": ("X", 6), "X": ("A", 6)},
    "cesium-chloride": {"A": ("B", 8), "B": ("A", 8)},
    "zinc-blende": {"A": ("X", 4), "X": ("A", 4)},
    "wurtzite": {"A": ("X", 4), "X": ("A", 4)},
    "fluorite": {"A": ("X", 8), "X": ("A", 4)},
    "antifluorite": {"A": ("X", 4), "X": ("A", 8)},
    "rutile": {"A": ("X", 6), "X": ("A", 3)},
    "perovskite": {"A": ("X", 12), "B": ("X", 6), "X": ("B", 2)},
    "spinel": {"A": ("X", 4), "B": ("X", 6)},
    "layered-1T": {"M": ("X", 6)},
    "layered-2H": {"M": ("X", 6)},
    "L1_2": {"A": (None, 12), "B": (None, 12)},
    "heusler": {"X": (None, 8), "Y": (None, 8), "Z": (None, 8)},
}


@pytest.mark.parametrize("family", sorted(COORDINATION))
def test_prototype_coordination(family):
    """Unit cells (before strain and rattle) have the textbook first coordination shells."""
    rng = np.random.default_rng(0)
    for _ in range(8):
        unit = gen._FAMILIES[family].build(rng, lambda base: True)
        s = Structure(unit.numbers, unit.frac @ unit.cell, unit.cell, True, properties={})
        s.properties["sites"] = unit.sites
        element = {role: atomic_numbers[symbols[0]] for role, symbols in sites(s).items()}
        if family != "diamond" and len(set(element.values())) < len(element):
            continue  # e.g. Fe3O4: roles not told apart by element
        nl = neighbor_list(s.positions, s.cell, s.pbc, 6.5)
        for role, (other, expected) in COORDINATION[family].items():
            for i in np.nonzero(s.numbers == element[role])[0]:
                mask = nl.centers == i
                if other is not None:
                    mask &= s.numbers[nl.neighbors] == element[other]
                d = nl.distances[mask]
                shell = int((d <= 1.12 * d.min()).sum())
                assert shell == expected, (family, unit.sites, unit.setting, role, shell)


def test_distance_bound_is_a_lower_bound():
    """The shortcut that skips the neighbour search never overestimates the shortest distance."""
    for k in range(150):
        rng = np.random.default_rng(np.random.SeedSequence(21, spawn_key=(k,)))
        s, bound = gen._attempt(rng, FAMILIES[k % len(FAMILIES)], 30, 120, 21, k)
        assert bound <= nearest(s).min()
