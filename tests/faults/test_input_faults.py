"""Fault table, inputs: unbounded cutoffs, neighbour explosions and bad configurations fail fast
with one clear line."""

from __future__ import annotations

import resource

import numpy as np
import pytest
from ase.build import bulk

from fmpretrain.data.loader import build_loader
from fmpretrain.descriptors import get_descriptor
from fmpretrain.models import ModelConfig
from fmpretrain.neighbors import MAX_CUTOFF, NeighborBudgetError, neighbor_list
from fmpretrain.train.config import load_pretrain_config

SI2 = bulk("Si", "diamond", a=5.43)  # the reported case: a 2-atom cell


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def test_cutoff_60_on_two_atom_cell_fails_fast_without_allocating():
    assert len(SI2) == 2
    before = rss_gib()  # refused before any allocation (no timing: the machine may be busy)
    with pytest.raises(ValueError, match=r"ead: cutoff must be .*at most 15\.0 Å.*60"):
        get_descriptor("ead", cutoff=60.0)(SI2)
    with pytest.raises(ValueError, match=r"ModelConfig\.cutoff .*at most 15\.0 Å.*60"):
        ModelConfig(cutoff=60.0)
    with pytest.raises(ValueError, match=r"cutoff must be .*at most 15\.0 Å.*60"):
        neighbor_list(SI2.positions, SI2.cell, True, 60.0)
    assert rss_gib() - before < 0.25


@pytest.mark.parametrize("cutoff", [float("inf"), float("nan"), -1.0, 0.0, MAX_CUTOFF + 0.5])
def test_non_finite_or_out_of_range_cutoff_is_refused(cutoff, tiny_shards, tmp_path):
    with pytest.raises(ValueError, match="cutoff must be finite, positive"):
        get_descriptor("ead", cutoff=cutoff)
    with pytest.raises(ValueError, match="cutoff must be finite, positive"):
        ModelConfig(cutoff=cutoff)
    with pytest.raises(ValueError, match="cutoff must be finite, positive"):
        neighbor_list(SI2.positions, SI2.cell, True, cutoff)
    with pytest.raises(ValueError, match="cutoff must be finite, positive"):
        build_loader(tiny_shards, cutoff=cutoff, max_atoms_per_batch=40)
    model_yaml = tmp_path / "model.yaml"  # YAML spells them .inf and .nan
    text = {"inf": ".inf", "nan": ".nan"}.get(str(cutoff), str(cutoff))
    model_yaml.write_text(f"cutoff: {text}\n")
    with pytest.raises(ValueError, match="cutoff must be finite, positive"):
        ModelConfig.from_yaml(model_yaml)


def test_neighbour_budget_is_checked_before_the_list_is_built(tiny_shards, monkeypatch):
    dense = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((3, 3, 3))  # 108 atoms, 8424 pairs
    assert len(neighbor_list(dense.positions, dense.cell, True, 6.0)) > 5_000
    with pytest.raises(NeighborBudgetError) as err:
        neighbor_list(dense.positions, dense.cell, True, 6.0, max_neighbors=5_000, label="Cu108")
    message = str(err.value)
    assert message.startswith("Cu108: about ") and "neighbour pairs" in message
    assert "lower the cutoff" in message and "raise max_neighbors" in message
    monkeypatch.setenv("FMPRETRAIN_MAX_NEIGHBORS", "50")  # the loader's graphs obey it too
    with pytest.raises(NeighborBudgetError, match=r"^sample s\d+, a structure of \d+ atoms"):
        list(build_loader(tiny_shards, cutoff=4.0, max_atoms_per_batch=40, split="all"))


def test_malformed_yaml_is_one_line_with_file_and_line(tmp_path):
    path = tmp_path / "pretrain.yaml"
    path.write_text("data: shards\nout: run\nmax_steps: [1, 2\nlr: 1.0e-3\n")
    with pytest.raises(ValueError) as err:
        load_pretrain_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}:4: YAML syntax error: ")
    assert "\n" not in message
    path.write_text("data: shards\n\tout: run\n")  # a tab: a scanner error
    with pytest.raises(ValueError, match=rf"^{path}:2: YAML syntax error: "):
        load_pretrain_config(path)


@pytest.mark.parametrize(
    "override",
    [
        "eval_every=0",
        "checkpoint_every=0",
        "log_every=0",
        "val_shards=0",
        "max_steps=0",
        "max_steps=-5",
        "eval_every=-1",
    ],
)
def test_zero_or_negative_interval_is_one_line_naming_the_key(override):
    key, value = override.split("=")
    with pytest.raises(ValueError) as err:
        load_pretrain_config(None, ["data=shards", "out=run", override])
    message = str(err.value)
    assert message.startswith(f"{key}={value} ") and "must be an integer >= 1" in message
    assert "\n" not in message


def test_valid_intervals_still_load():
    cfg = load_pretrain_config(None, ["data=d", "out=o", "eval_every=1", "keep_checkpoints=0"])
    assert cfg.eval_every == 1 and np.isfinite(cfg.lr)
