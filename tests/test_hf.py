"""Releases on the Hugging Face Hub (``hf://org/repo[@revision][/subfolder]``) through the real
``huggingface_hub`` client against a small hub on 127.0.0.1 (tests/hfhub.py): download and
load, the cache (no second file request, offline), revisions and subfolders, a corrupted file
refused by ``SHA256SUMS``, and publish -> load round trips."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import fmpretrain
from fmpretrain import release_format as rf
from fmpretrain.cli import main
from fmpretrain.hub import ChecksumError, HubError, hf, load_pretrained
from tests.hfhub import HubServer
from tests.releases import flip_last_byte, tiny_structures, write_finetuned, write_pretrained

RELEASE_FILES = sorted([rf.CHECKSUMS, rf.WEIGHTS, rf.CONFIG, rf.MODEL_CARD])


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf-releases")
    base = write_pretrained(root / "pretrained")
    return {
        "pretrained": base,
        "other": write_pretrained(root / "other", seed=5),
        "finetuned": write_finetuned(root / "finetuned", base),
    }


@pytest.fixture(scope="module")
def structures():
    return tiny_structures(3)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A hub on 127.0.0.1 that HF_ENDPOINT points at; HF_HOME in tmp_path; no token."""
    from huggingface_hub import constants
    from huggingface_hub.utils import _detect_agent

    server = HubServer()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "FMPRETRAIN_OFFLINE",
                 "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    # huggingface_hub read its constants at import (ENDPOINT stays huggingface.co: fmpretrain
    # passes endpoint= itself); keep its token file and client telemetry out of the way
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "hf-home" / "agents"))
    monkeypatch.setattr(_detect_agent, "_registry", {"harnesses": {}}, raising=False)
    yield server
    server.close()


def cache(tmp_path: Path) -> Path:
    return tmp_path / "hf-home" / "hub"


def same_fingerprints(a: fmpretrain.api.Model, b: fmpretrain.api.Model, structures) -> None:
    for x, y in zip(a.fingerprint(structures), b.fingerprint(structures), strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.embed(structures), b.embed(structures))


# ---------------------------------------------------------------------------- addresses
def test_parse_addresses():
    assert hf.parse("hf://org/repo") == hf.HfAddress("org/repo")
    assert hf.parse("hf://org/repo/") == hf.HfAddress("org/repo")
    assert hf.parse("hf://org/repo@v1.0") == hf.HfAddress("org/repo", "v1.0")
    assert hf.parse("hf://org/repo@main/a/b") == hf.HfAddress("org/repo", "main", "a/b")
    assert hf.parse("hf://org/repo/et-small") == hf.HfAddress("org/repo", None, "et-small")
    pr = hf.parse("hf://org/repo@refs%2Fpr%2F1/x")
    assert pr.revision == "refs/pr/1" and str(pr) == "hf://org/repo@refs%2Fpr%2F1/x"
    for bad, message in [
        ("hf://repo", "needs ORG/REPO"),
        ("hf://org/re po", "not a valid name"),
        ("hf://org/a--b", "not a valid name"),
        ("hf://org/repo@", "malformed revision"),
        ("hf://org/repo/../x", "malformed subfolder"),
        ("hf://datasets/org/repo", "only model repositories"),
        ("https://huggingface.co/org/repo", "not an hf:// address"),
    ]:
        with pytest.raises(hf.HfError, match=message):
            hf.parse(bad)
    assert issubclass(hf.HfError, HubError)  # the CLI and hub callers catch HubError


