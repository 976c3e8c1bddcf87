"""Stream fingerprint shards into atom-budgeted graph batches for pre-training.

::

    loader = build_loader("runs/feat", cutoff=6.0, max_atoms_per_batch=512, val_shards=1,
                          expected_descriptor_hash=model_cfg.descriptor_hash, num_workers=4)
    for epoch in range(n_epochs):
        loader.set_epoch(epoch)
        for batch in loader:  # torch_geometric Batch: z, pos, edge_index, edge_shift, y, key
            ...

What it guarantees:

- **Every sample exactly once per epoch** across all ranks x DataLoader workers. The shard list
  is shuffled with a seed from ``(seed, epoch)`` (the same on every rank), rank ``r`` takes
  shards ``r::world_size`` and its worker ``w`` takes ``w::num_workers`` of those. Ranks
  therefore see whole shards, and their sample counts differ by up to a shard's worth
  (:meth:`ShardLoader.counts`); use more shards than ``world_size x num_workers``.
- **Deterministic** given ``(seed, epoch, rank, world_size, num_workers)``: samples are mixed in
  a shuffle buffer seeded from ``(seed, epoch, rank, worker)``; PyTorch's DataLoader visits
  its workers round-robin (skipping exhausted ones), so the interleaved batch order is
  deterministic too.
- **Atom budget**: a batch holds as many consecutive whole structures as fit in
  ``max_atoms_per_batch`` (and ``max_edges_per_batch`` if given); a larger structure forms a
  batch alone, with a warning the first time.
- **Exact resume**: ``skip_batches=k`` (or ``set_epoch(epoch, skip_batches=k)``) yields exactly
  the batches an uninterrupted pass yields after its first ``k``, with the same
  ``num_workers``. Skipped batches are planned from atom counts without building graphs
  (with an edge budget their graphs are built to count edges). With workers each one skips
  ``k // num_workers`` of its own batches; the remainder (more when some worker ran out of
  batches before that point) are built and dropped in the main process.
- **Workers** (``num_workers > 0``) are started for each pass (``set_epoch`` reaches them; no
  persistent workers) and send batches as numpy arrays, rebuilt into ``Batch`` objects in the
  main process (cheaper than ~20 shared-memory tensors per batch).
- **Clear failures**: descriptor-hash mismatch and incomplete manifests are refused
  (``ValueError``), a manifest edited after it was written
  (:class:`~fmpretrain.data.manifest.ManifestModifiedError`) and a ``*.tar`` in the shard
  directory that the manifest does not list up front, missing shards up front
  (``FileNotFoundError``), a shard whose size differs from the manifest up front and a
  truncated or corrupt one while streaming (:class:`ShardReadError`, naming it). Nothing is
  skipped silently.
- **Verified while streaming**: each shard's bytes are hashed as they are streamed (no
  second pass) and compared at the end of the shard with the manifest's sha256; a mismatch, or
  a NaN/inf in a sample's fingerprint, positions or cell, raises :class:`ShardReadError` naming
  the shard (and the sample). Samples of a shard are yielded before its end is reached, so a
  consumer may have seen some of them when the error comes.

Shards are opened with ``webdataset``'s ``gopen`` from local paths, ``file:`` URLs or ``pipe:``
URLs (``pipe:aws s3 cp s3://bucket/shard-000001.tar -``) and decoded front to back by the one
shard decoder, :func:`fmpretrain.data.format.iter_samples` (``np.load(allow_pickle=False)``,
the same code as ``fmpretrain shards verify``); graphs are built by
:func:`fmpretrain.data.graphs.build_graph` with the model's cutoff. Targets are the
fingerprints scaled by a :class:`~fmpretrain.data.scaling.Normalizer` (by default the z-score
of the manifest's per-feature statistics).
"""

from __future__ import annotations

import copy
import hashlib
import math
import tarfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torch_geometric.data import Batch, Data

