"""Task preparation: a task's data, graphs (with the model's cutoff) and model configuration."""

from __future__ import annotations

from dataclasses import dataclass

from fmpretrain.finetune.config import FinetuneConfig
from fmpretrain.finetune.data import LabelledDataset, build_graphs
from fmpretrain.finetune.release import Release
from fmpretrain.finetune.tasks import TaskSpec, load_task
from fmpretrain.models import ModelConfig
from fmpretrain.models.config import DEFAULT_MODEL

__all__ = ["Prepared", "prepare"]


@dataclass
class Prepared:
    """One task ready to train: data, graphs (built with the model's cutoff) and the model."""

    spec: TaskSpec
    dataset: LabelledDataset
    graphs: list
    model_config: ModelConfig
    release: Release | None

    @property
    def out_dim(self) -> int:
        return self.dataset.n_classes if self.spec.task_type == "classification" else 1

    @property
    def metric(self) -> str:
        return "error" if self.spec.task_type == "classification" else "mae"


def _tasks(cfg: FinetuneConfig) -> list[str | None]:
    task = cfg.task
    if task is None:
        return [None]
    if isinstance(task, str):
        return [t.strip() for t in task.split(",")] if "," in task else [task]
    tasks = list(task)
    if cfg.data is not None and len(tasks) > 1:
        raise ValueError("data=PATH is one dataset: give a single task (or task=null)")
    return tasks


def _model_config(cfg: FinetuneConfig, release: Release | None) -> ModelConfig:
    if release is not None:
        if cfg.model is not None:
            raise ValueError(
                "model / model.KEY=VALUE only apply to from-scratch runs without a release; the "
                "architecture comes from the release (the scratch baseline uses it too)"
            )
        return release.model_config
    return cfg.model if cfg.model is not None else ModelConfig.from_name(DEFAULT_MODEL)


def prepare(cfg: FinetuneConfig, task: str | None, release: Release | None) -> Prepared:
    dataset, spec = load_task(
        task,
        data=cfg.data,
        target=cfg.target,
        targets_csv=cfg.targets_csv,
        task_type=cfg.task_type,
        pooling=cfg.pooling,
        n=cfg.emt.n,
        seed=cfg.emt.seed,
        max_atoms=cfg.emt.max_atoms,
        cache=cfg.cache_dir,
        url_base=cfg.matbench_url,
        min_distance=cfg.min_distance,
        size=cfg.task_size,
        size_seed=cfg.seed,
    )
    model_config = _model_config(cfg, release)
    graphs = build_graphs(dataset, model_config.cutoff)
    return Prepared(spec, dataset, graphs, model_config, release)
