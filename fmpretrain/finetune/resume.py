"""Fold hashing for resume: a finished fold is reused while its configuration hash matches."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fmpretrain.config import config_dict
from fmpretrain.finetune.config import FinetuneConfig
from fmpretrain.finetune.prepare import Prepared

#: Config entries that do not change a fold's GNN numbers (excluded from the resume hash):
#: ``task_size`` changes the data, which the hash covers; the baselines have their own hash;
#: ``model`` is hashed as the model actually built (the release's or the scratch one), below.
_NOT_HASHED = (
    "out", "folds", "resume", "wandb", "device", "data", "cache_dir", "matbench_url", "pretrained",
    "baselines", "task_size", "threads", "model",
)  # fmt: skip
#: Model settings that choose how, not what, is computed (equal by test): a fold finished
#: with one implementation is reused with another.
_MODEL_NOT_HASHED = ("attention_impl",)


def _hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _fold_hash(cfg: FinetuneConfig, prep: Prepared, fold: int) -> str:
    settings = {k: v for k, v in config_dict(cfg).items() if k not in _NOT_HASHED}
    data = hashlib.sha256()
    for s, t in zip(prep.dataset.structures, prep.dataset.targets.tolist(), strict=True):
        data.update(f"{s.id}\t{t}\n".encode())
    return _hash(
        {
            "settings": settings,
            "spec": prep.spec.__dict__,
            "data": data.hexdigest(),
            "release": prep.release.weights_sha256 if prep.release else None,
            "model": {
                k: v for k, v in prep.model_config.to_dict().items() if k not in _MODEL_NOT_HASHED
            },
            "fold": fold,
        }
    )