from fmpretrain.data.batching import derive_seed, pack_by_budget, shuffle_buffer
from fmpretrain.data.format import Sample, iter_samples
from fmpretrain.data.graphs import build_graph
from fmpretrain.data.manifest import Manifest
from fmpretrain.data.scaling import Normalizer
from fmpretrain.data.shard_list import (
    RankCounts,
    ShardReadError,
    ShardRef,
    Split,
    check_files,
    check_manifest,
    count_rank,
    rank_shards,
    resolve_shards,
    split_shards,
)
from fmpretrain.neighbors import NeighborBudgetError, check_cutoff

SHARD_ORDER, _SAMPLE_ORDER = 0, 1  # seed-stream tags


# --------------------------------------------------------------------------- the stream
@dataclass
class _Header:
    """First item of every worker's stream when resuming with workers: how many of its own
    batches it skipped (lets the main process finish the skip exactly)."""

    worker: int
    skipped: int


def _identity(x: Any) -> Any:
    return x


@dataclass
class _WireBatch:
    """A :class:`Batch` as numpy arrays, for the trip from a DataLoader worker.

    A PyG ``Batch`` holds ~20 tensors (data, slices, increments); sent as tensors each becomes
    its own shared-memory segment, which costs more than the batch's bytes. Numpy arrays are
    pickled by value instead, and :meth:`to_batch` rebuilds an equal ``Batch`` (``get_example``
    included) without copying.
    """

    arrays: dict[str, np.ndarray]
    other: dict[str, Any]
    slices: dict[str, np.ndarray]
    incs: dict[str, np.ndarray | None]
    num_graphs: int

    @classmethod
    def from_batch(cls, batch: Batch) -> _WireBatch:
        arrays, other = {}, {}
        for name, value in batch.to_dict().items():
            if isinstance(value, torch.Tensor):
                arrays[name] = value.numpy()
            else:
                other[name] = value
        return cls(
            arrays,
            other,
            {k: v.numpy() for k, v in batch._slice_dict.items()},
            {k: None if v is None else v.numpy() for k, v in batch._inc_dict.items()},
            batch.num_graphs,
        )

    def to_batch(self) -> Batch:
        batch = Batch(_base_cls=Data)
        for name, value in self.arrays.items():
            batch[name] = torch.from_numpy(value)
        for name, value in self.other.items():
            batch[name] = value
        batch._slice_dict = {k: torch.from_numpy(v) for k, v in self.slices.items()}
        batch._inc_dict = {
            k: None if v is None else torch.from_numpy(v) for k, v in self.incs.items()
        }
        batch._num_graphs = self.num_graphs
        return batch


