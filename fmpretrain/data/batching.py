"""Small stream utilities of the loader: deterministic seeds, a shuffle buffer, budget packing.

They work on plain iterators and know nothing about shards or graphs, so they are easy to test
and reason about: given the same input and seed, they always give the same output.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def derive_seed(*parts: int) -> int:
    """A 64-bit seed that depends on every part (``SeedSequence`` mixing, platform independent)."""
    if any(p < 0 for p in parts):
        raise ValueError(f"seed parts must be non-negative, got {parts}")
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0])


def shuffle_buffer(items: Iterable[T], size: int, seed: int) -> Iterator[T]:
    """Yield ``items`` in a pseudo-random order using a buffer of ``size`` items.

    Each incoming item replaces a randomly chosen buffered one, which is yielded; the buffer is
    flushed in random order at the end. ``size <= 1`` keeps the input order.
    """
    if size <= 1:
        yield from items
        return
    rng = random.Random(seed)
    buffer: list[T] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        i = rng.randrange(size)
        buffer[i], item = item, buffer[i]
        yield item
    rng.shuffle(buffer)
    yield from buffer


def pack_by_budget(
    items: Iterable[T],
    sizes: Callable[[T], tuple[int, ...]],
    budgets: tuple[int | None, ...],
    on_oversize: Callable[[T, tuple[int, ...]], None] | None = None,
) -> Iterator[list[T]]:
    """Group consecutive items greedily so that each group's summed ``sizes`` stay within
    ``budgets`` (``None`` = unbounded), item order unchanged.

    An item that alone exceeds a budget forms a group by itself (``on_oversize`` is called).
    Every item is in exactly one group; the last group may be small.
    """
    group: list[T] = []
    totals = [0] * len(budgets)
    for item in items:
        size = sizes(item)
        fits = all(b is None or t + s <= b for t, s, b in zip(totals, size, budgets, strict=True))
        if group and not fits:
            yield group
            group, totals = [], [0] * len(budgets)
        if on_oversize is not None and any(
            b is not None and s > b for s, b in zip(size, budgets, strict=True)
        ):
            on_oversize(item, size)
        group.append(item)
        totals = [t + s for t, s in zip(totals, size, strict=True)]
    if group:
        yield group
