"""Fine-tune one model on one split: model building and the training loop (the settings:
:mod:`fmpretrain.finetune.config`).

A plain PyTorch loop (CPU or one CUDA device; fine-tuning models are small):

- model: :class:`~fmpretrain.models.PropertyModel` = the release's backbone (or a fresh one of
  the identical architecture for the from-scratch baseline) + a new graph-level head, pooled by
  ``mean`` (intensive property) or ``sum`` (extensive);
- targets standardized with the training split's mean/std (per atom for ``sum`` pooling, so
  that the head predicts per-atom contributions of unit scale); classification uses
  cross-entropy on class logits;
- AdamW, optional layer-wise lr decay (head: ``lr``, top backbone layer ``lr * d``, ...,
  embeddings ``lr * d^(L+1)``), optional frozen backbone, ReduceLROnPlateau on the validation
  metric or cosine decay per epoch, gradient clipping;
- batches bounded by atom count (:func:`fmpretrain.finetune.data.batches`);
- early stopping on the validation split (``patience`` epochs), then the best epoch's weights
  are restored.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from fmpretrain.data.batching import derive_seed
from fmpretrain.finetune.config import FinetuneConfig
from fmpretrain.finetune.data import batches
from fmpretrain.finetune.release import Release
from fmpretrain.models import ModelConfig, PropertyModel, build_property_model
from fmpretrain.models.losses import loss_function

__all__ = [
    "FitResult",
    "TargetScaler",
    "build_model",
    "evaluate",
    "fit",
    "parameter_groups",
    "resolve_device",
]

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available")
    return device


# ============================================================================ targets
@dataclass
class TargetScaler:
    """Standardization fit on the training split.

    ``per_atom`` (sum pooling): the model predicts ``sum_i h_i`` and the raw prediction is
    ``std * sum_i h_i + mean * n_atoms``, with mean/std of ``y / n_atoms``. Otherwise the raw
    prediction is ``std * h + mean``.
    """

    mean: float = 0.0
    std: float = 1.0
    per_atom: bool = False

    @classmethod
    def fit(cls, y: np.ndarray, natoms: np.ndarray, per_atom: bool) -> TargetScaler:
        values = np.asarray(y, dtype=np.float64)
        if per_atom:
            values = values / np.asarray(natoms, dtype=np.float64)
        std = float(values.std()) if len(values) > 1 else 1.0
        return cls(float(values.mean()), std if std > 1e-12 else 1.0, per_atom)

    def _offset(self, natoms: Tensor) -> Tensor:
        return (
            self.mean * natoms.to(torch.float32)
            if self.per_atom
            else torch.full_like(natoms, self.mean, dtype=torch.float32)
        )

    def normalize(self, y: Tensor, natoms: Tensor) -> Tensor:
        return (y - self._offset(natoms)) / self.std

    def denormalize(self, out: Tensor, natoms: Tensor) -> Tensor:
        return out * self.std + self._offset(natoms)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "per_atom": self.per_atom}


# ============================================================================ model
def build_model(
    model_config: ModelConfig,
    *,
    out_dim: int = 1,
    pooling: str = "mean",
    release: Release | None = None,
    seed: int = 0,
) -> PropertyModel:
    """Backbone + new head; with ``release``, the backbone gets the pre-trained weights.

    The head (and the backbone of a from-scratch model) is initialised from ``seed``, so a
    pre-trained and a scratch model built with the same seed start from the same head.
    """
    if release is not None and release.model_config.function_dict() != model_config.function_dict():
        raise ValueError("the model config differs from the release's; use release.model_config")
    torch.manual_seed(seed)
    model = build_property_model(model_config, out_dim=out_dim, pooling=pooling)
    if release is not None:
        model.backbone.load_state_dict(release.backbone_state_dict(), strict=True)
    return model


def parameter_groups(
    model: PropertyModel, lr: float, layer_decay: float = 1.0, weight_decay: float = 0.0
) -> list[dict[str, Any]]:
    """AdamW groups with layer-wise lr decay; frozen (``requires_grad=False``) ones skipped.

    Depth 0 is the head, depth ``L - k`` the backbone's ``layers[k]`` (and ``out_norm`` with
    the top layer), depth ``L + 1`` the embeddings and radial basis; lr = ``lr * d**depth``.
    Without decay (``d = 1``) all parameters form one group.
    """
    num_layers = len(getattr(model.backbone, "layers", []))
    groups: dict[int, list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("head."):
            depth = 0
        elif name.startswith("backbone.layers."):
            depth = num_layers - int(name.split(".")[2])
        elif name.startswith("backbone.out_norm."):
            depth = 1
        else:
            depth = num_layers + 1
        groups.setdefault(depth, []).append(param)
    if layer_decay == 1.0:  # one lr for all: one group (fewer optimizer kernels per step)
        params = [p for _, ps in sorted(groups.items()) for p in ps]
        return [{"params": params, "lr": lr, "weight_decay": weight_decay, "depth": 0}]
    return [
        {
            "params": params,
            "lr": lr * layer_decay**depth,
            "weight_decay": weight_decay,
            "depth": depth,
        }
        for depth, params in sorted(groups.items())
    ]


# ============================================================================ loop
@dataclass
class FitResult:
    best_epoch: int
    epochs: int
    best_val: dict[str, float]
    history: list[dict[str, float]]
    seconds: float
    stopped_early: bool
    scaler: TargetScaler | None
    trainable_parameters: int


def _natoms(batch: Batch) -> Tensor:
    return batch.natoms if hasattr(batch, "natoms") else torch.bincount(batch.batch)


def _forward(model: PropertyModel, batch: Batch) -> Tensor:
    return model(batch)


#: Evaluation batches hold this many times the training atom budget: no backward pass keeps
#: activations, and fewer, larger batches cost less per atom on a CPU.
EVAL_BATCH_FACTOR = 4


def evaluation_batches(graphs: Sequence[Data], cfg: FinetuneConfig) -> list[Batch]:
    """``graphs`` in batches of ``EVAL_BATCH_FACTOR`` times the training budget."""
    edges = cfg.max_edges_per_batch
    return batches(
        graphs,
        EVAL_BATCH_FACTOR * cfg.max_atoms_per_batch,
        max_edges=None if edges is None else EVAL_BATCH_FACTOR * edges,
    )


@torch.inference_mode()
def evaluate(
    model: PropertyModel,
    data: Sequence[Batch] | Sequence[Data],
    *,
    task_type: str,
    scaler: TargetScaler | None,
    device: torch.device | str = "cpu",
    max_atoms: int = 512,
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """``(metrics, predictions, graph indices)`` in raw units, ordered as ``data``.

    Regression metrics: ``mae``, ``rmse``, ``loss`` (the standardized L1). Classification:
    ``error`` (1 - accuracy), ``accuracy``, ``loss`` (cross-entropy) and for two classes
    ``roc_auc``. The predictions are values (regression) or class probabilities.
    """
    device = torch.device(device)
    if data and isinstance(data[0], Data) and not isinstance(data[0], Batch):
        data = batches(data, max_atoms)  # type: ignore[arg-type]
    model.eval()
    preds, targets, idxs, losses, sizes = [], [], [], [], []
    for batch in data:
        batch = batch.to(device)
        out = _forward(model, batch)
        if task_type == "classification":
            losses.append(float(nn.functional.cross_entropy(out, batch.y, reduction="sum")))
            preds.append(out.softmax(-1).cpu())
        else:
            natoms = _natoms(batch)
            raw = scaler.denormalize(out.squeeze(-1), natoms) if scaler else out.squeeze(-1)
            if scaler is not None:
                norm = scaler.normalize(batch.y, natoms)
                losses.append(float((out.squeeze(-1) - norm).abs().sum()))
            preds.append(raw.cpu())
        targets.append(batch.y.cpu())
        idxs.append(batch.idx.cpu() if hasattr(batch, "idx") else torch.arange(batch.num_graphs))
        sizes.append(batch.num_graphs)
    n = max(sum(sizes), 1)
    pred = torch.cat(preds).double().numpy()
    y = torch.cat(targets).numpy()
    idx = torch.cat(idxs).numpy()
    metrics: dict[str, float] = {}
    if task_type == "classification":
        label = pred.argmax(-1)
        metrics["accuracy"] = float((label == y).mean())
        metrics["error"] = 1.0 - metrics["accuracy"]
        metrics["loss"] = sum(losses) / n
        if pred.shape[1] == 2:
            metrics["roc_auc"] = roc_auc(y, pred[:, 1])
    else:
        err = pred - y.astype(np.float64)
        metrics["mae"] = float(np.abs(err).mean())
        metrics["rmse"] = float(np.sqrt((err**2).mean()))
        if losses:
            metrics["loss"] = sum(losses) / n
    return metrics, pred, idx


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (scikit-learn's); NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores)))


def fit(
    model: PropertyModel,
    train: Sequence[Data],
    val: Sequence[Data],
    cfg: FinetuneConfig,
    *,
    task_type: str = "regression",
    pooling: str = "mean",
    log: Callable[[dict[str, float]], None] | None = None,
    seed: int = 0,
) -> FitResult:
    """Train ``model`` in place on ``train``; early-stop on ``val``; restore the best weights."""
    if not train or not val:
        raise ValueError(f"need training and validation graphs, got {len(train)} and {len(val)}")
    device = resolve_device(cfg.device)
    model.to(device)
    if cfg.freeze_backbone:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    scaler = None
    if task_type == "regression":
        y = np.array([float(g.y) for g in train])
        natoms = np.array([int(g.num_nodes) for g in train])
        scaler = TargetScaler.fit(y, natoms, per_atom=pooling == "sum")
    groups = parameter_groups(model, cfg.lr, cfg.layer_decay, cfg.weight_decay)
    trainable = sum(p.numel() for g in groups for p in g["params"])
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.scheduler == "plateau":
        scheduler: Any = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=cfg.plateau_factor,
            patience=cfg.plateau_patience,
            min_lr=[cfg.min_lr * g["lr"] / cfg.lr for g in groups],
        )
    elif cfg.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=cfg.max_epochs, eta_min=cfg.min_lr
        )
    else:
        scheduler = None
    val_batches = evaluation_batches(val, cfg)
    loss_fn = loss_function(cfg.loss)
    key = "error" if task_type == "classification" else "mae"
    best_score, best_epoch, best_state, best_val = math.inf, 0, None, {}
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    epoch = 0
    stopped_early = False
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        if cfg.freeze_backbone:
            model.backbone.eval()
        total, count = 0.0, 0
        epoch_batches = batches(
            train,
            cfg.max_atoms_per_batch,
            shuffle=True,
            seed=derive_seed(seed, epoch),
            max_edges=cfg.max_edges_per_batch,
        )
        for batch in epoch_batches:
            batch = batch.to(device)
            out = _forward(model, batch)
            if task_type == "classification":
                loss = nn.functional.cross_entropy(out, batch.y)
            else:
                assert scaler is not None
                loss = loss_fn(out.squeeze(-1), scaler.normalize(batch.y, _natoms(batch)))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], cfg.grad_clip)
            optimizer.step()
            total += loss.item() * batch.num_graphs
            count += batch.num_graphs
        val_metrics, _, _ = evaluate(
            model, val_batches, task_type=task_type, scaler=scaler, device=device
        )
        score = val_metrics["loss"] if task_type == "classification" else val_metrics[key]
        record = {
            "epoch": epoch,
            "train_loss": total / max(count, 1),
            **{f"val_{k}": v for k, v in val_metrics.items()},
            "lr": optimizer.param_groups[0]["lr"],
        }
        history.append(record)
        if log is not None:
            log(record)
        logger.info(
            "epoch %d/%d train_loss %.4g val_%s %.4g lr %.3g",
            epoch, cfg.max_epochs, record["train_loss"], key, val_metrics[key], record["lr"],
        )  # fmt: skip
        if score < best_score:
            best_score, best_epoch, best_val = score, epoch, dict(val_metrics)
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(score)
        elif scheduler is not None:
            scheduler.step()
        if epoch - best_epoch >= cfg.patience:
            stopped_early = True
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return FitResult(
        best_epoch=best_epoch,
        epochs=epoch,
        best_val=best_val,
        history=history,
        seconds=time.perf_counter() - start,
        stopped_early=stopped_early,
        scaler=scaler,
        trainable_parameters=trainable,
    )