class ShardBatches(IterableDataset):
    """The per-process pipeline: shards -> samples -> shuffle -> budgeted groups -> Batch.

    Iterating it in a DataLoader worker reads that worker's part of this rank's shards. Use
    :func:`build_loader`; this class is the picklable part that travels to the workers.
    """

    def __init__(
        self,
        shards: Sequence[ShardRef],
        normalizer: Normalizer,
        *,
        cutoff: float,
        max_atoms_per_batch: int,
        max_edges_per_batch: int | None = None,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        shuffle_buffer: int = 1000,
        skip_batches: int = 0,
        emit_header: bool = False,
        wire: bool = False,
    ) -> None:
        super().__init__()
        cutoff = check_cutoff(cutoff)
        if max_atoms_per_batch < 1:
            raise ValueError(f"max_atoms_per_batch must be >= 1, got {max_atoms_per_batch}")
        if max_edges_per_batch is not None and max_edges_per_batch < 1:
            raise ValueError(f"max_edges_per_batch must be >= 1, got {max_edges_per_batch}")
        if min(seed, epoch, skip_batches) < 0:
            raise ValueError("seed, epoch and skip_batches must be >= 0")
        self.shards = list(shards)
        self.normalizer = normalizer
        self.cutoff = float(cutoff)
        self.max_atoms = int(max_atoms_per_batch)
        self.max_edges = max_edges_per_batch
        self.seed, self.epoch, self.rank, self.world_size = seed, epoch, rank, world_size
        self.shuffle, self.buffer = shuffle, shuffle_buffer
        self.skip_batches, self.emit_header, self.wire = skip_batches, emit_header, wire
        self._warned = False

    def my_shards(self, worker: int = 0, num_workers: int = 1) -> list[ShardRef]:
        mine = rank_shards(
            self.shards,
            rank=self.rank,
            world_size=self.world_size,
            seed=self.seed,
            epoch=self.epoch,
            shuffle=self.shuffle,
        )
        return mine[worker::num_workers]

    def __iter__(self) -> Iterator[Batch | _WireBatch | _Header]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        samples = self._samples(self.my_shards(worker, num_workers))
        if self.shuffle:
            seed = derive_seed(self.seed, self.epoch, _SAMPLE_ORDER, self.rank, worker)
            samples = shuffle_buffer(samples, self.buffer, seed)
        items = ((s, self._graph(s) if self.max_edges else None) for s in samples)
        groups = pack_by_budget(
            items, self._sizes, (self.max_atoms, self.max_edges), self._on_oversize
        )
        skipped = 0
        for _ in range(self.skip_batches):
            if next(groups, None) is None:
                break
            skipped += 1
        if self.emit_header:
            yield _Header(worker, skipped)
        for group in groups:
            batch = Batch.from_data_list([g if g is not None else self._graph(s) for s, g in group])
            yield _WireBatch.from_batch(batch) if self.wire else batch

    # ------------------------------------------------------------------ pieces
    def _samples(self, shards: Sequence[ShardRef]) -> Iterator[Sample]:
        for ref in shards:
            yield from _read_shard(ref, self.normalizer.dim)

    def _graph(self, s: Sample) -> Data:
        y = self.normalizer.normalize_numpy(s.fingerprint)
        try:
            data = build_graph(s.numbers, s.positions, s.cell, s.pbc, self.cutoff, y=y)
        except NeighborBudgetError as err:
            raise NeighborBudgetError(f"sample {s.key}, {err}") from None
        data.key = s.key
        return data

    @staticmethod
    def _sizes(item: tuple[Sample, Data | None]) -> tuple[int, int]:
        sample, graph = item
        return len(sample.numbers), (graph.num_edges if graph is not None else 0)

    def _on_oversize(self, item: tuple[Sample, Data | None], size: tuple[int, int]) -> None:
        if not self._warned:
            self._warned = True
            what = f"{size[0]} atoms" + (f", {size[1]} edges" if self.max_edges else "")
            budget = f"max_atoms_per_batch={self.max_atoms}" + (
                f", max_edges_per_batch={self.max_edges}" if self.max_edges else ""
            )
            warnings.warn(
                f"structure {item[0].key} ({what}) exceeds the batch budget ({budget}); it "
                "forms a batch alone (warned once per worker)",
                stacklevel=2,
            )


def _read_shard(ref: ShardRef, dim: int) -> Iterator[Sample]:
    """Decode one shard's samples in order; any problem raises :class:`ShardReadError`."""

    def fail(what: str, err: BaseException | None = None) -> ShardReadError:
        where = ref.url if ref.name == ref.url else f"{ref.name} ({ref.url})"
        detail = ""
        if err is not None:  # webdataset appends " @ <stream>" and extra args: keep the message
            message = str(err.args[0]) if err.args else str(err)
            detail = f" ({type(err).__name__}: {message.split(' @ <')[0]})"
        return ShardReadError(
            f"shard {where} {what}{detail}. Check its directory with `fmpretrain shards verify` "
            "and re-featurize bad shards."
        )

    def unreadable(err: Exception) -> ShardReadError:
        if isinstance(err, OSError) and not isinstance(err, tarfile.TarError):
            return fail("could not be read", err)
        return fail("is truncated or corrupt", err)

    try:
        stream = _HashingReader(wds.gopen(ref.url))
    except Exception as err:
        raise fail("could not be opened", err) from err
    finished = False
    count = 0
    try:
        samples = iter_samples(stream)  # type: ignore[arg-type]
        while True:
            try:
                sample = next(samples, None)
                if sample is None:
                    break
            except Exception as err:
                raise unreadable(err) from err
            if sample.fingerprint.shape[1] != dim:
                raise fail(
                    f"has {sample.fingerprint.shape[1]} features in sample {sample.key}, "
                    f"the manifest says {dim}"
                )
            for name in ("fingerprint", "positions", "cell"):
                if not np.isfinite(getattr(sample, name)).all():
                    raise fail(f"has non-finite values (NaN or inf) in the {name} of {sample.key}")
            count += 1
            yield sample
        if ref.n_samples is not None and count != ref.n_samples:
            raise fail(f"is truncated: {count} samples read, the manifest says {ref.n_samples}")
        try:
            stream.drain()  # the tar's end padding, not read by tarfile
        except Exception as err:
            raise unreadable(err) from err
        if ref.sha256 is not None and stream.hexdigest() != ref.sha256:
            raise fail(
                f"does not match the sha256 in its manifest ({stream.size} bytes hashing to "
                f"{stream.hexdigest()[:12]}…, expected {ref.sha256[:12]}…): it was changed "
                "or corrupted after featurization"
            )
        finished = True
    finally:
        try:
            stream.close()  # a pipe: URL reports its command's exit status here
        except Exception as err:
            if finished:
                raise fail("could not be read", err) from err


