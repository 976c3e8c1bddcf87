"""Fine-tuning curves: ``metrics.jsonl`` and one W&B run per task, fold and model."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fmpretrain.config import config_dict
from fmpretrain.finetune.config import FinetuneConfig


class _Logger:
    """``metrics.jsonl`` of the whole output folder plus one W&B run per task, fold and model.

    Every :meth:`scoped` call (``prefix`` = ``task/fold<k>/model`` in the benchmark,
    ``task/model`` for ``finetune``) finishes the previous W&B run and starts one with
    ``group`` = task, ``name`` = prefix, ``job_type`` = the model (``tags``: the command), its
    own step (the epoch) and a stable id, so a re-run continues the same W&B run. W&B runs
    offline unless ``wandb.mode=online`` and an API key is set; ``disabled`` skips W&B.
    ``metrics.jsonl`` lines carry a monotonic ``step`` over the folder and prefixed keys.
    """

    def __init__(self, cfg: FinetuneConfig, out: Path, job_type: str):
        self.cfg, self.out, self.job_type = cfg, out, job_type
        self.metrics = out / "metrics.jsonl"
        self.step = 0
        if self.metrics.exists():
            with open(self.metrics) as handle:
                self.step = sum(1 for _ in handle)
        self._run: Any = None

    def scoped(self, prefix: str) -> Callable[[dict[str, float]], None]:
        self._finish()
        self._run = self._start(prefix)

        def log(record: dict[str, float]) -> None:
            line = {"step": self.step, **{f"{prefix}/{k}": v for k, v in record.items()}}
            with open(self.metrics, "a") as handle:
                handle.write(json.dumps(line) + "\n")
            self.step += 1
            if self._run is not None:
                self._run.log(dict(record), step=int(record.get("epoch", 0)))

        return log

    def summary(self, values: dict[str, Any]) -> None:
        """Summary values of the current W&B run (e.g. the test metrics of its model)."""
        if self._run is not None:
            self._run.summary.update(values)

    def _start(self, prefix: str, job_type: str | None = None) -> Any:
        wandb_cfg = self.cfg.wandb
        if wandb_cfg.mode == "disabled":
            return None
        import wandb

        parts = prefix.split("/")
        online = wandb_cfg.mode == "online" and _has_wandb_key()
        run_id = hashlib.sha1(f"{self.out.resolve()}:{prefix}".encode()).hexdigest()[:16]
        return wandb.init(
            project=wandb_cfg.project,
            entity=wandb_cfg.entity,
            group=parts[0],
            name=f"{wandb_cfg.name}/{prefix}" if wandb_cfg.name else prefix,
            job_type=job_type or parts[-1],
            tags=[self.job_type],
            dir=str(self.out),
            mode="online" if online else "offline",
            config={**config_dict(self.cfg), "run": {"task": parts[0], "prefix": prefix}},
            resume="allow",
            id=run_id,
            settings=wandb.Settings(silent=True, console="off"),
        )

    def _finish(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None

    def close(self, summary: dict[str, Any] | None = None) -> None:
        """Finish the open run; ``summary`` goes to a last run named ``summary``."""
        self._finish()
        if summary:
            run = self._start(f"{self.job_type}/summary", job_type="summary")
            if run is not None:
                run.summary.update(summary)
                run.finish()


def _has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")
