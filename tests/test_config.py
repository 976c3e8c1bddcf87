"""The one configuration loader: named groups (``model=NAME`` + ``model.KEY=VALUE``), errors."""

from __future__ import annotations

import pytest

from fmpretrain.config import config_help, deep_merge
from fmpretrain.finetune.config import FinetuneConfig, load_finetune_config
from fmpretrain.models.config import ModelConfig
from fmpretrain.train.config import PretrainConfig, load_pretrain_config

REQUIRED = ["data=d", "out=o"]


def test_model_defaults_to_the_small_file_and_keys_change_on_top_of_a_chosen_file():
    assert load_pretrain_config(None, REQUIRED).model == ModelConfig.from_name("small")
    cfg = load_pretrain_config(None, [*REQUIRED, "model=base", "model.hidden_channels=64"])
    base = ModelConfig.from_name("base")
    assert base.hidden_channels != 64
    assert cfg.model == ModelConfig.from_name("base", {"hidden_channels": 64})
    assert cfg.model.num_layers == base.num_layers


def test_yaml_choice_and_mapping_layer_under_the_command_line(tmp_path):
    run = tmp_path / "run.yaml"
    run.write_text("model: paper\n")
    assert load_pretrain_config(run, REQUIRED).model == ModelConfig.from_name("paper")
    # a choice on the command line replaces the file's choice
    assert load_pretrain_config(run, [*REQUIRED, "model=base"]).model.num_layers == (
        ModelConfig.from_name("base").num_layers
    )
    # a mapping in the file changes keys of the default choice; the command line wins over it
    run.write_text("model:\n  num_layers: 3\n  cutoff: 5.0\n")
    cfg = load_pretrain_config(run, [*REQUIRED, "model.cutoff=4.5"])
    assert cfg.model == ModelConfig.from_name("small", {"num_layers": 3, "cutoff": 4.5})
    # the mapping form on the command line
    cfg = load_pretrain_config(None, [*REQUIRED, "model={num_layers: 2, num_heads: 4}"])
    assert cfg.model == ModelConfig.from_name("small", {"num_layers": 2, "num_heads": 4})


def test_a_model_file_given_as_a_path(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("hidden_channels: 32\nnum_heads: 4\n")
    cfg = load_pretrain_config(None, [*REQUIRED, f"model={mine}"])
    assert (cfg.model.hidden_channels, cfg.model.num_heads) == (32, 4)
    assert cfg.model.num_layers == ModelConfig().num_layers  # keys the file lacks: defaults


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.nope=1", "nope"),
        ("model=huge", "no model config 'huge'"),
        ("model=3", "give the name of a model config"),
        ("model.hidden_channels=65", "divisible by num_heads"),
        ("model_overrides={num_layers: 3}", "model_overrides is gone: set model keys directly"),
        ("model_overrides.num_layers=3", "model.KEY=VALUE"),
    ],
)
def test_bad_model_settings_are_one_line_errors(override, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message) as err:
        load_pretrain_config(None, [*REQUIRED, override])
    assert "\n" not in str(err.value)


def test_finetune_model_is_unset_until_chosen_or_changed():
    assert load_finetune_config(None, ["out=o"]).model is None
    assert load_finetune_config(None, ["out=o", "model=null"]).model is None
    cfg = load_finetune_config(None, ["out=o", "model.num_layers=2"])
    assert cfg.model == ModelConfig.from_name("small", {"num_layers": 2})
    assert load_finetune_config(None, ["out=o", "model=base"]).model == ModelConfig.from_name(
        "base"
    )


def test_help_lists_the_group_choice_and_its_keys_with_the_default_files_values():
    text = config_help(PretrainConfig)
    small = ModelConfig.from_name("small")
    assert "  model = small  # configs/model/NAME.yaml (" in text
    assert f"  model.num_layers = {small.num_layers}\n" in text
    assert small.num_layers != ModelConfig().num_layers  # the file's value, not the class's
    assert "  model = null  # configs/model/NAME.yaml" in config_help(FinetuneConfig)


def test_deep_merge_merges_nested_mappings_key_by_key():
    base = {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
    assert deep_merge(base, {"a": {"c": {"f": 4}}, "e": 5}) == {
        "a": {"b": 1, "c": {"d": 2, "f": 4}},
        "e": 5,
    }
    assert base == {"a": {"b": 1, "c": {"d": 2}}, "e": 3}  # not modified
