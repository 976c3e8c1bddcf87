"""The Structure record: construction, conversions, repeat, formula and validation."""

from __future__ import annotations

import ase
import numpy as np
import pytest
from ase.build import bulk, fcc111, molecule

from fmpretrain.structures import (
    DEFAULT_MIN_DISTANCE,
    InvalidStructureError,
    Structure,
    validate,
)


def nacl() -> Structure:
    return Structure.from_ase(bulk("NaCl", "rocksalt", a=5.64), id="nacl")


# ---------------------------------------------------------------------------- construction
def test_construction_coerces_types_and_shapes():
    s = Structure(numbers=[11, 17], positions=[0, 0, 0, 1.5, 1.5, 1.5], pbc=True, id=7)
    assert s.numbers.dtype == np.int64 and s.numbers.tolist() == [11, 17]
    assert s.positions.dtype == np.float64 and s.positions.shape == (2, 3)
    assert s.positions[1].tolist() == [1.5, 1.5, 1.5]
    assert s.cell.shape == (3, 3) and not s.cell.any()
    assert s.pbc.dtype == bool and s.pbc.tolist() == [True, True, True]
    assert s.id == "7"
    assert s.properties == {}
    assert len(s) == 2


def test_defaults_are_a_molecule_and_not_shared():
    a = Structure([1], [[0, 0, 0]])
    b = Structure([1], [[0, 0, 0]])
    assert a.pbc.tolist() == [False, False, False]
    a.properties["x"] = 1
    a.cell[0, 0] = 1.0
    assert b.properties == {} and not b.cell.any()


def test_mixed_pbc_and_cell_from_list():
    s = Structure([1], [[0, 0, 0]], cell=[3, 0, 0, 0, 3, 0, 0, 0, 0], pbc=[1, 1, 0])
    assert s.pbc.tolist() == [True, True, False]
    assert s.cell[1, 1] == 3.0


def test_length_mismatch_is_refused_with_id():
    with pytest.raises(InvalidStructureError, match=r"'bad'.*2 atomic numbers but 1 positions"):
        Structure([1, 1], [[0, 0, 0]], id="bad")


def test_copy_is_independent():
    s = nacl()
    s.properties["e"] = 1.0
    c = s.copy()
    c.positions[0, 0] += 1.0
    c.properties["e"] = 2.0
    c.numbers[0] = 3
    assert s.positions[0, 0] == 0.0 and s.properties["e"] == 1.0 and s.numbers[0] == 11


def test_repr_mentions_id_and_formula():
    r = repr(nacl())
    assert "nacl" in r and "ClNa" in r and "n_atoms=2" in r


# ---------------------------------------------------------------------------- formula
@pytest.mark.parametrize(
    ("structure", "formula"),
    [
        (Structure.from_ase(bulk("NaCl", "rocksalt", a=5.64)), "ClNa"),
        (Structure.from_ase(molecule("CH4")), "CH4"),
        (Structure.from_ase(molecule("CH3CH2OH")), "C2H6O"),
        (Structure.from_ase(bulk("NaCl", "rocksalt", a=5.64, cubic=True)), "Cl4Na4"),
        (Structure(np.zeros(0), np.zeros((0, 3))), ""),
    ],
)
def test_formula_is_hill_ordered(structure, formula):
    assert structure.formula == formula


