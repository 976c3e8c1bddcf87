"""Fine-tuning and benchmark configuration: defaults in code <- YAML <- ``key=value``.

``configs/finetune/*.yaml`` hold named settings; ``fmpretrain finetune --help`` lists every key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from fmpretrain.config import WandbConfig, config_group, load_structured
from fmpretrain.finetune.data import TASK_TYPES
from fmpretrain.models.config import DEFAULT_MODEL, ModelConfig
from fmpretrain.models.heads import POOLINGS
from fmpretrain.models.losses import LOSSES
from fmpretrain.structures import DEFAULT_MIN_DISTANCE

__all__ = ["EmtConfig", "FinetuneConfig", "check_config", "load_finetune_config"]

SCHEDULERS = ("plateau", "cosine", "none")


@dataclass
class EmtConfig:
    n: int = 300  # structures of the offline EMT tasks
    seed: int = 0
    max_atoms: int = 16


@dataclass
class FinetuneConfig:
    """Fine-tuning and benchmark settings (``configs/finetune/*.yaml`` + ``key=value``)."""

    out: str = MISSING  # output directory
    pretrained: str | None = None  # release directory; null: from-scratch only
    scratch: bool = True  # also train the from-scratch baseline (same architecture, budget)
    baselines: bool = True  # benchmark: also the `gbm` and `mean` baselines on the same folds
    # --- data
    task: Any = "emt_energy"  # emt_energy | perov_heat | carbon_energy | matbench_<name> | list
    task_size: int | None = None  # seeded random subset of every task (fast runs); null: all
    data: str | None = None  # local dataset: MatBench JSON(.gz), MatDeepLearn JSON, folder/CSV
    targets_csv: str | None = None  # id,target CSV of a folder (default folder/targets.csv)
    target: str | None = None  # property to learn (default: the file's single target)
    task_type: str | None = None  # regression | classification (default: from the task)
    pooling: str | None = None  # mean (intensive) | sum (extensive) (default: from the task)
    emt: EmtConfig = field(default_factory=EmtConfig)
    cache_dir: str | None = None  # downloads and generated tasks ($FMPRETRAIN_CACHE)
    matbench_url: str | None = None  # base URL of matbench_<name>.json.gz files
    min_distance: float = DEFAULT_MIN_DISTANCE  # structures with closer atoms are bad entries
    # --- model (from-scratch runs without a release only; otherwise the release's)
    #: model=NAME (configs/model/NAME.yaml or a path; small when only model.KEY=VALUE is given)
    model: ModelConfig | None = config_group("model", DEFAULT_MODEL, optional=True)
    # --- splits
    seed: int = 0
    n_folds: int = 5  # benchmark: KFold(n_folds, shuffle=True, random_state=fold_seed)
    fold_seed: int = 18012019  # MatBench's
    folds: list[int] | None = None  # benchmark: fold indices to run (default: all)
    val_fraction: float = 0.2  # of each training part, for early stopping
    test_fraction: float = 0.2  # `finetune` command: held-out test split (60/20/20)
    # --- optimisation
    max_epochs: int = 200
    patience: int = 20  # early stopping: epochs without validation improvement
    lr: float = 1e-4
    weight_decay: float = 0.0
    layer_decay: float = 1.0  # layer-wise lr decay factor d (1: off)
    freeze_backbone: bool = False
    scheduler: str = "plateau"  # plateau | cosine | none
    plateau_factor: float = 0.8
    plateau_patience: int = 10
    min_lr: float = 1e-5
    grad_clip: float = 10.0
    loss: str = "l1"  # l1 | mse | smooth_l1 (regression, on standardized targets)
    max_atoms_per_batch: int = 512
    max_edges_per_batch: int | None = None
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch threads; 0: auto (usable cores less those busy elsewhere)
    resume: bool = True  # benchmark: reuse finished folds whose configuration matches
    wandb: WandbConfig = field(default_factory=WandbConfig)


def load_finetune_config(path: str | Path | None, overrides: Sequence[str] = ()) -> FinetuneConfig:
    """Defaults <- YAML <- ``key=value`` overrides, checked; bad keys/values are clear errors.

    ``path`` is a file or a named config (:func:`fmpretrain.config.named_config`).
    """
    cfg = load_structured(
        FinetuneConfig,
        path,
        overrides,
        required=("out",),
        what="finetune configuration",
        kind="finetune",
    )
    check_config(cfg)
    return cfg


def check_config(cfg: FinetuneConfig) -> None:
    if cfg.task_type is not None and cfg.task_type not in TASK_TYPES:
        raise ValueError(f"task_type must be one of {TASK_TYPES}, got {cfg.task_type!r}")
    if cfg.pooling is not None and cfg.pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {cfg.pooling!r}")
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {cfg.loss!r}")
    if cfg.scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {cfg.scheduler!r}")
    if cfg.max_epochs < 1 or cfg.patience < 1 or cfg.max_atoms_per_batch < 1:
        raise ValueError("max_epochs, patience and max_atoms_per_batch must be at least 1")
    if cfg.threads < 0:
        raise ValueError(f"threads must be 0 (auto) or positive, got {cfg.threads}")
    if not 0 < cfg.layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], got {cfg.layer_decay}")
    if not 0 < cfg.val_fraction < 1 or not 0 < cfg.test_fraction < 1:
        raise ValueError("val_fraction and test_fraction must be in (0, 1)")
    if cfg.val_fraction + cfg.test_fraction >= 1:
        raise ValueError("val_fraction + test_fraction must be below 1")
    if cfg.n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {cfg.n_folds}")
    if cfg.folds is not None:
        bad = [f for f in cfg.folds if not 0 <= f < cfg.n_folds]
        if bad or not cfg.folds:
            raise ValueError(
                f"folds must be a non-empty list of 0..{cfg.n_folds - 1}, got {cfg.folds}"
            )
    if cfg.task_size is not None and (isinstance(cfg.task_size, bool) or cfg.task_size < 1):
        raise ValueError(f"task_size must be a positive integer or null, got {cfg.task_size!r}")
    if cfg.pretrained is None and not cfg.scratch:
        raise ValueError("nothing to train: pretrained=null and scratch=false")
    if cfg.wandb.mode not in ("offline", "online", "disabled"):
        raise ValueError(f"wandb.mode must be offline, online or disabled, got {cfg.wandb.mode!r}")
