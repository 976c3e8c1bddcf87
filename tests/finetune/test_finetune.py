"""Fine-tuning stage: releases, labelled data, the EMT task, folds, training and the benchmark.

A tiny release is written by hand in the layout of ``fmpretrain export`` (no DeepSpeed run).
"""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import logging
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
import yaml

from fmpretrain.data.format import sha256_file
from fmpretrain.finetune import release as release_mod
from fmpretrain.finetune.benchmark import run_benchmark
from fmpretrain.finetune.config import load_finetune_config
from fmpretrain.finetune.data import BadEntriesError, build_graphs, read_labelled
from fmpretrain.finetune.release import ReleaseError, load_release
from fmpretrain.finetune.splits import kfold_splits
from fmpretrain.finetune.tasks import (
    DatasetUnavailableError,
    load_task,
    make_emt_task,
    matbench_file,
)
from fmpretrain.finetune.trainer import build_model, fit, roc_auc
from fmpretrain.io import write_structures
from fmpretrain.models import ModelConfig, build_fingerprint_model
from fmpretrain.structures import Structure
from fmpretrain.train import export as export_format

REPO = Path(__file__).parents[2]
DEMO = REPO / "configs" / "finetune" / "demo.yaml"
TINY = ModelConfig(hidden_channels=32, num_layers=2, num_rbf=16, num_heads=4, cutoff=4.0)
FAST = [
    "max_epochs=3",
    "patience=3",
    "lr=1e-3",
    "max_atoms_per_batch=128",
    "device=cpu",
]


