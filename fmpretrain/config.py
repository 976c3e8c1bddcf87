"""Configuration loading shared by every stage: defaults in code <- YAML file <- overrides.

Named configurations (``model=small``, ``--config configs/featurize/demo.yaml``) resolve
through :func:`named_config`, the one place that knows where they live: the top-level
``configs/`` folder of the repository, shipped in the wheel as the package
``fmpretrain.configs``.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")

#: Sub-folders of ``configs/``: one per kind of named configuration.
CONFIG_KINDS = ("deepspeed", "descriptors", "featurize", "finetune", "model", "pretrain")


@dataclasses.dataclass
class WandbConfig:
    """W&B settings shared by pre-training and fine-tuning."""

    mode: str = "offline"  # offline | online | disabled; online needs WANDB_API_KEY
    project: str = "fmpretrain"
    name: str | None = None
    entity: str | None = None


def shipped_configs() -> Path:
    """The folder of the configurations shipped with the package (``configs/`` in a checkout)."""
    return Path(str(importlib.resources.files("fmpretrain.configs")))


def available_configs(kind: str) -> list[str]:
    """Names of the shipped configurations of ``kind`` (``model`` -> base, large, small)."""
    return sorted(p.stem for p in (shipped_configs() / kind).glob("*.yaml"))


def named_config(kind: str, name: str | Path) -> Path:
    """The YAML file a configuration argument of ``kind`` (a :data:`CONFIG_KINDS` entry) names.

    In order: ``name`` as a path to an existing file; for a bare name (``small``),
    ``configs/<kind>/<name>.yaml`` under the working directory, then the shipped one; for a
    relative path under ``configs/`` (``configs/featurize/demo.yaml``) that does not exist here,
    the shipped file at that place, so the documented paths work outside the checkout.
    """
    if kind not in CONFIG_KINDS:
        raise ValueError(f"unknown config kind {kind!r}; choose from {list(CONFIG_KINDS)}")
    path = Path(name)
    if path.is_file():
        return path
    candidates = [path]
    if len(path.parts) == 1 and not path.suffix:
        candidates += [
            Path("configs") / kind / f"{path}.yaml",
            shipped_configs() / kind / f"{path}.yaml",
        ]
    elif not path.is_absolute() and len(path.parts) > 1 and path.parts[0] == "configs":
        candidates.append(shipped_configs().joinpath(*path.parts[1:]))
    for candidate in candidates[1:]:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no {kind} config {str(name)!r}: looked for {[str(c) for c in candidates]}; "
        f"shipped {kind} configs: {available_configs(kind)}"
    )


def config_group(kind: str, default: str, *, optional: bool = False) -> Any:
    """A config field whose value is a named configuration of ``kind`` (a dataclass node).

    ``model=small`` (override or YAML) picks ``configs/model/small.yaml`` as the node's base,
    ``model.hidden_channels=64`` (or a YAML mapping under ``model:``) changes keys on top of it;
    without a choice the node starts from ``default``. An ``optional`` group stays ``None``
    unless it is chosen or one of its keys is set (fine-tuning's from-scratch model; a choice
    of ``null`` is no choice). The field's type is the node's dataclass, which
    :func:`load_structured` fills.
    """
    metadata = {"group": kind, "default": default, "optional": optional}
    if optional:
        return dataclasses.field(default=None, metadata=metadata)
    return dataclasses.field(default=MISSING, metadata=metadata)


def _group_layers(schema: type, conf: Any, dotlist: Sequence[str]) -> tuple[Any, Any, list[str]]:
    """Resolve the :func:`config_group` fields of ``schema``: the layer of the chosen named
    configs, and the YAML ``conf`` and ``dotlist`` without the choices."""
    layer: dict[str, Any] = {}
    rest = list(dotlist)
    for f in dataclasses.fields(schema):
        kind = f.metadata.get("group")
        if kind is None:
            continue
        legacy = f"{f.name}_overrides"
        if (conf is not None and legacy in conf) or any(
            item.split("=", 1)[0].split(".", 1)[0] == legacy for item in dotlist
        ):
            raise ValueError(
                f"{legacy} is gone: set {f.name} keys directly, {f.name}.KEY=VALUE on the "
                f"command line (e.g. {f.name}.hidden_channels=64) or a mapping under "
                f"'{f.name}:' in the YAML"
            )
        choice: Any = None
        touched = False
        if conf is not None and f.name in conf:
            value = conf[f.name]
            if OmegaConf.is_dict(value):
                touched = True
            else:
                choice = value
                conf = OmegaConf.masked_copy(conf, [k for k in conf if k != f.name])
        for item in list(rest):
            key = item.split("=", 1)[0]
            if key == f.name:
                value = OmegaConf.from_dotlist([item])[f.name]
                if OmegaConf.is_dict(value):  # model={hidden_channels: 64}: keys on top
                    touched = True
                    continue
                choice = value
                rest.remove(item)
            elif key.startswith(f.name + "."):
                touched = True
        if choice is not None and not isinstance(choice, str):
            raise ValueError(
                f"{f.name}={choice!r}: give the name of a {kind} config "
                f"({available_configs(kind)}) or a path to one, and change its keys as "
                f"{f.name}.KEY=VALUE"
            )
        if choice is None and (touched or not f.metadata["optional"]):
            choice = f.metadata["default"]
        if choice is not None:
            layer[f.name] = load_yaml(named_config(kind, choice))
    return OmegaConf.create(layer), conf, rest


def load_structured(
    schema: type[T],
    path: str | Path | None,
    overrides: Sequence[str] = (),
    *,
    required: Sequence[str] = (),
    what: str = "configuration",
    kind: str | None = None,
) -> T:
    """Merge the dataclass ``schema``'s defaults, the YAML at ``path`` and ``key=value``
    ``overrides`` (OmegaConf dotlist) into a ``schema`` instance.

    With ``kind`` (a :data:`CONFIG_KINDS` entry), ``path`` may also name a shipped
    configuration (:func:`named_config`).

    A :func:`config_group` field starts from the named config chosen by ``NAME=choice`` (an
    override, else the YAML, else its default); the YAML's and the overrides' ``NAME.KEY``
    entries apply on top. Malformed YAML, unknown keys, wrong types, malformed overrides and
    missing ``required`` keys are one-line ``ValueError``s that say what to do
    (``FILE:LINE: YAML syntax error: ...`` for the YAML).
    """
    parse_overrides(overrides)
    if path is not None and kind is not None:
        path = named_config(kind, path)
    try:
        conf = load_yaml(path) if path is not None else None
        group_layer, conf, rest = _group_layers(schema, conf, overrides)
        layers: list[Any] = [OmegaConf.structured(schema), group_layer]
        if conf is not None:
            layers.append(conf)
        layers.append(OmegaConf.from_dotlist(rest))
        merged = OmegaConf.merge(*layers)
        for key in required:
            if OmegaConf.is_missing(merged, key):
                raise ValueError(f"no {key!r}: pass {key}=...")
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise ValueError(f"invalid {what}: {one_line(str(err))}") from err


def parse_overrides(overrides: Sequence[str]) -> Any:
    """``key=value`` overrides (OmegaConf dotlist) as a config; a malformed one, or one whose
    value is not YAML (``data=...``), is a one-line ``ValueError``."""
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ValueError(f"overrides must look like key=value, got {bad}")
    for override in overrides:
        try:
            OmegaConf.from_dotlist([override])
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or one_line(str(err))
            raise ValueError(
                f"override {override!r}: the value is not YAML ({problem}); give a real value"
            ) from None
    return OmegaConf.from_dotlist(list(overrides))


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


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` on top; nested mappings are merged key by key, not replaced."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_dict(cfg: Any) -> dict[str, Any]:
    """A structured config (dataclass instance) as plain, resolved containers."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def config_keys(cls: type, prefix: str = "") -> list[tuple[str, Any, str]]:
    """``(key, default, meaning)`` of every field of a config dataclass, nested ones dotted
    (``wandb.mode``); the meaning is the field's trailing ``#`` comment in the source."""
    import inspect
    import re

    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        source = ""
    comments = dict(re.findall(r"^\s+(\w+)\s*:[^#\n]*#\s*(.+)$", source, flags=re.MULTILINE))
    keys: list[tuple[str, Any, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = f.metadata.get("group")
        if kind is not None:  # the choice, then the keys with the default choice's values
            name = f.metadata["default"]
            meaning = f"configs/{kind}/NAME.yaml ({', '.join(available_configs(kind))}) or a path"
            if f.metadata["optional"]:
                meaning += f"; null: none unless a {f.name}.KEY is set ({name} then)"
            keys.append((prefix + f.name, None if f.metadata["optional"] else name, meaning))
            node_type = next(t for t in typing.get_args(hints[f.name]) or [hints[f.name]])
            values = load_structured(node_type, named_config(kind, name))
            sub = config_keys(node_type, f"{prefix}{f.name}.")
            keys.extend((k, getattr(values, k.rsplit(".", 1)[1]), m) for k, _, m in sub)
            continue
        factory = f.default_factory
        default = factory() if factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
        if dataclasses.is_dataclass(default):
            keys.extend(config_keys(type(default), f"{prefix}{f.name}."))
            continue
        shown = "(required)" if repr(default) == "'???'" else default
        keys.append((prefix + f.name, shown, comments.get(f.name, "").strip()))
    return keys


def config_help(cls: type) -> str:
    """The ``--help`` epilog of a configured command: every KEY=VALUE it takes, from ``cls``."""
    lines = ["configuration keys (KEY=VALUE overrides; --print-config shows the resolved values):"]
    for key, default, meaning in config_keys(cls):
        value = "null" if default is None else str(default)
        lines.append(f"  {key} = {value}" + (f"  # {meaning}" if meaning else ""))
    return "\n".join(lines)


def add_config_arguments(parser: Any, kind: str, example: str, *, config_help: str = "") -> None:
    """``--config FILE`` (a path, or a name under ``configs/<kind>/``) and the positional
    ``KEY=VALUE`` overrides, the same on every configured command (``parser``: an
    ``argparse.ArgumentParser``)."""
    parser.add_argument(
        "--config",
        type=Path,
        help=config_help or f"YAML configuration: a path or a name of configs/{kind}/",
    )
    parser.add_argument(
        "overrides", nargs="*", default=[], metavar="KEY=VALUE", help=f"overrides, e.g. {example}"
    )


def config_yaml(cfg: Any) -> str:
    """A resolved configuration (a structured config or a mapping of plain values) as the YAML
    that ``--print-config`` prints; a structured config's YAML loads back as ``--config``."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        values: Any = config_dict(cfg)
    elif isinstance(cfg, Mapping):
        values = dict(cfg)
    else:
        raise TypeError(f"expected a dataclass instance or a mapping, got {type(cfg).__name__}")
    return OmegaConf.to_yaml(OmegaConf.create(values))
