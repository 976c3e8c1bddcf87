"""The featurization job's configuration: defaults in code, a YAML file, ``key=value`` overrides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from fmpretrain.config import load_structured


@dataclass
class SourceConfig:
    kind: str = "generated"  # generated | files
    n: int = 1000
    seed: int = 0
    min_atoms: int = 1
    max_atoms: int = 64
    paths: list[str] = field(default_factory=list)


@dataclass
class FeaturizeConfig:
    descriptor: str = "wacsf"
    descriptor_params: dict[str, Any] = field(default_factory=dict)
    source: SourceConfig = field(default_factory=SourceConfig)
    out: str = MISSING
    chunk_size: int = 100
    workers: int = 2
    max_in_flight: int | None = None
    fingerprint_dtype: str = "float32"
    min_distance: float = 0.5
    max_task_retries: int = 3
    ray_address: str | None = None
    overwrite: bool = False

    @property
    def in_flight(self) -> int:
        return self.max_in_flight or 2 * self.workers


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> FeaturizeConfig:
    """Defaults <- YAML file <- ``key=value`` overrides; unknown keys and bad types are errors."""
    cfg = load_structured(
        FeaturizeConfig, path, overrides, required=("out",), what="featurize configuration"
    )
    _check(cfg)
    return cfg


def _check(cfg: FeaturizeConfig) -> None:
    if cfg.source.kind not in ("generated", "files"):
        raise ValueError(f"source.kind must be 'generated' or 'files', got {cfg.source.kind!r}")
    if cfg.source.kind == "files" and not cfg.source.paths:
        raise ValueError("source.kind=files needs source.paths=[...] (files, dirs or globs)")
    if cfg.source.kind == "generated" and cfg.source.n < 1:
        raise ValueError(f"source.n must be at least 1, got {cfg.source.n}")
    if cfg.chunk_size < 1 or cfg.workers < 1:
        raise ValueError("chunk_size and workers must be at least 1")
    if cfg.fingerprint_dtype not in ("float32", "float16"):
        raise ValueError(
            f"fingerprint_dtype must be float32 or float16, not {cfg.fingerprint_dtype}"
        )


def source_record(cfg: FeaturizeConfig) -> dict[str, Any]:
    """The part of the source configuration that determines which inputs land in which shard."""
    src = cfg.source
    if src.kind == "generated":
        return {
            "kind": "generated",
            "n": src.n,
            "seed": src.seed,
            "min_atoms": src.min_atoms,
            "max_atoms": src.max_atoms,
        }
    return {"kind": "files", "paths": list(src.paths)}
