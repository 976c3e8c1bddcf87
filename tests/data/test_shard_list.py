"""Shard lists without reading a sample: the train/val split, the deal to ranks, the counts."""

from __future__ import annotations

import pytest

from fmpretrain.data.shard_list import (
    ShardRef,
    count_rank,
    expand_urls,
    local_path,
    rank_shards,
    split_shards,
)


def refs(n: int, atoms: int | None = 10) -> list[ShardRef]:
    return [ShardRef(f"s/{i}.tar", f"{i}.tar", n_samples=2, n_atoms=atoms) for i in range(n)]


def test_validation_shards_are_spread_evenly_and_end_at_the_last():
    shards = refs(10)
    val = [s.name for s in split_shards(shards, 3, "val")]
    assert val == ["3.tar", "6.tar", "9.tar"]  # n - 1 - floor(k n / n_val), k = 2, 1, 0
    train = split_shards(shards, 3, "train")
    assert sorted(s.name for s in train + split_shards(shards, 3, "val")) == sorted(
        s.name for s in shards
    )
    assert [s.name for s in split_shards(shards, 1, "val")] == ["9.tar"]
    assert len(split_shards(shards, 0.25, "val")) == 2  # a fraction of the shards, rounded
    assert split_shards(shards, 3, "all") == shards


@pytest.mark.parametrize(
    ("val_shards", "split", "message"),
    [(10, "train", "leaves no training shard"), (0, "val", "needs val_shards > 0"),
     (1.5, "train", "fraction must lie in"), (-1, "train", ">= 0"), (1, "test", "split must")],
)  # fmt: skip
def test_impossible_splits_are_refused(val_shards, split, message):
    with pytest.raises(ValueError, match=message):
        split_shards(refs(10), val_shards, split)


def test_ranks_partition_the_shards_in_a_seeded_order():
    shards = refs(7)
    dealt = [
        rank_shards(shards, rank=r, world_size=3, seed=1, epoch=0, shuffle=True) for r in range(3)
    ]
    assert sorted(s.name for d in dealt for s in d) == sorted(s.name for s in shards)
    assert [len(d) for d in dealt] == [3, 2, 2]
    again = rank_shards(shards, rank=0, world_size=3, seed=1, epoch=0, shuffle=True)
    assert again == dealt[0]
    orders = {
        tuple(s.name for s in rank_shards(shards, rank=0, world_size=1, seed=1, epoch=e,
                                          shuffle=True))
        for e in range(4)
    }  # fmt: skip
    assert len(orders) > 1  # epochs reorder
    plain = rank_shards(shards, rank=1, world_size=3, seed=1, epoch=0, shuffle=False)
    assert [s.name for s in plain] == ["1.tar", "4.tar"]


def test_counts_add_up_and_are_unknown_when_a_shard_is():
    counts = count_rank(refs(4))
    assert (counts.n_shards, counts.n_samples, counts.n_atoms) == (4, 8, 40)
    assert counts.approx_batches(15) == 3
    unknown = count_rank([*refs(2), ShardRef("x.tar", "x.tar")])
    assert unknown.n_samples is None and unknown.approx_batches(15) is None


def test_urls_expand_and_local_paths_resolve(tmp_path):
    assert expand_urls("d/shard-{000000..000002}.tar") == [
        "d/shard-000000.tar",
        "d/shard-000001.tar",
        "d/shard-000002.tar",
    ]
    assert local_path(f"file://{tmp_path}/a.tar") == tmp_path / "a.tar"
    assert local_path("d/a.tar").name == "a.tar"
    assert local_path("pipe:cat d/a.tar") is None
