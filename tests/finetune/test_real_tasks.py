"""Real offline tasks on the shipped CDVAE data: counts, ids, targets, subsets, no overlap."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest

from fmpretrain.finetune.config import load_finetune_config
from fmpretrain.finetune.tasks import (
    DATASETS_DIR,
    REAL_TASKS,
    load_task,
    real_task_file,
    subsample,
)

pytestmark = pytest.mark.slow  # loads whole real datasets

#: task: (structures, first three ids of the file, target, unit, atoms per cell range)
EXPECTED = {
    "perov_heat": (3787, ["18517", "15400", "3409"], "heat_all", "eV", (5, 5)),
    "carbon_energy": (
        2032,
        ["C-148264-7891-51", "C-130499-1826-45", "C-34635-9264-30"],
        "energy_per_atom",
        "eV/atom",
        (6, 24),
    ),
}

EXPECTED_COUNTS = {"perov_5": 3787, "carbon_24": 2032}


@pytest.fixture(scope="module")
def loaded() -> dict:
    return {name: load_task(name) for name in EXPECTED}


def csv_ids(path: Path) -> list[str]:
    """The material_id column of a shipped file, without parsing the CIFs."""
    csv.field_size_limit(1 << 28)
    with gzip.open(path, "rt", newline="") as handle:
        rows = csv.reader(handle)
        column = next(rows).index("material_id")
        return [row[column] for row in rows if row]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_task_loads_whole(name, loaded):
    count, first_ids, target, unit, (low, high) = EXPECTED[name]
    dataset, spec = loaded[name]
    assert len(dataset) == count and spec.name == name and dataset.name == name
    assert spec.target == target == dataset.target_name and spec.unit == unit
    assert spec.source == "real" and spec.task_type == "regression" and spec.pooling == "mean"
    assert dataset.ids[:3] == first_ids and len(set(dataset.ids)) == count
    assert np.isfinite(dataset.targets).all() and dataset.targets.std() > 0
    sizes = {len(s) for s in dataset.structures}
    assert min(sizes) >= low and max(sizes) <= high
    if name == "carbon_energy":
        assert all(set(s.numbers.tolist()) == {6} for s in dataset.structures)
        assert -155 < dataset.targets.min() < dataset.targets.max() < -154  # eV/atom


def test_shipped_files_are_gzip_and_tasks_do_not_overlap_the_corpus():
    for name in REAL_TASKS:
        file = real_task_file(name)
        assert file.read_bytes()[:2] == b"\x1f\x8b", file  # compressed, detected by content
    assert (DATASETS_DIR / "README.md").is_file()
    for stem, count in (("perov_5", 3785), ("carbon_24", 2030)):
        corpus = DATASETS_DIR / f"{stem}-test.csv.gz"
        with gzip.open(corpus, "rt") as handle:
            assert handle.readline().split(",")[1:3] == ["material_id", "cif"]
        corpus_ids = set(csv_ids(corpus))
        task_ids = set(csv_ids(DATASETS_DIR / f"{stem}-val.csv.gz"))
        assert len(corpus_ids) == count and len(task_ids) == EXPECTED_COUNTS[stem]
        assert not corpus_ids & task_ids, stem


def test_task_size_is_a_seeded_subset_in_file_order(loaded):
    whole, _ = loaded["carbon_energy"]
    small, _ = load_task("carbon_energy", size=50, size_seed=3)
    again = subsample(whole, 50, 3)
    other = subsample(whole, 50, 4)
    assert len(small) == 50 and small.ids == again.ids and small.ids != other.ids
    position = {sid: k for k, sid in enumerate(whole.ids)}
    order = [position[sid] for sid in small.ids]
    assert order == sorted(order)
    np.testing.assert_array_equal(small.targets, whole.targets[order])
    assert subsample(whole, None) is whole and subsample(whole, 10**6) is whole
    with pytest.raises(ValueError, match="task_size must be a positive integer"):
        subsample(whole, 0)


def test_config_keys_and_clear_errors(tmp_path):
    cfg = load_finetune_config(None, [f"out={tmp_path}", "task=perov_heat", "task_size=300"])
    assert cfg.task_size == 300 and cfg.baselines is True
    with pytest.raises(ValueError, match="task_size must be a positive integer or null"):
        load_finetune_config(None, [f"out={tmp_path}", "task_size=-3"])
    with pytest.raises(ValueError, match="uses its shipped data file"):
        load_task("perov_heat", data=real_task_file("carbon_energy"))


def test_second_load_reuses_the_parse_but_hands_out_its_own_lists(loaded):
    first, _ = loaded["perov_heat"]
    again, _ = load_task("perov_heat")
    assert [s.id for s in again.structures] == [s.id for s in first.structures]
    np.testing.assert_array_equal(again.targets, first.targets)
    again.structures.pop()
    again.targets[0] = np.nan
    assert len(first.structures) == EXPECTED["perov_heat"][0]
    assert np.isfinite(first.targets[0])