def write_release(out: Path, cfg: ModelConfig = TINY, seed: int = 123, **config_changes) -> Path:
    """A release in the layout of ``export_release``: safetensors + config.yaml + SHA256SUMS."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = build_fingerprint_model(cfg, out_dim=8)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / export_format.WEIGHTS), metadata={"format": "fmpretrain"})
    config = {
        "format_version": export_format.RELEASE_FORMAT,
        "kind": "fingerprint-pretrained",
        "model": cfg.to_dict(),
        "descriptor": {"name": "ead", "dim": 8, "hash": "0" * 16},
        "normalization": {"mean": [0.0] * 8, "std": [1.0] * 8},
        "training": {"checkpoint": "global_step1"},
    }
    for key, value in config_changes.items():
        config[key] = value
    (out / export_format.CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    write_checksums(out)
    return out


def write_checksums(out: Path) -> None:
    names = (export_format.WEIGHTS, export_format.CONFIG)
    lines = [f"{sha256_file(out / n)}  {n}" for n in names]
    (out / export_format.CHECKSUMS).write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return write_release(tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def config(tmp_path: Path, cache: Path, *overrides: str):
    return load_finetune_config(
        DEMO, [f"out={tmp_path / 'out'}", f"cache_dir={cache}", *FAST, *overrides]
    )


def pmg_structure(numbers, positions, a=4.0) -> dict:
    return Structure(numbers, positions, np.eye(3) * a, True, "x").to_pymatgen_dict()


# ---------------------------------------------------------------------------- release format
def test_release_names_match_the_export_format():
    assert release_mod.WEIGHTS == export_format.WEIGHTS
    assert release_mod.CONFIG == export_format.CONFIG
    assert release_mod.CHECKSUMS == export_format.CHECKSUMS
    assert export_format.RELEASE_FORMAT in release_mod.SUPPORTED_FORMATS


def test_release_loads_and_refuses_tampering(tmp_path, release):
    loaded = load_release(release)
    assert loaded.model_config == TINY and loaded.cutoff == TINY.cutoff

    bad = write_release(tmp_path / "tampered")
    data = bytearray((bad / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (bad / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ReleaseError, match=r"sha256 mismatch for model\.safetensors"):
        load_release(bad)

    unknown = write_release(tmp_path / "unknown", model={**TINY.to_dict(), "fancy_gate": True})
    with pytest.raises(ReleaseError, match=r"model key\(s\) \['fancy_gate'\]"):
        load_release(unknown)

    future = write_release(tmp_path / "future", format_version=2)
    with pytest.raises(ReleaseError, match=r"format_version 2 is not supported"):
        load_release(future)

    nosums = write_release(tmp_path / "nosums")
    (nosums / "SHA256SUMS").unlink()
    with pytest.raises(ReleaseError, match="SHA256SUMS is missing"):
        load_release(nosums)

    # a config that passes the checksums but describes another architecture
    other = write_release(tmp_path / "other")
    cfg = yaml.safe_load((other / "config.yaml").read_text())
    cfg["model"]["hidden_channels"] = 64
    cfg["model"]["num_heads"] = 4
    (other / "config.yaml").write_text(yaml.safe_dump(cfg))
    write_checksums(other)
    with pytest.raises(ReleaseError, match="do not fit the model"):
        load_release(other)


def test_pretrained_weights_are_loaded_and_frozen_backbone_stays(tmp_path, cache, release):
    rel = load_release(release)
    pretrained = build_model(rel.model_config, release=rel, seed=0)
    scratch = build_model(rel.model_config, seed=0)
    expected = rel.backbone_state_dict()
    for name, tensor in pretrained.backbone.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert any(not torch.equal(t, expected[k]) for k, t in scratch.backbone.state_dict().items()), (
        "the scratch backbone must be a fresh initialisation"
    )
    for k, t in pretrained.head.state_dict().items():  # same seed: same head initialisation
        assert torch.equal(t, scratch.head.state_dict()[k])

    dataset, _ = load_task("emt_energy", n=24, seed=1, cache=cache)
    graphs = build_graphs(dataset, rel.cutoff)
    head_before = {k: v.clone() for k, v in pretrained.head.state_dict().items()}
    cfg = config(tmp_path, cache, "freeze_backbone=true", "max_epochs=2")
    result = fit(pretrained, graphs[:18], graphs[18:], cfg, seed=0)
    for name, tensor in pretrained.backbone.state_dict().items():
        assert torch.equal(tensor, expected[name]), f"frozen backbone changed: {name}"
    assert any(not torch.equal(v, head_before[k]) for k, v in pretrained.head.state_dict().items())
    head_params = sum(p.numel() for p in pretrained.head.parameters())
    assert result.trainable_parameters == head_params


# ---------------------------------------------------------------------------- benchmark
@pytest.mark.slow  # a whole benchmark run, folds and resume
def test_benchmark_pretrained_vs_scratch(tmp_path, cache, release, caplog):
    caplog.set_level(logging.INFO)
    cfg = config(tmp_path, cache, f"pretrained={release}", "emt.n=100", "wandb.mode=offline")
    results = run_benchmark(cfg)
    out = Path(cfg.out)
    for name in ("results.json", "results.md", "results.png", "metrics.jsonl"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert list((out / "wandb").glob("offline-run-*"))
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "results.json").read_text())
    assert saved["protocol"]["random_state"] == 18012019 and saved["protocol"]["folds_run"] == [0]
    (task,) = saved["tasks"]
    assert task["task"] == "emt_energy" and task["n_structures"] == 100 and task["folds"] == [0]
    pre, scratch = task["pretrained"]["mean"], task["scratch"]["mean"]
    assert 0 < pre < 1 and 0 < scratch < 1  # eV/atom
    assert task["improvement_pct"] == pytest.approx((scratch - pre) / scratch * 100)
    assert results["tasks"][0]["improvement_pct"] == task["improvement_pct"]
    fold = json.loads((out / "emt_energy" / "fold_0.json").read_text())
    assert fold["n_test"] == 20 and fold["n_train"] + fold["n_val"] == 80
    assert len(fold["modes"]["pretrained"]["predictions"]) == 20
    table = (out / "results.md").read_text()
    assert "| emt_energy | MAE (eV/atom) | 100 | 1 |" in table
    assert f"{task['improvement_pct']:+.1f}%" in table
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert any("emt_energy/fold0/pretrained/val_mae" in line for line in lines)

    # a re-run with the same configuration reuses the finished fold
    caplog.clear()
    again = run_benchmark(config(tmp_path, cache, f"pretrained={release}", "emt.n=100",
                                 "wandb.mode=disabled"))  # fmt: skip
    assert "reusing" in caplog.text
    assert again["tasks"][0]["pretrained"] == task["pretrained"]


def test_cli_finetune_and_folder_dataset(tmp_path, cache, release):
    from fmpretrain.cli import main

    dataset, _ = load_task("emt_total_energy", n=20, seed=2, cache=cache)
    folder = tmp_path / "folder"
    folder.mkdir()
    rows = ["id,target"]
    for s in dataset.structures:
        write_structures(folder / f"{s.id}.extxyz", [s])
        rows.append(f"{s.id},{s.properties['energy']}")
    (folder / "targets.csv").write_text("\n".join(rows) + "\n")
    read = read_labelled(folder)
    assert read.ids == dataset.ids
    np.testing.assert_allclose(read.targets, dataset.targets)

    out = tmp_path / "ft"
    args = ["finetune", "--config", str(DEMO), "--data", str(folder), f"out={out}"]
    args += [f"pretrained={release}", f"cache_dir={cache}", "pooling=sum", "wandb.mode=disabled"]
    assert main([*args, *FAST, "max_epochs=2"]) == 0
    report = json.loads((out / "finetune.json").read_text())
    (task,) = report["tasks"]
    assert task["task"] == "folder" and task["pooling"] == "sum"
    assert task["pretrained"]["mean"] > 0 and task["scratch"]["mean"] > 0
    for mode in ("pretrained", "scratch"):
        assert (out / "folder" / mode / "model.safetensors").is_file()


# ---------------------------------------------------------------------------- folds
def test_kfold_gives_matbench_folds():
    """MatBench's published protocol: KFold(5, shuffle, random_state=18012019); the folds
    partition the entries, and fold 0 of 10 entries is the one MatBench's seed gives."""
    splits = kfold_splits(10, 5, 18012019)
    tests = np.concatenate([test for _, test in splits])
    np.testing.assert_array_equal(np.sort(tests), np.arange(10))
    for train, test in splits:
        assert len(test) == 2 and not set(train) & set(test)
        assert len(train) + len(test) == 10
    order = np.arange(10)
    np.random.RandomState(18012019).shuffle(order)  # scikit-learn's documented shuffle
    np.testing.assert_array_equal(splits[0][1], np.sort(order[:2]))
    with pytest.raises(ValueError, match="cannot make 5 folds of 3"):
        kfold_splits(3)


