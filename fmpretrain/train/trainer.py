"""Pre-training: a GNN regresses normalized per-atom fingerprints, on a DeepSpeed engine.

The same code runs as one CPU process (gloo) and under ``torchrun`` / ``deepspeed`` / ``srun``
on many GPUs (NCCL). Checkpoints are DeepSpeed's and carry the data position and RNG states, so
a resumed run continues exactly where the interrupted one stopped.

Checkpoints are sealed with ``SHA256SUMS`` once written and resume takes the newest intact one,
logging each newer one it skipped and why; files are read with ``weights_only=True`` and an
allow-list (:mod:`fmpretrain.train.checkpoints`). A resumed run must read shards with the
descriptor hash recorded in its ``run.yaml`` and checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import yaml

from fmpretrain.config import config_dict, deep_merge
from fmpretrain.data.manifest import Manifest
from fmpretrain.data.scaling import SAMPLED_SCALINGS, Normalizer, fit_normalizer
from fmpretrain.files import atomic_write_text
from fmpretrain.models.losses import loss_function
from fmpretrain.threads import set_threads
from fmpretrain.train.batches import TrainBatch, TrainBatches
from fmpretrain.train.checkpoints import (
    CheckpointCorruptError,
    choose_checkpoint,
    install_safe_loading,
    seal,
    unseal,
)
from fmpretrain.train.config import PretrainConfig
from fmpretrain.train.distributed import DistInfo, init_distributed
from fmpretrain.train.logging import RunLogger
from fmpretrain.train.metrics import ChannelMetrics, validation_record
from fmpretrain.train.schedule import warmup_cosine

RUN_FILE = "run.yaml"
log = logging.getLogger(__name__)
CHECKPOINTS = "checkpoints"
#: How the last invocation of a run ended (launchers requeue on ``preempted``).
STATUS_FILE = "status.json"
if TYPE_CHECKING:
    from torch_geometric.data import Batch

    from fmpretrain.data.loader import ShardLoader

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0
    batches_in_epoch: int = 0  # micro-batches of this rank consumed in the current epoch
    samples_seen: int = 0
    atoms_seen: int = 0


@dataclass
class PretrainResult:
    out: Path
    status: str  # finished | stopped | preempted
    step: int
    resumed_from: int | None
    last_val: dict[str, float] | None
    checkpoint: Path | None


class _StopFlag:
    """Set by SIGUSR1/SIGTERM (Slurm's pre-emption warning); acted on at a step boundary."""

    def __init__(self) -> None:
        self.raised = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.raised = True

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def pretrain(cfg: PretrainConfig, *, progress: bool = True) -> PretrainResult:
    """Run (or resume) pre-training as configured; returns where it ended."""
    import deepspeed

    from fmpretrain.models import build_fingerprint_model

    dist = init_distributed()
    set_threads(cfg.threads, local_processes=int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    out = Path(cfg.out)
    manifest = Manifest.load(cfg.data)
    model_cfg = cfg.model
    if cfg.activation_checkpointing is not None:
        model_cfg = dataclasses.replace(
            model_cfg, activation_checkpointing=cfg.activation_checkpointing
        )
    normalizer = _target_normalizer(cfg, manifest)
    descriptor_hash = _check_recorded_descriptor(out, manifest, cfg.data)
    run_record = _run_record(cfg, model_cfg, manifest, normalizer)
    if dist.is_main:
        _write_run_record(out, run_record)
    torch.distributed.barrier()

    _seed_everything(cfg.seed)
    model = build_fingerprint_model(model_cfg, out_dim=manifest.dim)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)
    )
    engine, optimizer, _, scheduler = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        lr_scheduler=scheduler,
        config=deepspeed_config(cfg, dist),
    )

    state = TrainState()
    ckpt_dir = out / CHECKPOINTS
    resumed_from = None
    install_safe_loading(engine)
    tag = _choose_checkpoint(ckpt_dir, dist)
    if tag is not None:
        path, client = engine.load_checkpoint(str(ckpt_dir), tag=tag)
        if path is None:
            raise RuntimeError(f"could not load checkpoint {tag} in {ckpt_dir}")
        recorded = client.get("descriptor_hash", descriptor_hash)
        if recorded != descriptor_hash:
            raise ValueError(_hash_mismatch(ckpt_dir / tag, recorded, manifest, cfg.data))
        state = TrainState(**client["train_state"])
        _set_rng_states(client["rng"][dist.rank] if dist.rank < len(client["rng"]) else None)
        resumed_from = engine.global_steps
        if dist.is_main:
            log.info("resuming from step %d (%s)", resumed_from, path)

    logger = RunLogger(
        out,
        enabled=dist.is_main,
        wandb_mode=cfg.wandb.mode,
        project=cfg.wandb.project,
        name=cfg.wandb.name or out.name,
        entity=cfg.wandb.entity,
        config=run_record,
    )
    stop = _StopFlag()
    stop.install()
    try:
        run = _Run(
            cfg,
            dist,
            engine,
            scheduler,
            state,
            normalizer,
            logger,
            stop,
            cutoff=float(model_cfg.cutoff),
            descriptor_hash=descriptor_hash,
        )
        status, last_val, checkpoint = _train_loop(run, progress=progress)
    finally:
        stop.restore()
        logger.close()
    result = PretrainResult(out, status, engine.global_steps, resumed_from, last_val, checkpoint)
    if dist.is_main:
        _write_status(result)
    return result


