"""The training loop's pure pieces, in milliseconds: rank balancing and the epoch iterator, the
periodic-action rule, the lr schedule, the validation metrics and the DeepSpeed config."""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from fmpretrain.train.batches import TrainBatch, TrainBatches, balanced
from fmpretrain.train.config import PretrainConfig
from fmpretrain.train.distributed import DistInfo
from fmpretrain.train.metrics import ChannelMetrics, validation_record
from fmpretrain.train.schedule import warmup_cosine
from fmpretrain.train.trainer import TrainState, deepspeed_config, due, reached


# --------------------------------------------------------------------------- rank balancing
class Lockstep:
    """``agree`` for ranks run as threads: a MAX all-reduce of one flag, like ``_agree``."""

    def __init__(self, world_size: int) -> None:
        self.flags = [False] * world_size
        self.barrier = threading.Barrier(world_size, timeout=5)
        self.calls = [0] * world_size

    def agree(self, rank: int, flag: bool) -> bool:
        self.calls[rank] += 1
        self.flags[rank] = flag
        self.barrier.wait()
        result = any(self.flags)
        self.barrier.wait()
        return result


def run_ranks(make_iterator, world_size: int, limit: int = 100) -> tuple[list, Lockstep]:
    """Drain one iterator per rank, each in its own thread; a rank's error (or its items)."""
    lockstep = Lockstep(world_size)
    results: list = [None] * world_size

    def drain(rank: int) -> None:
        items = []
        try:
            for item in make_iterator(rank, lambda flag: lockstep.agree(rank, flag)):
                items.append(item)
                if len(items) >= limit:
                    break
            results[rank] = items
        except Exception as err:  # reported to the test
            results[rank] = err
            lockstep.barrier.abort()

    threads = [threading.Thread(target=drain, args=(rank,)) for rank in range(world_size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, lockstep


def test_ranks_with_unequal_shares_take_equal_steps_padding_with_their_last_batch():
    shares = [["a0", "a1", "a2", "a3"], ["b0"], ["c0", "c1"]]
    results, lockstep = run_ranks(
        lambda rank, agree: balanced(shares[rank], agree=agree, rank=rank), 3
    )
    assert results[0] == [("a0", 1.0), ("a1", 1.0), ("a2", 1.0), ("a3", 1.0)]
    assert results[1] == [("b0", 1.0), ("b0", 0.0), ("b0", 0.0), ("b0", 0.0)]
    assert results[2] == [("c0", 1.0), ("c1", 1.0), ("c1", 0.0), ("c1", 0.0)]
    assert lockstep.calls == [5, 5, 5]  # one collective per micro-batch, plus the end


def test_a_rank_resumed_past_its_share_pads_with_the_first_batch_of_its_share():
    """The checkpoint fell after rank 1's share: its skip left nothing, rank 0 has one left."""
    remaining = [["a3"], []]
    firsts = {0: "a0", 1: "b0"}
    results, _ = run_ranks(
        lambda rank, agree: balanced(
            remaining[rank], agree=agree, first_batch=lambda: firsts[rank], rank=rank
        ),
        2,
    )
    assert results == [[("a3", 1.0)], [("b0", 0.0)]]


def test_a_rank_with_no_data_at_all_fails_with_advice():
    shares: list[list[str]] = [["a0", "a1"], []]
    results, _ = run_ranks(lambda rank, agree: balanced(shares[rank], agree=agree, rank=rank), 2)
    assert isinstance(results[1], RuntimeError)
    assert "rank 1 got no training data" in str(results[1])
    assert isinstance(results[0], threading.BrokenBarrierError)


def test_a_resumed_rank_whose_share_is_empty_still_fails():
    results, _ = run_ranks(
        lambda rank, agree: balanced(
            [[], ["b0"]][rank], agree=agree, first_batch=lambda: None, rank=rank
        ),
        2,
    )
    assert isinstance(results[0], RuntimeError)


def test_all_ranks_done_together_end_the_epoch_without_padding():
    results, lockstep = run_ranks(
        lambda rank, agree: balanced([f"{rank}-0", f"{rank}-1"], agree=agree, rank=rank), 2
    )
    assert results == [[("0-0", 1.0), ("0-1", 1.0)], [("1-0", 1.0), ("1-1", 1.0)]]
    assert lockstep.calls == [3, 3]


# --------------------------------------------------------------------------- the epoch iterator
@dataclass
class ListLoader:
    """A loader over fixed per-epoch batch lists, with ``ShardLoader``'s resume interface."""

    epochs: dict[int, list[str]]
    epoch: int
    skip_batches: int
    built: list[tuple[int, int]] = field(default_factory=list)

    def __iter__(self):
        return iter(self.epochs[self.epoch][self.skip_batches :])

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = epoch, skip_batches

    @property
    def dataset(self) -> Iterable[str]:
        """Like ``ShardBatches``: iterating gives a generator (``first_batch`` closes it)."""
        return SkipList(self.epochs[self.epoch][self.skip_batches :])


class SkipList(list):
    def __iter__(self) -> Iterator[str]:
        yield from super().__iter__()


def train_batches(shares: list[dict[int, list[str]]], states: list[TrainState]):
    built: list[list[tuple[int, int]]] = [[] for _ in shares]

    def make(rank: int, agree):
        def loader(epoch: int, skip: int) -> ListLoader:
            built[rank].append((epoch, skip))
            return ListLoader(shares[rank], epoch, skip)

        return TrainBatches(states[rank], loader, agree=agree, rank=rank)

    return make, built


SHARES = [
    {0: ["a0", "a1", "a2"], 1: ["a3", "a4"], 2: ["a5"]},
    {0: ["b0"], 1: ["b1", "b2", "b3"], 2: ["b4", "b5"]},
]


def flat(items: list[TrainBatch]) -> list[tuple[int, str, float]]:
    return [(i.epoch, i.batch, i.weight) for i in items]


def test_epochs_are_rebuilt_balanced_and_counted():
    states = [TrainState(), TrainState()]
    make, built = train_batches(SHARES, states)
    results, _ = run_ranks(make, 2, limit=8)
    assert flat(results[0]) == [
        (0, "a0", 1.0), (0, "a1", 1.0), (0, "a2", 1.0),
        (1, "a3", 1.0), (1, "a4", 1.0), (1, "a4", 0.0),
        (2, "a5", 1.0), (2, "a5", 0.0),
    ]  # fmt: skip
    assert flat(results[1]) == [
        (0, "b0", 1.0), (0, "b0", 0.0), (0, "b0", 0.0),
        (1, "b1", 1.0), (1, "b2", 1.0), (1, "b3", 1.0),
        (2, "b4", 1.0), (2, "b5", 1.0),
    ]  # fmt: skip
    assert built == [[(0, 0), (1, 0), (2, 0)]] * 2
    assert [(s.epoch, s.batches_in_epoch) for s in states] == [(2, 2), (2, 2)]


def trained(items: list[TrainBatch]) -> list[tuple[int, str | None, float]]:
    return [(i.epoch, i.batch if i.weight else None, i.weight) for i in items]


@pytest.mark.parametrize("taken", range(1, 8))
def test_resuming_from_any_position_continues_exactly(taken):
    """Stop after ``taken`` micro-batches, rebuild from the saved positions: the same stream."""
    make, _ = train_batches(SHARES, [TrainState(), TrainState()])
    straight, _ = run_ranks(make, 2, limit=8)
    first = [TrainState(), TrainState()]
    make, _ = train_batches(SHARES, first)
    head, _ = run_ranks(make, 2, limit=taken)
    saved = [TrainState(epoch=s.epoch, batches_in_epoch=s.batches_in_epoch) for s in first]
    make, built = train_batches(SHARES, saved)
    tail, _ = run_ranks(make, 2, limit=8 - taken)
    for rank in (0, 1):  # padding may differ in content (weight 0 makes that irrelevant)
        assert trained(head[rank] + tail[rank]) == trained(straight[rank]), f"rank {rank}"
    assert built[0][0] == (first[0].epoch, first[0].batches_in_epoch)
    if taken == 5:  # rank 0 resumed past its share of epoch 1: pads with its first batch
        assert flat(tail[0])[0] == (1, "a3", 0.0)


# --------------------------------------------------------------------------- periodic actions
def test_periodic_actions_run_every_n_steps_and_after_the_last():
    assert [s for s in range(1, 15) if due(s, 5, 14)] == [5, 10, 14]
    assert [s for s in range(1, 4) if due(s, 100, 3)] == [3]
    assert [s for s in range(1, 5) if due(s, 1, 4)] == [1, 2, 3, 4]
    assert not reached(100, None)
    assert [s for s in range(1, 7) if reached(s, 5)] == [5, 6]


# --------------------------------------------------------------------------- lr schedule
def lrs(lr: float, warmup: int, max_steps: int, min_ratio: float) -> list[float]:
    """The learning rate at each optimizer step (``LambdaLR`` sets ``lr * factor(step)``)."""
    factor = warmup_cosine(warmup, max_steps, min_ratio)
    return [lr * factor(step) for step in range(max_steps + 3)]


def test_warmup_rises_linearly_to_the_base_lr():
    values = lrs(1e-3, 4, 20, 0.1)
    assert values[:5] == pytest.approx([0.25e-3, 0.5e-3, 0.75e-3, 1e-3, 1e-3])


def test_cosine_decays_monotonically_to_lr_times_min_ratio_and_stays():
    values = lrs(1e-3, 4, 20, 0.1)
    after = values[4:]
    assert all(b <= a for a, b in itertools.pairwise(after))
    assert values[12] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # half way: the mean
    assert values[20:] == pytest.approx([1e-4] * 3)


def test_no_warmup_starts_at_the_base_lr():
    factor = warmup_cosine(0, 10, 0.05)
    assert factor(0) == 1.0
    assert factor(10) == pytest.approx(0.05)
    assert factor(0) > factor(1) > factor(9) > factor(10)


# --------------------------------------------------------------------------- validation metrics
def reference_metrics(pred: np.ndarray, y: np.ndarray, std: np.ndarray) -> dict[str, float]:
    """MAE, MAE/std and R² channel by channel, in plain loops."""
    record: dict[str, float] = {}
    maes, normalized, r2s = [], [], []
    for k in range(y.shape[1]):
        err = [abs(p - t) for p, t in zip(pred[:, k], y[:, k], strict=True)]
        mae = sum(err) / len(err)
        mean = sum(y[:, k]) / len(y)
        ss_res = sum((p - t) ** 2 for p, t in zip(pred[:, k], y[:, k], strict=True))
        ss_tot = sum((t - mean) ** 2 for t in y[:, k])
        r2 = 1 - ss_res / ss_tot if ss_tot > 1e-12 * len(y) else math.nan
        record[f"val/mae/{k}"], record[f"val/r2/{k}"] = mae, r2
        maes.append(mae)
        normalized.append(mae / std[k])
        if not math.isnan(r2):
            r2s.append(r2)
    record["val/mae_mean"] = sum(maes) / len(maes)
    record["val/mae_normalized_mean"] = sum(normalized) / len(normalized)
    record["val/r2_mean"] = sum(r2s) / len(r2s)
    record["val/r2_median"] = float(np.median(r2s))
    return record


def test_validation_metrics_match_a_plain_loop_over_features():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(37, 4)) * [1.0, 3.0, 0.5, 0.0] + [0.0, 1.0, -2.0, 7.0]
    pred = y + rng.normal(scale=0.3, size=y.shape)
    std = np.array([1.0, 3.0, 0.5, 1e-8])
    metrics = ChannelMetrics(4)
    for rows in np.array_split(np.arange(len(y)), 3):  # batches of different sizes
        metrics.update(torch.tensor(pred[rows]), torch.tensor(y[rows], dtype=torch.float32))
    record = validation_record(metrics.compute(), torch.tensor(std), loss_sum=12.0, atoms=37)

    expected = reference_metrics(pred, y.astype(np.float32).astype(np.float64), std)
    assert math.isnan(record["val/r2/3"]) and math.isnan(expected["val/r2/3"])  # constant
    for key, value in expected.items():
        if not math.isnan(value):
            assert record[key] == pytest.approx(value, rel=1e-9), key
    assert record["val/loss"] == pytest.approx(12.0 / 37)
    assert record["val/atoms"] == 37


def test_validation_record_without_a_varying_channel_has_nan_r2():
    metrics = ChannelMetrics(2)
    metrics.update(torch.ones(3, 2), torch.zeros(3, 2))
    record = validation_record(metrics.compute(), torch.ones(2), loss_sum=0.0, atoms=0)
    assert math.isnan(record["val/r2_mean"]) and math.isnan(record["val/r2_median"])
    assert record["val/mae_mean"] == 1.0 and record["val/loss"] == 0.0


# --------------------------------------------------------------------------- DeepSpeed config
CPU = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def test_deepspeed_config_carries_the_run_settings():
    cfg = PretrainConfig(data="d", out="o", zero_stage=2, grad_clip=3.5, grad_accum=4)
    config = deepspeed_config(cfg, CPU)
    assert config["zero_optimization"] == {"stage": 2}
    assert config["gradient_clipping"] == 3.5
    assert config["gradient_accumulation_steps"] == 4
    assert config["train_micro_batch_size_per_gpu"] == 1
    assert "torch_autocast" not in config  # auto: fp32 on CPU


@pytest.mark.parametrize(("precision", "bf16"), [("auto", False), ("fp32", False), ("bf16", True)])
def test_deepspeed_config_bf16_autocast_on_cpu(precision, bf16):
    config = deepspeed_config(PretrainConfig(data="d", out="o", precision=precision), CPU)
    expected = {"enabled": True, "dtype": "bfloat16"} if bf16 else None
    assert config.get("torch_autocast") == expected
    assert "bf16" not in config and "fp16" not in config  # autocast keeps fp32 master weights


def test_users_deepspeed_entries_are_merged_deeply_and_last():
    extra = {
        "zero_optimization": {"offload_optimizer": {"device": "cpu"}, "stage": 3},
        "gradient_clipping": 0.5,
        "torch_autocast": {"dtype": "float16"},
        "new_key": [1, 2],
    }
    cfg = PretrainConfig(data="d", out="o", zero_stage=1, precision="bf16", deepspeed=extra)
    config = deepspeed_config(cfg, CPU)
    assert config["zero_optimization"] == {"stage": 3, "offload_optimizer": {"device": "cpu"}}
    assert config["gradient_clipping"] == 0.5
    assert config["torch_autocast"] == {"enabled": True, "dtype": "float16"}
    assert config["new_key"] == [1, 2]
    assert cfg.deepspeed["zero_optimization"] == {
        "offload_optimizer": {"device": "cpu"},
        "stage": 3,
    }  # the user's dict is left as it was


def test_an_epoch_without_any_training_batch_is_an_error_not_an_endless_loop():
    state = TrainState()
    batches = TrainBatches(state, lambda epoch, skip: ListLoader({0: []}, epoch, skip),
                           agree=lambda mine: mine, rank=0)  # fmt: skip
    with pytest.raises(RuntimeError, match="no training batch on any rank"):
        next(iter(batches))
