"""Which shards a pre-training pass reads: the shard list of a directory or URLs, checked
against its manifest, split into training and validation shards and dealt out to ranks.

Everything here works from the manifest and file sizes alone; streaming the shards' samples
is :mod:`fmpretrain.data.loader`'s job.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np
import webdataset as wds

from fmpretrain.data.batching import derive_seed
from fmpretrain.data.format import ShardFormatError
from fmpretrain.data.manifest import MANIFEST_NAME, Manifest, unlisted_shards

Split = Literal["train", "val", "all"]
SHARD_ORDER = 0  # seed-stream tag of the shard shuffle


class ShardReadError(ShardFormatError):
    """A shard could not be streamed (truncated, corrupt, or its ``pipe:`` command failed)."""


@dataclass(frozen=True)
class ShardRef:
    """One shard to stream: its URL, a display name, and its counts when the manifest has it."""

    url: str
    name: str
    n_samples: int | None = None
    n_atoms: int | None = None
    n_bytes: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class RankCounts:
    """What one rank reads in one epoch (``None`` where the manifest does not say)."""

    n_shards: int
    n_samples: int | None
    n_atoms: int | None

    def approx_batches(self, max_atoms_per_batch: int) -> int | None:
        """A progress-bar estimate (a lower bound unless structures exceed the budget)."""
        if self.n_atoms is None:
            return None
        return math.ceil(self.n_atoms / max_atoms_per_batch)


def split_shards(
    shards: Sequence[ShardRef], val_shards: int | float, split: Split
) -> list[ShardRef]:
    """``val_shards`` shards (an int, or a fraction of them, at least one) are the validation
    split, the others the training split; ``split="all"`` keeps every shard.

    The held-out shards are spread evenly over the shard order, ending at the last shard
    (``n - 1 - floor(k n / n_val)`` for ``k < n_val``; one shard: the last), so that a job
    over several sources, whose shards follow the source order, validates on each of them.
    """
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
    n = len(shards)
    if isinstance(val_shards, float) and not val_shards.is_integer():
        if not 0.0 < val_shards < 1.0:
            raise ValueError(f"val_shards as a fraction must lie in (0, 1), got {val_shards}")
        n_val = max(1, round(val_shards * n))
    else:
        n_val = int(val_shards)
        if n_val < 0:
            raise ValueError(f"val_shards must be >= 0, got {val_shards}")
    if split == "all":
        return list(shards)
    if n_val >= n:
        raise ValueError(
            f"val_shards={val_shards} leaves no training shard out of {n}: "
            "featurize with a smaller chunk_size or hold out fewer shards"
        )
    if split == "val" and n_val == 0:
        raise ValueError("split='val' needs val_shards > 0 (the shards held out for validation)")
    held_out = {n - 1 - (k * n) // n_val for k in range(n_val)}
    return [s for i, s in enumerate(shards) if (i in held_out) == (split == "val")]


def rank_shards(
    shards: Sequence[ShardRef],
    *,
    rank: int,
    world_size: int,
    seed: int,
    epoch: int,
    shuffle: bool,
) -> list[ShardRef]:
    """The shards rank ``rank`` reads in ``epoch`` (in its reading order)."""
    order = list(shards)
    if shuffle:
        perm = np.random.default_rng(derive_seed(seed, epoch, SHARD_ORDER)).permutation(len(order))
        order = [order[i] for i in perm]
    return order[rank::world_size]


def count_rank(shards: Sequence[ShardRef]) -> RankCounts:
    """What a rank's shards add up to."""
    samples = [s.n_samples for s in shards]
    atoms = [s.n_atoms for s in shards]
    return RankCounts(
        n_shards=len(shards),
        n_samples=None if None in samples else sum(samples),  # type: ignore[arg-type]
        n_atoms=None if None in atoms else sum(atoms),  # type: ignore[arg-type]
    )