# ---------------------------------------------------------------------------- ASE
def test_ase_round_trip_with_info_properties():
    atoms = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
    atoms.positions[0] += [0.01, -0.02, 0.03]
    atoms.info.update(
        {
            "id": "cu-1",
            "energy_per_atom": -3.5,
            "n_defects": np.int64(2),
            "relaxed": True,
            "source": "dft",
            "array": np.arange(3),  # not a scalar: not a property
        }
    )
    s = Structure.from_ase(atoms)
    assert s.id == "cu-1"
    assert s.properties == {
        "energy_per_atom": -3.5,
        "n_defects": 2,
        "relaxed": True,
        "source": "dft",
    }
    assert type(s.properties["n_defects"]) is int
    np.testing.assert_array_equal(s.numbers, atoms.numbers)
    np.testing.assert_allclose(s.positions, atoms.positions, atol=1e-12)
    np.testing.assert_allclose(s.cell, atoms.cell[:], atol=1e-12)

    back = s.to_ase()
    assert isinstance(back, ase.Atoms)
    np.testing.assert_array_equal(back.numbers, atoms.numbers)
    np.testing.assert_allclose(back.positions, atoms.positions, atol=1e-12)
    np.testing.assert_allclose(back.cell[:], atoms.cell[:], atol=1e-12)
    assert back.pbc.tolist() == [True, True, True]
    assert back.info["id"] == "cu-1" and back.info["energy_per_atom"] == -3.5
    again = Structure.from_ase(back)
    assert again.id == s.id and again.properties == s.properties


def test_from_ase_id_sources():
    atoms = molecule("H2O")
    assert Structure.from_ase(atoms).id == ""
    atoms.info["structure_id"] = "w-1"
    s = Structure.from_ase(atoms)
    assert s.id == "w-1" and "structure_id" not in s.properties
    atoms.info["id"] = "w-2"
    assert Structure.from_ase(atoms).id == "w-2"
    explicit = Structure.from_ase(atoms, id="given")
    assert explicit.id == "given"
    assert "id" not in explicit.properties and "structure_id" not in explicit.properties


def test_molecule_and_slab_keep_pbc():
    mol = Structure.from_ase(molecule("H2O"))
    assert mol.pbc.tolist() == [False, False, False]
    slab = Structure.from_ase(fcc111("Al", size=(2, 2, 3), vacuum=None))
    assert slab.pbc.tolist() == [True, True, False]
    assert slab.to_ase().pbc.tolist() == [True, True, False]


# ---------------------------------------------------------------------------- repeat
def test_repeat_builds_image_major_supercell():
    s = nacl()
    s.properties["gap"] = 5.0
    r = s.repeat((2, 1, 3))
    assert len(r) == 12
    assert r.id == "nacl" and r.properties == {"gap": 5.0}
    np.testing.assert_allclose(r.cell, s.cell * np.array([2, 1, 3])[:, None])
    assert r.numbers.tolist() == s.numbers.tolist() * 6
    np.testing.assert_allclose(r.positions[:2], s.positions)
    # image order like ASE: the last axis varies fastest
    np.testing.assert_allclose(r.positions[2:4], s.positions + s.cell[2])
    np.testing.assert_allclose(r.positions[6:8], s.positions + s.cell[0])
    assert r.formula == "Cl6Na6"


def test_repeat_identity():
    s = nacl()
    r = s.repeat((1, 1, 1))
    np.testing.assert_array_equal(r.positions, s.positions)
    np.testing.assert_array_equal(r.cell, s.cell)


# ---------------------------------------------------------------------------- pymatgen dicts
def test_pymatgen_dict_round_trip_crystal():
    s = nacl()
    s.positions[1] += [0.1, -0.05, 0.02]
    s.properties = {"gap": 5.0, "y": [1.0, 2.0]}
    d = s.to_pymatgen_dict()
    assert d["@class"] == "Structure" and d["@module"] == "pymatgen.core.structure"
    lat = d["lattice"]
    assert lat["pbc"] == [True, True, True]
    assert lat["a"] == pytest.approx(5.64 / np.sqrt(2)) and lat["alpha"] == pytest.approx(60.0)
    assert lat["volume"] == pytest.approx(5.64**3 / 4)
    site = d["sites"][1]
    assert site["species"] == [{"element": "Cl", "occu": 1}] and site["label"] == "Cl"
    np.testing.assert_allclose(np.asarray(site["abc"]) @ s.cell, site["xyz"], atol=1e-12)
    back = Structure.from_pymatgen_dict(d, id="x")
    assert back.id == "x" and back.properties == {"gap": 5.0, "y": [1.0, 2.0]}
    np.testing.assert_array_equal(back.numbers, s.numbers)
    np.testing.assert_allclose(back.positions, s.positions, atol=1e-12)
    np.testing.assert_allclose(back.cell, s.cell, atol=1e-12)


