"""Run logging: ``metrics.jsonl`` in the run directory and W&B (offline without an API key)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class RunLogger:
    """Writes every logged record to ``metrics.jsonl`` and, if enabled, to a W&B run.

    W&B runs ``offline`` when ``mode`` is offline or no ``WANDB_API_KEY`` is set, so a run
    never needs the network; ``wandb sync <run dir>/wandb/offline-run-*`` uploads it later.
    Only the main rank should create one (others get ``enabled=False``).
    """

    def __init__(
        self,
        out: Path,
        *,
        enabled: bool,
        wandb_mode: str = "offline",
        project: str = "fmpretrain",
        name: str | None = None,
        entity: str | None = None,
        config: dict[str, Any] | None = None,
        job_type: str = "pretrain",
    ):
        self.enabled = enabled
        self.path = Path(out) / "metrics.jsonl"
        self._wandb = None
        self.wandb_dir: Path | None = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if wandb_mode != "disabled":
            import wandb

            mode = "offline" if wandb_mode == "offline" or not _has_wandb_key() else "online"
            self._wandb = wandb.init(
                project=project,
                name=name,
                entity=entity,
                dir=str(out),
                mode=mode,
                config=config or {},
                job_type=job_type,
                resume="allow",
                id=_stable_run_id(out),
                settings=wandb.Settings(silent=True, console="off"),
            )
            self.wandb_dir = Path(self._wandb.dir).parent

    def log(self, record: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"step": step, **record}) + "\n")
        if self._wandb is not None:
            self._wandb.log(record, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self._wandb is not None:
            self._wandb.summary.update(values)

    def close(self) -> None:
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def _has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def _stable_run_id(out: Path) -> str:
    """One W&B run per run directory, so a resumed run continues the same W&B run."""
    import hashlib

    return hashlib.sha1(str(Path(out).resolve()).encode()).hexdigest()[:12]


def log_release_artifact(
    run_dir: Path, release_dir: Path, wandb_settings: dict[str, Any], training: dict[str, Any]
) -> str | None:
    """Log an exported release as a W&B ``model`` artifact of its pre-training run.

    Only when the run itself logged to W&B (``wandb_settings``: its ``run.yaml``'s
    ``pretrain.wandb``); the
    run is resumed under its own id, offline unless a key is configured, so ``wandb sync``
    uploads the artifact with the run. ``WANDB_MODE=disabled`` turns it off. Returns the
    artifact's name, or None when nothing was logged.
    """
    settings = wandb_settings or {}
    mode = settings.get("mode", "disabled")
    if mode == "disabled" or os.environ.get("WANDB_MODE") == "disabled":
        return None
    import wandb

    name = f"release-{_artifact_safe(Path(run_dir).resolve().name)}"
    wandb_run = wandb.init(
        project=settings.get("project") or "fmpretrain",
        entity=settings.get("entity"),
        dir=str(run_dir),
        mode="online" if mode == "online" and _has_wandb_key() else "offline",
        resume="allow",
        id=_stable_run_id(run_dir),
        job_type="pretrain",
        settings=wandb.Settings(silent=True, console="off"),
    )
    try:
        artifact = wandb.Artifact(
            name,
            type="model",
            description="fmpretrain release: backbone weights, config, model card, SHA256SUMS",
            metadata={k: training[k] for k in ("checkpoint", "steps") if k in training},
        )
        artifact.add_dir(str(release_dir))
        aliases = ["latest"] + ([f"step{training['steps']}"] if "steps" in training else [])
        wandb_run.log_artifact(artifact, aliases=aliases)
    finally:
        wandb_run.finish()
    return name


def _artifact_safe(name: str) -> str:
    """W&B artifact names take letters, digits, '-', '_' and '.'."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
