"""JSON layouts as published: MatDeepLearn, MatBench, MP records; bad entries; streaming."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma

import numpy as np
import pytest

from fmpretrain.io import ReadFailure, StructureReadError, read_structures
from tests.io.test_readers import NACL, TRICLINIC, pmg_nacl, pmg_triclinic

OPENERS = {"": open, ".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def write_json(path, doc) -> None:
    suffix = next((s for s in (".gz", ".bz2", ".xz") if path.name.endswith(s)), "")
    with OPENERS[suffix](path, "wt") as f:
        json.dump(doc, f)


# ---------------------------------------------------------------------------- MatDeepLearn
def mdl_records() -> list[dict]:
    """MatDeepLearn's ``data.json``: y as a one-element list, as the authors publish it."""
    return [
        {
            "structure_id": "2dm-1",
            "positions": [[0.0, 0.0, 0.0], [2.82, 2.82, 2.82]],
            "cell": NACL,
            "atomic_numbers": [11, 17],
            "y": [63.59],
        },
        {
            "structure_id": "2dm-2",
            "positions": [[0.1, 0.2, 0.3]],
            "cell": [[3.6, 0, 0], [0, 3.6, 0], [0, 0, 3.6]],
            "atomic_numbers": [29],
            "y": [1.5, -2.0, 0.25],
        },
        {
            "structure_id": "2dm-3",
            "positions": [[0.0, 0.0, 0.0]],
            "cell": [[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0]],
            "atomic_numbers": [13],
            "y": -0.5,
        },
    ]


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_matdeeplearn_one_element_y_is_a_scalar_and_a_longer_y_a_vector(tmp_path, suffix):
    path = tmp_path / f"data.json{suffix}"
    write_json(path, mdl_records())
    a, b, c = read_structures(path)
    assert (a.id, b.id, c.id) == ("2dm-1", "2dm-2", "2dm-3")
    assert a.properties == {"y": 63.59} and isinstance(a.properties["y"], float)
    assert b.properties == {"y": [1.5, -2.0, 0.25]}
    assert c.properties == {"y": -0.5}
    np.testing.assert_allclose(a.positions, [[0, 0, 0], [2.82, 2.82, 2.82]], atol=1e-12)
    assert a.numbers.tolist() == [11, 17] and a.pbc.tolist() == [True, True, True]


def test_matdeeplearn_bad_entry_is_named_and_the_rest_read(tmp_path):
    records = mdl_records()
    records[1]["atomic_numbers"] = [29.5]
    path = tmp_path / "data.json"
    write_json(path, records)
    out = list(read_structures(path, errors="collect"))
    assert [type(x).__name__ for x in out] == ["Structure", "ReadFailure", "Structure"]
    bad = out[1]
    assert (bad.index, bad.entry_id, bad.fatal) == (1, "2dm-2", False)
    assert "bad atomic_numbers [29.5]" in bad.reason
    assert str(bad).startswith(f"{path}, entry 1 (id '2dm-2'): ")
    with pytest.raises(StructureReadError, match=r"entry 1 \(id '2dm-2'\): bad atomic_numbers"):
        list(read_structures(path))


# ---------------------------------------------------------------------------- MatBench
def test_matbench_json_gz_as_published(tmp_path):
    """``matbench_*.json.gz``: pandas split table, index first, then columns, then data."""
    doc = {
        "index": ["mb-perovskites-00001", "mb-perovskites-00002"],
        "columns": ["structure", "e_form"],
        "data": [[pmg_nacl(), 0.0436], [pmg_triclinic(), -1.25]],
    }
    path = tmp_path / "matbench_perovskites.json.gz"
    write_json(path, doc)
    a, b = read_structures(path)
    assert (a.id, b.id) == ("mb-perovskites-00001", "mb-perovskites-00002")
    assert a.properties == {"e_form": 0.0436} and b.properties == {"e_form": -1.25}
    np.testing.assert_allclose(b.cell, TRICLINIC, atol=1e-12)


def test_matbench_bad_row_is_named_and_the_rest_read(tmp_path):
    bad = pmg_nacl()
    bad["sites"][0]["species"] = [{"element": "Xx", "occu": 1}]
    doc = {
        "index": ["mb-1", "mb-2", "mb-3", "mb-4"],
        "columns": ["structure", "n"],
        "data": [[pmg_nacl(), 1.0], [bad, 2.0], [pmg_nacl()], [pmg_nacl(), 4.0]],
    }
    path = tmp_path / "mb.json"
    write_json(path, doc)
    out = list(read_structures(path, errors="collect"))
    assert [x.id for x in out] == ["mb-1", "mb-2", "mb-3", "mb-4"]
    assert isinstance(out[1], ReadFailure) and "unknown element 'Xx'" in out[1].reason
    assert isinstance(out[2], ReadFailure) and out[2].reason == "row does not hold 2 values"
    assert out[3].properties == {"n": 4.0}


