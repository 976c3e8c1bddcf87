"""Configuration loading shared by every stage: defaults in code <- YAML file <- overrides."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


def load_structured(
    schema: type[T],
    path: str | Path | None,
    overrides: Sequence[str] = (),
    *,
    required: Sequence[str] = (),
    what: str = "configuration",
) -> T:
    """Merge the dataclass ``schema``'s defaults, the YAML at ``path`` and ``key=value``
    ``overrides`` (OmegaConf dotlist) into a ``schema`` instance.

    Malformed YAML, unknown keys, wrong types, malformed overrides and missing ``required``
    keys are one-line ``ValueError``s that say what to do (``FILE:LINE: YAML syntax error: ...``
    for the YAML).
    """
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ValueError(f"overrides must look like key=value, got {bad}")
    try:
        layers: list[Any] = [OmegaConf.structured(schema)]
        if path is not None:
            layers.append(load_yaml(path))
        layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.merge(*layers)
        for key in required:
            if OmegaConf.is_missing(merged, key):
                raise ValueError(f"no {key!r}: pass {key}=...")
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise ValueError(f"invalid {what}: {one_line(str(err))}") from err


def load_yaml(path: str | Path) -> Any:
    """``OmegaConf.load`` with one-line syntax errors: ``FILE:LINE: YAML syntax error: ...``."""
    try:
        conf = OmegaConf.load(path)
    except yaml.YAMLError as err:
        raise ValueError(yaml_error_line(path, err)) from None
    if not OmegaConf.is_dict(conf):
        raise ValueError(f"{path}: expected a mapping of key: value settings at the top level")
    return conf


def yaml_error_line(path: str | Path, err: yaml.YAMLError) -> str:
    """``FILE:LINE: YAML syntax error: PROBLEM (CONTEXT on line N)`` from a PyYAML error."""
    mark = getattr(err, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    problem = getattr(err, "problem", None) or one_line(str(err))
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    detail = ""
    if context and context_mark is not None:
        detail = f" ({context} started on line {context_mark.line + 1})"
    elif context:
        detail = f" ({context})"
    return f"{where}: YAML syntax error: {problem}{detail}"


def one_line(text: str) -> str:
    """Lines of a multi-line message joined with ``; ``."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def config_dict(cfg: Any) -> dict[str, Any]:
    """A structured config (dataclass instance) as plain, resolved containers."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
