"""Input sources, streamed and split deterministically into chunks (one chunk -> one shard).

Chunk ``k`` always holds inputs ``k*chunk_size .. (k+1)*chunk_size - 1`` of the source's fixed
order, whatever the number of workers, so a re-run can skip the chunks already on disk.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from data_pipeline.config import FeaturizeConfig, SourceConfig
from fmpretrain.structures import Structure


@dataclass(frozen=True)
class ReadFailure:
    """An input that could not be read; it becomes a reject with this id and reason."""

    id: str
    reason: str
    stage: str = "read"  # the reject's stage in rejects.jsonl: read | dedupe


@dataclass
class Chunk:
    """Inputs ``start .. start + size - 1`` of the job (global, over all sources, in order).

    Generated chunks travel as a range (``source_start`` within source ``source``), not as
    data; the worker regenerates them. Chunks never straddle two sources.
    """

    index: int
    start: int
    size: int
    items: list[Structure | ReadFailure] | None = None  # None: regenerate from the range
    source: int = 0  # index into FeaturizeConfig.all_sources
    source_start: int = 0  # first input of the chunk within its source


def count_chunks(cfg: FeaturizeConfig) -> int | None:
    """Number of chunks when known up front (only generated sources), else ``None``."""
    sources = cfg.all_sources
    if all(src.kind == "generated" for src in sources):
        return sum(math.ceil(src.n / cfg.chunk_size) for src in sources)
    return None


def count_inputs(cfg: FeaturizeConfig) -> int | None:
    """Number of inputs when known up front (only generated sources), else ``None``."""
    sources = cfg.all_sources
    if all(src.kind == "generated" for src in sources):
        return sum(src.n for src in sources)
    return None


def iter_chunks(cfg: FeaturizeConfig, skip: set[int] = frozenset()) -> Iterator[Chunk]:
    """Yield the chunks of the configured sources in order, except those in ``skip``.

    With ``cfg.dedupe`` every input is materialised here (generated ones too) and a structure
    whose :meth:`~fmpretrain.structures.Structure.content_hash` was seen earlier in the job
    becomes a ``duplicate`` failure naming the first copy; skipped chunks are still hashed, so
    a resumed job dedupes exactly like an uninterrupted one.
    """
    index, start = 0, 0
    seen: dict[str, str] | None = {} if cfg.dedupe else None
    for source_index, src in enumerate(cfg.all_sources):
        size = cfg.chunk_size
        if src.kind == "generated" and seen is None:
            n_chunks = math.ceil(src.n / size)
            for k in range(n_chunks):
                n = min(size, src.n - k * size)
                if index not in skip:
                    yield Chunk(index, start, n, None, source_index, k * size)
                index, start = index + 1, start + n
            continue
        buffer: list[Structure | ReadFailure] = []
        offset = 0
        for item in _source_inputs(src):
            if seen is not None and isinstance(item, Structure):
                item = _dedupe(item, seen)
            buffer.append(item)
            if len(buffer) == size:
                if index not in skip:
                    yield Chunk(index, start, len(buffer), buffer, source_index, offset)
                index, start, offset = index + 1, start + len(buffer), offset + len(buffer)
                buffer = []
        if buffer:
            if index not in skip:
                yield Chunk(index, start, len(buffer), buffer, source_index, offset)
            index, start = index + 1, start + len(buffer)


def _dedupe(item: Structure, seen: dict[str, str]) -> Structure | ReadFailure:
    key = item.content_hash()
    first = seen.get(key)
    if first is None:
        seen[key] = item.id
        return item
    return ReadFailure(item.id, f"duplicate of {first!r} (same content hash {key[:12]})", "dedupe")


def _source_inputs(src: SourceConfig) -> Iterator[Structure | ReadFailure]:
    """The inputs of one source in their fixed order."""
    if src.kind == "generated":
        yield from generate_inputs(src, 0, src.n)
    elif src.kind == "corpus":
        from fmpretrain.corpora import corpus_files, corpus_read_options

        options = {**corpus_read_options(src.name), **src.read_options}
        yield from iter_file_inputs([str(p) for p in corpus_files(src.name)], **options)
    else:
        yield from iter_file_inputs(src.paths, **src.read_options)


def generate_inputs(src: SourceConfig, start: int, size: int) -> list[Structure | ReadFailure]:
    """Generated structures ``start .. start + size - 1`` of a generated source."""
    from fmpretrain.generate import generate_structure

    items: list[Structure | ReadFailure] = []
    for index in range(start, start + size):
        try:
            items.append(
                generate_structure(
                    index, seed=src.seed, min_atoms=src.min_atoms, max_atoms=src.max_atoms
                )
            )
        except Exception as err:
            items.append(ReadFailure(f"gen-{src.seed}-{index}", f"generator failed: {err}"))
    return items


def iter_file_inputs(paths: list[str], **read_options: Any) -> Iterator[Structure | ReadFailure]:
    """Every structure of every file, in a fixed order; unreadable parts become failures.

    ``read_options`` go to :func:`fmpretrain.io.read_structures` (e.g. ``format``, ``frames``).
    Each bad entry becomes one failure named by its id (else ``"{file}#{index}"``) and the rest
    of its file is still read; a file that cannot be opened is one failure.
    """
    from fmpretrain.io import ReadFailure as EntryFailure
    from fmpretrain.io import iter_structure_files, read_structures

    for path in iter_structure_files(paths):
        for item in read_structures(path, errors="collect", **read_options):
            if isinstance(item, EntryFailure):
                yield ReadFailure(id=item.id, reason=f"unreadable: {item}")
            else:
                yield item
