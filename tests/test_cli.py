"""The command line itself: argument handling shared by every command."""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.io import write
from omegaconf import OmegaConf

from fmpretrain.cli import build_parser, main
from fmpretrain.config import named_config


def test_overrides_may_follow_options(tmp_path, monkeypatch):
    """README's `fmpretrain fingerprint my.cif --descriptor wacsf cutoff=5.0 zeta=[1,2,4]`."""
    monkeypatch.chdir(tmp_path)
    write("my.cif", bulk("NaCl", "rocksalt", a=5.64))
    argv = ["fingerprint", "my.cif", "--descriptor", "wacsf", "cutoff=5.0", "zeta=[1,2,4]"]
    assert main([*argv, "--out", "a.npz"]) == 0
    assert main(["fingerprint", "my.cif", "--out", "b.npz", "--descriptor", "wacsf"]) == 0
    assert main(["fingerprint", "my.cif", "cutoff=5.0", "zeta=[1,2,4]", "--out", "c.npz"]) == 0
    a, b, c = np.load("a.npz"), np.load("b.npz"), np.load("c.npz")
    assert a["fingerprints"].shape[0] == 2
    assert a["fingerprints"].shape[1] != b["fingerprints"].shape[1]  # zeta=[1,2,4] took effect
    np.testing.assert_array_equal(a["fingerprints"], c["fingerprints"])  # overrides after FILE