def test_roc_auc_against_pair_counting():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.random(60), 1)  # ties count one half
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = [(p > q) + 0.5 * (p == q) for p in pos for q in neg]
    assert roc_auc(labels, scores) == pytest.approx(np.mean(pairs))
    assert np.isnan(roc_auc(np.ones(4), np.arange(4.0)))


# ---------------------------------------------------------------------------- bad input
def test_bad_matbench_entries_are_named(tmp_path):
    good = pmg_structure([29], [[0, 0, 0]])
    close = pmg_structure([29, 29], [[0, 0, 0], [0.1, 0, 0]])
    table = {
        "index": ["mb-1", "mb-2", "mb-3", "mb-4", "mb-5", "mb-6"],
        "columns": ["structure", "e_form"],
        "data": [[good, 1.0], [good, None], [good, "abc"], [close, 2.0], [good, 3.5],
                 [good, float("nan")]],
    }  # fmt: skip
    path = tmp_path / "matbench_bad.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump(table, f)
    with pytest.raises(BadEntriesError) as info:
        load_task(None, data=path)
    reasons = dict(info.value.entries)
    assert set(reasons) == {"mb-2", "mb-3", "mb-4", "mb-6"}
    assert "missing target 'e_form'" in reasons["mb-2"]
    assert "'abc' is not a number" in reasons["mb-3"]
    assert "invalid structure" in reasons["mb-4"] and "closer than" in reasons["mb-4"]
    assert "not finite" in reasons["mb-6"]
    message = str(info.value)
    assert "4 bad entries" in message and all(k in message for k in reasons)