def _write_status(result: PretrainResult) -> None:
    """``status.json``: how the last invocation ended (launchers requeue on ``preempted``)."""
    record = {
        "status": result.status,
        "step": result.step,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "resumed_from": result.resumed_from,
    }
    atomic_write_text(result.out / STATUS_FILE, json.dumps(record, indent=1) + "\n")


def deepspeed_config(cfg: PretrainConfig, dist: DistInfo) -> dict[str, Any]:
    """The DeepSpeed config this run uses (``cfg.deepspeed`` entries override it)."""
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and dist.device.type == "cuda")
    if use_bf16 and dist.device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("precision=bf16 needs a GPU with bfloat16 support; use precision=fp32")
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": 1,  # one atom-budget batch per micro-step
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": {"stage": cfg.zero_stage},
        "steps_per_print": 10**12,
        "wall_clock_breakdown": False,
    }
    if use_bf16:  # autocast keeps fp32 master weights; the RBF and loss stay in fp32
        config["torch_autocast"] = {"enabled": True, "dtype": "bfloat16"}
    return deep_merge(config, cfg.deepspeed)


@dataclass
class _Run:
    """What the training loop works with."""

    cfg: PretrainConfig
    dist: DistInfo
    engine: Any  # deepspeed.DeepSpeedEngine
    scheduler: Any  # its LR scheduler
    state: TrainState
    normalizer: Normalizer
    logger: RunLogger
    stop: _StopFlag
    cutoff: float
    descriptor_hash: str

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)


def due(step: int, every: int, max_steps: int) -> bool:
    """Whether a periodic action (log, evaluate, checkpoint) runs after optimizer step ``step``:
    every ``every`` steps and after the last one."""
    return step % every == 0 or step == max_steps


def _train_loop(run: _Run, *, progress: bool) -> tuple[str, dict[str, float] | None, Path | None]:
    """Train up to ``max_steps`` (or a stop); returns the status, last validation, checkpoint."""
    from tqdm import tqdm

    cfg, engine = run.cfg, run.engine
    micro = iter(
        TrainBatches(
            run.state,
            partial(_train_loader, run),
            agree=partial(_agree, dist=run.dist),
            rank=run.dist.rank,
        )
    )
    train_step = _TrainStep(run)
    last_val, checkpoint = None, None
    bar = tqdm(
        total=cfg.max_steps,
        initial=engine.global_steps,
        desc="pretrain",
        unit="step",
        disable=not (progress and run.dist.is_main) or None,
    )
    try:
        while engine.global_steps < cfg.max_steps:
            step = train_step(micro)
            bar.update(1)
            if due(step, cfg.log_every, cfg.max_steps):
                _log_train(run, train_step.log_record(), step, bar)
            if due(step, cfg.eval_every, cfg.max_steps):
                last_val = _validate(run, step, bar)
            stopping = _agree(run.stop.raised, run.dist) or reached(step, cfg.stop_after)
            if stopping or due(step, cfg.checkpoint_every, cfg.max_steps):
                checkpoint = _save(run)
            if stopping:
                return ("preempted" if run.stop.raised else "stopped"), last_val, checkpoint
    finally:
        bar.close()
        micro.close()
    if checkpoint is None or not checkpoint.name.endswith(f"{engine.global_steps:08d}"):
        checkpoint = _save(run)
    return "finished", last_val, checkpoint