def test_matbench_table_whose_data_comes_before_its_columns(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(
        json.dumps({"data": [[pmg_nacl(), 7.0]], "columns": ["structure", "k"], "index": ["a"]})
    )
    (s,) = read_structures(path)
    assert s.id == "a" and s.properties == {"k": 7.0}


@pytest.mark.parametrize(
    ("index", "reason"),
    [(["a"], "table index is shorter than its rows"), (["a", "b", "c"], "longer than its 2")],
)
def test_matbench_index_of_the_wrong_length(tmp_path, index, reason):
    path = tmp_path / "t.json"
    doc = {"index": index, "columns": ["structure"], "data": [[pmg_nacl()], [pmg_nacl()]]}
    path.write_text(json.dumps(doc))
    out = list(read_structures(path, errors="collect"))
    assert out[0].id == "a"
    assert isinstance(out[-1], ReadFailure) and out[-1].fatal and reason in out[-1].reason


# ---------------------------------------------------------------------------- MP records
def test_mp_records_bad_entry_is_named_and_the_rest_read(tmp_path):
    disordered = pmg_triclinic()
    disordered["sites"][0]["species"] = [
        {"element": "Si", "occu": 0.5},
        {"element": "Ge", "occu": 0.5},
    ]
    records = [
        {"material_id": "mp-1", "structure": pmg_nacl(), "band_gap": 5.0},
        {"material_id": "mp-2", "structure": disordered, "band_gap": 1.0},
        {"material_id": "mp-3", "structure": pmg_triclinic(), "band_gap": 0.5},
    ]
    path = tmp_path / "mp.json.xz"
    write_json(path, records)
    out = list(read_structures(path, errors="collect"))
    assert [x.id for x in out] == ["mp-1", "mp-2", "mp-3"]
    assert isinstance(out[1], ReadFailure) and "site 0 is disordered" in out[1].reason
    assert out[2].properties == {"band_gap": 0.5}


# ---------------------------------------------------------------------------- streaming
def test_truncated_list_yields_its_first_entries_before_the_error(tmp_path):
    records = [{"material_id": f"mp-{i}", "structure": pmg_nacl(), "e": float(i)} for i in range(5)]
    text = json.dumps(records)
    cut = text.index('{"material_id": "mp-3"') + 40  # in the middle of entry 3
    path = tmp_path / "dump.json"
    path.write_text(text[:cut])
    reader = read_structures(path)
    assert [next(reader).id for _ in range(3)] == ["mp-0", "mp-1", "mp-2"]
    with pytest.raises(StructureReadError, match=r"dump\.json, entry 3: not valid JSON") as info:
        next(reader)
    assert info.value.fatal and "rest of the file is unreadable" in str(info.value)


def test_malformed_tail_of_a_keyed_file_in_collect_mode(tmp_path):
    doc = {f"mp-{i}": {"structure": pmg_nacl(), "band_gap": float(i)} for i in range(3)}
    text = json.dumps(doc)
    path = tmp_path / "keyed.json.gz"
    with gzip.open(path, "wt") as f:
        f.write(text[: text.index('"mp-2"')] + '"mp-2": {"structure": ]]]')
    out = list(read_structures(path, errors="collect"))
    assert [x.id for x in out[:2]] == ["mp-0", "mp-1"]
    assert out[0].properties == {"band_gap": 0.0}
    assert len(out) == 3 and isinstance(out[2], ReadFailure)
    assert out[2].fatal and out[2].index == 2 and "not valid JSON" in out[2].reason


def test_invalid_option_values_are_refused(tmp_path):
    with pytest.raises(ValueError, match="errors must be one of"):
        read_structures(tmp_path / "x.json", errors="ignore")
    with pytest.raises(ValueError, match="frames must be one of"):
        read_structures(tmp_path / "x.json", frames="first")


def test_unopenable_file_is_one_fatal_failure_in_collect_mode(tmp_path):
    path = tmp_path / "broken.json.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage")
    (failure,) = read_structures(path, errors="collect")
    assert isinstance(failure, ReadFailure) and failure.fatal
    assert failure.id == str(path) and "cannot read" in failure.reason
    (missing,) = read_structures(tmp_path / "missing.json", errors="collect")
    assert missing.reason == "no such file"


def test_nan_and_infinity_literals_python_writes_are_read(tmp_path):
    """json.dumps writes NaN/Infinity (not JSON); the stream falls back to a lenient reread and
    keeps the entries before the literal, the literal's value, and "NaN" inside strings."""
    import math

    records = [
        {"material_id": f"m{i}", "structure": pmg_nacl(), "e": v, "note": "NaN"}
        for i, v in enumerate([1.0, float("nan"), float("inf"), -float("inf")])
    ]
    path = tmp_path / "with_nan.json"
    path.write_text(json.dumps(records))
    out = list(read_structures(path))
    assert [s.id for s in out] == ["m0", "m1", "m2", "m3"]
    assert out[0].properties["e"] == 1.0 and math.isnan(out[1].properties["e"])
    assert out[2].properties["e"] == math.inf and out[3].properties["e"] == -math.inf
