"""Configuration loading shared by every stage: defaults in code <- YAML file <- overrides."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

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

    Unknown keys, wrong types, malformed overrides and missing ``required`` keys are
    ``ValueError``s that say what to do.
    """
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ValueError(f"overrides must look like key=value, got {bad}")
    try:
        layers: list[Any] = [OmegaConf.structured(schema)]
        if path is not None:
            layers.append(OmegaConf.load(path))
        layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.merge(*layers)
        for key in required:
            if OmegaConf.is_missing(merged, key):
                raise ValueError(f"no {key!r}: pass {key}=...")
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise ValueError(f"invalid {what}: {err}") from err


def config_dict(cfg: Any) -> dict[str, Any]:
    """A structured config (dataclass instance) as plain, resolved containers."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