def test_pymatgen_dict_molecule_and_fractional_only_sites():
    mol = Structure.from_ase(molecule("H2O"))
    d = mol.to_pymatgen_dict()
    assert d["@class"] == "Molecule" and "lattice" not in d and d["spin_multiplicity"] == 1
    assert Structure.from_ase(molecule("CH3")).to_pymatgen_dict()["spin_multiplicity"] == 2
    back = Structure.from_pymatgen_dict(d)
    assert back.pbc.tolist() == [False, False, False] and not back.cell.any()
    np.testing.assert_allclose(back.positions, mol.positions, atol=1e-12)

    crystal = nacl().to_pymatgen_dict()
    for site in crystal["sites"]:
        del site["xyz"]  # as_dict(verbosity=0)
    np.testing.assert_allclose(
        Structure.from_pymatgen_dict(crystal).positions, nacl().positions, atol=1e-12
    )


def test_pymatgen_dict_of_slab_with_zero_vector():
    slab = Structure([13], [[0, 0, 0]], cell=np.diag([3.0, 3.0, 0.0]), pbc=[True, True, False])
    d = slab.to_pymatgen_dict()
    assert d["lattice"]["pbc"] == [True, True, False] and "a" not in d["lattice"]
    back = Structure.from_pymatgen_dict(d)
    assert back.pbc.tolist() == [True, True, False]


@pytest.mark.parametrize(
    ("species", "message"),
    [
        ([{"element": "Fe", "occu": 0.5}, {"element": "Ni", "occu": 0.5}], "disordered"),
        ([{"element": "Fe", "occu": 0.9}], "disordered"),
        ([{"element": "Xx", "occu": 1}], "unknown element 'Xx'"),
        ([{"element": "X0+", "occu": 1}], "unknown element 'X0\\+'"),
        ([], "disordered"),
    ],
)
def test_pymatgen_dict_refusals(species, message):
    d = nacl().to_pymatgen_dict()
    d["sites"][1]["species"] = species
    with pytest.raises(InvalidStructureError, match=rf"'bad'.*site 1.*{message}"):
        Structure.from_pymatgen_dict(d, id="bad")


def test_pymatgen_dict_oxidation_states_are_stripped():
    d = nacl().to_pymatgen_dict()
    d["sites"][0]["species"] = [{"element": "Na", "oxidation_state": 1, "occu": 1}]
    d["sites"][1]["species"] = [{"element": "Cl-", "occu": 1.0}]
    assert Structure.from_pymatgen_dict(d).numbers.tolist() == [11, 17]


def test_pymatgen_dict_without_sites_or_coordinates():
    with pytest.raises(InvalidStructureError, match="no 'sites'"):
        Structure.from_pymatgen_dict({"lattice": {"matrix": np.eye(3).tolist()}}, id="s")
    d = Structure.from_ase(molecule("H2O")).to_pymatgen_dict()
    del d["sites"][0]["xyz"]
    with pytest.raises(InvalidStructureError, match="site 0 has no coordinates"):
        Structure.from_pymatgen_dict(d, id="s")


# ---------------------------------------------------------------------------- validate
def test_valid_structures_pass_unchanged():
    crystal = nacl()
    assert validate(crystal) is crystal
    slab = Structure.from_ase(fcc111("Pt", size=(2, 2, 3), vacuum=7.0))
    slab.pbc[:] = [True, True, False]
    assert validate(slab) is slab
    mol = Structure.from_ase(molecule("C6H6"), id="benzene")
    assert validate(mol) is mol