def test_a_stray_argument_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write("my.cif", bulk("Cu", "fcc", a=3.6))
    with pytest.raises(SystemExit) as exit_info:
        main(["fingerprint", "my.cif", "--descriptor", "ead", "bogus"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: bogus" in capsys.readouterr().err


# ------------------------------------------------------------------------- --print-config
#: A valid command line of every command that takes --print-config; OUT is its output path.
PRINT_CONFIG_ARGV = {
    "demo": ["demo", "--quick", "--out", "OUT"],
    "fingerprint": ["fingerprint", "my.cif", "--descriptor", "ead", "--out", "OUT/f.npz"],
    "featurize": ["featurize", "--config", "configs/featurize/demo.yaml", "out=OUT"],
    "pretrain": ["pretrain", "--config", "configs/pretrain/demo.yaml", "data=d", "out=OUT"],
    "export": ["export", "runs/pretrain", "--out", "OUT"],
    "finetune": ["finetune", "--config", "configs/finetune/demo.yaml", "out=OUT"],
    "benchmark": ["benchmark", "--config", "configs/finetune/demo.yaml", "out=OUT"],
    "generate": ["generate", "3", "--out", "OUT/s.extxyz"],
    "predict": ["predict", "et-small-ead", "my.cif", "--out", "OUT/p.csv"],
    "embed": ["embed", "et-small-ead", "my.cif", "--out", "OUT/e.npz"],
}


def commands_with(option: str) -> set[str]:
    """Sub-commands whose parser has ``option`` (an option string or a positional's dest)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {
        name
        for name, parser in sub.choices.items()
        if any(option in a.option_strings or option == a.dest for a in parser._actions)
    }


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``main(argv)``'s exit status (a parse error's too), stdout and stderr."""
    try:
        code = main(argv)
    except SystemExit as done:
        code = int(done.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_every_command_with_a_configuration_takes_print_config():
    configured = commands_with("--config") | commands_with("overrides")
    assert configured <= commands_with("--print-config")
    assert commands_with("--print-config") == set(PRINT_CONFIG_ARGV)


@pytest.mark.parametrize(
    ("command", "override", "key", "value"),
    [
        ("featurize", "source.n=17", "source.n", 17),
        ("pretrain", "max_steps=7", "max_steps", 7),
        ("finetune", "max_epochs=3", "max_epochs", 3),
        ("benchmark", "task=[perov_heat,emt_energy]", "task", ["perov_heat", "emt_energy"]),
    ],
)
def test_print_config_prints_the_resolved_yaml(
    command, override, key, value, tmp_path, monkeypatch, capsys
):
    """The file's settings, the override on top, and YAML that `--config` takes back as is."""
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in PRINT_CONFIG_ARGV[command]]
    code, out, err = run_cli([*argv, override, "--print-config"], capsys)
    assert (code, err) == (0, "")
    printed = OmegaConf.create(out)
    assert OmegaConf.select(printed, key) == value
    assert printed.out == str(tmp_path / "out")
    # the file's settings (and the overrides) are all there: merging them again changes nothing
    config_file = argv[argv.index("--config") + 1]
    overrides = [a for a in [*argv, override] if "=" in a]
    kind = config_file.split("/")[1]
    in_file = OmegaConf.load(named_config(kind, config_file))
    for name in [k for k in in_file if OmegaConf.is_dict(printed.get(k))]:
        if isinstance(in_file[name], str):  # a named group (model: small): printed resolved
            group_file = OmegaConf.load(named_config(name, in_file[name]))
            assert OmegaConf.merge(printed[name], group_file) == printed[name]
            del in_file[name]
    again = OmegaConf.merge(printed, in_file, OmegaConf.from_dotlist(overrides))
    assert again == printed
    (tmp_path / "printed.yaml").write_text(out)
    assert run_cli([command, "--config", "printed.yaml", "--print-config"], capsys) == (0, out, "")


def test_print_config_resolves_descriptor_parameters(tmp_path, monkeypatch, capsys):
    """README's `fingerprint my.cif --descriptor wacsf cutoff=5.0 zeta=[1,2,4]`: every
    parameter, the overrides on top of the named file's."""
    monkeypatch.chdir(tmp_path)
    argv = ["fingerprint", "my.cif", "--descriptor", "wacsf", "cutoff=5.0", "zeta=[1,2,4]"]
    code, out, _ = run_cli([*argv, "--config", "wacsf", "--print-config"], capsys)
    params = OmegaConf.create(out).descriptor.params
    assert code == 0
    assert (params.cutoff, list(params.zeta)) == (5.0, [1.0, 2.0, 4.0])
    shipped = OmegaConf.load(named_config("descriptors", "wacsf"))
    assert params.n_radial == shipped.n_radial


BAD = [
    pytest.param(["pretrain", "--config", "demo", "out=OUT", "bogus=1"], id="pretrain-key"),
    pytest.param(["pretrain", "data=d", "out=OUT", "max_steps=many"], id="pretrain-type"),
    pytest.param(["pretrain", "data=d", "out=OUT", "zero_stage=5"], id="pretrain-value"),
    pytest.param(["pretrain", "data=d", "out=OUT", "model=huge"], id="pretrain-model"),
    pytest.param(["pretrain", "data=...", "out=OUT"], id="pretrain-yaml"),
    pytest.param(["pretrain", "--config", "nope.yaml", "data=d", "out=OUT"], id="pretrain-file"),
    pytest.param(["featurize", "out=OUT", "source.bogus=1"], id="featurize-key"),
    pytest.param(["featurize", "out=OUT", "source.kind=files"], id="featurize-value"),
    pytest.param(["finetune", "out=OUT", "bogus=1"], id="finetune-key"),
    pytest.param(["benchmark", "--config", "nope", "out=OUT"], id="benchmark-file"),
    pytest.param(["fingerprint", "my.cif", "bogus=1"], id="fingerprint-key"),
    pytest.param(["fingerprint", "my.cif", "zeta=[1,"], id="fingerprint-yaml"),
    pytest.param(["generate", "0", "--out", "OUT/s.extxyz"], id="generate-value"),
]


@pytest.mark.parametrize("argv", BAD)
def test_print_config_refuses_what_the_run_refuses(argv, tmp_path, monkeypatch, capsys):
    """One line, status 2, nothing on stdout; the run itself says exactly the same."""
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in argv]
    code, out, err = run_cli([*argv, "--print-config"], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(f"fmpretrain {argv[0]}: error: ") and err.count("\n") == 1, err
    assert run_cli(argv, capsys) == (code, out, err)  # only reached when the run fails too
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", sorted(PRINT_CONFIG_ARGV))
def test_print_config_writes_nothing(command, tmp_path, monkeypatch, capsys):
    cwd, out_dir = tmp_path / "cwd", tmp_path / "out"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    argv = [a.replace("OUT", str(out_dir)) for a in PRINT_CONFIG_ARGV[command]]
    code, out, err = run_cli([*argv, "--print-config"], capsys)
    assert (code, err) == (0, "")
    assert isinstance(yaml.safe_load(out), dict)
    assert str(out_dir) in out
    assert not out_dir.exists() and list(cwd.iterdir()) == []


def test_python_m_data_pipeline_is_fmpretrain_featurize(tmp_path):
    """The entry point of `ray job submit` and featurize.sbatch takes the same command line."""
    argv = ["--config", "configs/featurize/demo.yaml", "workers=3", f"out={tmp_path}/o"]
    runs = [
        subprocess.run([*prefix, *argv, "--print-config"], capture_output=True, text=True)
        for prefix in ([sys.executable, "-m", "data_pipeline"], ["fmpretrain", "featurize"])
    ]
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[0].stdout == runs[1].stdout and "workers: 3" in runs[0].stdout


@pytest.mark.parametrize("command", ["featurize", "pretrain", "finetune", "benchmark"])
def test_help_lists_every_configuration_key_from_the_dataclass(command, capsys):
    import dataclasses
    import importlib

    from fmpretrain.cli.parser import CONFIG_CLASSES
    from fmpretrain.config import config_keys

    module, name = CONFIG_CLASSES[command].split(":")
    cls = getattr(importlib.import_module(module), name)
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    keys = [key for key, _, _ in config_keys(cls)]
    assert {f.name for f in dataclasses.fields(cls)} <= {k.split(".")[0] for k in keys}
    for key in keys:
        assert f"\n  {key} = " in text, key
    if command == "pretrain":
        assert "  target_scaling = zscore  # zscore | minmax | robust | log" in text
        assert "  wandb.mode = offline" in text


def test_deepspeed_config_file_merges_deeply_into_the_run_entries(tmp_path, capsys):
    extra = tmp_path / "ds.yaml"
    extra.write_text("zero_optimization: {overlap_comm: true}\n")
    code = main(
        [
            "pretrain", "--deepspeed-config", str(extra), "--print-config",
            f"data={tmp_path}", f"out={tmp_path / 'run'}",
            "deepspeed={zero_optimization: {reduce_bucket_size: 100}}",
        ]
    )  # fmt: skip
    assert code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["deepspeed"]["zero_optimization"] == {
        "reduce_bucket_size": 100,
        "overlap_comm": True,
    }
