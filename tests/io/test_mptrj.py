"""MPtrj ``{mp_id: {frame_id: frame}}``: every frame or the last one per material."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fmpretrain.io import ReadFailure, StructureReadError, read_structures
from tests.io.test_readers import NACL, pmg_nacl, pmg_triclinic


def frame(structure: dict, mp_id: str, energy: float, n_atoms: int) -> dict:
    """One frame with the fields (and their shapes) of ``MPtrj_2022.9_full.json``."""
    return {
        "structure": structure,
        "uncorrected_total_energy": energy,
        "corrected_total_energy": energy - 0.5,
        "energy_per_atom": (energy - 0.5) / n_atoms,
        "ef_per_atom": -1.25,
        "e_per_atom_relaxed": -3.5,
        "ef_per_atom_relaxed": -1.3,
        "force": [[0.01, 0.0, -0.02]] * n_atoms,
        "stress": [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]],
        "magmom": [0.6] * n_atoms,
        "bandgap": 0.75,
        "mp_id": mp_id,
    }


def mptrj_doc() -> dict:
    return {
        "mp-1234": {
            "mp-1234-1-0": frame(pmg_nacl(), "mp-1234", -6.0, 2),
            "mp-1234-1-1": frame(pmg_nacl(), "mp-1234", -6.5, 2),
            "mp-1234-0-0": frame(pmg_nacl(), "mp-1234", -7.0, 2),
        },
        "mp-77": {"mp-77-0-0": frame(pmg_triclinic(), "mp-77", -9.0, 3)},
    }


def test_mptrj_all_frames(tmp_path):
    path = tmp_path / "MPtrj_2022.9_full.json"
    path.write_text(json.dumps(mptrj_doc()))
    out = list(read_structures(path))
    assert [s.id for s in out] == ["mp-1234-1-0", "mp-1234-1-1", "mp-1234-0-0", "mp-77-0-0"]
    assert out[2].properties == {
        "uncorrected_total_energy": -7.0,
        "corrected_total_energy": -7.5,
        "energy_per_atom": -3.75,
        "ef_per_atom": -1.25,
        "e_per_atom_relaxed": -3.5,
        "ef_per_atom_relaxed": -1.3,
        "stress": [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]],
        "bandgap": 0.75,
        "mp_id": "mp-1234",
    }
    assert "force" not in out[0].properties and "magmom" not in out[0].properties
    np.testing.assert_allclose(out[0].cell, NACL, atol=1e-12)
    assert out[3].numbers.tolist() == [14, 8, 26]


def test_mptrj_last_frame_per_material(tmp_path):
    path = tmp_path / "mptrj.json"
    path.write_text(json.dumps(mptrj_doc()))
    out = list(read_structures(path, frames="last"))
    assert [s.id for s in out] == ["mp-1234-0-0", "mp-77-0-0"]
    assert [s.properties["uncorrected_total_energy"] for s in out] == [-7.0, -9.0]
    assert [s.properties["mp_id"] for s in out] == ["mp-1234", "mp-77"]


def test_mptrj_bad_frame_is_named_by_its_file_index(tmp_path):
    doc = mptrj_doc()
    doc["mp-1234"]["mp-1234-1-1"]["structure"]["sites"][1]["species"] = [{"element": "Q"}]
    path = tmp_path / "mptrj.json"
    path.write_text(json.dumps(doc))
    out = list(read_structures(path, errors="collect"))
    assert [x.id for x in out] == ["mp-1234-1-0", "mp-1234-1-1", "mp-1234-0-0", "mp-77-0-0"]
    bad = out[1]
    assert isinstance(bad, ReadFailure) and bad.index == 1
    assert "site 1: unknown element 'Q'" in bad.reason
    with pytest.raises(StructureReadError, match=r"entry 1 \(id 'mp-1234-1-1'\)"):
        list(read_structures(path))
    (last,) = [x for x in read_structures(path, frames="last", errors="collect")][:1]
    assert last.id == "mp-1234-0-0"