def test_slab_with_zero_vector_in_non_periodic_direction_is_fine():
    slab = Structure.from_ase(fcc111("Al", size=(2, 2, 2), vacuum=None))
    slab.cell[2] = 0.0
    slab.pbc[:] = [True, True, False]
    assert validate(slab) is slab


def test_no_atoms():
    with pytest.raises(InvalidStructureError, match=r"structure 'empty': has no atoms"):
        validate(Structure(np.zeros(0), np.zeros((0, 3)), id="empty"))


def test_nan_position():
    s = nacl()
    s.positions[1, 2] = np.nan
    with pytest.raises(InvalidStructureError, match=r"'nacl'.*non-finite.*position at atom 1"):
        validate(s)


def test_inf_cell():
    s = nacl()
    s.cell[0, 0] = np.inf
    with pytest.raises(InvalidStructureError, match=r"'nacl'.*non-finite.*cell"):
        validate(s)


@pytest.mark.parametrize(
    "cell",
    [
        [[3.0, 0, 0], [6.0, 0, 0], [0, 0, 3.0]],  # two parallel vectors
        [[3.0, 0, 0], [0, 3.0, 0], [3.0, 3.0, 0]],  # coplanar vectors
        [[3.0, 0, 0], [0, 3.0, 0], [0, 0, 0]],  # a zero vector along a periodic direction
    ],
)
def test_singular_cell_under_pbc(cell):
    s = Structure([6], [[0, 0, 0]], cell=cell, pbc=True, id="flat")
    with pytest.raises(InvalidStructureError, match=r"'flat'.*singular cell"):
        validate(s)


@pytest.mark.parametrize("z", [0, 150, -1])
def test_unknown_element(z):
    s = Structure([6, z], [[0, 0, 0], [1.5, 0, 0]], id="odd")
    with pytest.raises(InvalidStructureError, match=rf"'odd'.*unknown element.*{z} at atom 1"):
        validate(s)


def test_atoms_too_close():
    s = Structure([1, 1], [[0, 0, 0], [0.3, 0, 0]], id="h2")
    with pytest.raises(InvalidStructureError, match=r"'h2'.*0\.300 Å apart.*minimum distance 0\.5"):
        validate(s)


def test_atoms_too_close_only_through_a_periodic_image():
    s = Structure([6, 6], [[0.1, 0, 0], [2.9, 0, 0]], cell=np.eye(3) * 3.0, pbc=True, id="img")
    assert np.linalg.norm(s.positions[1] - s.positions[0]) > 2.0  # far apart in the cell
    with pytest.raises(InvalidStructureError, match=r"'img'.*atoms 0 and 1 are 0\.200 Å apart"):
        validate(s)
    s.pbc[0] = False  # without the image they are fine
    assert validate(s) is s


def test_atom_too_close_to_its_own_image():
    s = Structure([6], [[0, 0, 0]], cell=np.diag([0.4, 5.0, 5.0]), pbc=True, id="thin")
    with pytest.raises(InvalidStructureError, match=r"'thin'.*atoms 0 and 0 are 0\.400 Å apart"):
        validate(s)


@pytest.mark.parametrize("pbc", [False, True])
def test_coincident_atoms(pbc):
    s = Structure([8, 8], [[1, 1, 1], [1, 1, 1]], cell=np.eye(3) * 4, pbc=pbc, id="dup")
    with pytest.raises(InvalidStructureError, match=r"'dup'.*0\.000 Å apart"):
        validate(s)


def test_min_distance_is_configurable():
    close = Structure([1, 1], [[0, 0, 0], [0.3, 0, 0]], id="h2")
    assert validate(close, min_distance=0.2) is close
    assert validate(close, min_distance=0.0) is close  # disabled
    ok = Structure([1, 1], [[0, 0, 0], [0.9, 0, 0]], id="h2b")
    assert DEFAULT_MIN_DISTANCE < 0.9 and validate(ok) is ok
    with pytest.raises(InvalidStructureError, match=r"minimum distance 1\.0 Å"):
        validate(ok, min_distance=1.0)