def reached(step: int, stop_after: int | None) -> bool:
    """Whether ``stop_after`` (a step, or ``None`` for never) is reached at ``step``."""
    return stop_after is not None and step >= stop_after


def _log_train(run: _Run, record: dict[str, float], step: int, bar: Any) -> None:
    bar.set_postfix(loss=f"{record['train/loss']:.4f}", refresh=False)
    run.logger.log(record, step)


def _validate(run: _Run, step: int, bar: Any) -> dict[str, float]:
    record = evaluate(
        run.cfg,
        run.dist,
        run.engine,
        run.normalizer,
        run.cutoff,
        descriptor_hash=run.descriptor_hash,
    )
    run.logger.log(record, step)
    if run.dist.is_main:
        bar.write(f"step {step}: {describe_validation(record)}")
    return record


class _TrainStep:
    """One optimizer step: forward and backward over micro-batches until the engine steps."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.loss_fn = loss_function(run.cfg.loss)
        self.window = _Window()
        self.audit = _SampleAudit(run.out, run.dist.rank) if run.cfg.audit_samples else None

    def __call__(self, micro: Iterator[TrainBatch[Batch]]) -> int:
        """Train on micro-batches from ``micro`` up to the next optimizer step; its number."""
        run, engine, state = self.run, self.run.engine, self.run.state
        step_before = engine.global_steps
        while engine.global_steps == step_before:  # gradient accumulation
            item = next(micro)
            batch = item.batch.to(run.dist.device)
            prediction = engine(batch)
            loss = self.loss_fn(prediction.float(), batch.y)
            engine.backward(loss * item.weight)
            engine.step()
            if item.weight:
                if self.audit is not None:
                    self.audit.write(item.epoch, step_before, batch.key)
                state.samples_seen += int(batch.num_graphs)
                state.atoms_seen += int(batch.num_nodes)
                self.window.add(loss.item(), int(batch.num_nodes))
        return engine.global_steps

    def log_record(self) -> dict[str, float]:
        """Loss and throughput since the last record, lr, epoch, gradient norm, memory."""
        run = self.run
        record = self.window.flush(run.dist)
        record.update(
            lr=run.scheduler.get_last_lr()[0],
            epoch=run.state.epoch,
            grad_norm=_grad_norm(run.engine),
            **_memory(run.dist),
        )
        return record


def _train_loader(run: _Run, epoch: int, skip_batches: int) -> ShardLoader:
    """This rank's training loader for ``epoch``, after its first ``skip_batches`` batches."""
    from fmpretrain.data.loader import build_loader

    cfg = run.cfg
    return build_loader(
        cfg.data,
        cutoff=run.cutoff,
        max_atoms_per_batch=cfg.max_atoms_per_batch,
        seed=cfg.seed,
        epoch=epoch,
        rank=run.dist.rank,
        world_size=run.dist.world_size,
        num_workers=cfg.num_workers,
        shuffle_buffer=cfg.shuffle_buffer,
        split="train",
        val_shards=cfg.val_shards,
        skip_batches=skip_batches,
        expected_descriptor_hash=run.descriptor_hash,
        normalizer=run.normalizer,
    )


def _save(run: _Run) -> Path:
    return save_checkpoint(
        run.engine, run.state, run.out, run.cfg.keep_checkpoints, run.dist, run.descriptor_hash
    )


def _agree(flag: bool, dist: DistInfo) -> bool:
    """True on every rank if ``flag`` is true on any rank."""
    if dist.world_size == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=dist.device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


