"""Fault table, training side: damaged shards stop training, damaged checkpoints are skipped
(resume and export) or refused (an export of that one), crafted checkpoints are refused without
running, shards of another descriptor are refused."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from fmpretrain.cli import main as cli_main
from fmpretrain.data.loader import ShardReadError
from fmpretrain.data.manifest import Manifest
from fmpretrain.train.checkpoints import (
    SUMS,
    CheckpointCorruptError,
    UnsafeCheckpointError,
    checkpoint_problem,
    seal,
)
from fmpretrain.train.config import load_pretrain_config
from fmpretrain.train.export import export_release
from fmpretrain.train.trainer import CHECKPOINTS, RUN_FILE, pretrain
from tests.faults.test_data_faults import flip_low_bit, payload_offset

pytestmark = pytest.mark.slow
REPO = Path(__file__).parents[2]
TINY = [
    "model={hidden_channels: 16, num_layers: 1, num_rbf: 8, num_heads: 2, cutoff: 4.0}",
    "max_atoms_per_batch=64",
    "shuffle_buffer=8",
    "warmup_steps=1",
    "log_every=1",
    "eval_every=100",
    "checkpoint_every=2",
    "keep_checkpoints=3",
    "wandb.mode=disabled",
]


def config(data: Path, out: Path, *overrides: str):
    return load_pretrain_config(
        REPO / "configs" / "pretrain" / "demo.yaml",
        [f"data={data}", f"out={out}", *TINY, *overrides],
    )


@pytest.fixture(scope="module")
def trained(tiny_shards_master, tmp_path_factory) -> Path:
    """A run with sealed checkpoints at steps 2 and 4 (ZeRO 1)."""
    out = tmp_path_factory.mktemp("run") / "run"
    result = pretrain(config(tiny_shards_master, out, "max_steps=4"), progress=False)
    assert result.step == 4
    return out


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    return out


def test_checkpoints_are_sealed(trained):
    tags = sorted(p.name for p in (trained / CHECKPOINTS).glob("step*"))
    assert tags == ["step00000002", "step00000004"]
    for tag in tags:
        assert (trained / CHECKPOINTS / tag / SUMS).is_file()
        assert checkpoint_problem(trained / CHECKPOINTS / tag) is None


@pytest.mark.parametrize("damage", ["half-written", "changed"])
def test_damaged_newest_checkpoint_falls_back_to_older_intact_one(
    damage, run_copy, tiny_shards_master, caplog
):
    newest = run_copy / CHECKPOINTS / "step00000004"
    optim = next(newest.glob("*optim_states.pt"))
    if damage == "half-written":  # killed while writing: a truncated file, no SHA256SUMS
        optim.write_bytes(optim.read_bytes()[: optim.stat().st_size // 2])
        (newest / SUMS).unlink()
    else:  # one byte changed after it was sealed
        flip_low_bit(optim, optim.stat().st_size // 2)
    with caplog.at_level(logging.WARNING, logger="fmpretrain.train.checkpoints"):
        result = pretrain(config(tiny_shards_master, run_copy, "max_steps=6"), progress=False)
    assert result.resumed_from == 2 and result.step == 6
    why = "no SHA256SUMS" if damage == "half-written" else "differs from its sha256"
    assert any(
        "skipping checkpoint" in r.message and "step00000004" in r.message and why in r.message
        for r in caplog.records
    )
    assert any("resuming from" in r.message and "step00000002" in r.message for r in caplog.records)
    assert checkpoint_problem(newest) is None  # rewritten and sealed at step 4


def test_no_intact_checkpoint_is_one_clear_error(run_copy, tiny_shards_master):
    for tag_dir in (run_copy / CHECKPOINTS).glob("step*"):
        (tag_dir / SUMS).unlink()
    with pytest.raises(CheckpointCorruptError, match=r"no intact checkpoint in .*no SHA256SUMS"):
        pretrain(config(tiny_shards_master, run_copy, "max_steps=6"), progress=False)


def damage(tag_dir: Path) -> None:
    """Flip one bit in the middle of the checkpoint's optimizer states (its fp32 weights)."""
    optim = next(tag_dir.glob("*optim_states.pt"))
    flip_low_bit(optim, optim.stat().st_size // 2)


def test_export_falls_back_to_newest_intact_checkpoint(run_copy, tmp_path, caplog):
    damage(run_copy / CHECKPOINTS / "step00000004")
    with caplog.at_level(logging.WARNING, logger="fmpretrain.train.checkpoints"):
        release = export_release(run_copy, tmp_path / "release")
    cfg = yaml.safe_load((release / "config.yaml").read_text())
    assert cfg["training"]["checkpoint"] == "step00000002" and cfg["training"]["steps"] == 2
    assert any(
        "skipping checkpoint" in r.message
        and "step00000004" in r.message
        and "differs from its sha256" in r.message
        for r in caplog.records
    )
    assert any("exporting" in r.message and "step00000002" in r.message for r in caplog.records)
    older = export_release(run_copy / CHECKPOINTS / "step00000002", tmp_path / "older")
    weights, expected = (
        load_file(release / "model.safetensors"),
        load_file(older / "model.safetensors"),
    )
    assert weights.keys() == expected.keys()
    assert all(torch.equal(weights[k], expected[k]) for k in weights)


def test_export_of_a_damaged_tag_is_refused_naming_the_intact_ones(run_copy, tmp_path, capsys):
    newest = run_copy / CHECKPOINTS / "step00000004"
    damage(newest)
    with pytest.raises(CheckpointCorruptError, match=r"step00000004 is damaged: .*step00000002"):
        export_release(newest, tmp_path / "release")
    assert cli_main(["export", str(newest), "--out", str(tmp_path / "release")]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "step00000004" in error and "(step00000002)" in error, error
    assert not (tmp_path / "release").exists()
    for tag_dir in (run_copy / CHECKPOINTS).glob("step*"):
        (tag_dir / SUMS).unlink()
    with pytest.raises(CheckpointCorruptError, match=r"no intact checkpoint in .*no SHA256SUMS"):
        export_release(run_copy, tmp_path / "release")


class _WritesMarker:
    """Unpickling it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_crafted_pickle_checkpoint_is_refused_and_not_run(run_copy, tiny_shards_master, tmp_path):
    marker = tmp_path / "marker"
    newest = run_copy / CHECKPOINTS / "step00000004"
    model_file = next(newest.glob("mp_rank_00_model_states.pt"))
    torch.save({"module": {}, "payload": _WritesMarker(marker)}, model_file)
    seal(newest)  # the attacker can recompute the sums: they are not a signature
    with pytest.raises(UnsafeCheckpointError, match="outside the checkpoint allow-list"):
        pretrain(config(tiny_shards_master, run_copy, "max_steps=6"), progress=False)
    assert not marker.exists()
    for zero in newest.glob("*optim_states.pt"):
        zero.unlink()  # the no-ZeRO export path reads the model file itself
    seal(newest)
    with pytest.raises(UnsafeCheckpointError):
        export_release(run_copy, tmp_path / "release")
    assert not marker.exists()


def test_flipped_byte_in_training_shard_stops_training_naming_it(tiny_shards, tmp_path):
    path = tiny_shards / "shard-000001.tar"
    flip_low_bit(path, payload_offset(path, ".fingerprint.npy") + 5)
    with pytest.raises(ShardReadError, match=r"shard-000001\.tar.*sha256"):
        pretrain(config(tiny_shards, tmp_path / "run", "max_steps=20"), progress=False)


def test_resume_on_shards_of_another_descriptor_is_refused(run_copy, tiny_shards):
    manifest = Manifest.load(tiny_shards)
    manifest.descriptor_hash = "0123456789abcdef"  # another descriptor's shards, sealed
    manifest.save(tiny_shards)
    recorded = yaml.safe_load((run_copy / RUN_FILE).read_text())["descriptor"]["hash"]
    with pytest.raises(ValueError, match="descriptor hash mismatch") as err:
        pretrain(config(tiny_shards, run_copy, "max_steps=6"), progress=False)
    assert recorded in str(err.value) and "0123456789abcdef" in str(err.value)
