"""Fine-tuning writes usable fine-tuned releases: the benchmark's best (or every) fold and the
``finetune`` command's models open with ``fmpretrain.load`` and reproduce the recorded test
predictions in the target's units."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import fmpretrain
from fmpretrain import release_format as rf
from fmpretrain.finetune.benchmark import run_benchmark, run_finetune
from fmpretrain.finetune.config import FinetuneConfig, load_finetune_config
from fmpretrain.finetune.release import FoldReleases
from fmpretrain.finetune.tasks import load_task
from tests.releases import write_pretrained

EMT = ["task=emt_energy", "emt.n=30", "emt.max_atoms=8"]
FAST = ["max_epochs=2", "patience=2", "lr=1e-3", "max_atoms_per_batch=128", "device=cpu"]
#: GNNs only: the non-GNN baselines (where the benchmark has them) make no release.
GNN_ONLY = ["baselines=false"] if "baselines" in FinetuneConfig.__dataclass_fields__ else []


def config(tmp_path: Path, base: Path, *overrides: str):
    return load_finetune_config(
        None,
        [
            f"out={tmp_path / 'out'}",
            f"cache_dir={tmp_path / 'cache'}",
            f"pretrained={base}",
            "wandb.mode=disabled",
            *EMT,
            *FAST,
            *overrides,
        ],
    )


def structures_by_id(tmp_path: Path) -> dict:
    dataset, _ = load_task("emt_energy", n=30, max_atoms=8, cache=tmp_path / "cache")
    return {s.id: s for s in dataset.structures}


def check_release(path: Path, fold_result: dict, mode: str, by_id: dict) -> None:
    model = fmpretrain.load(path, device="cpu")
    assert model.is_finetuned and model.target == "energy_per_atom" and model.unit == "eV/atom"
    recorded = fold_result["modes"][mode]
    predictions = model.predict([by_id[i] for i in fold_result["test_ids"]])
    np.testing.assert_allclose(predictions, recorded["predictions"], rtol=1e-4, atol=1e-5)
    assert model.task["target_scaling"] == recorded["scaler"]


def test_benchmark_releases_the_best_fold(tmp_path):
    base = write_pretrained(tmp_path / "base")
    cfg = config(tmp_path, base, "folds=[0,1]", "scratch=false", *GNN_ONLY)
    run_benchmark(cfg)
    task_dir = tmp_path / "out" / "emt_energy"
    folds = [json.loads((task_dir / f"fold_{k}.json").read_text()) for k in (0, 1)]
    best = min(folds, key=lambda r: (r["modes"]["pretrained"]["test"]["mae"], r["fold"]))
    release = task_dir / "release" / "pretrained"
    config_ = rf.verify_release(release).config
    assert config_["results"]["fold"] == best["fold"]
    assert config_["descriptor"]["name"] == "ead"  # the base release's, kept
    assert sorted(p.name for p in (task_dir / "release").iterdir()) == ["pretrained"]
    by_id = structures_by_id(tmp_path)
    check_release(release, best, "pretrained", by_id)

    # a re-run reuses both folds: the best fold's release stays as it was
    before = (release / rf.WEIGHTS).read_bytes()
    run_benchmark(cfg)
    assert (release / rf.WEIGHTS).read_bytes() == before


def test_benchmark_releases_every_fold_or_none(tmp_path):
    base = write_pretrained(tmp_path / "base")
    cfg = config(tmp_path, base, "folds=[1]", "scratch=false", *GNN_ONLY)
    run_benchmark(cfg, releases="all")
    task_dir = tmp_path / "out" / "emt_energy"
    fold = json.loads((task_dir / "fold_1.json").read_text())
    check_release(task_dir / "release" / "fold_1" / "pretrained", fold, "pretrained",
                  structures_by_id(tmp_path))  # fmt: skip
    with pytest.raises(ValueError, match="releases must be one of"):
        FoldReleases(task_dir, "some", None, None)


def test_finetune_writes_loadable_releases(tmp_path):
    base = write_pretrained(tmp_path / "base")
    report = run_finetune(config(tmp_path, base))
    task = report["tasks"][0]
    by_id = structures_by_id(tmp_path)
    for mode in ("pretrained", "scratch"):
        path = tmp_path / "out" / "emt_energy" / mode
        check_release(path, task["split"], mode, by_id)
        assert (path / rf.MODEL_CARD).is_file()
    assert rf.read_config(tmp_path / "out" / "emt_energy" / "scratch")["descriptor"] is None
