"""Fault table, data side: damaged shards and manifests are refused, naming what is wrong."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from fmpretrain.cli import main as cli_main
from fmpretrain.data.format import read_shard, write_shard
from fmpretrain.data.loader import ShardReadError, build_loader
from fmpretrain.data.manifest import Manifest, ManifestModifiedError, verify_shards


def load_all(root: Path, **kw) -> list:
    kw.setdefault("split", "all")
    return list(build_loader(root, cutoff=4.0, max_atoms_per_batch=40, shuffle_buffer=4, **kw))


def payload_offset(path: Path, suffix: str, sample: int = 1) -> int:
    """Byte offset of the data of the ``sample``-th member ending in ``suffix`` (past its
    ``.npy`` header)."""
    with tarfile.open(path) as tar:
        members = [m for m in tar.getmembers() if m.name.endswith(suffix)]
        member = members[sample]
        header = tar.extractfile(member).read(128)  # type: ignore[union-attr]
    assert header.startswith(b"\x93NUMPY")
    return member.offset_data + header.index(b"\n") + 1


def flip_low_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01  # lowest mantissa bit of a float: still a valid, finite number
    path.write_bytes(bytes(data))


def rewrite_shard(root: Path, name: str, change) -> None:
    """Rewrite shard ``name`` with ``change(samples)`` applied and reseal the manifest, as a
    featurizer that wrote bad values would have."""
    samples = list(read_shard(root / name))
    change(samples)
    _, size, digest = write_shard(root / name, samples)
    manifest = Manifest.load(root)
    entry = next(s for s in manifest.shards if s.name == name)
    entry.bytes, entry.sha256 = size, digest
    manifest.save(root)


def test_flipped_byte_in_shard_is_refused_naming_it(tiny_shards):
    path = tiny_shards / "shard-000002.tar"
    flip_low_bit(path, payload_offset(path, ".fingerprint.npy") + 9)
    assert len(list(read_shard(path))) == 6  # still decodes: only the sha256 can tell
    with pytest.raises(ShardReadError, match=r"shard-000002\.tar.*sha256") as err:
        load_all(tiny_shards)
    assert "\n" not in str(err.value)
    with pytest.raises(ShardReadError, match=r"shard-000002\.tar.*sha256"):
        load_all(tiny_shards, num_workers=2)  # raised in a worker, re-raised here
    assert any("shard-000002.tar: sha256" in p for p in verify_shards(tiny_shards))


def test_flipped_byte_through_pipe_url_is_refused(tiny_shards):
    path = tiny_shards / "shard-000001.tar"
    flip_low_bit(path, payload_offset(path, ".positions.npy") + 3)
    urls = [f"pipe:cat {p}" for p in Manifest.load(tiny_shards).shard_paths(tiny_shards)]
    with pytest.raises(ShardReadError, match=r"shard-000001\.tar.*sha256"):
        load_all(urls, manifest=tiny_shards)  # type: ignore[arg-type]


def test_nan_fingerprint_is_refused_naming_shard_and_sample(tiny_shards):
    def poison(samples):
        samples[4].fingerprint[1, 3] = np.nan

    rewrite_shard(tiny_shards, "shard-000003.tar", poison)
    key = list(read_shard(tiny_shards / "shard-000003.tar"))[4].key
    with pytest.raises(ShardReadError, match=rf"shard-000003\.tar.*non-finite.*{key}"):
        load_all(tiny_shards)
    assert any(key in p and "non-finite" in p for p in verify_shards(tiny_shards))


def test_shard_removed_from_manifest_by_hand_is_refused(tiny_shards):
    path = tiny_shards / "manifest.json"
    d = json.loads(path.read_text())
    d["shards"] = d["shards"][:-1]
    d["n_chunks"] -= 1
    path.write_text(json.dumps(d, indent=1))
    with pytest.raises(ManifestModifiedError, match="modified after it was written") as err:
        load_all(tiny_shards)
    assert "featurize" in str(err.value) and "shards verify" in str(err.value)
    problems = verify_shards(tiny_shards)
    assert any("modified after it was written" in p for p in problems)
    assert any("shard-000004.tar: on disk but not listed" in p for p in problems)


def test_shard_on_disk_but_not_in_manifest_is_refused(tiny_shards):
    manifest = Manifest.load(tiny_shards)
    manifest.shards = manifest.shards[:-1]
    manifest.n_chunks = len(manifest.shards)
    manifest.save(tiny_shards)  # a consistent, sealed manifest: only the extra file is wrong
    with pytest.raises(ShardReadError, match=r"does not list.*shard-000004\.tar"):
        load_all(tiny_shards)


def test_edited_statistics_are_refused(tiny_shards):
    path = tiny_shards / "manifest.json"
    d = json.loads(path.read_text())
    d["shards"][0]["moments"]["mean"][5] += 0.25
    path.write_text(json.dumps(d, indent=1))
    with pytest.raises(ManifestModifiedError, match="modified after it was written"):
        Manifest.load(tiny_shards)
    with pytest.raises(ManifestModifiedError):
        load_all(tiny_shards)


def test_verify_deep_recomputes_statistics(tiny_shards, capsys):
    assert cli_main(["shards", "verify", "--deep", str(tiny_shards)]) == 0
    manifest = Manifest.load(tiny_shards)
    manifest.shards[1].moments["std"][7] *= 1.5
    manifest.shards[1].moments["m2"][7] *= 1.5**2
    manifest.save(tiny_shards)  # resealed: only recomputing the statistics can tell
    assert verify_shards(tiny_shards) == []
    problems = verify_shards(tiny_shards, deep=True)
    assert problems and all(p.startswith("shard-000001.tar: feature 7 std") for p in problems)
    assert cli_main(["shards", "verify", "--deep", str(tiny_shards)]) == 1
    assert "feature 7 std recomputed" in capsys.readouterr().out
