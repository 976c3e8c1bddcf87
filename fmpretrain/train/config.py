"""Pre-training configuration: defaults in code <- YAML file <- ``key=value`` overrides."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from fmpretrain.config import WandbConfig, config_group, load_structured
from fmpretrain.data.scaling import SCALINGS
from fmpretrain.models.config import DEFAULT_MODEL, ModelConfig
from fmpretrain.models.losses import LOSSES


@dataclass
class PretrainConfig:
    data: str = MISSING  # shard directory written by `fmpretrain featurize`
    out: str = MISSING  # run directory: checkpoints, logs, metrics
    #: model=NAME picks configs/model/NAME.yaml (or a YAML path); model.KEY=VALUE changes a key
    model: ModelConfig = config_group("model", DEFAULT_MODEL)
    seed: int = 0
    max_steps: int = 300  # optimizer steps
    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup_steps: int = 30
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 10.0
    grad_accum: int = 1
    max_atoms_per_batch: int = 512
    num_workers: int = 0
    threads: int = 0  # torch threads per process; 0: auto (fmpretrain.threads)
    shuffle_buffer: int = 256
    val_shards: int = 1  # N shards held out for validation, spread evenly, ending at the last
    eval_every: int = 100
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10
    loss: str = "mse"  # mse | l1 | smooth_l1
    target_scaling: str = "zscore"  # zscore | minmax | robust | log (fmpretrain.data.scaling)
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    zero_stage: int = 1  # 0 (plain data parallel), 1, 2 or 3
    activation_checkpointing: bool | None = None  # None: as the model config says
    deepspeed: dict[str, Any] = field(default_factory=dict)  # extra DeepSpeed config entries
    stop_after: int | None = None  # checkpoint and stop after this step (time-boxed jobs, tests)
    audit_samples: bool = False  # log every trained sample key to out/samples/rank<r>.jsonl
    wandb: WandbConfig = field(default_factory=WandbConfig)


#: Integer settings and their smallest allowed value.
AT_LEAST = {
    "max_steps": 1,
    "eval_every": 1,
    "checkpoint_every": 1,
    "log_every": 1,
    "grad_accum": 1,
    "max_atoms_per_batch": 1,
    "val_shards": 1,
    "keep_checkpoints": 0,
    "num_workers": 0,
    "threads": 0,
    "shuffle_buffer": 0,
    "warmup_steps": 0,
}
_MEANING = {
    "max_steps": "optimizer steps to train",
    "eval_every": "validate every N steps",
    "checkpoint_every": "checkpoint every N steps",
    "log_every": "log every N steps",
    "grad_accum": "micro-batches per optimizer step",
    "max_atoms_per_batch": "atoms per micro-batch",
    "val_shards": "shards held out for the validation run every eval_every steps",
    "keep_checkpoints": "0 keeps every checkpoint",
    "num_workers": "0 loads in the training process",
    "threads": "0 picks the usable cores per process, less those busy elsewhere",
    "shuffle_buffer": "0 does not mix samples across shards",
    "warmup_steps": "0 starts at the full learning rate",
}
PRECISIONS = ("auto", "fp32", "bf16")


def load_pretrain_config(path: str | Path | None, overrides: Sequence[str] = ()) -> PretrainConfig:
    """Merge and check; unknown keys, bad types and bad values are clear errors.

    ``path`` is a file or a named config (:func:`fmpretrain.config.named_config`).
    """
    cfg = load_structured(
        PretrainConfig,
        path,
        overrides,
        required=("data", "out"),
        what="pretrain configuration",
        kind="pretrain",
    )
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {cfg.loss!r}")
    if cfg.target_scaling not in SCALINGS:
        raise ValueError(
            f"target_scaling must be one of {list(SCALINGS)}, got {cfg.target_scaling!r}"
        )
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {cfg.precision!r}")
    if cfg.zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"zero_stage must be 0, 1, 2 or 3, got {cfg.zero_stage}")
    for key, allowed in AT_LEAST.items():
        value = getattr(cfg, key)
        if value < allowed:
            raise ValueError(
                f"{key}={value} in the pretrain configuration: must be an integer >= {allowed} "
                f"({_MEANING[key]})"
            )
    if cfg.stop_after is not None and cfg.stop_after < 1:
        raise ValueError(f"stop_after={cfg.stop_after}: must be null or an integer >= 1 (a step)")
    for key in ("lr", "grad_clip"):
        value = getattr(cfg, key)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{key}={value} in the pretrain configuration: must be finite and > 0")
    return cfg
