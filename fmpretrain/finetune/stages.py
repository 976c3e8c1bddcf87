"""The fine-tuning benchmark as a pipeline stage (:mod:`fmpretrain.pipeline`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmpretrain.config import config_dict
from fmpretrain.finetune.config import FinetuneConfig
from fmpretrain.pipeline import Stage

RESULTS_FILE = "results.json"


@dataclass
class BenchmarkStage(Stage):
    """``run_benchmark(cfg)``; done when ``cfg.out`` holds the results of this configuration
    and this pre-trained release (and, unless ``releases="none"``, the fine-tuned releases).

    Not done, it re-runs with the benchmark's own reuse: folds finished under the same
    configuration are read back, not retrained.
    """

    cfg: FinetuneConfig
    releases: str = "best"
    name: str = "benchmark"

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    def done(self) -> bool:
        previous = self.reuse()
        if previous is None or previous.get("config") != config_dict(self.cfg):
            return False
        if previous.get("release") != self._release_summary():
            return False
        tasks = [t["task"] for t in previous.get("tasks", [])]
        return self.releases == "none" or all((self.out / t / "release").is_dir() for t in tasks)

    def run(self) -> dict[str, Any]:
        from fmpretrain.finetune.benchmark import run_benchmark

        return run_benchmark(self.cfg, releases=self.releases)

    def reuse(self) -> dict[str, Any] | None:
        path = self.out / RESULTS_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def describe(self) -> str:
        what = f"fine-tune {self.cfg.pretrained}" if self.cfg.pretrained else "from scratch"
        return f"benchmark {self.cfg.task} ({what}) -> {self.out}"

    def _release_summary(self) -> Any:
        if not self.cfg.pretrained:
            return None
        from fmpretrain.finetune.release import load_release

        return load_release(self.cfg.pretrained).summary()