def test_matdeeplearn_list_and_classification(tmp_path):
    structures = [
        Structure([13], [[0, 0, 0]], np.eye(3) * (3.0 + 0.1 * i), True, f"s{i}", {"y": i % 2})
        for i in range(6)
    ]
    path = tmp_path / "mdl.json"
    write_structures(path, structures, format="matdeeplearn")
    reg = read_labelled(path)
    assert reg.target_name == "y" and reg.ids == [f"s{i}" for i in range(6)]
    cls = read_labelled(path, task_type="classification")
    assert cls.n_classes == 2 and cls.targets.tolist() == [0, 1, 0, 1, 0, 1]


# ---------------------------------------------------------------------------- MatBench download
class _Counting(http.server.SimpleHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self):
        type(self).hits.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


def test_matbench_download_through_local_server(tmp_path, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    served = tmp_path / "served"
    served.mkdir()
    structures = [
        Structure([29], [[0, 0, 0]], np.eye(3) * (2.5 + 0.05 * i), True, f"mb-tiny-{i}",
                  {"gap": 0.1 * i})
        for i in range(7)
    ]  # fmt: skip
    write_structures(served / "matbench_tiny.json.gz", structures)
    _Counting.hits = []
    handler = functools.partial(_Counting, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        cache = tmp_path / "cache"
        first = matbench_file("matbench_tiny", cache=cache, url_base=base)
        assert first == cache / "matbench" / "matbench_tiny.json.gz" and first.is_file()
        assert _Counting.hits == ["/matbench_tiny.json.gz"]
        dataset, spec = load_task("matbench_tiny", cache=cache, url_base=base)
        assert _Counting.hits == ["/matbench_tiny.json.gz"], "second use must hit the cache"
        assert len(dataset) == 7 and spec.target == "gap" and dataset.ids[0] == "mb-tiny-0"
        with pytest.raises(DatasetUnavailableError, match="--data"):
            matbench_file("matbench_absent", cache=cache, url_base=base)
        assert not list((cache / "matbench").glob(".download-*"))
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(ValueError, match="compositions"):
        load_task("matbench_steels", cache=tmp_path / "cache")


# ---------------------------------------------------------------------------- EMT task
def test_emt_task_is_deterministic_cached_and_physical(tmp_path):
    from ase.calculators.emt import EMT

    first = make_emt_task(40, seed=5, path=tmp_path / "a")
    stamp = first.stat().st_mtime_ns
    assert make_emt_task(40, seed=5, path=tmp_path / "a") == first
    assert first.stat().st_mtime_ns == stamp, "a second call must reuse the cached file"
    other = make_emt_task(40, seed=5, path=tmp_path / "b")
    a, b = (
        read_labelled(first, target="energy_per_atom"),
        read_labelled(other, target="energy_per_atom"),
    )
    assert a.ids == b.ids
    np.testing.assert_array_equal(a.targets, b.targets)
    for s, t in zip(a.structures, b.structures, strict=True):
        np.testing.assert_array_equal(s.positions, t.positions)
    c = read_labelled(make_emt_task(40, seed=6, path=tmp_path / "a"), target="energy_per_atom")
    assert not np.array_equal(a.targets, c.targets)

    assert np.isfinite(a.targets).all() and a.targets.std() > 0.01
    assert set(np.unique(np.concatenate([s.numbers for s in a.structures]))) <= {
        13,
        28,
        29,
        46,
        47,
        78,
        79,
    }
    s = a.structures[0]
    atoms = s.to_ase()
    atoms.calc = EMT()
    assert atoms.get_potential_energy() / len(s) == pytest.approx(a.targets[0], abs=1e-9)
    energies = []
    for scale in (0.92, 0.96, 1.0, 1.04, 1.08):  # an equation of state: convex in the strain
        strained = atoms.copy()
        strained.set_cell(atoms.cell * scale, scale_atoms=True)
        strained.calc = EMT()
        energies.append(strained.get_potential_energy() / len(s))
    assert np.ptp(energies) > 0.05
    assert energies[0] > min(energies) and energies[-1] > min(energies)


def test_evaluation_batches_predict_what_training_sized_batches_do(tmp_path, cache, release):
    from fmpretrain.finetune.data import batches
    from fmpretrain.finetune.trainer import (
        EVAL_BATCH_FACTOR,
        TargetScaler,
        evaluate,
        evaluation_batches,
    )

    rel = load_release(release)
    model = build_model(rel.model_config, release=rel, seed=0)
    dataset, _ = load_task("emt_energy", n=24, seed=1, cache=cache)
    graphs = build_graphs(dataset, rel.cutoff)
    cfg = config(tmp_path, cache, "max_atoms_per_batch=32")
    large = evaluation_batches(graphs, cfg)
    small = batches(graphs, cfg.max_atoms_per_batch)
    assert len(large) < len(small)
    assert all(b.num_nodes <= EVAL_BATCH_FACTOR * 32 for b in large if b.num_graphs > 1)
    y = np.array([float(g.y) for g in graphs])
    natoms = np.array([g.num_nodes for g in graphs])
    scaler = TargetScaler.fit(y, natoms, per_atom=False)
    a = evaluate(model, large, task_type="regression", scaler=scaler)
    b = evaluate(model, small, task_type="regression", scaler=scaler)
    np.testing.assert_array_equal(a[2], b[2])  # same graphs, same order
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-6)
    assert a[0]["mae"] == pytest.approx(b[0]["mae"], rel=1e-5)


def test_a_model_setting_with_a_release_is_refused_before_training(tmp_path, cache, release):
    from fmpretrain.finetune.prepare import prepare

    rel = load_release(release)
    cfg = config(tmp_path, cache, f"pretrained={release}", "model.num_layers=3")
    with pytest.raises(ValueError, match="only apply to from-scratch runs"):
        prepare(cfg, "emt_energy", rel)
    scratch = config(tmp_path, cache, "model.num_layers=3", "model.hidden_channels=32")
    assert prepare(scratch, "emt_energy", None).model_config == ModelConfig.from_name(
        "small", {"num_layers": 3, "hidden_channels": 32}
    )


def test_parameter_groups_decay_the_lr_with_depth_and_merge_without_decay():
    from fmpretrain.finetune.trainer import parameter_groups

    model = build_model(TINY, seed=0)
    n_params = sum(p.numel() for p in model.parameters())
    decayed = parameter_groups(model, 1e-3, layer_decay=0.5)
    depths = [g["depth"] for g in decayed]
    assert depths == list(range(TINY.num_layers + 2))  # head, layers top-down, embeddings
    for g in decayed:
        assert g["lr"] == pytest.approx(1e-3 * 0.5 ** g["depth"])
    assert sum(p.numel() for g in decayed for p in g["params"]) == n_params
    head = {id(p) for p in model.head.parameters()}
    assert {id(p) for p in decayed[0]["params"]} == head
    (single,) = parameter_groups(model, 1e-3)
    assert single["lr"] == 1e-3 and sum(p.numel() for p in single["params"]) == n_params
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    (frozen,) = parameter_groups(model, 1e-3)
    assert {id(p) for p in frozen["params"]} == head
