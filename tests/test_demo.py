"""`fmpretrain demo` end to end at tiny sizes: same code path as the README's command."""

from __future__ import annotations

import json

import pytest

from fmpretrain.cli import main

pytestmark = pytest.mark.slow


def test_demo_runs_end_to_end_and_reuses_finished_stages(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick", "--wandb", "offline"]) == 0
    first = capsys.readouterr().out
    for stage in ("[1/4] featurize", "[2/4] pretrain", "[3/4] export", "[4/4] finetune"):
        assert stage in first
    assert (out / "shards" / "manifest.json").exists()
    assert (out / "pretrain" / "checkpoints" / "latest").exists()
    assert (out / "release" / "model.safetensors").exists()
    results = json.loads((out / "finetune" / "results.json").read_text())
    assert (out / "finetune" / "results.png").stat().st_size > 1000
    manifest = json.loads((out / "shards" / "manifest.json").read_text())
    assert set(manifest["counts"]["sources"]) == {"carbon_24-test", "generated"}
    assert manifest["counts"]["sources"]["carbon_24-test"]["accepted"] > 1000  # real structures
    assert "perov_heat: test MAE" in first
    for row in ("| pre-trained here", "| from scratch", "| GBM", "| mean predictor"):
        assert row in first
    [task] = results["tasks"]
    assert task["task"] == "perov_heat" and task["gbm"] and task["mean"]
    assert list((out / "pretrain" / "wandb").glob("offline-run-*"))
    assert results["tasks"]

    assert main(["demo", "--out", str(out), "--quick", "--wandb", "offline"]) == 0
    captured = capsys.readouterr()
    second = captured.out + captured.err  # stage lines on stdout, progress logs on stderr
    for stage in ("featurize", "pretrain", "export", "finetune"):  # no stage recomputed
        assert f"reusing: {stage} already finished" in second
