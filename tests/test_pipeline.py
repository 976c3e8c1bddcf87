"""The stage runner: finished stages are reused, the others run, in order, timed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fmpretrain.pipeline import Stage, run_stages


@dataclass
class Touch(Stage):
    """Writes ``out/<name>.txt``; done when it exists."""

    root: Path
    name: str = "touch"
    log: list[str] = field(default_factory=list)

    @property
    def out(self) -> Path:
        return self.root / f"{self.name}.txt"

    def done(self) -> bool:
        return self.out.exists()

    def run(self) -> str:
        self.log.append(self.name)
        self.out.write_text(self.name)
        return f"ran {self.name}"

    def reuse(self) -> str:
        return f"kept {self.out.read_text()}"


def test_runs_in_order_then_reuses_finished_stages(tmp_path, caplog):
    log: list[str] = []
    stages = [Touch(tmp_path, "a", log), Touch(tmp_path, "b", log)]
    first = run_stages(stages)
    assert log == ["a", "b"] and first["a"] == "ran a" and not first.reused("b")
    assert set(first.timings) == {"a", "b"} and first.seconds >= 0
    (tmp_path / "b.txt").unlink()  # b's output lost: only b runs again
    with caplog.at_level("INFO", logger="fmpretrain.pipeline"):
        second = run_stages(stages)
    assert log == ["a", "b", "b"]
    assert second.reused("a") and second["a"] == "kept a" and second["b"] == "ran b"
    assert "reusing: a already finished" in caplog.text
    run_stages(stages, force=True)
    assert log == ["a", "b", "b", "a", "b"]


def test_announce_sees_every_stage_and_names_must_be_unique(tmp_path):
    seen: list[tuple[int, str]] = []
    run_stages(
        [Touch(tmp_path, "a"), Touch(tmp_path, "b")], announce=lambda n, s: seen.append((n, s.name))
    )
    assert seen == [(1, "a"), (2, "b")]
    with pytest.raises(ValueError, match="unique"):
        run_stages([Touch(tmp_path, "a"), Touch(tmp_path, "a")])
    with pytest.raises(KeyError, match="no stage 'c'"):
        run_stages([Touch(tmp_path, "a")])["c"]
