"""Tiny shard directories written directly with the shard writer (no Ray), for fault tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fmpretrain.data.format import Sample, write_shard
from fmpretrain.data.manifest import Manifest, ShardEntry
from fmpretrain.data.stats import RunningMoments
from fmpretrain.descriptors import get_descriptor
from fmpretrain.generate import generate_structure

N_SHARDS, PER_SHARD = 5, 6


def write_tiny_shards(out: Path, n_shards: int = N_SHARDS, per_shard: int = PER_SHARD) -> Path:
    """``n_shards`` shards of ``per_shard`` generated structures (up to 8 atoms), featurized
    with EAD at a 4 Å cutoff, and their sealed manifest."""
    out.mkdir(parents=True, exist_ok=True)
    descriptor = get_descriptor("ead", cutoff=4.0)
    manifest = Manifest(
        descriptor=descriptor.config(),
        descriptor_hash=descriptor.hash,
        dim=descriptor.dim,
        feature_names=descriptor.feature_names,
        fingerprint_dtype="float32",
        source={"kind": "generated", "n": n_shards * per_shard},
        chunk_size=per_shard,
        n_chunks=n_shards,
        complete=True,
    )
    for index in range(n_shards):
        moments = RunningMoments(descriptor.dim)
        samples = []
        for k in range(index * per_shard, (index + 1) * per_shard):
            structure = generate_structure(k, seed=3, max_atoms=8)
            sample = Sample.from_structure(f"s{k:06d}", structure, descriptor(structure).numpy())
            moments.update(sample.fingerprint)
            samples.append(sample)
        name = f"shard-{index:06d}.tar"
        n, size, digest = write_shard(out / name, samples)
        manifest.shards.append(
            ShardEntry(
                index=index,
                name=name,
                n_samples=n,
                n_atoms=sum(len(s.numbers) for s in samples),
                n_rejected=0,
                n_inputs=n,
                bytes=size,
                sha256=digest,
                moments=moments.to_dict(),
            )
        )
    manifest.save(out)
    return out


@pytest.fixture(scope="session")
def tiny_shards_master(tmp_path_factory) -> Path:
    return write_tiny_shards(tmp_path_factory.mktemp("tiny-shards"))


@pytest.fixture
def tiny_shards(tiny_shards_master, tmp_path) -> Path:
    """A private copy of the tiny shard directory that a test may damage."""
    out = tmp_path / "shards"
    shutil.copytree(tiny_shards_master, out)
    return out
