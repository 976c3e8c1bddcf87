"""The training loader: exactly-once splitting, determinism, atom budgets, normalization, graphs,
URLs, resume, validation split and clear errors on bad inputs."""

from __future__ import annotations

import json
import tarfile
import warnings
from itertools import pairwise, zip_longest
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import fmpretrain.data.loader as loader_module
from fmpretrain.data.batching import pack_by_budget, shuffle_buffer
from fmpretrain.data.format import read_shard
from fmpretrain.data.graphs import build_graph
from fmpretrain.data.loader import ShardReadError, build_loader
from fmpretrain.data.manifest import Manifest
from fmpretrain.data.scaling import Normalizer

CUTOFF = 5.0


def load(source, **kw):
    kw.setdefault("cutoff", CUTOFF)
    kw.setdefault("max_atoms_per_batch", 40)
    kw.setdefault("shuffle_buffer", 16)
    return build_loader(source, **kw)


def keys(batches) -> list[str]:
    return [k for b in batches for k in b.key]


def all_samples(root: Path) -> dict:
    return {s.key: s for p in Manifest.load(root).shard_paths(root) for s in read_shard(p)}


def same_batches(a, b) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x.key != y.key:
            return False
        for name in ("z", "pos", "y", "edge_index", "edge_shift", "batch"):
            if not torch.equal(getattr(x, name), getattr(y, name)):
                return False
    return True


# --------------------------------------------------------------------------- small pieces
def test_pack_by_budget_and_shuffle_buffer():
    sizes = [3, 4, 2, 9, 1, 1, 5]
    seen = []
    groups = list(pack_by_budget(sizes, lambda s: (s,), (6,), lambda s, _: seen.append(s)))
    assert groups == [[3], [4, 2], [9], [1, 1], [5]] and seen == [9]
    items = list(range(100))
    a, b = list(shuffle_buffer(items, 10, 7)), list(shuffle_buffer(items, 10, 7))
    assert a == b and sorted(a) == items and a != items
    assert list(shuffle_buffer(items, 10, 8)) != a


def test_normalizer_floor_and_round_trip():
    norm = Normalizer([1.0, 2.0, 3.0], [2.0, 0.0, 1e-12])
    assert norm.std.tolist() == [2.0, 1.0, 1.0]
    x = torch.tensor([[3.0, 2.0, 4.0]])
    assert norm.normalize(x).tolist() == [[1.0, 0.0, 1.0]]
    torch.testing.assert_close(norm.denormalize(norm.normalize(x)), x)
    back = Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert torch.equal(back.mean, norm.mean) and torch.equal(back.std, norm.std)


# --------------------------------------------------------------------------- splitting
def test_exactly_once_across_ranks_and_workers(ead_shards):
    expected = set(all_samples(ead_shards))
    man = Manifest.load(ead_shards)
    for epoch in (0, 1):
        seen, counted = [], 0
        for rank in range(2):
            loader = load(ead_shards, rank=rank, world_size=2, num_workers=2, epoch=epoch)
            batches = list(loader)
            got = keys(batches)
            counts = loader.counts()
            assert counts.n_samples == len(got)
            assert counts.n_atoms == sum(int(b.num_nodes) for b in batches)
            counted += counts.n_samples
            seen += got
        assert len(seen) == len(set(seen)) == counted == man.n_samples
        assert set(seen) == expected


def test_epochs_reorder_the_same_set_and_seed_repeats(ead_shards):
    e0 = list(load(ead_shards, epoch=0))
    e1 = list(load(ead_shards, epoch=1))
    assert keys(e0) != keys(e1) and sorted(keys(e0)) == sorted(keys(e1))
    assert keys(list(load(ead_shards, epoch=0, seed=1))) != keys(e0)
    assert same_batches(e0, list(load(ead_shards, epoch=0)))
    loader = load(ead_shards, epoch=0)
    loader.set_epoch(1)
    assert same_batches(list(loader), e1)
    w2 = list(load(ead_shards, epoch=0, num_workers=2))
    assert same_batches(w2, list(load(ead_shards, epoch=0, num_workers=2)))
    assert sorted(keys(w2)) == sorted(keys(e0))


