"""File sources: each bad entry is one reject, the rest of its file is featurized."""

from __future__ import annotations

import json

from data_pipeline.sources import ReadFailure, iter_file_inputs
from fmpretrain.structures import Structure
from tests.io.test_mptrj import mptrj_doc
from tests.io.test_readers import pmg_nacl


def test_bad_entry_is_one_failure_and_the_rest_of_the_file_is_read(tmp_path):
    bad = pmg_nacl()
    bad["sites"][0]["species"] = [{"element": "Xx", "occu": 1}]
    records = [
        {"material_id": "mp-1", "structure": pmg_nacl()},
        {"material_id": "mp-2", "structure": bad},
        {"material_id": "mp-3", "structure": pmg_nacl()},
    ]
    (tmp_path / "a.json").write_text(json.dumps(records))
    (tmp_path / "b.json.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    items = list(iter_file_inputs([str(tmp_path)]))
    assert [type(x).__name__ for x in items] == [
        "Structure",
        "ReadFailure",
        "Structure",
        "ReadFailure",
    ]
    assert [x.id for x in items] == ["mp-1", "mp-2", "mp-3", str(tmp_path / "b.json.gz")]
    assert items[1].reason.startswith(f"unreadable: {tmp_path / 'a.json'}, entry 1 (id 'mp-2'): ")
    assert "unknown element 'Xx'" in items[1].reason
    assert isinstance(items[3], ReadFailure) and "cannot read" in items[3].reason


def test_frames_read_option_reaches_the_mptrj_reader(tmp_path):
    path = tmp_path / "mptrj.json"
    path.write_text(json.dumps(mptrj_doc()))
    last = list(iter_file_inputs([str(path)], frames="last"))
    assert all(isinstance(x, Structure) for x in last)
    assert [x.id for x in last] == ["mp-1234-0-0", "mp-77-0-0"]
    assert len(list(iter_file_inputs([str(path)]))) == 4
