"""Benchmark baselines: the dummy mean, pooled fingerprints + gradient boosting, four-row tables."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from fmpretrain.data.batching import derive_seed
from fmpretrain.descriptors import get_descriptor
from fmpretrain.finetune.baselines import (
    MAX_Z,
    baseline_descriptor,
    composition_features,
    fit_gbm,
    fit_mean,
    pooled_features,
)
from fmpretrain.finetune.benchmark import run_benchmark
from fmpretrain.finetune.config import load_finetune_config
from fmpretrain.finetune.report import markdown_table
from fmpretrain.finetune.splits import kfold_splits, train_val_split
from fmpretrain.finetune.tasks import load_task
from fmpretrain.structures import Structure

pytest.importorskip("sklearn")

REPO = Path(__file__).parents[2]
DEMO = REPO / "configs" / "finetune" / "demo.yaml"
TINY_SCRATCH = [
    "model={hidden_channels: 32, num_layers: 2, num_rbf: 16, num_heads: 4, cutoff: 4.0}",
    "max_epochs=2",
    "patience=2",
    "lr=1e-3",
    "max_atoms_per_batch=128",
    "device=cpu",
    "wandb.mode=disabled",
]


def rock_salt(a: float = 5.6) -> Structure:
    positions = np.array([[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0, 0, 0.5]]) * a
    return Structure(np.array([11, 17, 11, 17]), positions, np.eye(3) * a, True, "nacl")


def split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2 : 3 * n // 4]), np.sort(perm[3 * n // 4 :])


def test_mean_baseline_predicts_the_training_mean_exactly():
    targets = np.random.default_rng(1).normal(3.0, 2.0, size=40)
    train, val, test = split(40)
    result = fit_mean(targets, train, val, test)
    expected = float(np.mean(targets[train]))
    assert result["predictions"] == [expected] * len(test)
    assert result["test"]["mae"] == pytest.approx(np.abs(targets[test] - expected).mean())
    assert result["val"]["mae"] == pytest.approx(np.abs(targets[val] - expected).mean())


def test_mean_baseline_classification_is_the_most_frequent_class():
    labels = np.array([0, 1, 1, 2, 1, 0, 1, 1, 2, 1, 0, 1])
    train, val, test = np.arange(8), np.array([8, 9]), np.array([10, 11])
    result = fit_mean(labels, train, val, test, task_type="classification", n_classes=3)
    probs = np.asarray(result["predictions"])
    assert probs.shape == (2, 3) and (probs.argmax(-1) == 1).all()
    assert result["test"]["error"] == pytest.approx(0.5)  # labels 0 and 1


def test_gbm_beats_the_mean_on_a_learnable_target():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(400, 5))
    y = np.sin(2 * x[:, 0]) + x[:, 1] ** 2 + 0.05 * rng.normal(size=400)
    train, val, test = split(400)
    gbm = fit_gbm(x, y, train, val, test, seed=0)
    mean = fit_mean(y, train, val, test)
    assert gbm["test"]["mae"] < 0.4 * mean["test"]["mae"]
    assert 1 <= gbm["best_iteration"] <= gbm["iterations"]
    again = fit_gbm(x, y, train, val, test, seed=0)  # fixed seed: reproducible
    assert again["predictions"] == gbm["predictions"]


def test_gbm_classifier_beats_the_most_frequent_class():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 3))
    labels = (x[:, 0] + 0.5 * x[:, 1] > 0.3).astype(np.int64) + (x[:, 2] > 1.0)
    train, val, test = split(300, seed=1)
    gbm = fit_gbm(x, labels, train, val, test, task_type="classification", n_classes=3, seed=0)
    mean = fit_mean(labels, train, val, test, task_type="classification", n_classes=3)
    probs = np.asarray(gbm["predictions"])
    assert probs.shape == (len(test), 3)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    assert gbm["test"]["error"] < 0.5 * mean["test"]["error"]


def test_pooled_features_are_mean_std_and_element_fractions(tmp_path):
    nacl = rock_salt()
    fractions = composition_features(nacl)
    assert fractions.shape == (MAX_Z,)
    assert fractions[10] == 0.5 and fractions[16] == 0.5 and fractions.sum() == pytest.approx(1)

    descriptor = get_descriptor("ead", l_max=1, r_s=(1.0, 2.5))
    per_atom = descriptor(nacl).numpy()
    cache = tmp_path / "features.npz"
    features = pooled_features([nacl], descriptor, cache=cache)
    assert features.shape == (1, 2 * descriptor.dim + MAX_Z)
    np.testing.assert_allclose(features[0, : descriptor.dim], per_atom.mean(0))
    np.testing.assert_allclose(features[0, descriptor.dim : 2 * descriptor.dim], per_atom.std(0))
    np.testing.assert_array_equal(features[0, 2 * descriptor.dim :], fractions)
    assert cache.is_file()
    np.testing.assert_array_equal(pooled_features([nacl], descriptor, cache=cache), features)
    # another structure (or descriptor) must not reuse the cached matrix
    bigger = pooled_features([rock_salt(6.0)], descriptor, cache=cache)
    assert not np.allclose(bigger, features)


def test_baseline_descriptor_follows_the_release():
    assert baseline_descriptor(None).name == "ead"
    chosen = baseline_descriptor({"name": "ead", "params": {"l_max": 1, "r_s": [1.0, 2.0]}})
    assert chosen.dim == 2 * len(chosen.params.alpha) * 2


@pytest.mark.slow  # a whole benchmark run, folds and resume
def test_benchmark_has_four_models_and_resumes_baselines(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    cache = tmp_path / "cache"
    overrides = [f"out={tmp_path / 'out'}", f"cache_dir={cache}", "emt.n=40", *TINY_SCRATCH]
    cfg = load_finetune_config(DEMO, [*overrides, "wandb.mode=offline"])
    results = run_benchmark(cfg)
    out = Path(cfg.out)
    # one W&B run per task/fold/model (stable ids), plus the summary run
    ids = {d.name.rsplit("-", 1)[-1] for d in (out / "wandb").glob("offline-run-*")}
    expected = {
        hashlib.sha1(f"{out.resolve()}:{prefix}".encode()).hexdigest()[:16]
        for prefix in ("emt_energy/fold0/scratch", "benchmark/summary")
    }
    assert ids == expected
    for kind in ("parity", "curves", "folds"):
        assert (out / "plots" / f"emt_energy_{kind}.png").stat().st_size > 5000, kind
    (task,) = results["tasks"]
    for model in ("scratch", "gbm", "mean"):
        assert task[model]["mean"] > 0, model
    assert task["pretrained"] is None  # no release given
    fold = json.loads((out / "emt_energy" / "fold_0.json").read_text())
    assert set(fold["modes"]) == {"scratch", "gbm", "mean"}
    assert len(fold["modes"]["scratch"]["history"]) == fold["modes"]["scratch"]["epochs"]

    # the mean baseline: the mean of the GNN's training split of fold 0 (not of train + val)
    dataset, _ = load_task("emt_energy", n=40, cache=cache)
    train_part, test = kfold_splits(40)[0]
    train, val = train_val_split(train_part, cfg.val_fraction, derive_seed(cfg.seed, 0))
    assert fold["test_ids"] == [dataset.ids[i] for i in test]
    assert (fold["n_train"], fold["n_val"]) == (len(train), len(val))
    with open(out / "predictions" / "emt_energy_fold0_mean.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == fold["test_ids"]
    assert fold["modes"]["mean"]["predictions"] == [float(dataset.targets[train].mean())] * 8
    assert float(rows[0]["prediction"]) == float(dataset.targets[train].mean())
    assert float(rows[0]["prediction"]) != float(dataset.targets[train_part].mean())

    table = (out / "results.md").read_text()
    assert "| Pre-trained | Scratch | GBM | Mean | Improvement |" in table
    assert f"{task['gbm']['mean']:.4g}" in table and f"{task['mean']['mean']:.4g}" in table
    for model in ("scratch", "gbm", "mean"):
        assert (out / "predictions" / f"emt_energy_fold0_{model}.csv").is_file()
    saved = json.loads((out / "results.json").read_text())
    assert saved["tasks"][0]["gbm"] == task["gbm"]

    # a results file without baselines (older run): they are added, the GNN is not retrained
    del fold["modes"]["gbm"], fold["modes"]["mean"], fold["baselines_hash"]
    (out / "emt_energy" / "fold_0.json").write_text(json.dumps(fold))
    caplog.clear()
    again = run_benchmark(load_finetune_config(DEMO, overrides))
    assert "reusing" in caplog.text
    assert again["tasks"][0]["scratch"] == task["scratch"]
    assert again["tasks"][0]["gbm"] == task["gbm"] and again["tasks"][0]["mean"] == task["mean"]
    refreshed = json.loads((out / "emt_energy" / "fold_0.json").read_text())
    assert set(refreshed["modes"]) == {"scratch", "gbm", "mean"}

    # baselines=false: the GNN rows only
    without = run_benchmark(load_finetune_config(DEMO, [*overrides, "baselines=false"]))
    assert without["tasks"][0]["gbm"] is None and without["tasks"][0]["mean"] is None


def test_markdown_table_shows_all_four_models():
    stats = {"mean": 0.5, "std": 0.1, "per_fold": [0.5]}
    summary = {
        "task": "t", "metric": "mae", "unit": "eV", "n_structures": 10, "folds": [0],
        "pretrained": {**stats, "mean": 0.2}, "scratch": {**stats, "mean": 0.25},
        "gbm": {**stats, "mean": 0.3}, "mean": {**stats, "mean": 0.9},
        "improvement_pct": 20.0,
    }  # fmt: skip
    table = markdown_table([summary])
    row = next(line for line in table.splitlines() if line.startswith("| t |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["t", "MAE (eV)", "10", "1", "0.2 ± 0.1", "0.25 ± 0.1", "0.3 ± 0.1",
                     "0.9 ± 0.1", "+20.0%"]  # fmt: skip
