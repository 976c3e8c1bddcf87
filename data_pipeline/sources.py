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
from data_pipeline.inputs import HASH_DIGITS, FileIdentities, failure_digest, structure_digest
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
    inputs: dict[str, Any] | None = None  # the input signature (data_pipeline.inputs)


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


def iter_chunks(
    cfg: FeaturizeConfig,
    skip: set[int] = frozenset(),
    identities: FileIdentities | None = None,
) -> Iterator[Chunk]:
    """Yield the chunks of the configured sources in order, except those in ``skip``.

    Each chunk carries its input signature (:mod:`data_pipeline.inputs`): the files it read
    (identities from ``identities``, hashed once per file) with entry ranges and a content hash
    per input, or the seed and index range of generated inputs.

    With ``cfg.dedupe`` every input is materialised here (generated ones too) and a structure
    whose :meth:`~fmpretrain.structures.Structure.content_hash` was seen earlier in the job
    becomes a ``duplicate`` failure naming the first copy; skipped chunks are still hashed, so
    a resumed job dedupes exactly like an uninterrupted one.
    """
    identities = identities if identities is not None else FileIdentities()
    index, start = 0, 0
    seen: dict[str, str] | None = {} if cfg.dedupe else None
    for source_index, src in enumerate(cfg.all_sources):
        size = cfg.chunk_size
        if src.kind == "generated" and seen is None:
            n_chunks = math.ceil(src.n / size)
            for k in range(n_chunks):
                n = min(size, src.n - k * size)
                if index not in skip:
                    signature = _generated_signature(source_index, start, src, k * size, n)
                    yield Chunk(index, start, n, None, source_index, k * size, signature)
                index, start = index + 1, start + n
            continue
        builder = _SignatureBuilder(source_index, start)
        if src.kind == "generated":
            builder.generated = {"seed": src.seed, "range": [0, 0]}
        buffer: list[Structure | ReadFailure] = []
        offset = 0
        for origin, item in _source_inputs(src, identities):
            key = None
            if isinstance(item, Structure):
                key = structure_digest(item) if seen is None else item.content_hash()
                if seen is not None:
                    item = _dedupe(item, seen, key)
            buffer.append(item)
            builder.add(origin, item, key)
            if len(buffer) == size:
                if index not in skip:
                    yield Chunk(
                        index, start, len(buffer), buffer, source_index, offset, builder.done()
                    )
                index, start, offset = index + 1, start + len(buffer), offset + len(buffer)
                buffer = []
                builder = builder.next(start, offset)
        if buffer:
            if index not in skip:
                yield Chunk(index, start, len(buffer), buffer, source_index, offset, builder.done())
            index, start = index + 1, start + len(buffer)


def _generated_signature(
    source: int, start: int, src: SourceConfig, first: int, n: int
) -> dict[str, Any]:
    return {
        "source": source,
        "start": start,
        "generated": {"seed": src.seed, "range": [first, first + n]},
    }


class _SignatureBuilder:
    """Collects the input signature of one chunk while its inputs are read."""

    def __init__(self, source: int, start: int, offset: int = 0) -> None:
        self.source, self.start, self.offset = source, start, offset
        self.files: list[dict[str, Any]] = []
        self.structures: list[list[str]] = []
        self.generated: dict[str, Any] | None = None

    def add(self, origin: tuple[dict[str, Any], int] | None, item: Any, key: str | None) -> None:
        if isinstance(item, ReadFailure):
            digest = failure_digest(item.stage, item.reason)
        else:
            digest = (key or "")[:HASH_DIGITS]
        self.structures.append([str(item.id), digest])
        if origin is None:
            return
        identity, entry = origin
        last = self.files[-1] if self.files else None
        if last is not None and last["path"] == identity["path"]:
            last["entries"][1] = entry + 1
        else:
            self.files.append({**identity, "entries": [entry, entry + 1]})

    def done(self) -> dict[str, Any]:
        signature: dict[str, Any] = {"source": self.source, "start": self.start}
        if self.generated is not None:
            first = self.offset
            signature["generated"] = {
                "seed": self.generated["seed"],
                "range": [first, first + len(self.structures)],
            }
        else:
            signature["files"] = self.files
        signature["structures"] = self.structures
        return signature

    def next(self, start: int, offset: int) -> _SignatureBuilder:
        builder = _SignatureBuilder(self.source, start, offset)
        builder.generated = self.generated
        return builder


def _dedupe(item: Structure, seen: dict[str, str], key: str) -> Structure | ReadFailure:
    first = seen.get(key)
    if first is None:
        seen[key] = item.id
        return item
    return ReadFailure(item.id, f"duplicate of {first!r} (same content hash {key[:12]})", "dedupe")


def _source_inputs(
    src: SourceConfig, identities: FileIdentities
) -> Iterator[tuple[tuple[dict[str, Any], int] | None, Structure | ReadFailure]]:
    """The inputs of one source in their fixed order, each with its origin: the identity of
    its file and its entry index there (``None`` for generated inputs)."""
    if src.kind == "generated":
        for item in generate_inputs(src, 0, src.n):
            yield None, item
    elif src.kind == "corpus":
        from fmpretrain.corpora import corpus_files, corpus_read_options

        options = {**corpus_read_options(src.name), **src.read_options}
        paths = [str(p) for p in corpus_files(src.name)]
        yield from _file_entries(paths, identities, options)
    else:
        yield from _file_entries(src.paths, identities, src.read_options)


def _file_entries(
    paths: list[str], identities: FileIdentities, read_options: dict[str, Any]
) -> Iterator[tuple[tuple[dict[str, Any], int], Structure | ReadFailure]]:
    from fmpretrain.io import iter_structure_files

    for path in iter_structure_files(paths):
        identity = identities(path)
        for entry, item in enumerate(_read_file(path, read_options)):
            yield (identity, entry), item


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
    from fmpretrain.io import iter_structure_files

    for path in iter_structure_files(paths):
        yield from _read_file(path, read_options)


def _read_file(path: Any, read_options: dict[str, Any]) -> Iterator[Structure | ReadFailure]:
    """The entries of one file; each unreadable one becomes a failure."""
    from fmpretrain.io import ReadFailure as EntryFailure
    from fmpretrain.io import read_structures

    for item in read_structures(path, errors="collect", **read_options):
        if isinstance(item, EntryFailure):
            yield ReadFailure(id=item.id, reason=f"unreadable: {item}")
        else:
            yield item