# --------------------------------------------------------------------------- batches
def test_atom_budget_greedy_and_oversize_alone(ead_shards):
    batches = list(load(ead_shards, max_atoms_per_batch=30))
    sizes = [b.natoms.tolist() for b in batches]
    assert all(sum(s) <= 30 for s in sizes)
    for this, nxt in pairwise(sizes):  # greedy: the next one did not fit
        assert sum(this) + nxt[0] > 30
    biggest = max(n for s in sizes for n in s)
    with pytest.warns(UserWarning, match="exceeds the batch budget") as record:
        small = list(load(ead_shards, max_atoms_per_batch=biggest - 1))
    assert len([w for w in record if "exceeds" in str(w.message)]) == 1
    for b in small:
        assert int(b.num_nodes) <= biggest - 1 or b.num_graphs == 1
    assert any(b.num_graphs == 1 and int(b.num_nodes) == biggest for b in small)
    assert sorted(keys(small)) == sorted(keys(batches))


def test_edge_budget(ead_shards):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = list(load(ead_shards, max_atoms_per_batch=1000, max_edges_per_batch=3000))
    assert all(b.num_edges <= 3000 or b.num_graphs == 1 for b in batches)
    assert len(keys(batches)) == Manifest.load(ead_shards).n_samples


@pytest.mark.parametrize("num_workers", [0, 2])
def test_graphs_match_build_graph_and_normalization(ead_shards, num_workers):
    man = Manifest.load(ead_shards)
    samples = all_samples(ead_shards)
    loader = load(ead_shards, num_workers=num_workers)
    stats = man.statistics()
    assert np.allclose(loader.normalizer.mean.numpy(), stats.mean, atol=1e-6)
    batches = list(loader)
    for b in batches[:3]:
        for i, key in enumerate(b.key):
            s = samples[key]
            ref = build_graph(s.numbers, s.positions, s.cell, s.pbc, CUTOFF)
            got = b.get_example(i)
            for name in ("z", "pos", "edge_index", "edge_shift", "natoms"):
                assert torch.equal(getattr(got, name), getattr(ref, name)), name
            fp = s.fingerprint.astype(np.float64)
            std = np.where(stats.std < 1e-8, 1.0, stats.std)
            expected = torch.as_tensor((fp - stats.mean) / std, dtype=torch.float32)
            torch.testing.assert_close(got.y, expected)
            back = loader.normalizer.denormalize(got.y.double()).numpy()
            assert (np.abs(back - fp) <= 1e-6 * (np.abs(fp) + np.abs(stats.mean) + std)).all()
    y = torch.cat([b.y for b in batches]).double()
    assert y.shape == (sum(s.n_atoms for s in man.shards), man.dim)
    varying = torch.as_tensor(stats.std) > 1e-6
    assert varying.sum() > man.dim // 2
    torch.testing.assert_close(y.mean(0), torch.zeros(man.dim, dtype=y.dtype), atol=1e-4, rtol=0)
    torch.testing.assert_close(
        y.std(0, unbiased=False)[varying],
        torch.ones(int(varying.sum()), dtype=y.dtype),
        atol=1e-3,
        rtol=0,
    )


# --------------------------------------------------------------------------- URLs
def test_pipe_and_file_urls(ead_shards):
    paths = Manifest.load(ead_shards).shard_paths(ead_shards)
    ref = list(load(ead_shards, epoch=3))
    pipes = list(load([f"pipe:cat {p}" for p in paths], manifest=ead_shards, epoch=3))
    files = list(load([f"file:{p}" for p in paths], epoch=3))  # manifest found beside them
    assert same_batches(ref, pipes) and same_batches(ref, files)
    brace = str(ead_shards / "shard-{000000..000011}.tar")
    assert same_batches(ref, list(load(brace, epoch=3)))
    with pytest.raises(ValueError, match="pass manifest="):
        load([f"pipe:cat {p}" for p in paths])


# --------------------------------------------------------------------------- resume
def test_skip_batches_resume_without_workers(ead_shards):
    full = list(load(ead_shards, epoch=2))
    for k in (0, 1, 4, len(full) - 1, len(full), len(full) + 2):
        assert same_batches(list(load(ead_shards, epoch=2, skip_batches=k)), full[k:]), k
    loader = load(ead_shards)
    loader.set_epoch(2, skip_batches=3)
    assert same_batches(list(loader), full[3:])