def local_path(url: str) -> Path | None:
    """The file a path or ``file:`` URL names; ``None`` for other schemes (``pipe:``, ...)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    if parsed.scheme == "":
        return Path(url)
    return None


def expand_urls(source: str | Path | Sequence[str | Path]) -> list[str]:
    """Brace-expanded shard URLs (``shard-{000000..000009}.tar``) or the given list."""
    if isinstance(source, str | Path):
        return list(wds.shardlists.expand_urls(str(source)))
    return [str(s) for s in source]


def resolve_shards(
    source: str | Path | Sequence[str | Path], manifest: Manifest | str | Path | None
) -> tuple[Manifest, list[ShardRef], str]:
    """The manifest, the shard list (in manifest or given order) and where it came from."""
    if isinstance(source, str | Path) and Path(source).is_dir():
        root = Path(source)
        man = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest or root)
        unlisted = unlisted_shards(root, man)
        if unlisted:
            raise ShardReadError(
                f"{root} holds {len(unlisted)} shard(s) that {MANIFEST_NAME} does not list, e.g. "
                f"{unlisted[0]}: remove them, or re-run featurize and `fmpretrain shards verify "
                f"{root}`"
            )
        refs = [
            ShardRef(str(root / s.name), s.name, s.n_samples, s.n_atoms, s.bytes, s.sha256)
            for s in sorted(man.shards, key=lambda s: s.index)
        ]
        return man, refs, str(root / MANIFEST_NAME)
    urls = expand_urls(source)
    if not urls:
        raise ValueError(f"no shard in {source!r}")
    if manifest is None:
        parents = {p.parent for p in map(local_path, urls) if p is not None}
        if len(parents) != 1 or not (next(iter(parents)) / MANIFEST_NAME).exists():
            raise ValueError(
                "pass manifest=<shard directory or Manifest>: the loader needs the manifest of "
                "these shards for the descriptor hash and the normalization statistics"
            )
        manifest = next(iter(parents))
    man = manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)
    where = "the given manifest" if isinstance(manifest, Manifest) else str(manifest)
    by_name = {s.name: s for s in man.shards}
    refs = []
    for url in urls:
        names = {t for t in re.split(r"[\s/:]+", url) if t in by_name}
        entry = by_name[names.pop()] if len(names) == 1 else None
        if entry is None:
            refs.append(ShardRef(url, url))
        else:
            refs.append(
                ShardRef(url, entry.name, entry.n_samples, entry.n_atoms, entry.bytes, entry.sha256)
            )
    unknown = [r.url for r in refs if r.n_samples is None]
    if unknown:
        warnings.warn(
            f"{len(unknown)} shard URL(s), e.g. {unknown[0]!r}, name no shard of {where}: their "
            "sample counts are unknown, so truncation at a sample boundary goes unnoticed and "
            "counts() cannot report them",
            stacklevel=3,
        )
    return man, refs, where


def check_manifest(man: Manifest, where: str, expected_hash: str | None) -> None:
    """Refuse a manifest of another descriptor, an unfinished one and an empty one."""
    if expected_hash is not None and man.descriptor_hash != expected_hash:
        name = man.descriptor.get("name", "?")
        raise ValueError(
            f"descriptor hash mismatch: the shards of {where} were featurized with descriptor "
            f"{name!r} hash {man.descriptor_hash}, but the model expects hash {expected_hash}. "
            "Featurize the structures with the model's descriptor configuration (or train with "
            "a model config whose descriptor matches these shards)."
        )
    if not man.complete:
        raise ValueError(
            f"{where} is incomplete ({len(man.shards)} of {man.n_chunks or '?'} shards): "
            "featurization did not finish. Re-run the same `fmpretrain featurize` command to "
            "finish it (it resumes), then check with `fmpretrain shards verify DIR`."
        )
    if not man.shards:
        raise ValueError(f"{where} lists no shard")


def check_files(refs: Sequence[ShardRef], where: str) -> None:
    """Every local shard is there with the size its manifest records (before streaming)."""
    for ref in refs:
        path = local_path(ref.url)
        if path is None:
            continue
        if not path.is_file():
            raise FileNotFoundError(
                f"shard {ref.name} listed in {where} is missing: {path}. Restore it, or re-run "
                "`fmpretrain featurize` on the directory to rewrite missing shards."
            )
        if ref.n_bytes is not None and path.stat().st_size != ref.n_bytes:
            raise ShardReadError(
                f"shard {ref.name} ({path}) has {path.stat().st_size} bytes but {where} says "
                f"{ref.n_bytes}: it is truncated or was changed. Run `fmpretrain shards verify` "
                "and re-featurize the bad shards."
            )
