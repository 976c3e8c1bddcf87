"""Turn one chunk into one shard: validate, fingerprint, write, record (a Ray actor's job).

The shard and its record (``parts/shard-NNNNNN.json``: counts, size, sha256, moments, the
rejects with their reasons, the configuration hash and the chunk's input signature, see
:mod:`data_pipeline.inputs`) are each written under a temporary name and renamed, the record
last, so a record on disk always describes a complete shard.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline.config import FeaturizeConfig
from data_pipeline.inputs import config_hash, sample_config
from data_pipeline.sources import Chunk, ReadFailure, generate_inputs
from fmpretrain.data.format import Sample, write_shard
from fmpretrain.data.manifest import ShardEntry
from fmpretrain.data.stats import RunningMoments
from fmpretrain.files import atomic_write_text
from fmpretrain.structures import InvalidStructureError, Structure, validate

PARTS_DIR = "parts"

#: Valid structures featurized per batched descriptor call; a batch that fails is retried one
#: structure at a time, so this also bounds the work redone for one bad structure.
BATCH_STRUCTURES = 128


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


def part_path(out: Path, index: int) -> Path:
    return out / PARTS_DIR / f"shard-{index:06d}.json"


def sample_key(input_index: int) -> str:
    """Globally unique, sortable and WebDataset-safe (no dots)."""
    return f"s{input_index:010d}"


class ChunkFeaturizer:
    """Holds one descriptor instance and turns chunks into shards."""

    def __init__(self, cfg: FeaturizeConfig):
        import torch

        from fmpretrain.descriptors import get_descriptor

        torch.set_num_threads(1)  # one CPU per worker; parallelism comes from the workers
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.descriptor = get_descriptor(cfg.descriptor, **cfg.descriptor_params)
        self.config_hash = config_hash(sample_config(cfg, self.descriptor.hash))

    def run(self, chunk: Chunk) -> dict[str, Any]:
        """Featurize ``chunk`` into its shard; return the shard record (also written to disk)."""
        if chunk.items is not None:
            items = chunk.items
        else:
            items = generate_inputs(
                self.cfg.all_sources[chunk.source], chunk.source_start, chunk.size
            )
        moments = RunningMoments(self.descriptor.dim)
        samples: list[Sample] = []
        rejects: list[dict[str, Any]] = []
        valid = [
            (chunk.start + offset, item)
            for offset, item in enumerate(items)
            if self._validate(chunk.start + offset, item, rejects)
        ]
        fingerprints = self._fingerprints([item for _, item in valid])
        for (index, item), fingerprint in zip(valid, fingerprints, strict=True):
            sample = self._featurize(index, item, rejects, fingerprint)
            if sample is not None:
                samples.append(sample)
        if samples:  # the stored (possibly float16) values, all atoms of the chunk at once
            moments.update(np.concatenate([s.fingerprint for s in samples]))
        rejects.sort(key=lambda r: r["input"])

        n_samples, n_bytes, digest = write_shard(self.out / shard_name(chunk.index), samples)
        entry = ShardEntry(
            index=chunk.index,
            source=self.cfg.labels()[chunk.source],
            name=shard_name(chunk.index),
            n_samples=n_samples,
            n_atoms=int(sum(len(s.numbers) for s in samples)),
            n_rejected=len(rejects),
            n_inputs=len(items),
            bytes=n_bytes,
            sha256=digest,
            moments=moments.to_dict(),
        )
        record = {
            "entry": asdict(entry),
            "descriptor_hash": self.descriptor.hash,
            "config_hash": self.config_hash,
            "inputs": chunk.inputs,
            "rejects": rejects,
        }
        path = part_path(self.out, chunk.index)
        atomic_write_text(path, json.dumps(record))
        return record

    def _validate(
        self, index: int, item: Structure | ReadFailure, rejects: list[dict[str, Any]]
    ) -> bool:
        """Whether ``item`` is a valid structure; else record why in ``rejects``."""
        if isinstance(item, ReadFailure):
            rejects.append(
                {"input": index, "id": item.id, "stage": item.stage, "reason": item.reason}
            )
            return False
        try:
            validate(item, min_distance=self.cfg.min_distance)
        except InvalidStructureError as err:
            rejects.append(
                {"input": index, "id": item.id, "stage": "validate", "reason": err.reason}
            )
            return False
        return True

    def _fingerprints(self, structures: list[Structure]) -> list[np.ndarray | None]:
        """Batched fingerprints; ``None`` for each structure of a batch that raised."""
        out: list[np.ndarray | None] = []
        for start in range(0, len(structures), BATCH_STRUCTURES):
            group = structures[start : start + BATCH_STRUCTURES]
            try:
                out += [f.cpu().numpy() for f in self.descriptor.batch(group)]
            except Exception:  # retried one by one, so that the culprit gets its reason
                out += [None] * len(group)
        return out

    def _featurize(
        self,
        index: int,
        item: Structure,
        rejects: list[dict[str, Any]],
        fingerprint: np.ndarray | None = None,
    ) -> Sample | None:
        """The sample of a valid structure (``fingerprint``: precomputed, else computed here)."""
        try:
            if fingerprint is None:
                fingerprint = self.descriptor(item).cpu().numpy()
            if not np.isfinite(fingerprint).all():
                raise ValueError("fingerprint has non-finite values")
            return Sample.from_structure(
                sample_key(index), item, fingerprint, self.cfg.fingerprint_dtype
            )
        except Exception as err:  # one bad structure must not cost the shard
            reason = f"{type(err).__name__}: {err}"
            rejects.append({"input": index, "id": item.id, "stage": "featurize", "reason": reason})
            return None