class _HashingReader:
    """A read-only stream that hashes and counts the bytes read through it."""

    def __init__(self, raw: Any) -> None:
        self.raw, self.digest, self.size = raw, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data

    def drain(self, block: int = 1 << 20) -> None:
        """Read (and hash) what is left of the stream."""
        while self.read(block):
            pass

    def hexdigest(self) -> str:
        return self.digest.hexdigest()

    def close(self) -> None:
        self.raw.close()

    def __repr__(self) -> str:
        return repr(self.raw)


# --------------------------------------------------------------------------- the loader
class ShardLoader:
    """Iterable over this rank's batches for the current epoch; see the module docstring."""

    def __init__(
        self,
        dataset: ShardBatches,
        *,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int | None = None,
        manifest: Manifest | None = None,
    ) -> None:
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.dataset = dataset
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.prefetch_factor = prefetch_factor
        self.manifest = manifest

    @property
    def normalizer(self) -> Normalizer:
        return self.dataset.normalizer

    @property
    def epoch(self) -> int:
        return self.dataset.epoch

    @property
    def skip_batches(self) -> int:
        return self.dataset.skip_batches

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Read ``epoch`` next, starting after its first ``skip_batches`` batches (resume)."""
        if epoch < 0 or skip_batches < 0:
            raise ValueError("epoch and skip_batches must be >= 0")
        self.dataset.epoch, self.dataset.skip_batches = epoch, skip_batches

    def shards(self) -> list[ShardRef]:
        """This rank's shards for the current epoch."""
        return self.dataset.my_shards()

    def counts(self) -> RankCounts:
        """Samples and atoms this rank reads in the current epoch (for progress bars)."""
        return count_rank(self.shards())

    def __iter__(self) -> Iterator[Batch]:
        ds = self.dataset
        skip = ds.skip_batches
        if self.num_workers == 0:
            for batch in ds:
                yield batch.pin_memory() if self.pin_memory else batch
            return
        # each worker skips k // W of its own batches and reports how many it had; the
        # DataLoader interleaves round-robin, so the main process can finish the skip exactly
        worker_ds = _copy(ds, skip_batches=skip // self.num_workers, emit_header=True, wire=True)
        loader = DataLoader(
            worker_ds,
            batch_size=None,
            num_workers=self.num_workers,
            collate_fn=_identity,
            prefetch_factor=self.prefetch_factor,
            persistent_workers=False,
            in_order=True,
        )
        batches = iter(loader)
        try:
            headers = [next(batches) for _ in range(self.num_workers)]
            if [h.worker for h in headers if isinstance(h, _Header)] != list(
                range(self.num_workers)
            ):
                raise RuntimeError(f"unexpected DataLoader worker order {headers!r}")
            for _ in range(skip - sum(h.skipped for h in headers)):
                if next(batches, None) is None:
                    return
            for wire in batches:
                batch = wire.to_batch()
                yield batch.pin_memory() if self.pin_memory else batch
        finally:
            # stop the workers now: after an error the iterator sits in a reference cycle, and
            # when the garbage collector finalizes its queues first, shutdown waits 5 s a worker
            shutdown = getattr(batches, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()


def _copy(ds: ShardBatches, **changes: Any) -> ShardBatches:
    new = copy.copy(ds)
    for name, value in changes.items():
        setattr(new, name, value)
    return new


def _default_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is None and world_size is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1
    if rank is None or world_size is None:
        raise ValueError("give both rank and world_size, or neither (torch.distributed's)")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} out of range for world_size {world_size}")
    return rank, world_size


def build_loader(
    shard_dir_or_urls: str | Path | Sequence[str | Path],
    *,
    cutoff: float,
    max_atoms_per_batch: int,
    max_edges_per_batch: int | None = None,
    seed: int = 0,
    epoch: int = 0,
    skip_batches: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
    num_workers: int = 0,
    shuffle: bool | None = None,
    shuffle_buffer: int = 1000,
    expected_descriptor_hash: str | None = None,
    split: Split = "train",
    val_shards: int | float = 0,
    manifest: Manifest | str | Path | None = None,
    pin_memory: bool = False,
    prefetch_factor: int | None = None,
    normalizer: Normalizer | None = None,
) -> ShardLoader:
    """A :class:`ShardLoader` over a shard directory or a list of shard paths / URLs.

    ``shard_dir_or_urls``: a directory with ``manifest.json``; or shard paths / ``file:`` /
    ``pipe:`` URLs (a list, or one string with ``{000000..000099}`` braces), in which case
    ``manifest`` (a directory or :class:`Manifest`) is needed unless the shards are local files
    beside their ``manifest.json``. ``split``: ``"train"`` or ``"val"``, the last
    ``val_shards`` shards (manifest order; given order for URLs) being held out for validation,
    or ``"all"``. ``shuffle`` defaults to ``True`` for training and ``False`` otherwise.
    ``rank``/``world_size`` default to ``torch.distributed``'s when it is initialized.
    """
    man, refs, where = resolve_shards(shard_dir_or_urls, manifest)
    check_manifest(man, where, expected_descriptor_hash)
    check_files(refs, where)
    refs = split_shards(refs, val_shards, split)
    rank, world_size = _default_rank(rank, world_size)
    if len(refs) < world_size * max(1, num_workers):
        warnings.warn(
            f"{len(refs)} {split} shard(s) for {world_size} rank(s) x {max(1, num_workers)} "
            "worker(s): some read nothing. Featurize with a smaller chunk_size for more shards.",
            stacklevel=2,
        )
    dataset = ShardBatches(
        refs,
        normalizer if normalizer is not None else Normalizer.from_manifest(man),
        cutoff=cutoff,
        max_atoms_per_batch=max_atoms_per_batch,
        max_edges_per_batch=max_edges_per_batch,
        seed=seed,
        epoch=epoch,
        rank=rank,
        world_size=world_size,
        shuffle=(split == "train") if shuffle is None else shuffle,
        shuffle_buffer=shuffle_buffer,
        skip_batches=skip_batches,
    )
    return ShardLoader(
        dataset,
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=prefetch_factor,
        manifest=man,
    )


def sample_fingerprints(
    shard_dir_or_urls: str | Path | Sequence[str | Path],
    *,
    split: Split = "train",
    val_shards: int | float = 0,
    max_atoms: int = 200_000,
    manifest: Manifest | str | Path | None = None,
) -> Iterator[np.ndarray]:
    """The ``[n_atoms, dim]`` fingerprints of whole shards of ``split``, spread evenly over the
    shard order, until ``max_atoms`` atoms (verified as in training: hashes, finiteness)."""
    man, refs, where = resolve_shards(shard_dir_or_urls, manifest)
    check_files(refs, where)
    refs = split_shards(refs, val_shards, split)
    if not refs:
        return
    step = 1
    known = [r.n_atoms for r in refs if r.n_atoms]
    if known and len(known) == len(refs):
        step = max(1, math.ceil(sum(known) / max(1, max_atoms)))
    atoms = 0
    for ref in refs[::step]:
        for sample in _read_shard(ref, man.dim):
            atoms += len(sample.fingerprint)
            yield sample.fingerprint
        if atoms >= max_atoms:
            return