@torch.no_grad()
def evaluate(
    cfg, dist, engine, normalizer, cutoff, *, descriptor_hash: str | None = None
) -> dict[str, float]:
    """Loss, per-channel MAE (fingerprint units) and R² on the held-out shards."""
    from fmpretrain.data.loader import build_loader

    loader = build_loader(
        cfg.data,
        cutoff=cutoff,
        max_atoms_per_batch=cfg.max_atoms_per_batch,
        seed=cfg.seed,
        epoch=0,
        rank=dist.rank,
        world_size=dist.world_size,
        num_workers=0,
        shuffle_buffer=0,
        split="val",
        val_shards=cfg.val_shards,
        expected_descriptor_hash=descriptor_hash,
        normalizer=normalizer,
    )
    engine.eval()
    loss_fn = loss_function(cfg.loss)
    dim = len(normalizer.mean)
    metrics = ChannelMetrics(dim, dist.device)
    loss_sum = torch.zeros(2, dtype=torch.float64, device=dist.device)
    for batch in loader:
        batch = batch.to(dist.device)
        prediction = engine(batch).float()
        loss_sum[0] += loss_fn(prediction, batch.y).double() * batch.num_nodes
        loss_sum[1] += batch.num_nodes
        metrics.update(normalizer.denormalize(prediction), normalizer.denormalize(batch.y))
    engine.train()
    metrics.all_reduce()
    if dist.world_size > 1:
        torch.distributed.all_reduce(loss_sum)
    feature_std = torch.from_numpy(loader.manifest.statistics().std)  # MAE/std in units
    return validation_record(metrics.compute(), feature_std, float(loss_sum[0]), int(loss_sum[1]))


def describe_validation(record: dict[str, float]) -> str:
    return (
        f"val loss {record['val/loss']:.4f}, MAE/std {record['val/mae_normalized_mean']:.4f}, "
        f"median R² {record['val/r2_median']:.3f}"
    )


