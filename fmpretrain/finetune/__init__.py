"""Fine-tuning: downstream tasks, the benchmark harness (MatBench folds) and its reports.

Talks to pre-training only through the release format (:mod:`fmpretrain.finetune.release`).

>>> from fmpretrain.finetune import load_finetune_config, run_benchmark  # doctest: +SKIP
>>> cfg = load_finetune_config("configs/finetune/demo.yaml", ["pretrained=RELEASE", "out=runs/b"])
>>> results = run_benchmark(cfg)  # doctest: +SKIP
"""

from fmpretrain.finetune.benchmark import run_benchmark, run_finetune
from fmpretrain.finetune.config import FinetuneConfig, load_finetune_config
from fmpretrain.finetune.data import BadEntriesError, LabelledDataset, build_graphs, read_labelled
from fmpretrain.finetune.plots import plot_results
from fmpretrain.finetune.release import Release, ReleaseError, load_release
from fmpretrain.finetune.report import markdown_table
from fmpretrain.finetune.splits import kfold_splits
from fmpretrain.finetune.tasks import (
    OFFLINE_TASKS,
    DatasetUnavailableError,
    TaskSpec,
    load_task,
    make_emt_task,
    matbench_file,
)
from fmpretrain.finetune.trainer import (
    TargetScaler,
    build_model,
    evaluate,
    fit,
)

__all__ = [
    "OFFLINE_TASKS",
    "BadEntriesError",
    "DatasetUnavailableError",
    "FinetuneConfig",
    "LabelledDataset",
    "Release",
    "ReleaseError",
    "TargetScaler",
    "TaskSpec",
    "build_graphs",
    "build_model",
    "evaluate",
    "fit",
    "kfold_splits",
    "load_finetune_config",
    "load_release",
    "load_task",
    "make_emt_task",
    "markdown_table",
    "matbench_file",
    "plot_results",
    "read_labelled",
    "run_benchmark",
    "run_finetune",
]
