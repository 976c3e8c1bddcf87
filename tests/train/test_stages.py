"""When pre-training and export count as finished (the rules the demo and study reuse by)."""

from __future__ import annotations

import json

import pytest
import yaml

from fmpretrain.train.config import load_pretrain_config
from fmpretrain.train.stages import ExportStage, PretrainStage, target_step


def stage(tmp_path, *overrides: str) -> PretrainStage:
    cfg = load_pretrain_config(None, [f"data={tmp_path}", f"out={tmp_path / 'run'}", *overrides])
    return PretrainStage(cfg)


@pytest.mark.parametrize(
    ("overrides", "status", "done"),
    [
        (["max_steps=50"], None, False),
        (["max_steps=50"], {"status": "finished", "step": 50}, True),
        (["max_steps=80"], {"status": "finished", "step": 50}, False),  # schedule extended
        (["max_steps=50"], {"status": "preempted", "step": 30}, False),
        (["max_steps=50", "stop_after=30"], {"status": "stopped", "step": 30}, True),
        (["max_steps=50", "stop_after=40"], {"status": "stopped", "step": 30}, False),
        (["max_steps=50"], {"status": "stopped", "step": 50}, False),  # no stop_after asked
    ],
)
def test_pretrain_is_done_when_the_run_ended_where_configured(tmp_path, overrides, status, done):
    s = stage(tmp_path, *overrides)
    if status is not None:
        s.out.mkdir()
        (s.out / "status.json").write_text(json.dumps(status))
    assert s.done() is done
    assert target_step(s.cfg) == min(s.cfg.max_steps, s.cfg.stop_after or s.cfg.max_steps)


def test_export_is_done_when_the_release_holds_the_latest_checkpoint(tmp_path):
    run, release = tmp_path / "run", tmp_path / "release"
    (run / "checkpoints").mkdir(parents=True)
    export = ExportStage(run, release)
    assert not export.done()
    (run / "checkpoints" / "latest").write_text("step00000100\n")
    release.mkdir()
    (release / "config.yaml").write_text(
        yaml.safe_dump({"training": {"checkpoint": "step00000100"}})
    )
    assert export.done() and export.reuse() == release
    (run / "checkpoints" / "latest").write_text("step00000200\n")  # the run went on
    assert not export.done()
