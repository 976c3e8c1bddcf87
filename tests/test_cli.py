"""The command line itself: argument handling shared by every command."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.io import write

from fmpretrain.cli import main


def test_overrides_may_follow_options(tmp_path, monkeypatch):
    """README's `fmpretrain fingerprint my.cif --descriptor wacsf cutoff=5.0 zeta=[1,2,4]`."""
    monkeypatch.chdir(tmp_path)
    write("my.cif", bulk("NaCl", "rocksalt", a=5.64))
    argv = ["fingerprint", "my.cif", "--descriptor", "wacsf", "cutoff=5.0", "zeta=[1,2,4]"]
    assert main([*argv, "--out", "a.npz"]) == 0
    assert main(["fingerprint", "my.cif", "--out", "b.npz", "--descriptor", "wacsf"]) == 0
    a, b = np.load("a.npz"), np.load("b.npz")
    assert a["fingerprints"].shape[0] == 2
    assert a["fingerprints"].shape[1] != b["fingerprints"].shape[1]  # zeta=[1,2,4] took effect


def test_a_stray_argument_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write("my.cif", bulk("Cu", "fcc", a=3.6))
    with pytest.raises(SystemExit) as exit_info:
        main(["fingerprint", "my.cif", "--descriptor", "ead", "bogus"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: bogus" in capsys.readouterr().err