def save_checkpoint(
    engine,
    state: TrainState,
    out: Path,
    keep: int,
    dist: DistInfo,
    descriptor_hash: str | None = None,
) -> Path:
    """A DeepSpeed checkpoint with the train state, every rank's RNG states and the shards'
    descriptor hash, sealed with ``SHA256SUMS`` once every rank has written its files."""
    tag = f"step{engine.global_steps:08d}"
    ckpt_dir = out / CHECKPOINTS
    rng = _gather_rng_states(dist)
    if dist.is_main:
        unseal(ckpt_dir / tag)  # a tag rewritten after a fallback is unsealed until complete
    client = {"train_state": state.__dict__, "rng": rng, "descriptor_hash": descriptor_hash}
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=client)
    torch.distributed.barrier()
    if dist.is_main:
        seal(ckpt_dir / tag)
    torch.distributed.barrier()
    if dist.is_main and keep > 0:
        tags = sorted(p for p in ckpt_dir.glob("step*") if p.is_dir())
        for old in tags[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return ckpt_dir / tag


class _SampleAudit:
    """Which samples each rank trained on, per epoch (to check data order and coverage)."""

    def __init__(self, out: Path, rank: int) -> None:
        self.path = out / "samples" / f"rank{rank}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, epoch: int, step: int, keys: list[str]) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"epoch": epoch, "step": step, "keys": list(keys)}) + "\n")


class _Window:
    """Loss and throughput since the last log line."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss_sum, self.batches, self.atoms, self.start = 0.0, 0, 0, time.perf_counter()

    def add(self, loss: float, atoms: int) -> None:
        self.loss_sum += loss
        self.batches += 1
        self.atoms += atoms

    def flush(self, dist: DistInfo) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        totals = torch.tensor([self.loss_sum, self.batches, self.atoms], dtype=torch.float64)
        if dist.world_size > 1:
            totals = totals.to(dist.device)
            torch.distributed.all_reduce(totals)
        record = {
            "train/loss": float(totals[0] / max(totals[1].item(), 1)),
            "train/atoms_per_s": float(totals[2]) / elapsed,
        }
        self.reset()
        return record


def _grad_norm(engine) -> float:
    norm = engine.get_global_grad_norm()
    return float(norm) if norm is not None else math.nan


def _memory(dist: DistInfo) -> dict[str, float]:
    if dist.device.type == "cuda":
        return {"memory/gpu_max_gib": torch.cuda.max_memory_allocated(dist.device) / 2**30}
    import resource

    return {"memory/rss_max_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain Python values (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _gather_rng_states(dist: DistInfo) -> list[dict[str, Any]]:
    states: list[Any] = [None] * dist.world_size
    torch.distributed.all_gather_object(states, _rng_state())
    return states


def _set_rng_states(state: dict[str, Any] | None) -> None:
    if state is None:
        return
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _choose_checkpoint(ckpt_dir: Path, dist: DistInfo) -> str | None:
    """The newest intact checkpoint tag (chosen on rank 0, the same on every rank), or ``None``
    for a fresh run; logs each newer checkpoint skipped and why."""
    choice: list[Any] = [None, None]  # tag, error
    if dist.is_main and ckpt_dir.is_dir():
        try:
            choice[0] = choose_checkpoint(
                ckpt_dir,
                purpose="resuming from",
                remedy="move the folder away to start over, or restore the files",
            )
        except CheckpointCorruptError as err:
            choice[1] = str(err)
    if dist.world_size > 1:
        torch.distributed.broadcast_object_list(choice, src=0)
    if choice[1] is not None:
        raise CheckpointCorruptError(choice[1])
    return choice[0]


def _check_recorded_descriptor(out: Path, manifest: Manifest, data: str) -> str:
    """The descriptor hash this run trains on: the one its ``run.yaml`` recorded, which must be
    the shards' (a fresh run takes the shards')."""
    path = out / RUN_FILE
    if not path.exists():
        return manifest.descriptor_hash
    try:
        recorded = (yaml.safe_load(path.read_text()) or {})["descriptor"]["hash"]
    except (yaml.YAMLError, KeyError, TypeError) as err:
        raise ValueError(
            f"{path} records no descriptor hash ({err!r}): choose another out=DIR"
        ) from err
    if recorded != manifest.descriptor_hash:
        raise ValueError(_hash_mismatch(path, recorded, manifest, data))
    return recorded


def _hash_mismatch(where: Path, recorded: str, manifest: Manifest, data: str) -> str:
    return (
        f"descriptor hash mismatch: {where} records descriptor hash {recorded}, but the shards "
        f"in {data} have {manifest.descriptor_hash} ({manifest.descriptor.get('name', '?')}): "
        "resume with the shards the run started on, or choose another out=DIR"
    )


#: Atoms of the training shards sampled to estimate a ``robust`` or ``log`` target scaling.
SCALING_SAMPLE_ATOMS = 200_000


def _target_normalizer(cfg: PretrainConfig, manifest: Manifest) -> Normalizer:
    """The configured target scaling; the sampled ones read the same shards on every rank."""
    from fmpretrain.data.loader import sample_fingerprints

    sample = ()
    if cfg.target_scaling in SAMPLED_SCALINGS:
        sample = sample_fingerprints(
            cfg.data, split="train", val_shards=cfg.val_shards, max_atoms=SCALING_SAMPLE_ATOMS
        )
    normalizer = fit_normalizer(cfg.target_scaling, manifest, sample)
    log.info("target scaling: %s over %d features", cfg.target_scaling, normalizer.dim)
    return normalizer


def _run_record(cfg, model_cfg, manifest: Manifest, normalizer) -> dict[str, Any]:
    """What a release needs to rebuild the model: model, descriptor, normalization."""
    from dataclasses import asdict

    return {
        "pretrain": config_dict(cfg),
        "model": asdict(model_cfg),
        "descriptor": {
            **manifest.descriptor,
            "hash": manifest.descriptor_hash,
            "dim": manifest.dim,
            "feature_names": manifest.feature_names,
        },
        "normalization": normalizer.to_dict(),
        "data": {
            "path": str(cfg.data),
            "n_samples": manifest.n_samples,
            "shards": len(manifest.shards),
        },
    }


def _write_run_record(out: Path, record: dict[str, Any]) -> None:
    """Write ``run.yaml``; a resumed run must match the one on disk in model and data."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUN_FILE
    if path.exists():
        old = yaml.safe_load(path.read_text())
        for key in ("model", "descriptor", "normalization"):
            if _comparable(key, old.get(key)) != _comparable(key, record[key]):
                raise ValueError(
                    f"{out} holds a run with a different {key} configuration; resume with the "
                    "same configuration or choose another out=DIR"
                )
    path.write_text(yaml.safe_dump(record, sort_keys=False))


def _comparable(key: str, value: Any) -> Any:
    """What must match for a resume: the model's function (a run written before a field
    existed gets its default; implementation choices may change), the descriptor as is, the
    target scaling's kind."""
    from fmpretrain.models import ModelConfig

    value = json.loads(json.dumps(value))
    if key == "normalization" and isinstance(value, dict):  # target_scaling; old runs: zscore
        return {"scaling": value.get("scaling", "zscore"), "dim": len(value.get("mean", []))}
    if key == "model" and isinstance(value, dict):
        try:
            return ModelConfig.from_dict(value).function_dict()
        except (TypeError, ValueError):
            return value
    return value
