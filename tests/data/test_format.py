"""The shard sample contract: encode/decode, no pickle, deterministic bytes, clear errors."""

from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import pytest
import webdataset as wds
from ase.build import bulk

from fmpretrain.data.format import Sample, ShardFormatError, read_shard, write_shard
from fmpretrain.structures import Structure


def make_samples(n: int = 3) -> list[Sample]:
    out = []
    for k in range(n):
        s = Structure.from_ase(bulk("NaCl", "rocksalt", a=5.6 + 0.1 * k).repeat((1, 1, k + 1)))
        s.id, s.properties = f"mp-{k}.x", {"e_form": -1.5 + k}
        fp = np.arange(len(s) * 4, dtype=np.float64).reshape(len(s), 4) / 7
        out.append(Sample.from_structure(f"s{k:010d}", s, fp))
    return out


def test_round_trip(tmp_path):
    samples = make_samples()
    n, size, digest = write_shard(tmp_path / "a.tar", samples)
    assert n == 3 and size == (tmp_path / "a.tar").stat().st_size and len(digest) == 64
    back = list(read_shard(tmp_path / "a.tar"))
    assert [b.key for b in back] == [s.key for s in samples]
    for a, b in zip(samples, back, strict=True):
        np.testing.assert_array_equal(a.numbers, b.numbers)
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.cell, b.cell)
        np.testing.assert_array_equal(a.pbc, b.pbc)
        assert b.fingerprint.dtype == np.float32
        np.testing.assert_array_equal(a.fingerprint, b.fingerprint)
        assert b.meta["id"] == a.meta["id"] and b.meta["properties"] == {
            "e_form": a.meta["properties"]["e_form"]
        }
        assert b.to_structure().id == a.meta["id"]


def test_deterministic_bytes(tmp_path):
    _, _, d1 = write_shard(tmp_path / "a.tar", make_samples())
    _, _, d2 = write_shard(tmp_path / "b.tar", make_samples())
    assert d1 == d2
    assert not list(tmp_path.glob("*.tmp"))


def test_shard_bytes_are_what_tarfile_writes(tmp_path):
    """The hand-built ustar headers equal tarfile's (mode 0644, owner 0/0, mtime 0)."""
    samples = make_samples(4)
    _, size, digest = write_shard(tmp_path / "a.tar", samples)
    reference = io.BytesIO()
    with tarfile.open(fileobj=reference, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in samples:
            for suffix, payload in sample.encode().items():
                info = tarfile.TarInfo(f"{sample.key}.{suffix}")
                info.size, info.mtime, info.mode = len(payload), 0, 0o644
                tar.addfile(info, io.BytesIO(payload))
    assert (tmp_path / "a.tar").read_bytes() == reference.getvalue()
    assert size == len(reference.getvalue()) and size % tarfile.RECORDSIZE == 0
    assert digest == hashlib.sha256(reference.getvalue()).hexdigest()


@pytest.mark.parametrize("key", ["k" * 90, "clé"])
def test_keys_that_do_not_fit_a_ustar_name_are_refused(tmp_path, key):
    sample = make_samples(1)[0]
    sample.key = key
    with pytest.raises(ShardFormatError, match="use shorter sample keys"):
        write_shard(tmp_path / "a.tar", [sample])


def test_webdataset_reads_shards_without_pickle(tmp_path):
    write_shard(tmp_path / "a.tar", make_samples())
    ds = wds.WebDataset(str(tmp_path / "a.tar"), shardshuffle=False).decode()
    rows = list(ds)
    assert len(rows) == 3
    assert rows[0]["fingerprint.npy"].shape == (2, 4)
    assert rows[2]["meta.json"]["id"] == "mp-2.x"
    with tarfile.open(tmp_path / "a.tar") as tar:
        names = tar.getnames()
    assert all(n.endswith((".npy", ".json")) for n in names)
    assert not any("pickle" in n or n.endswith(".pyd") for n in names)


def test_float16_fingerprints(tmp_path):
    s = make_samples(1)[0]
    s16 = Sample.from_structure(s.key, s.to_structure(), s.fingerprint, dtype="float16")
    write_shard(tmp_path / "h.tar", [s16])
    assert next(read_shard(tmp_path / "h.tar")).fingerprint.dtype == np.float16
    with pytest.raises(ValueError, match="dtype"):
        Sample.from_structure(s.key, s.to_structure(), s.fingerprint, dtype="int8")


def test_bad_samples_and_shards(tmp_path):
    members = make_samples(1)[0].encode()
    del members["cell.npy"]
    with pytest.raises(ShardFormatError, match=r"lacks member.*cell"):
        Sample.decode("s0", members)
    members = make_samples(1)[0].encode()
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    members["fingerprint.npy"] = buffer.getvalue()  # a pickled payload is refused
    with pytest.raises(ShardFormatError, match="fingerprint"):
        Sample.decode("s0", members)
    path = tmp_path / "t.tar"
    write_shard(path, make_samples())
    path.write_bytes(path.read_bytes()[:1500])  # truncated
    with pytest.raises(ShardFormatError):
        list(read_shard(path))
    with pytest.raises(ShardFormatError, match="may not contain"):
        write_shard(
            tmp_path / "k.tar",
            [Sample.from_structure("a.b", make_samples(1)[0].to_structure(), np.zeros((2, 1)))],
        )
