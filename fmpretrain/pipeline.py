"""One shape for every stage, and the runner that chains them.

A stage (featurize, pre-train, export, benchmark) is a unit with ``done()`` — whether its output
directory already holds its finished result for this configuration — and ``run()``, which
computes (resuming what it can) and returns its result. :func:`run_stages` runs a list of them
in order, announcing each, skipping finished ones, timing all: the demo, the study and the
command-line stages use it, so "finished" means one thing everywhere.

The stages live next to what they run (:mod:`fmpretrain.train.stages`,
:mod:`fmpretrain.finetune.stages`, :mod:`data_pipeline.stage`); this module knows none of them.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class Stage(ABC):
    """A unit of the pipeline writing under :attr:`out`."""

    #: Short name: the key of its result and timing.
    name: str = "stage"

    @property
    @abstractmethod
    def out(self) -> Path:
        """Where the stage writes."""

    @abstractmethod
    def done(self) -> bool:
        """Whether :attr:`out` holds this stage's finished result for this configuration."""

    @abstractmethod
    def run(self) -> Any:
        """Compute (resuming what is already there) and return the result."""

    def reuse(self) -> Any:
        """The result of a finished stage without recomputing it (``None`` if it has none)."""
        return None

    def describe(self) -> str:
        """One line for the announcement: what and where."""
        return f"{self.name} -> {self.out}"


@dataclass
class StageOutcome:
    name: str
    result: Any
    seconds: float
    reused: bool


@dataclass
class PipelineRun:
    """What :func:`run_stages` did, stage by stage, in order."""

    outcomes: list[StageOutcome] = field(default_factory=list)

    def __getitem__(self, name: str) -> Any:
        return self._outcome(name).result

    def reused(self, name: str) -> bool:
        return self._outcome(name).reused

    @property
    def timings(self) -> dict[str, float]:
        return {o.name: o.seconds for o in self.outcomes}

    @property
    def seconds(self) -> float:
        return sum(o.seconds for o in self.outcomes)

    def _outcome(self, name: str) -> StageOutcome:
        for outcome in self.outcomes:
            if outcome.name == name:
                return outcome
        raise KeyError(f"no stage {name!r} ran; stages: {[o.name for o in self.outcomes]}")


def run_stages(
    stages: Sequence[Stage],
    *,
    announce: Callable[[int, Stage], None] | None = None,
    force: bool = False,
) -> PipelineRun:
    """Run ``stages`` in order; a stage that is :meth:`~Stage.done` is reused unless ``force``.

    ``announce(number, stage)`` is called before each (default: an INFO log line).
    """
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique, got {names}")
    record = PipelineRun()
    for number, stage in enumerate(stages, start=1):
        if announce is not None:
            announce(number, stage)
        else:
            log.info("[%d/%d] %s", number, len(stages), stage.describe())
        start = time.perf_counter()
        if not force and stage.done():
            log.info("reusing: %s already finished in %s", stage.name, stage.out)
            result, reused = stage.reuse(), True
        else:
            result, reused = stage.run(), False
        record.outcomes.append(
            StageOutcome(stage.name, result, time.perf_counter() - start, reused)
        )
    return record
