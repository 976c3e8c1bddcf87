"""The featurization job's configuration: defaults in code, a YAML file, ``key=value`` overrides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from fmpretrain.config import load_structured

SOURCE_KINDS = ("generated", "files", "corpus")


@dataclass
class SourceConfig:
    """One source of structures; a featurization takes one (``source``) or several (``sources``)."""

    kind: str = "generated"  # generated | files | corpus
    n: int = 1000  # generated: how many; files/corpus: ignored
    seed: int = 0
    min_atoms: int = 1
    max_atoms: int = 64
    paths: list[str] = field(default_factory=list)  # files: files, directories or globs
    name: str | None = None  # corpus: registry name (`fmpretrain corpora list`)
    label: str | None = None  # name in the manifest's per-source counts (default: kind/name)
    read_options: dict[str, Any] = field(default_factory=dict)  # reader options, e.g. frames


@dataclass
class FeaturizeConfig:
    descriptor: str = "wacsf"
    descriptor_params: dict[str, Any] = field(default_factory=dict)
    source: SourceConfig = field(default_factory=SourceConfig)
    sources: list[SourceConfig] = field(default_factory=list)  # several: replaces `source`
    dedupe: bool = False  # reject structures whose content hash was seen before (any source)
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

    @property
    def all_sources(self) -> list[SourceConfig]:
        """The sources in order: ``sources`` when given, else the single ``source``."""
        return list(self.sources) if self.sources else [self.source]

    def labels(self) -> list[str]:
        """One unique label per source, for the manifest's per-source counts."""
        labels: list[str] = []
        for src in self.all_sources:
            base = src.label or (src.name if src.kind == "corpus" and src.name else src.kind)
            label, k = base, 1
            while label in labels:
                k += 1
                label = f"{base}-{k}"
            labels.append(label)
        return labels


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> FeaturizeConfig:
    """Defaults <- YAML file <- ``key=value`` overrides; unknown keys and bad types are errors.

    ``path`` is a file or a named config (:func:`fmpretrain.config.named_config`).
    """
    cfg = load_structured(
        FeaturizeConfig,
        path,
        overrides,
        required=("out",),
        what="featurize configuration",
        kind="featurize",
    )
    _check(cfg)
    return cfg


def _check(cfg: FeaturizeConfig) -> None:
    for i, src in enumerate(cfg.all_sources):
        key = f"sources[{i}]" if cfg.sources else "source"
        if src.kind not in SOURCE_KINDS:
            raise ValueError(f"{key}.kind must be one of {SOURCE_KINDS}, got {src.kind!r}")
        if src.kind == "files" and not src.paths:
            raise ValueError(f"{key}.kind=files needs {key}.paths=[...] (files, dirs or globs)")
        if src.kind == "corpus" and not src.name:
            raise ValueError(
                f"{key}.kind=corpus needs {key}.name=NAME (see `fmpretrain corpora list`)"
            )
        if src.kind == "generated" and src.n < 1:
            raise ValueError(f"{key}.n must be at least 1, got {src.n}")
    if cfg.chunk_size < 1 or cfg.workers < 1:
        raise ValueError("chunk_size and workers must be at least 1")
    if cfg.fingerprint_dtype not in ("float32", "float16"):
        raise ValueError(
            f"fingerprint_dtype must be float32 or float16, not {cfg.fingerprint_dtype}"
        )


def source_record(cfg: FeaturizeConfig) -> dict[str, Any]:
    """The part of the configuration that determines which inputs land in which shard."""
    records = []
    for label, src in zip(cfg.labels(), cfg.all_sources, strict=True):
        if src.kind == "generated":
            record: dict[str, Any] = {
                "kind": "generated",
                "n": src.n,
                "seed": src.seed,
                "min_atoms": src.min_atoms,
                "max_atoms": src.max_atoms,
            }
        elif src.kind == "corpus":
            record = {"kind": "corpus", "name": src.name}
        else:
            record = {"kind": "files", "paths": list(src.paths)}
        if src.read_options:
            record["read_options"] = dict(src.read_options)
        records.append({"label": label, **record})
    return {"sources": records, "dedupe": cfg.dedupe}
