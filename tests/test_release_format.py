"""The release contract: names, SHA256SUMS, the one verifier, the config schema, the model card."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fmpretrain import hub
from fmpretrain import release_format as rf
from fmpretrain.finetune import release as ft_release
from fmpretrain.train import export
from tests.releases import TRAINING, flip_last_byte, write_finetuned, write_pretrained


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    return write_pretrained(tmp_path_factory.mktemp("rel") / "pretrained")


def test_module_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now raises
        "import fmpretrain, fmpretrain.release_format as rf, fmpretrain.hub\n"
        "assert rf.WEIGHTS == 'model.safetensors'\n"
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_every_stage_uses_the_same_contract():
    names = (rf.FORMAT_VERSION, rf.WEIGHTS, rf.CONFIG, rf.CHECKSUMS)
    assert names == (hub.RELEASE_FORMAT, hub.WEIGHTS, hub.CONFIG, hub.CHECKSUMS)
    assert names == (export.RELEASE_FORMAT, export.WEIGHTS, export.CONFIG, export.CHECKSUMS)
    assert names[1:] == (ft_release.WEIGHTS, ft_release.CONFIG, ft_release.CHECKSUMS)
    assert ft_release.ReleaseError is rf.ReleaseError
    assert rf.FORMAT_VERSION in rf.SUPPORTED_FORMATS


def test_checksums_round_trip_and_verify(tmp_path):
    (tmp_path / rf.WEIGHTS).write_bytes(b"weights")
    (tmp_path / rf.CONFIG).write_text("format_version: 1\n")
    (tmp_path / ".hidden").write_text("not listed")
    rf.write_checksums(tmp_path)
    sums = rf.read_checksums(tmp_path)
    assert sorted(sums) == [rf.CONFIG, rf.WEIGHTS]  # dotfiles and SHA256SUMS itself left out
    check = subprocess.run(["sha256sum", "-c", rf.CHECKSUMS], cwd=tmp_path, capture_output=True)
    assert check.returncode == 0  # the `sha256sum -c` format
    assert rf.verify_checksums(tmp_path) == sums
    (tmp_path / "extra.txt").write_text("unlisted files are ignored")
    assert rf.verify_checksums(tmp_path) == sums


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("abc  model.safetensors", "malformed"),
        (f"{'0' * 64}  ../outside", "outside the release"),
        (f"{'0' * 64}  /etc/passwd", "absolute or malformed"),
    ],
)
def test_bad_checksum_files_are_refused(tmp_path, line, message):
    write_pretrained(tmp_path)
    with open(tmp_path / rf.CHECKSUMS, "a") as handle:
        handle.write(line + "\n")
    with pytest.raises(rf.ReleaseError, match=message):
        rf.verify_checksums(tmp_path)


def test_one_verifier_refuses_tampering_everywhere(tmp_path, pretrained):
    assert rf.verify_release(pretrained).kind == rf.KIND_PRETRAINED
    bad = write_pretrained(tmp_path / "bad")
    flip_last_byte(bad / rf.WEIGHTS)
    (bad / rf.MODEL_CARD).write_text("edited card")
    with pytest.raises(rf.ChecksumError) as caught:
        rf.verify_release(bad)
    message = str(caught.value)  # every modified file is named, in one message
    assert "sha256 mismatch for model.safetensors" in message
    assert "sha256 mismatch for README.md" in message
    with pytest.raises(hub.ChecksumError, match=r"model\.safetensors has sha256"):
        hub.verify_release(bad)
    with pytest.raises(ft_release.ReleaseError, match=r"sha256 mismatch for model\.safetensors"):
        ft_release.load_release(bad)
    import fmpretrain

    with pytest.raises(rf.ChecksumError, match="sha256 mismatch"):
        fmpretrain.load(bad, device="cpu")

    missing = write_pretrained(tmp_path / "missing")
    (missing / rf.MODEL_CARD).unlink()
    with pytest.raises(rf.ChecksumError, match=r"README\.md is missing"):
        rf.verify_release(missing)
    nosums = write_pretrained(tmp_path / "nosums")
    (nosums / rf.CHECKSUMS).unlink()
    with pytest.raises(rf.ReleaseError, match="SHA256SUMS is missing"):
        rf.verify_release(nosums)
    with pytest.raises(hub.HubError, match="SHA256SUMS is missing"):
        hub.verify_release(nosums)


def _rewrite_config(path: Path, **changes) -> None:
    config = rf.read_config(path)
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (path / rf.CONFIG).write_text(yaml.safe_dump(config))
    rf.write_checksums(path, [rf.WEIGHTS, rf.CONFIG, rf.MODEL_CARD])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format_version": 2}, "format_version 2 is not supported"),
        ({"format_version": True}, "format_version True is not supported"),
        ({"kind": "diffusion"}, "unknown release kind 'diffusion'"),
        ({"normalization": None}, r"lacks the key\(s\) \['normalization'\]"),
        ({"normalization": {"mean": [0.0]}}, "must hold 'mean' and 'std'"),
        ({"kind": rf.KIND_FINETUNED}, r"lacks the key\(s\) \['task'\]"),
    ],
)
def test_config_schema_is_checked(tmp_path, changes, message):
    path = write_pretrained(tmp_path / "r")
    _rewrite_config(path, **changes)
    with pytest.raises(rf.ReleaseError, match=message):
        rf.verify_release(path)


def test_finetuned_schema(tmp_path, pretrained):
    path = write_finetuned(tmp_path / "ft", pretrained)
    verified = rf.verify_release(path)
    task = verified.config["task"]
    assert verified.kind == rf.KIND_FINETUNED
    assert task["target"] == "energy_per_atom" and task["unit"] == "eV/atom"
    assert task["target_scaling"] == {"mean": -3.25, "std": 0.75, "per_atom": False}
    assert verified.config["descriptor"]["name"] == "ead"  # kept from the base release
    assert verified.config["training"] == TRAINING
    assert sorted(verified.files) == sorted([rf.WEIGHTS, rf.CONFIG, rf.MODEL_CARD])
    _rewrite_config(path, task={**task, "target_scaling": None})
    with pytest.raises(rf.ReleaseError, match="lacks target_scaling"):
        rf.verify_release(path)
    _rewrite_config(path, task={**task, "task_type": "classification", "classes": [0, 1]})
    with pytest.raises(rf.ReleaseError, match="needs out_dim class labels"):
        rf.verify_release(path)


def test_model_card(tmp_path, pretrained):
    card = (pretrained / rf.MODEL_CARD).read_text()
    assert "| pre-training corpus | 120 structures" in card  # corpus
    assert "| pre-training steps | 7 |" in card
    assert "0.8125" in card  # held-out fingerprint R²
    assert "MIT" in card and "2503.01227" in card
    assert "Downstream results" not in card
    config = rf.read_config(pretrained)
    results = {"emt_energy": {"metric": "mae", "pretrained": 0.0123, "scratch": 0.0456}}
    card = rf.write_model_card(tmp_path, config, results=results, license="CC-BY-4.0").read_text()
    assert "Downstream results" in card and "0.0123" in card and "CC-BY-4.0" in card


def test_export_reads_heldout_r2_and_results(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    records = [
        {"step": 5, "val/r2_median": 0.5, "val/r2_mean": 0.4},
        {"step": 10, "train/loss": 1.0},
        {"step": 10, "val/r2_median": 0.75, "val/r2_mean": 0.7},
        {"step": 15, "val/r2_median": 0.9},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    found = export.heldout_metrics(run, 10)
    assert found["heldout_r2_median"] == 0.75 and found["heldout_step"] == 10
    assert export.heldout_metrics(run, None)["heldout_r2_median"] == 0.9
    assert export.heldout_metrics(tmp_path, 10) == {}
    results = tmp_path / "results.json"
    task = {"task": "emt_energy", "metric": "mae", "unit": "eV/atom", "improvement_pct": 10.0,
            "pretrained": {"mean": 0.9}, "scratch": {"mean": 1.0}}  # fmt: skip
    results.write_text(json.dumps({"tasks": [task]}))
    summary = export._results(results)["emt_energy"]
    assert summary["pretrained"] == 0.9 and summary["scratch"] == 1.0


def test_export_records_the_corpus_per_source_for_the_model_card(tmp_path):
    from fmpretrain.data.manifest import Manifest, ShardEntry

    moments = {"count": 0, "mean": [0.0], "m2": [0.0]}
    shards = [
        ShardEntry(0, "shard-000000.tar", 3, 15, 1, 4, 10, "0" * 64, moments, "perov_5-test"),
        ShardEntry(1, "shard-000001.tar", 2, 9, 0, 2, 10, "0" * 64, moments, "generated"),
    ]
    manifest = Manifest(
        descriptor={"name": "ead"},
        descriptor_hash="h",
        dim=1,
        feature_names=["f"],
        fingerprint_dtype="float32",
        source={},
        chunk_size=4,
        shards=shards,
    )
    manifest.save(tmp_path)
    data = export._corpus({"path": str(tmp_path), "n_samples": 5})
    assert data["atoms"] == 24
    assert data["sources"]["perov_5-test"] == {
        "inputs": 4, "accepted": 3, "rejected": 1, "atoms": 15
    }  # fmt: skip
    card = rf.write_model_card(tmp_path, {"kind": rf.KIND_PRETRAINED, "training": {"data": data}})
    text = card.read_text()
    assert "5 structures, 24 atoms; perov_5-test: 3 structures; generated: 2 structures" in text
    assert export._corpus({"path": str(tmp_path / "gone")}) == {"path": str(tmp_path / "gone")}
