"""Training micro-batches, epoch after epoch, the same number on every rank.

:class:`TrainBatches` rebuilds the loader for each epoch, skips the batches a resumed run already
trained on, and balances the ranks with :func:`balanced`: a rank whose share of the epoch is used
up pads with zero-weight batches until every rank's share is, so all ranks take the same steps
and every sample counts exactly once per epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from torch_geometric.data import Batch

    from fmpretrain.data.loader import ShardLoader

B = TypeVar("B")


class Position(Protocol):
    """Where training stands in the data (:class:`fmpretrain.train.trainer.TrainState`)."""

    epoch: int
    batches_in_epoch: int


@dataclass(frozen=True)
class TrainBatch(Generic[B]):
    """One micro-batch: its epoch, the batch, and its loss weight (0 for padding)."""

    epoch: int
    batch: B
    weight: float


def balanced(
    batches: Iterable[B],
    *,
    agree: Callable[[bool], bool],
    first_batch: Callable[[], B | None] | None = None,
    rank: int = 0,
) -> Iterator[tuple[B, float]]:
    """Yield ``(batch, weight)`` so that every rank takes the same number of steps.

    ``agree(flag)`` is true on every rank if ``flag`` is true on any rank (a collective: every
    rank calls it once per micro-batch). A rank whose share is exhausted repeats its last batch
    with weight 0 until all ranks are done. ``first_batch`` reads the first batch of the share; a
    rank resumed past the end of its share (the checkpoint fell after it while another rank still
    had batches) has no last batch and pads with that one, which at weight 0 changes nothing.
    """
    iterator = iter(batches)
    last: B | None = None
    while True:
        batch = next(iterator, None)
        if not agree(batch is not None):
            return
        if batch is not None:
            last = batch
            yield batch, 1.0
            continue
        if last is None and first_batch is not None:
            last = first_batch()
        if last is None:
            raise RuntimeError(
                f"rank {rank} got no training data: use at least as many training "
                "shards as ranks x loader workers"
            )
        yield last, 0.0


class TrainBatches:
    """Endless training micro-batches from ``position`` on, balanced across ranks.

    ``make_loader(epoch, skip_batches)`` builds this rank's loader for an epoch, starting after
    its first ``skip_batches`` batches. ``position.batches_in_epoch`` counts the micro-batches
    handed out in the current epoch (padding included) and moves to the next epoch once every
    rank's share is used up, so a checkpoint of ``position`` resumes exactly.
    """

    def __init__(
        self,
        position: Position,
        make_loader: Callable[[int, int], ShardLoader],
        *,
        agree: Callable[[bool], bool],
        rank: int = 0,
    ) -> None:
        self.position = position
        self.make_loader = make_loader
        self.agree = agree
        self.rank = rank

    def __iter__(self) -> Generator[TrainBatch[Batch], None, None]:
        position = self.position
        while True:
            loader = self.make_loader(position.epoch, position.batches_in_epoch)
            first = partial(first_batch, loader) if loader.skip_batches else None
            handed_out = 0
            for batch, weight in balanced(
                loader, agree=self.agree, first_batch=first, rank=self.rank
            ):
                position.batches_in_epoch += 1
                handed_out += 1
                yield TrainBatch(position.epoch, batch, weight)
            if handed_out == 0 and not loader.skip_batches:
                # every rank's share was empty: another epoch would be empty too
                raise RuntimeError(
                    f"epoch {position.epoch} has no training batch on any rank: the training "
                    "shards hold no samples; check the shard directory and val_shards"
                )
            position.epoch += 1
            position.batches_in_epoch = 0


def first_batch(loader: ShardLoader) -> Batch | None:
    """The first batch of this rank's share of the loader's epoch, or ``None`` if it has none.

    Read in this process, not through DataLoader workers, which would draw a seed from the
    global torch RNG and so leave it where an uninterrupted run would not.
    """
    loader.set_epoch(loader.epoch, skip_batches=0)
    batches = iter(loader.dataset)
    try:
        return next(batches, None)
    finally:
        batches.close()
