"""Pre-training on real shards with a real DeepSpeed engine on CPU (gloo)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from fmpretrain.data.manifest import Manifest
from fmpretrain.train.config import load_pretrain_config
from fmpretrain.train.export import export_release
from fmpretrain.train.trainer import pretrain

pytestmark = pytest.mark.slow
REPO = Path(__file__).parents[2]
DEMO = REPO / "configs" / "pretrain" / "demo.yaml"
TINY = [
    "model={hidden_channels: 32, num_layers: 2, num_rbf: 16, num_heads: 4}",
    "max_atoms_per_batch=96",
    "shuffle_buffer=16",
    "warmup_steps=3",
    "log_every=2",
]


def config(data: Path, out: Path, *overrides: str):
    return load_pretrain_config(
        DEMO, [f"data={data}", f"out={out}", "wandb.mode=disabled", *TINY, *overrides]
    )


def torchrun(data: Path, out: Path, *overrides: str, nproc: int = 2) -> subprocess.CompletedProcess:
    args = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        "-m",
        "fmpretrain.train",
        "--config",
        str(DEMO),
        "--no-progress",
        f"data={data}",
        f"out={out}",
        "wandb.mode=disabled",
        *TINY,
        *overrides,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def released(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def assert_every_sample_once_per_epoch(shards: Path, out: Path, ranks: int = 2) -> None:
    """Across the ranks' sample audits, every completed epoch trained each training sample
    (all shards but the last, val_shards=1) exactly once."""
    manifest = Manifest.load(shards)
    train_shards = sorted(manifest.shards, key=lambda s: s.index)[:-1]
    expected = sorted(s.key for shard in train_shards for s in _read(shards / shard.name))
    seen: dict[int, list[str]] = {}
    for rank in range(ranks):
        for line in (out / "samples" / f"rank{rank}.jsonl").open():
            record = json.loads(line)
            seen.setdefault(record["epoch"], []).extend(record["keys"])
    completed = [e for e in sorted(seen) if e < max(seen)]  # the last epoch may be partial
    assert completed, "the run should complete at least one epoch"
    for epoch in completed:
        assert sorted(seen[epoch]) == expected, f"epoch {epoch} is not exactly-once"


def assert_same_weights(a: dict, b: dict, atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=atol, msg=key)


def test_two_ranks_two_workers_see_every_sample_once_and_learn(shards, tmp_path):
    out = tmp_path / "run"
    done = torchrun(
        shards,
        out,
        "max_steps=24",
        "num_workers=2",
        "audit_samples=true",
        "eval_every=12",
        "checkpoint_every=12",
    )
    assert done.returncode == 0, done.stderr[-4000:]

    assert_every_sample_once_per_epoch(shards, out)

    records = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert any("val/loss" in r for r in records)


def test_resumed_run_matches_uninterrupted_run(shards, tmp_path):
    common = ("max_steps=14", "checkpoint_every=100", "eval_every=100")
    stopped = pretrain(config(shards, tmp_path / "a", *common, "stop_after=5"), progress=False)
    assert stopped.status == "stopped" and stopped.step == 5
    resumed = pretrain(config(shards, tmp_path / "a", *common), progress=False)
    assert resumed.resumed_from == 5 and resumed.status == "finished" and resumed.step == 14
    straight = pretrain(config(shards, tmp_path / "b", *common), progress=False)
    assert straight.resumed_from is None and straight.step == 14

    a = released(export_release(tmp_path / "a", tmp_path / "release-a"))
    b = released(export_release(tmp_path / "b", tmp_path / "release-b"))
    assert_same_weights(a, b, atol=1e-6)


def test_two_ranks_resume_after_one_rank_used_up_its_epoch_share(shards, tmp_path):
    """Resuming from a checkpoint taken when one rank's share of epoch 0 is used up (it pads
    with weight 0 while the other rank still trains) trains on the samples, in the steps, and to
    the weights of an uninterrupted run, into the next epoch."""
    common = ("max_steps=12", "checkpoint_every=100", "eval_every=100", "audit_samples=true")
    done = torchrun(shards, tmp_path / "straight", *common)
    assert done.returncode == 0, done.stderr[-4000:]
    straight = [audit(tmp_path / "straight", rank) for rank in (0, 1)]
    last = [max(r["step"] for r in records if r["epoch"] == 0) for records in straight]
    assert min(last) < max(last) < 11, f"the ranks' shares of epoch 0 should differ: {last}"
    stop = max(last)  # the longer share has one batch left, the shorter one is used up

    out = tmp_path / "resumed"
    done = torchrun(shards, out, *common, f"stop_after={stop}")
    # a rank exits with 3 (stopped) and torchrun then ends the other: only the checkpoint counts
    assert "exitcode  : 3" in done.stderr, done.stderr[-4000:]
    assert (out / "checkpoints" / f"step{stop:08d}" / "SHA256SUMS").is_file()
    done = torchrun(shards, out, *common)
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"resuming from step {stop}" in done.stderr
    for rank in (0, 1):  # every sample exactly where the uninterrupted run took it
        assert audit(out, rank) == straight[rank], f"rank {rank}"
    assert any(r["epoch"] == 1 for r in straight[0] + straight[1])
    resumed = released(export_release(out, tmp_path / "release-resumed"))
    assert_same_weights(resumed, released(export_release(tmp_path / "straight", tmp_path / "r")))


def test_zero_stages_export_the_same_weights(shards, tmp_path):
    exports = {}
    for stage in (1, 2, 3):
        out = tmp_path / f"zero{stage}"
        done = torchrun(
            shards,
            out,
            "max_steps=6",
            f"zero_stage={stage}",
            "eval_every=100",
            "checkpoint_every=100",
        )
        assert done.returncode == 0, done.stderr[-4000:]
        exports[stage] = released(export_release(out, tmp_path / f"release{stage}"))
    assert_same_weights(exports[1], exports[2])
    assert_same_weights(exports[1], exports[3])


def test_release_contents_and_checksums(shards, tmp_path):
    pretrain(config(shards, tmp_path / "run", "max_steps=3", "eval_every=3"), progress=False)
    release = export_release(tmp_path / "run", tmp_path / "release")
    assert sorted(p.name for p in release.iterdir()) == [
        "README.md",
        "SHA256SUMS",
        "config.yaml",
        "model.safetensors",
    ]
    cfg = yaml.safe_load((release / "config.yaml").read_text())
    manifest = Manifest.load(shards)
    assert cfg["descriptor"]["hash"] == manifest.descriptor_hash
    assert cfg["descriptor"]["dim"] == manifest.dim
    assert len(cfg["normalization"]["mean"]) == manifest.dim
    assert cfg["model"]["hidden_channels"] == 32
    weights = released(release)
    assert all(v.dtype == torch.float32 for v in weights.values())
    assert any(k.startswith("backbone.") for k in weights)
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=release, capture_output=True)
    assert check.returncode == 0, check.stdout
    assert cfg["training"]["steps"] == 3 and "heldout_r2_median" in cfg["training"]
    assert "| pre-training steps | 3 |" in (release / "README.md").read_text()


def test_resume_with_another_model_is_refused(shards, tmp_path):
    pretrain(config(shards, tmp_path, "max_steps=2", "eval_every=2"), progress=False)
    changed = config(shards, tmp_path, "max_steps=4", "model.num_layers=3")
    with pytest.raises(ValueError, match="different model configuration"):
        pretrain(changed, progress=False)


def test_resume_across_implementation_choices_and_older_run_records(shards, tmp_path):
    pretrain(config(shards, tmp_path, "max_steps=2", "eval_every=2"), progress=False)
    run_file = tmp_path / "run.yaml"
    record = yaml.safe_load(run_file.read_text())
    del record["model"]["attention_impl"]  # a run written before the field existed
    run_file.write_text(yaml.safe_dump(record, sort_keys=False))
    fused = config(shards, tmp_path, "max_steps=4", "model.attention_impl=fused")
    assert pretrain(fused, progress=False).step == 4


def test_wandb_offline_run_is_written(shards, tmp_path):
    cfg = config(shards, tmp_path, "max_steps=2", "eval_every=2", "wandb.mode=offline")
    env = {k: os.environ.pop(k) for k in ("WANDB_API_KEY",) if k in os.environ}
    try:
        pretrain(cfg, progress=False)
    finally:
        os.environ.update(env)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs, "an offline W&B run directory should exist"
    assert list(runs[0].glob("*.wandb"))

    # the export logs the release as a model artifact of the same (resumed) W&B run
    export_release(tmp_path, tmp_path / "release")
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    records = b"".join(f.read_bytes() for run in runs for f in run.glob("*.wandb"))
    name = f"release-{tmp_path.name}".encode()
    assert name in records and b"model" in records
    # offline-run-<date>_<time>-<id>[-<n> when two start in the same second]: one run id
    ids = {re.match(r"offline-run-\d{8}_\d{6}-(\w+?)(-\d+)?$", run.name).group(1) for run in runs}
    assert len(runs) == 2 and len(ids) == 1, [run.name for run in runs]


def test_export_without_wandb_logs_no_artifact(shards, tmp_path):
    pretrain(config(shards, tmp_path, "max_steps=2", "eval_every=2"), progress=False)
    export_release(tmp_path, tmp_path / "release")
    assert not (tmp_path / "wandb").exists()


def audit(out: Path, rank: int) -> list[dict]:
    """The sample audit of one rank: ``{"epoch", "step", "keys"}`` per trained batch."""
    return [json.loads(line) for line in (out / "samples" / f"rank{rank}.jsonl").open()]


def _read(path: Path):
    from fmpretrain.data.format import read_shard

    return list(read_shard(path))
