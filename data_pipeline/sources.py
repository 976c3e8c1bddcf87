"""Input sources, streamed and split deterministically into chunks (one chunk -> one shard).

Chunk ``k`` always holds inputs ``k*chunk_size .. (k+1)*chunk_size - 1`` of the source's fixed
order, whatever the number of workers, so a re-run can skip the chunks already on disk.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from data_pipeline.config import FeaturizeConfig
from fmpretrain.structures import Structure


@dataclass(frozen=True)
class ReadFailure:
    """An input that could not be read; it becomes a reject with this id and reason."""

    id: str
    reason: str


@dataclass
class Chunk:
    """Inputs ``start .. start + size - 1``; generated chunks travel as a range, not as data."""

    index: int
    start: int
    size: int
    items: list[Structure | ReadFailure] | None = None  # None: regenerate from the range


def count_chunks(cfg: FeaturizeConfig) -> int | None:
    """Number of chunks when known up front (generated sources), else ``None``."""
    if cfg.source.kind == "generated":
        return math.ceil(cfg.source.n / cfg.chunk_size)
    return None


def iter_chunks(cfg: FeaturizeConfig, skip: set[int] = frozenset()) -> Iterator[Chunk]:
    """Yield the chunks of the configured source in order, except those in ``skip``."""
    if cfg.source.kind == "generated":
        n, size = cfg.source.n, cfg.chunk_size
        for index in range(math.ceil(n / size)):
            if index not in skip:
                start = index * size
                yield Chunk(index, start, min(size, n - start))
        return
    buffer: list[Structure | ReadFailure] = []
    index = 0
    for item in iter_file_inputs(cfg.source.paths):
        buffer.append(item)
        if len(buffer) == cfg.chunk_size:
            if index not in skip:
                yield Chunk(index, index * cfg.chunk_size, len(buffer), buffer)
            buffer, index = [], index + 1
    if buffer and index not in skip:
        yield Chunk(index, index * cfg.chunk_size, len(buffer), buffer)


def iter_file_inputs(paths: list[str]) -> Iterator[Structure | ReadFailure]:
    """Every structure of every file, in a fixed order; unreadable parts become failures."""
    from fmpretrain.io import iter_structure_files, read_structures

    for path in iter_structure_files(paths):
        n_read = 0
        try:
            for structure in read_structures(path):
                n_read += 1
                yield structure
        except Exception as err:  # any reader failure is a reject, never a crash or a loss
            where = f"{path}" if n_read == 0 else f"{path} (after entry {n_read - 1})"
            yield ReadFailure(id=str(path), reason=f"unreadable: {where}: {err}")
            continue
        if n_read == 0:
            yield ReadFailure(id=str(path), reason=f"unreadable: {path}: no structures in file")
