"""MatDeepLearn targets as published: ``"y": [63.59]`` is the number 63.59."""

from __future__ import annotations

import json

import pytest

from fmpretrain.finetune.data import BadEntriesError, read_labelled


def mdl_record(sid: str, a: float, y: object) -> dict:
    return {
        "structure_id": sid,
        "positions": [[0.0, 0.0, 0.0]],
        "cell": [[a, 0.0, 0.0], [0.0, a, 0.0], [0.0, 0.0, a]],
        "atomic_numbers": [13],
        "y": y,
    }


def test_one_element_y_lists_are_regression_targets(tmp_path):
    path = tmp_path / "data.json"
    records = [
        mdl_record("1", 3.0, [63.59]),
        mdl_record("2", 3.1, [[1.5]]),
        mdl_record("3", 3.2, 2),
    ]
    path.write_text(json.dumps(records))
    task = read_labelled(path)
    assert task.target_name == "y"
    assert task.targets.tolist() == [63.59, 1.5, 2.0]


def test_a_longer_y_is_not_a_number(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps([mdl_record("1", 3.0, [63.59]), mdl_record("2", 3.1, [1.0, 2.0])]))
    with pytest.raises(BadEntriesError) as info:
        read_labelled(path)
    assert dict(info.value.entries) == {"2": "target 'y' = [1.0, 2.0] is not a number"}
