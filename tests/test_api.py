"""The model API: ``fmpretrain.load`` -> predict / embed / fingerprint, the ASE calculator, the
``predict``/``embed`` commands, and loading that never unpickles."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

import fmpretrain
from fmpretrain import hub
from fmpretrain import release_format as rf
from fmpretrain.cli import main
from fmpretrain.data.graphs import build_graph
from fmpretrain.data.scaling import Normalizer
from fmpretrain.io import write_structures
from fmpretrain.structures import Structure
from tests.releases import (
    DIM,
    NORMALIZATION,
    TINY,
    tiny_structures,
    write_finetuned,
    write_pretrained,
)

SUM_SCALING = {"mean": 0.4, "std": 2.5, "per_atom": True}


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("releases")
    base = write_pretrained(root / "pretrained")
    return {
        "pretrained": base,
        "mean": write_finetuned(root / "ft-mean", base),
        "sum": write_finetuned(
            root / "ft-sum",
            base,
            pooling="sum",
            scaling={"mean": 0.4, "std": 2.5, "per_atom": True},
        ),
        "class": write_finetuned(
            root / "ft-class", base, task_type="classification", classes=[False, True]
        ),
    }


@pytest.fixture(scope="module")
def structures() -> list[Structure]:
    return tiny_structures(4)


def graph(s: Structure):
    return Batch.from_data_list([build_graph(s.numbers, s.positions, s.cell, s.pbc, TINY.cutoff)])


# ---------------------------------------------------------------------------- pre-trained
def test_pretrained_embed_and_fingerprint(releases, structures):
    model = fmpretrain.load(releases["pretrained"], device="cpu")
    assert not model.is_finetuned and model.descriptor["name"] == "ead"
    assert not model.module.training
    emb = model.embed(structures)
    assert emb.shape == (4, TINY.hidden_channels) and emb.dtype == np.float32
    per_atom = model.embed(structures, per_atom=True)
    assert [a.shape for a in per_atom] == [(len(s), TINY.hidden_channels) for s in structures]
    fps = model.fingerprint(structures)
    normalizer = Normalizer.from_dict(NORMALIZATION)
    for s, e, pa, fp in zip(structures, emb, per_atom, fps, strict=True):
        with torch.no_grad():  # one structure at a time, straight through the modules
            h = model.module.backbone(graph(s))
            expected = normalizer.denormalize(model.module.head(h).double()).numpy()
        np.testing.assert_allclose(pa, h.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(e, h.numpy().mean(0), rtol=1e-5, atol=1e-5)
        assert fp.shape == (len(s), DIM)
        np.testing.assert_allclose(fp, expected, rtol=1e-5, atol=1e-5)
    # the constant feature (std below min_std) is centred, not blown up
    assert np.all(np.abs(np.concatenate(fps)[:, 2] - 10.0) < 100)
    with pytest.raises(ValueError, match="pre-trained release without a property head"):
        model.predict(structures)


def test_every_input_form_and_batch_size_agree(releases, structures, tmp_path):
    model = fmpretrain.load(str(releases["pretrained"]), device="cpu")
    reference = model.embed(structures)
    file = tmp_path / "structures.extxyz"
    write_structures(file, structures)

    class PymatgenLike:  # duck-typed: pymatgen is not installed
        def __init__(self, s: Structure):
            self._d = s.to_pymatgen_dict()

        def as_dict(self) -> dict:
            return self._d

    s0, s1, s2, s3 = structures
    mixed = [s0, s1.to_ase(), PymatgenLike(s2), s3.to_pymatgen_dict()]
    np.testing.assert_allclose(model.embed(mixed), reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.embed(file), reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.embed(s0.to_ase()), reference[:1], rtol=1e-5, atol=1e-5)
    small = fmpretrain.load(releases["pretrained"], device="cpu", max_atoms=1)
    np.testing.assert_allclose(small.embed(structures), reference, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="cannot read a structure from int"):
        model.embed([s0, 3])


# ---------------------------------------------------------------------------- fine-tuned
@pytest.mark.parametrize("which", ["mean", "sum"])
def test_predict_is_in_the_target_units(releases, structures, which):
    model = fmpretrain.load(releases[which], device="cpu")
    assert model.is_finetuned and model.target == "energy_per_atom" and model.unit == "eV/atom"
    scaling = rf.read_config(releases[which])["task"]["target_scaling"]
    predictions = model.predict(structures)
    assert predictions.shape == (4,) and predictions.dtype == np.float64
    for s, value in zip(structures, predictions, strict=True):
        with torch.no_grad():
            out = float(model.module(graph(s))[0, 0])  # the standardized head output
        offset = scaling["mean"] * (len(s) if scaling["per_atom"] else 1)
        assert value == pytest.approx(out * scaling["std"] + offset, rel=1e-5, abs=1e-5)
        assert abs(value - out) > 1e-3  # the scaling really was applied
    with pytest.raises(ValueError, match="fine-tuned release"):
        model.fingerprint(structures)


def test_classification_predicts_labels(releases, structures):
    model = fmpretrain.load(releases["class"], device="cpu")
    probs = model.predict(structures, proba=True)
    assert probs.shape == (4, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
    labels = model.predict(structures)
    assert list(labels) == [[False, True][int(k)] for k in probs.argmax(1)]
    with pytest.raises(ValueError, match="regression targets only"):
        fmpretrain.Calculator(model)


def test_calculator_matches_predict(releases, structures):
    model = fmpretrain.load(releases["mean"], device="cpu")
    calc = fmpretrain.Calculator(model)
    assert calc.implemented_properties == ["energy_per_atom"]
    expected = model.predict(structures)
    for s, value in zip(structures, expected, strict=True):
        atoms = s.to_ase()
        atoms.calc = calc
        assert atoms.calc.get_property("energy_per_atom", atoms) == pytest.approx(value, rel=1e-6)
    atoms = structures[0].to_ase()
    atoms.calc = fmpretrain.Calculator(str(releases["sum"]), device="cpu")
    sum_model = fmpretrain.load(releases["sum"], device="cpu")
    assert atoms.calc.get_property("energy_per_atom", atoms) == pytest.approx(
        sum_model.predict(structures[0])[0], rel=1e-6
    )
    atoms.positions[0] += 0.1  # a changed structure is recomputed
    assert atoms.calc.get_property("energy_per_atom", atoms) == pytest.approx(
        sum_model.predict(atoms)[0], rel=1e-6
    )
    with pytest.raises(ValueError, match="needs a fine-tuned release"):
        fmpretrain.Calculator(releases["pretrained"])


# ---------------------------------------------------------------------------- CLI
def test_cli_predict_and_embed(releases, structures, tmp_path, capsys):
    file = tmp_path / "in.extxyz"
    write_structures(file, structures)
    out = tmp_path / "preds.csv"
    assert main(["predict", str(releases["mean"]), str(file), "--out", str(out)]) == 0
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    expected = fmpretrain.load(releases["mean"], device="cpu").predict(structures)
    assert [r["id"] for r in rows] == [s.id for s in structures]
    np.testing.assert_allclose([float(r["prediction"]) for r in rows], expected, rtol=1e-6)
    targets = [s.properties["energy_per_atom"] for s in structures]
    assert [float(r["target"]) for r in rows] == targets

    emb = tmp_path / "emb.npz"
    assert main(["embed", str(releases["pretrained"]), str(file), "--out", str(emb)]) == 0
    with np.load(emb, allow_pickle=False) as data:
        assert list(data["ids"]) == [s.id for s in structures]
        assert data["embeddings"].shape == (4, TINY.hidden_channels)
    per_atom = tmp_path / "atoms.emb"
    argv = ["embed", str(releases["mean"]), str(file), "--out", str(per_atom), "--per-atom"]
    assert main(argv) == 0
    with np.load(per_atom, allow_pickle=False) as data:
        assert data["embeddings"].shape == (sum(map(len, structures)), TINY.hidden_channels)
        assert list(data["n_atoms"]) == [len(s) for s in structures]

    capsys.readouterr()
    argv = ["predict", str(releases["pretrained"]), str(file), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fmpretrain predict: error:") and "\n" not in err
    assert main(["embed", str(tmp_path / "nope"), str(file), "--out", str(emb)]) == 2
    assert "no such directory" in capsys.readouterr().err


# ---------------------------------------------------------------------------- sources
def test_sources_resolve(releases, tmp_path, monkeypatch):
    monkeypatch.setenv(hub.CACHE_ENV, str(tmp_path / "cache"))
    archive, entry = hub.publish(releases["pretrained"], name="tiny-ead", out=tmp_path / "t.tar.gz")
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"schema_version": 1, "releases": [entry.to_dict()]}))
    by_name = fmpretrain.load("tiny-ead", registry=registry, device="cpu")
    assert by_name.path.parent.parent == tmp_path / "cache"  # downloaded, verified, cached
    by_url = fmpretrain.load(archive.resolve().as_uri(), registry=registry, device="cpu")
    assert by_url.path == by_name.path
    by_file = fmpretrain.load(releases["pretrained"] / rf.WEIGHTS, device="cpu")
    assert by_file.path == releases["pretrained"]
    with pytest.raises(hub.HubError, match="needs ORG/REPO"):  # hf:// goes to fmpretrain.hub.hf
        fmpretrain.load("hf://repo")
    with pytest.raises(rf.ReleaseError, match="no such directory"):
        fmpretrain.load("./no/such/release")
    with pytest.raises(hub.HubError, match="not a release in the registry"):
        fmpretrain.load("no-such-name", registry=registry)


# ---------------------------------------------------------------------------- no pickle
class _Payload:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pickle was executed"))


def test_crafted_pickle_is_never_loaded(releases, tmp_path):
    marker = tmp_path / "PWNED"
    evil = write_pretrained(tmp_path / "evil")
    torch.save({"backbone.embedding.weight": _Payload(marker)}, evil / rf.WEIGHTS)
    rf.write_checksums(evil, [rf.WEIGHTS, rf.CONFIG, rf.MODEL_CARD])  # checksums pass
    with pytest.raises(rf.ReleaseError, match="not a readable safetensors file"):
        fmpretrain.load(evil, device="cpu")
    from fmpretrain.finetune.release import load_release

    with pytest.raises(rf.ReleaseError, match="not a readable safetensors file"):
        load_release(evil)
    assert not marker.exists()

    # a pickle beside the weights, even listed in SHA256SUMS, is never read
    side = write_pretrained(tmp_path / "side")
    torch.save({"x": _Payload(marker)}, side / "pytorch_model.bin")
    rf.write_checksums(side, [rf.WEIGHTS, rf.CONFIG, rf.MODEL_CARD, "pytorch_model.bin"])
    assert fmpretrain.load(side, device="cpu").embed(tiny_structures(1)).shape[0] == 1
    assert not marker.exists()


def test_import_is_light_and_lazy():
    code = (
        "import sys, fmpretrain\n"
        "assert 'torch' not in sys.modules, 'import fmpretrain imported torch'\n"
        "fmpretrain.Structure\n"
        "assert 'torch' not in sys.modules\n"
        "from fmpretrain import load, get_descriptor, Structure, Calculator\n"
        "print(load.__module__, Calculator.__mro__[1].__module__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["fmpretrain.api", "ase.calculators.calculator"]
