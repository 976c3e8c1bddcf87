"""Resume keyed by content: a resume after the inputs changed redoes exactly the affected chunks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from data_pipeline.config import load_config
from data_pipeline.driver import ConfigMismatchError, run_featurize
from fmpretrain.data.manifest import Manifest, verify_shards
from fmpretrain.io import write_structures
from fmpretrain.structures import Structure
from tests.data_pipeline.test_pipeline import DEMO, decoded

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=1, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


def structures(prefix: str, n: int, a0: float = 3.5) -> list[Structure]:
    return [
        Structure.from_ase(bulk("Cu", "fcc", a=a0 + 0.05 * k), id=f"{prefix}{k}") for k in range(n)
    ]


def write_folder(folder: Path, files: dict[str, list[Structure]]) -> None:
    folder.mkdir(exist_ok=True)
    for name, items in files.items():
        write_structures(folder / name, items)


def featurize(out: Path, src: Path, *overrides: str):
    cfg = load_config(
        DEMO,
        [
            f"out={out}",
            "descriptor=ead",
            "source.kind=files",
            f"source.paths=[{src}]",
            "chunk_size=2",
            "workers=1",
            *overrides,
        ],
    )
    return run_featurize(cfg, progress=False)


def part_mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((out / "parts").glob("shard-*.json"))}


def ids(out: Path) -> list[str]:
    return sorted(v["id"] for v in decoded(out).values())  # decoded() refuses duplicate keys


def test_added_file_is_featurized_exactly_once(tmp_path, ray_cluster, caplog):
    src = tmp_path / "src"
    write_folder(src, {"a.extxyz": structures("a", 3), "c.extxyz": structures("c", 3, 3.7)})
    featurize(tmp_path / "out", src)
    assert ids(tmp_path / "out") == ["a0", "a1", "a2", "c0", "c1", "c2"]

    write_folder(src, {"b.extxyz": structures("b", 3, 3.6)})
    problems = verify_shards(tmp_path / "out", inputs=True)
    assert problems == [
        f"input {(src / 'b.extxyz').resolve()}: added since featurization (not in the shards)"
    ]
    with caplog.at_level(logging.WARNING, logger="fmpretrain.featurize"):
        result = featurize(tmp_path / "out", src)
    assert "b.extxyz: file added" in caplog.text
    assert result.reused_shards == 1 and result.new_shards == 4  # chunk 0 (a0, a1) kept
    m = Manifest.load(tmp_path / "out")
    assert m.complete and m.n_chunks == 5 and m.n_inputs == 9 and m.n_samples == 9
    all_ids = [f"{p}{k}" for p in "abc" for k in range(3)]
    assert ids(tmp_path / "out") == all_ids
    assert verify_shards(tmp_path / "out", inputs=True) == []

    featurize(tmp_path / "fresh", src)  # the resumed output equals a fresh one
    resumed, fresh = decoded(tmp_path / "out"), decoded(tmp_path / "fresh")
    assert resumed.keys() == fresh.keys()
    for key in fresh:
        assert resumed[key]["id"] == fresh[key]["id"]
        np.testing.assert_array_equal(resumed[key]["fingerprint"], fresh[key]["fingerprint"])


def test_replaced_content_redoes_only_its_chunks(tmp_path, ray_cluster, caplog):
    src = tmp_path / "src"
    write_folder(
        src,
        {
            "a.extxyz": structures("a", 2),
            "b.extxyz": structures("b", 2, 3.6),
            "c.extxyz": structures("c", 2, 3.7),
        },
    )
    out = tmp_path / "out"
    featurize(out, src)
    before = part_mtimes(out)
    record = json.loads((out / "parts" / "shard-000001.json").read_text())
    [b_file] = record["inputs"]["files"]
    assert b_file["path"] == str((src / "b.extxyz").resolve()) and b_file["entries"] == [0, 2]
    assert len(b_file["sha256"]) == 64 and [s[0] for s in record["inputs"]["structures"]] == [
        "b0",
        "b1",
    ]

    write_structures(src / "b.extxyz", structures("x", 2, 3.9))  # same count, new content
    [problem] = verify_shards(out, inputs=True)
    assert "b.extxyz: content replaced since featurization" in problem
    with caplog.at_level(logging.WARNING, logger="fmpretrain.featurize"):
        result = featurize(out, src)
    assert "b.extxyz: content replaced" in caplog.text
    after = part_mtimes(out)
    assert result.reused_shards == 2 and result.new_shards == 1
    assert after["shard-000000.json"] == before["shard-000000.json"]
    assert after["shard-000002.json"] == before["shard-000002.json"]
    assert after["shard-000001.json"] != before["shard-000001.json"]
    assert ids(out) == ["a0", "a1", "c0", "c1", "x0", "x1"]
    assert verify_shards(out, inputs=True) == []

    (src / "a.extxyz").touch()  # a new mtime, the same content: nothing is redone
    again = featurize(out, src)
    assert again.new_shards == 0 and part_mtimes(out) == after


def test_removed_file_drops_its_chunks(tmp_path, ray_cluster, caplog):
    src = tmp_path / "src"
    write_folder(
        src,
        {
            "a.extxyz": structures("a", 2),
            "b.extxyz": structures("b", 2, 3.6),
            "c.extxyz": structures("c", 2, 3.7),
        },
    )
    out = tmp_path / "out"
    featurize(out, src)
    (src / "b.extxyz").unlink()
    [problem] = verify_shards(out, inputs=True)
    assert "b.extxyz: removed" in problem
    with caplog.at_level(logging.WARNING, logger="fmpretrain.featurize"):
        result = featurize(out, src)
    assert "b.extxyz: file removed" in caplog.text
    assert result.reused_shards == 1 and result.new_shards == 1  # chunk 1 now holds c
    m = Manifest.load(out)
    assert m.complete and m.n_chunks == 2 and m.n_inputs == 4 and m.n_samples == 4
    assert sorted(s.name for s in m.shards) == ["shard-000000.tar", "shard-000001.tar"]
    assert not (out / "shard-000002.tar").exists()
    assert not (out / "parts" / "shard-000002.json").exists()
    assert ids(out) == ["a0", "a1", "c0", "c1"]
    assert verify_shards(out, inputs=True) == []


def test_min_distance_change_is_refused_naming_it(tmp_path, ray_cluster):
    src = tmp_path / "src"
    write_folder(src, {"a.extxyz": structures("a", 2)})
    featurize(tmp_path / "out", src)
    with pytest.raises(ConfigMismatchError, match=r"min_distance \(0.5 -> 0.8\).*out=DIR"):
        featurize(tmp_path / "out", src, "min_distance=0.8")
    with pytest.raises(ConfigMismatchError, match=r"source.read_options"):
        featurize(tmp_path / "out", src, "source.read_options={format: extxyz}")
    assert featurize(tmp_path / "out", src).new_shards == 0