def test_skip_batches_resume_with_workers(ead_shards, monkeypatch):
    # 5 training shards: worker 0 reads 3, worker 1 reads 2, so worker 1 runs out first and
    # the tail of the epoch comes from worker 0 alone
    kw = dict(epoch=1, num_workers=2, val_shards=7, max_atoms_per_batch=30)
    full = list(load(ead_shards, **kw))
    n = len(full)

    # the DataLoader interleaves its workers round-robin, skipping exhausted ones
    dataset = load(ead_shards, **kw).dataset
    per_worker = []
    for worker in range(2):
        fake = SimpleNamespace(id=worker, num_workers=2)
        monkeypatch.setattr(loader_module, "get_worker_info", lambda fake=fake: fake)
        per_worker.append(list(dataset))
    assert len(per_worker[0]) > len(per_worker[1]) + 3
    rounds = zip_longest(*per_worker)
    assert same_batches(full, [b for r in rounds for b in r if b is not None])
    monkeypatch.undo()

    for k in (1, 2, 3, n // 2, n - 4, n - 3, n - 1, n):
        assert same_batches(list(load(ead_shards, skip_batches=k, **kw)), full[k:]), k


# --------------------------------------------------------------------------- validation split
def test_train_val_split_disjoint_and_covering(ead_shards):
    everything = set(all_samples(ead_shards))
    names = [p.name for p in Manifest.load(ead_shards).shard_paths(ead_shards)]
    for val_shards, n_val in ((2, 2), (0.25, 3)):
        train_loader = load(ead_shards, split="train", val_shards=val_shards)
        val_loader = load(ead_shards, split="val", val_shards=val_shards)
        n = len(names)
        spread = sorted(names[n - 1 - (k * n) // n_val] for k in range(n_val))
        assert sorted(r.name for r in val_loader.shards()) == spread
        assert names[-1] in spread and len(set(spread)) == n_val
        train, val = set(keys(list(train_loader))), keys(list(val_loader))
        assert not train & set(val) and train | set(val) == everything
        assert val == keys(list(load(ead_shards, split="val", val_shards=val_shards, epoch=5)))
    with pytest.raises(ValueError, match="no training shard"):
        load(ead_shards, val_shards=12)
    with pytest.raises(ValueError, match="val_shards > 0"):
        load(ead_shards, split="val")


# --------------------------------------------------------------------------- errors
def test_descriptor_hash_mismatch(ead_shards):
    actual = Manifest.load(ead_shards).descriptor_hash
    assert load(ead_shards, expected_descriptor_hash=actual).counts().n_shards == 12
    with pytest.raises(ValueError, match="descriptor hash mismatch") as err:
        load(ead_shards, expected_descriptor_hash="0123abcd")
    assert actual in str(err.value) and "0123abcd" in str(err.value)


def test_incomplete_manifest(shard_copy):
    man = Manifest.load(shard_copy)
    man.complete = False
    man.shards = man.shards[:-1]
    man.save(shard_copy)
    with pytest.raises(ValueError, match="incomplete"):
        load(shard_copy)


def test_missing_shard_up_front(shard_copy):
    (shard_copy / "shard-000004.tar").unlink()
    with pytest.raises(FileNotFoundError, match=r"shard-000004\.tar"):
        load(shard_copy)


def _member_offsets(path: Path) -> list[int]:
    with tarfile.open(path) as tar:
        return [m.offset for m in tar.getmembers()]


def test_truncated_shard(shard_copy):
    path = shard_copy / "shard-000005.tar"
    data = path.read_bytes()
    cut = shard_copy.parent / "cut"
    cut.mkdir()
    (cut / "orig.tar").write_bytes(data)
    offsets = _member_offsets(cut / "orig.tar")
    # local file of the wrong size: refused up front, naming it
    (shard_copy / path.name).write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardReadError, match=r"shard-000005\.tar"):
        load(shard_copy)
    # the same through pipe: URLs (no size to check) fails while streaming, mid-member or at a
    # member boundary (the sample count no longer matches the manifest)
    for size, why in (
        (len(data) // 2 + 100, "truncated or corrupt"),  # inside a member
        (offsets[9], "lacks member"),  # between two members of one sample
        (offsets[12], "2 samples read, the manifest says"),  # between samples
    ):
        (cut / path.name).write_bytes(data[:size])
        urls = [
            f"pipe:cat {cut / path.name if p.name == path.name else p}"
            for p in Manifest.load(shard_copy).shard_paths(shard_copy)
        ]
        for workers in (0, 2):
            with pytest.raises(ShardReadError, match=rf"shard-000005\.tar.*{why}"):
                list(load(urls, manifest=shard_copy, num_workers=workers))


def test_corrupt_shard_of_right_size(shard_copy):
    path = shard_copy / "shard-000002.tar"
    data = bytearray(path.read_bytes())
    start = _member_offsets(path)[7] + 512  # payload of the second sample's first member
    data[start : start + 64] = b"\x00" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(ShardReadError, match=r"shard-000002\.tar"):
        list(load(shard_copy))
