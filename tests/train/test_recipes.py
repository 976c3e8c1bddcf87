"""The paper's recipe as named configurations: they load and train (one step, on CPU)."""

from __future__ import annotations

import json

import pytest

from fmpretrain.config import named_config
from fmpretrain.finetune.config import load_finetune_config
from fmpretrain.models.config import ModelConfig
from fmpretrain.train.config import load_pretrain_config
from fmpretrain.train.trainer import pretrain

pytestmark = pytest.mark.slow


def test_paper_recipe_configs_load_with_the_papers_settings():
    model = ModelConfig.from_name("paper")
    assert (model.hidden_channels, model.num_layers, model.num_rbf, model.cutoff) == (
        128,
        8,
        50,
        8.0,
    )
    cfg = load_pretrain_config(named_config("pretrain", "paper"), ["data=x", "out=y"])
    assert (cfg.model, cfg.loss, cfg.lr, cfg.grad_clip) == (model, "l1", 1e-4, 10.0)
    assert cfg.lr * cfg.min_lr_ratio == pytest.approx(1e-5)
    ft = load_finetune_config(named_config("finetune", "paper"), ["out=z"])
    assert (ft.lr, ft.scheduler, ft.plateau_factor, ft.plateau_patience, ft.min_lr) == (
        1e-4,
        "plateau",
        0.8,
        10,
        1e-5,
    )
    assert ft.loss == "l1" and ft.max_epochs == 200 and ft.baselines


def test_paper_recipe_trains_a_step(ead_shards, tmp_path):
    cfg = load_pretrain_config(
        named_config("pretrain", "paper"),
        [
            f"data={ead_shards}",
            f"out={tmp_path}",
            "max_steps=1",
            "warmup_steps=1",
            "eval_every=1",
            "checkpoint_every=1",
            "log_every=1",
            "max_atoms_per_batch=48",
            "wandb.mode=disabled",
        ],
    )
    result = pretrain(cfg, progress=False)
    assert result.step == 1
    record = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert any("train/loss" in r for r in record) and any("val/loss" in r for r in record)