# ---------------------------------------------------------------------------- download
def test_load_and_download_from_the_hub(hub, releases, structures, tmp_path, capsys):
    commit = hub.put_release("org/tiny", releases["pretrained"])
    model = fmpretrain.load("hf://org/tiny", device="cpu")
    snapshot = cache(tmp_path) / "models--org--tiny" / "snapshots" / commit
    assert model.path == snapshot  # huggingface_hub's cache layout, under HF_HOME
    assert sorted(p.name for p in snapshot.iterdir()) == RELEASE_FILES  # not .gitattributes
    same_fingerprints(model, fmpretrain.load(releases["pretrained"], device="cpu"), structures)
    assert hub.count("GET", "/resolve/") == 4

    assert main(["download", "hf://org/tiny", "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == str(snapshot)
    assert load_pretrained("hf://org/tiny") == snapshot  # what finetune / benchmark call
    assert hub.count("GET", "/resolve/") == 4 and hub.count("HEAD", "/resolve/") == 4


def test_cache_hit_and_offline(hub, releases, tmp_path, monkeypatch):
    hub.put_release("org/tiny", releases["pretrained"])
    first = hf.download("hf://org/tiny")
    files, heads = hub.count("GET", "/resolve/"), hub.count("HEAD", "/resolve/")
    before = len(hub.requests)
    assert hf.download("hf://org/tiny") == first  # a branch: one metadata request, no file
    assert (hub.count("GET", "/resolve/"), hub.count("HEAD", "/resolve/")) == (files, heads)
    assert [p for _, p in hub.requests[before:]] == ["/api/models/org/tiny/revision/main"]

    before = len(hub.requests)
    assert hf.download(f"hf://org/tiny@{first.name}") == first  # a commit hash: no request
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fmpretrain.load("hf://org/tiny", device="cpu").path == first
    assert len(hub.requests) == before
    with pytest.raises(hf.HfError, match=r"offline .* not in the cache"):
        fmpretrain.load("hf://org/elsewhere", device="cpu")
    assert len(hub.requests) == before


def test_an_interrupted_download_resumes(hub, releases, tmp_path):
    release = tmp_path / "big"
    shutil.copytree(releases["pretrained"], release)
    (release / "big.bin").write_bytes(np.random.default_rng(0).bytes(12 << 20))
    rf.write_checksums(release, [rf.WEIGHTS, rf.CONFIG, rf.MODEL_CARD, "big.bin"])
    hub.put_release("org/big", release)
    cut = (11 << 20) + 123
    hub.drop_after["big.bin"] = cut  # the connection is lost after 11 MiB of big.bin, once
    path = hf.download("hf://org/big")
    ranged = [r for p, r in hub.ranges if p.endswith("/big.bin")]
    assert len(ranged) == 1 and ranged[0].endswith("-")  # one request for the rest only
    assert 0 < int(ranged[0][len("bytes=") : -1]) <= cut
    assert rf.verify_release(path).sums == rf.read_checksums(release)


def test_revisions_and_subfolders(hub, releases, tmp_path):
    v1 = hub.put_release("org/multi", releases["pretrained"])
    hub.put_release("org/multi", releases["other"])  # main moves on
    hub.put_release("org/multi", releases["finetuned"], subfolder="ft", branch="dev")
    sums = {name: rf.read_checksums(path) for name, path in releases.items()}
    assert rf.read_checksums(hf.download(f"hf://org/multi@{v1}")) == sums["pretrained"]
    assert rf.read_checksums(hf.download("hf://org/multi")) == sums["other"]
    tuned = fmpretrain.load("hf://org/multi@dev/ft", device="cpu")
    assert tuned.is_finetuned and tuned.path.name == "ft"
    assert rf.read_checksums(tuned.path) == sums["finetuned"]


def test_extra_listed_files_are_fetched(hub, releases, tmp_path):
    release = tmp_path / "with-notes"
    shutil.copytree(releases["pretrained"], release)
    (release / "notes.txt").write_text("training notes\n")
    (release / "unlisted.txt").write_text("not in SHA256SUMS\n")
    rf.write_checksums(release, [rf.WEIGHTS, rf.CONFIG, rf.MODEL_CARD, "notes.txt"])
    hub.put_release("org/notes", release)
    path = hf.download("hf://org/notes")
    assert sorted(p.name for p in path.iterdir()) == sorted([*RELEASE_FILES, "notes.txt"])


def test_hub_errors_are_one_line(hub, releases, capsys):
    hub.create("org/empty")
    hub.put_release("org/tiny", releases["pretrained"])
    for address, message in [
        ("hf://org/missing", "repository org/missing not found"),
        ("hf://org/tiny@nope", "revision 'nope' does not exist"),
        ("hf://org/empty", "holds no SHA256SUMS, so it is not an fmpretrain release"),
        ("hf://org/tiny/sub", "folder 'sub' of the repository"),
    ]:
        with pytest.raises(hf.HfError, match=message):
            hf.download(address)
        assert main(["download", address]) == 2
        last = capsys.readouterr().err.splitlines()[-1]  # (after huggingface_hub's warnings)
        assert last.startswith(f"fmpretrain download: error: {address}: ") and message in last


# ---------------------------------------------------------------------------- integrity
def test_a_corrupted_file_on_the_hub_is_refused(hub, releases, capsys):
    hub.put_release("org/bad", releases["pretrained"])
    hub.corrupt("org/bad", rf.WEIGHTS)  # served with a consistent ETag and length: the hub
    with pytest.raises(rf.ChecksumError, match=r"sha256 mismatch for model\.safetensors"):
        fmpretrain.load("hf://org/bad", device="cpu")
    assert hub.count("GET", f"/resolve/{hub.repos['org/bad']['branches']['main']}/model") == 2
    with pytest.raises(ChecksumError, match="failed verification"):
        load_pretrained("hf://org/bad")
    assert main(["download", "hf://org/bad"]) == 2
    assert "sha256 mismatch for model.safetensors" in capsys.readouterr().err


def test_a_damaged_cached_file_is_fetched_again(hub, releases, caplog):
    hub.put_release("org/tiny", releases["pretrained"])
    path = hf.download("hf://org/tiny")
    flip_last_byte((path / rf.WEIGHTS).resolve())  # the blob behind the snapshot's link
    gets = hub.count("GET", "/resolve/")
    assert hf.download("hf://org/tiny") == path
    assert hub.count("GET", "/resolve/") == gets + 1  # the weights, once
    assert "differ(s) from SHA256SUMS; fetching again" in caplog.text
    rf.verify_release(path)


# ---------------------------------------------------------------------------- publish
def test_publish_and_load_back(hub, releases, structures, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", hub.token)
    release = tmp_path / "ft"
    shutil.copytree(releases["finetuned"], release)
    (release / "scratch.txt").write_text("not part of the release\n")

    assert main(["publish", str(release), "--to", "hf://org/new"]) == 0
    out, err = capsys.readouterr()
    commit = hub.repos["org/new"]["branches"]["main"]
    assert out.strip() == f"hf://org/new@{commit}"
    assert "uploaded README.md, SHA256SUMS, config.yaml, model.safetensors" in err
    files = hub.files("org/new")
    assert sorted(files) == sorted([".gitattributes", *RELEASE_FILES])  # exactly the release
    for name in RELEASE_FILES:
        assert files[name] == (release / name).read_bytes()

    loaded = fmpretrain.load(out.strip(), device="cpu")
    local = fmpretrain.load(releases["finetuned"], device="cpu")
    np.testing.assert_array_equal(loaded.predict(structures), local.predict(structures))

    # again, into a branch and a folder of the same repository (the branch is created)
    done = hf.publish(releases["pretrained"], "hf://org/new@dev/pre")
    assert done.files == tuple(RELEASE_FILES) and done.address.subfolder == "pre"
    assert sorted(hub.files("org/new", "dev")) == sorted(
        [".gitattributes", *RELEASE_FILES, *(f"pre/{n}" for n in RELEASE_FILES)]
    )
    pre = fmpretrain.load("hf://org/new@dev/pre", device="cpu")
    same_fingerprints(pre, fmpretrain.load(releases["pretrained"], device="cpu"), structures)
    assert hub.files("org/new") == files  # main is untouched


def test_publish_refusals(hub, releases, tmp_path, monkeypatch, capsys):
    assert main(["publish", str(releases["pretrained"]), "--to", "hf://org/x"]) == 2
    assert "no Hugging Face token: set HF_TOKEN" in capsys.readouterr().err
    assert hub.requests == []  # nothing was sent

    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(hf.HfError, match="refused the token"):
        hf.publish(releases["pretrained"], "hf://org/x")

    monkeypatch.setenv("HF_TOKEN", hub.token)
    damaged = tmp_path / "damaged"
    shutil.copytree(releases["pretrained"], damaged)
    flip_last_byte(damaged / rf.CONFIG)
    sent = len(hub.requests)
    assert main(["publish", str(damaged), "--to", "hf://org/x"]) == 2
    assert "sha256 mismatch for config.yaml" in capsys.readouterr().err
    assert len(hub.requests) == sent
    with pytest.raises(hf.HfError, match="cannot publish to a commit hash"):
        hf.publish(releases["pretrained"], "hf://org/x@" + "0" * 40)
    assert main(["publish", str(damaged), "--to", "hf://org/x", "--url", "https://x"]) == 2
    assert "--url, --out and --name are for archives" in capsys.readouterr().err


# ---------------------------------------------------------------------------- fine-tuning
def test_benchmark_starts_from_an_hf_release(hub, releases, tmp_path):
    from fmpretrain.finetune.benchmark import run_benchmark
    from fmpretrain.finetune.config import FinetuneConfig, load_finetune_config

    fields = FinetuneConfig.__dataclass_fields__
    gnn_only = ["baselines=false"] if "baselines" in fields else []
    hub.put_release("org/tiny", releases["pretrained"])
    cfg = load_finetune_config(
        None,
        [
            f"out={tmp_path / 'out'}",
            f"cache_dir={tmp_path / 'cache'}",
            "pretrained=hf://org/tiny",
            "wandb.mode=disabled",
            "task=emt_energy",
            "emt.n=20",
            "emt.max_atoms=6",
            "folds=[0]",
            "scratch=false",
            "max_epochs=1",
            "patience=1",
            "max_atoms_per_batch=128",
            "device=cpu",
            *gnn_only,
        ],
    )
    run_benchmark(cfg)
    release = tmp_path / "out" / "emt_energy" / "release" / "pretrained"
    config = rf.verify_release(release).config
    assert config["descriptor"] == rf.read_config(releases["pretrained"])["descriptor"]
    assert hub.count("GET", "/resolve/") == 4
