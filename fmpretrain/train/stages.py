"""Pre-training and export as pipeline stages (:mod:`fmpretrain.pipeline`)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fmpretrain.pipeline import Stage
from fmpretrain.train.config import PretrainConfig
from fmpretrain.train.trainer import CHECKPOINTS, STATUS_FILE

log = logging.getLogger(__name__)


def target_step(cfg: PretrainConfig) -> int:
    """The step a run of ``cfg`` ends at: ``stop_after`` when it comes first, else the last."""
    return min(cfg.max_steps, cfg.stop_after or cfg.max_steps)


def run_status(out: str | Path) -> dict[str, Any]:
    """The run's ``status.json`` (empty when it never ended an invocation)."""
    path = Path(out) / STATUS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


@dataclass
class PretrainStage(Stage):
    """``pretrain(cfg)``; done when the run in ``cfg.out`` ended at :func:`target_step`."""

    cfg: PretrainConfig
    progress: bool = True
    name: str = "pretrain"

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    def done(self) -> bool:
        status = run_status(self.out)
        ended = status.get("status") == "finished" or (
            status.get("status") == "stopped" and self.cfg.stop_after is not None
        )
        return ended and status.get("step") == target_step(self.cfg)

    def run(self) -> Any:
        from fmpretrain.train.trainer import pretrain

        return pretrain(self.cfg, progress=self.progress)

    def describe(self) -> str:
        m, step = self.cfg.model, target_step(self.cfg)
        return f"pre-train a {m.hidden_channels}x{m.num_layers} model to step {step} -> {self.out}"


@dataclass
class ExportStage(Stage):
    """The release of a run's newest intact checkpoint; done when ``out`` holds that one."""

    run_dir: Path
    release: Path
    results: Any = None
    name: str = "export"

    @property
    def out(self) -> Path:
        return Path(self.release)

    def done(self) -> bool:
        from fmpretrain.train.export import CONFIG

        config = self.out / CONFIG
        latest = Path(self.run_dir) / CHECKPOINTS / "latest"
        if not (config.exists() and latest.exists()):
            return False
        recorded = (yaml.safe_load(config.read_text()).get("training") or {}).get("checkpoint")
        return recorded == latest.read_text().strip()

    def run(self) -> Path:
        from fmpretrain.train.export import export_release

        return export_release(self.run_dir, self.out, results=self.results)

    def reuse(self) -> Path:
        return self.out

    def describe(self) -> str:
        return f"export the release of {self.run_dir} -> {self.out}"
