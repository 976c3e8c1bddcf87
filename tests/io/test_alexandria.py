"""Alexandria ``{"entries": [ComputedStructureEntry dicts]}``, plain and bzip2-compressed."""

from __future__ import annotations

import bz2
import json

import numpy as np
import pytest

from fmpretrain.io import ReadFailure, read_structures
from tests.io.test_readers import NACL, pmg_nacl, pmg_triclinic


def computed_structure_entry(mat_id: str, structure: dict, e_form: float) -> dict:
    """One entry laid out like pymatgen's ``ComputedStructureEntry.as_dict()`` in Alexandria."""
    structure = json.loads(json.dumps(structure))
    for site in structure["sites"]:  # Alexandria stores per-site results as site properties
        site["properties"] = {"magmom": 0.0, "charge": 0.12, "forces": [0.0, 0.0, 0.01]}
    return {
        "@module": "pymatgen.entries.computed_entries",
        "@class": "ComputedStructureEntry",
        "energy": -10.5,
        "composition": {"Na": 1.0, "Cl": 1.0},
        "entry_id": mat_id,
        "correction": 0.0,
        "energy_adjustments": [],
        "parameters": {},
        "data": {
            "mat_id": mat_id,
            "prototype_id": "AB_cF8_225_a_b",
            "location": "database/alexandria_000.json.bz2",
            "formula": "NaCl",
            "elements": ["Cl", "Na"],
            "spg": 225,
            "nsites": len(structure["sites"]),
            "stress": [[-1.5, 0.0, 0.0], [0.0, -1.5, 0.0], [0.0, 0.0, -1.5]],
            "energy_total": -10.5,
            "total_mag": 0.0,
            "band_gap_ind": 5.1,
            "band_gap_dir": 5.3,
            "dos_ef": 0.0,
            "energy_corrected": -10.5,
            "e_above_hull": 0.0,
            "e_form": e_form,
            "e_phase_separation": -0.03,
            "decomposition": "NaCl",
        },
        "structure": structure,
    }


EXPECTED_PROPERTIES = {
    "energy": -10.5,
    "correction": 0.0,
    "spg": 225,
    "nsites": 2,
    "stress": [[-1.5, 0.0, 0.0], [0.0, -1.5, 0.0], [0.0, 0.0, -1.5]],
    "energy_total": -10.5,
    "total_mag": 0.0,
    "band_gap_ind": 5.1,
    "band_gap_dir": 5.3,
    "dos_ef": 0.0,
    "energy_corrected": -10.5,
    "e_above_hull": 0.0,
    "e_form": -2.08,
    "e_phase_separation": -0.03,
}


@pytest.mark.parametrize("name", ["alexandria_000.json", "alexandria_000.json.bz2"])
def test_alexandria_entries(tmp_path, name):
    doc = {
        "entries": [
            computed_structure_entry("agm002153973", pmg_nacl(), -2.08),
            computed_structure_entry("agm000000002", pmg_triclinic(), 0.5),
        ]
    }
    path = tmp_path / name
    text = json.dumps(doc)
    if name.endswith(".bz2"):
        path.write_bytes(bz2.compress(text.encode()))
    else:
        path.write_text(text)
    a, b = read_structures(path)
    assert (a.id, b.id) == ("agm002153973", "agm000000002")
    assert a.properties == EXPECTED_PROPERTIES
    assert b.properties["e_form"] == 0.5 and b.properties["nsites"] == 3
    assert a.numbers.tolist() == [11, 17]
    np.testing.assert_allclose(a.cell, NACL, atol=1e-12)


def test_alexandria_id_from_data_mat_id_and_a_bad_entry(tmp_path):
    no_entry_id = computed_structure_entry("agm1", pmg_nacl(), -1.0)
    del no_entry_id["entry_id"]
    broken = computed_structure_entry("agm2", pmg_nacl(), -1.0)
    broken["structure"]["lattice"]["matrix"] = [[1.0, 0.0], [0.0, 1.0]]
    last = computed_structure_entry("agm3", pmg_nacl(), -3.0)
    path = tmp_path / "alexandria_001.json.bz2"
    path.write_bytes(bz2.compress(json.dumps({"entries": [no_entry_id, broken, last]}).encode()))
    out = list(read_structures(path, errors="collect"))
    assert [x.id for x in out] == ["agm1", "agm2", "agm3"]
    assert isinstance(out[1], ReadFailure) and "bad lattice matrix" in out[1].reason
    assert out[1].index == 1 and not out[1].fatal
    assert out[2].properties["e_form"] == -3.0


def test_truncated_bz2_yields_the_entries_before_the_cut(tmp_path):
    entries = [computed_structure_entry(f"agm{i}", pmg_nacl(), -1.0 * i) for i in range(1500)]
    data = bz2.compress(json.dumps({"entries": entries}).encode())
    path = tmp_path / "alexandria_002.json.bz2"
    path.write_bytes(data[: len(data) // 2])  # a download cut short
    out = list(read_structures(path, errors="collect"))
    *structures, failure = out
    assert len(structures) > 0
    assert [s.id for s in structures] == [f"agm{i}" for i in range(len(structures))]
    assert isinstance(failure, ReadFailure) and failure.fatal
    assert failure.index == len(structures) and "cannot read: EOFError" in failure.reason
