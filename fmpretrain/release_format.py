"""The release contract, in one place: file names, ``config.yaml`` schema, SHA256SUMS, model card.

A release is a directory::

    model.safetensors   the weights (safetensors only: nothing is ever unpickled)
    config.yaml         the schema below
    README.md           the model card (corpus, steps, held-out R², results, licence, citation)
    SHA256SUMS          ``<sha256>  <file>`` lines (``sha256sum -c`` format) for every file above

``config.yaml`` (``format_version`` :data:`FORMAT_VERSION`)::

    format_version: 1
    kind: fingerprint-pretrained | fine-tuned
    model: {...}            ModelConfig fields (backbone + head sizes)
    descriptor: {...}       name, params, hash, dim, feature_names (null: trained from scratch)
    normalization: {...}    per-feature mean/std of the fingerprints (null: from scratch)
    provenance: {...}       fmpretrain version, creation time, source checkpoint / base release
    training: {...}         pre-training: checkpoint, data (corpus), steps, held-out R²
    task: {...}             fine-tuned only: name, target, unit, task_type, pooling, out_dim,
                            target_scaling {mean, std, per_atom} (regression) or classes

Prediction in the target's units: ``raw = out * std + mean`` (``+ mean * n_atoms`` instead of
``+ mean`` when ``per_atom``, i.e. sum pooling). Fingerprints: ``x = y * std + mean``.

:func:`verify_release` is THE verifier (checksums, then the config's format, kind and schema);
the hub, fine-tuning and :func:`fmpretrain.load` all call it. This module does not import torch
(writing weights imports ``safetensors.torch`` inside :func:`write_finetuned_release` only).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CHECKSUMS",
    "CITATION",
    "CONFIG",
    "FORMAT_VERSION",
    "KINDS",
    "KIND_FINETUNED",
    "KIND_PRETRAINED",
    "MODEL_CARD",
    "SUPPORTED_FORMATS",
    "WEIGHTS",
    "ChecksumError",
    "ReleaseError",
    "VerifiedRelease",
    "finetuned_config",
    "read_checksums",
    "read_config",
    "sha256_file",
    "verify_checksums",
    "verify_release",
    "write_checksums",
    "write_finetuned_release",
    "write_model_card",
]

logger = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
CHECKSUMS = "SHA256SUMS"
MODEL_CARD = "README.md"
#: The ``format_version`` this code writes, and those it reads.
FORMAT_VERSION = 1
SUPPORTED_FORMATS = (1,)
KIND_PRETRAINED = "fingerprint-pretrained"
KIND_FINETUNED = "fine-tuned"
KINDS = (KIND_PRETRAINED, KIND_FINETUNED)
REQUIRED_FILES = (WEIGHTS, CONFIG)
TASK_TYPES = ("regression", "classification")
POOLINGS = ("mean", "sum")
LICENSE = "MIT"
CITATION = (
    'S. Jia, S. Govil, M. Ramprasad, V. Fung, "Pre-training Graph Neural Networks with '
    'Structural Fingerprints for Materials Discovery", arXiv:2503.01227 (2025)'
)
CITATION_BIBTEX = """@misc{jia2025fingerprints,
  title  = {Pre-training Graph Neural Networks with Structural Fingerprints for Materials
            Discovery},
  author = {Jia, S. and Govil, S. and Ramprasad, M. and Fung, V.},
  year   = {2025},
  eprint = {2503.01227},
  archivePrefix = {arXiv}
}"""
_SUMS_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")
_CHUNK = 1 << 20


class ReleaseError(ValueError):
    """A release directory is missing, damaged, or does not match this code."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"release {path}: {reason}")


class ChecksumError(ReleaseError):
    """A file differs from its ``SHA256SUMS`` entry, or a listed file is missing."""


@dataclass(frozen=True)
class VerifiedRelease:
    """A release whose files match ``SHA256SUMS`` and whose config this code reads."""

    path: Path
    sums: dict[str, str]  # file name -> sha256, as listed
    config: dict[str, Any]

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(self.sums)

    @property
    def kind(self) -> str:
        return str(self.config.get("kind", KIND_PRETRAINED))


# ------------------------------------------------------------------------------ checksums
def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _safe_name(name: str, path: Path, where: str) -> str:
    """A relative, traversal-free file name of a release (``./`` dropped)."""
    if not name or "\x00" in name or "\\" in name or name.startswith("/") or ":" in name[:2]:
        raise ReleaseError(path, f"{where}: absolute or malformed file name {name!r} refused")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ReleaseError(path, f"{where}: file name {name!r} points outside the release")
    return "/".join(parts)


def read_checksums(path: str | Path) -> dict[str, str]:
    """Parse ``SHA256SUMS`` (strictly); it must list the weights and the config."""
    path = _release_dir(path)
    sums_file = path / CHECKSUMS
    if not sums_file.is_file():
        raise ReleaseError(path, f"{CHECKSUMS} is missing: cannot verify the release")
    sums: dict[str, str] = {}
    for number, line in enumerate(sums_file.read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        match = _SUMS_LINE.match(line)
        if not match:
            raise ReleaseError(
                path, f"{CHECKSUMS} line {number} is malformed (want '<sha256>  <file>'): {line!r}"
            )
        name = _safe_name(match.group(2), path, f"{CHECKSUMS} line {number}")
        sums[name] = match.group(1).lower()
    missing = [name for name in REQUIRED_FILES if name not in sums]
    if missing:
        raise ReleaseError(path, f"{CHECKSUMS} does not list {', '.join(missing)}")
    return sums


def verify_checksums(path: str | Path) -> dict[str, str]:
    """Check every file ``SHA256SUMS`` lists; return ``{name: sha256}``.

    Raises :class:`ChecksumError` naming every missing or modified file. Files that are not
    listed are ignored (and never read by the loaders).
    """
    path = _release_dir(path)
    sums = read_checksums(path)
    problems = []
    for name, digest in sums.items():
        file = path / name
        if not file.is_file():
            problems.append(f"{name} is missing (listed in {CHECKSUMS})")
        elif (actual := sha256_file(file)) != digest:
            problems.append(
                f"sha256 mismatch for {name}: {name} has sha256 {actual}, {CHECKSUMS} says {digest}"
            )
    if problems:
        raise ChecksumError(
            path,
            "; ".join(problems) + " (the release is damaged or was modified; download or "
            "export it again)",
        )
    return sums


def write_checksums(path: str | Path, names: Iterable[str] | None = None) -> Path:
    """Write ``SHA256SUMS`` for ``names`` (default: every regular file but itself and dotfiles)."""
    path = Path(path)
    if names is None:
        names = sorted(
            p.name
            for p in path.iterdir()
            if p.is_file() and p.name != CHECKSUMS and not p.name.startswith(".")
        )
    lines = [f"{sha256_file(path / name)}  {name}\n" for name in names]
    out = path / CHECKSUMS
    out.write_text("".join(lines), "utf-8")
    return out


# ------------------------------------------------------------------------------ config
def read_config(path: str | Path) -> dict[str, Any]:
    """``config.yaml`` of a release, parsed with ``yaml.safe_load`` (a mapping)."""
    path = _release_dir(path)
    file = path / CONFIG
    if not file.is_file():
        raise ReleaseError(path, f"{CONFIG} is missing")
    try:
        config = yaml.safe_load(file.read_text("utf-8"))
    except yaml.YAMLError as err:
        raise ReleaseError(path, f"{CONFIG} is not valid YAML: {err}") from err
    if not isinstance(config, dict):
        raise ReleaseError(path, f"{CONFIG} is not a mapping")
    return config


def check_config(config: Mapping[str, Any], path: str | Path = "<config>") -> None:
    """Check the schema of a release config (format, kind, required sections and task)."""
    version = config.get("format_version")
    if isinstance(version, bool) or version not in SUPPORTED_FORMATS:
        raise ReleaseError(
            path,
            f"format_version {version!r} is not supported by this version of fmpretrain "
            f"(it reads {list(SUPPORTED_FORMATS)}); upgrade fmpretrain or re-export the release",
        )
    kind = config.get("kind", KIND_PRETRAINED)
    if kind not in KINDS:
        raise ReleaseError(path, f"unknown release kind {kind!r}; expected one of {KINDS}")
    required = ["model"] + (["descriptor", "normalization"] if kind == KIND_PRETRAINED else [])
    required += ["task"] if kind == KIND_FINETUNED else []
    missing = [k for k in required if k not in config]
    if missing:
        raise ReleaseError(path, f"{CONFIG} lacks the key(s) {missing}")
    if not isinstance(config["model"], Mapping):
        raise ReleaseError(path, f"{CONFIG}: 'model' must be a mapping of ModelConfig fields")
    if kind == KIND_PRETRAINED:
        norm = config["normalization"]
        if not isinstance(norm, Mapping) or "mean" not in norm or "std" not in norm:
            raise ReleaseError(path, f"{CONFIG}: 'normalization' must hold 'mean' and 'std'")
    if kind == KIND_FINETUNED:
        _check_task(config["task"], path)


def _check_task(task: Any, path: str | Path) -> None:
    if not isinstance(task, Mapping):
        raise ReleaseError(path, f"{CONFIG}: 'task' must be a mapping")
    missing = [k for k in ("name", "target", "task_type", "pooling", "out_dim") if k not in task]
    if missing:
        raise ReleaseError(path, f"{CONFIG}: task lacks {missing}")
    if task["task_type"] not in TASK_TYPES:
        raise ReleaseError(path, f"{CONFIG}: task_type {task['task_type']!r} not in {TASK_TYPES}")
    if task["pooling"] not in POOLINGS:
        raise ReleaseError(path, f"{CONFIG}: pooling {task['pooling']!r} not in {POOLINGS}")
    if task["task_type"] == "regression":
        scaling = task.get("target_scaling")
        if not isinstance(scaling, Mapping) or not {"mean", "std"} <= set(scaling):
            raise ReleaseError(path, f"{CONFIG}: regression task lacks target_scaling mean/std")
    elif len(task.get("classes") or []) != task["out_dim"]:
        raise ReleaseError(path, f"{CONFIG}: classification task needs out_dim class labels")


def verify_release(path: str | Path) -> VerifiedRelease:
    """THE verifier: ``SHA256SUMS`` (every listed file), then the config's format and schema."""
    path = _release_dir(path)
    sums = verify_checksums(path)
    config = read_config(path)
    check_config(config, path)
    return VerifiedRelease(path, sums, config)


def provenance(**extra: Any) -> dict[str, Any]:
    """Who wrote a release and when (plus ``extra`` entries that are not None)."""
    from fmpretrain import __version__

    record = {
        "fmpretrain_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    record.update({k: v for k, v in extra.items() if v is not None})
    return record


def finetuned_config(
    *,
    model: Mapping[str, Any],
    task: Mapping[str, Any],
    out_dim: int,
    target_scaling: Mapping[str, Any] | None,
    classes: list[Any] | None = None,
    base: Mapping[str, Any] | None = None,
    results: Mapping[str, Any] | None = None,
    mode: str = "pretrained",
) -> dict[str, Any]:
    """The config of a fine-tuned release.

    ``task``: name, target, unit, task_type, pooling (a ``TaskSpec``'s fields); ``base``: the
    config of the pre-trained release it started from (None: trained from scratch), whose
    descriptor and normalization are kept for provenance and for fingerprints.
    """
    base = dict(base or {})
    classes = list(classes or [])
    task_type = task.get("task_type", "regression")
    return {
        "format_version": FORMAT_VERSION,
        "kind": KIND_FINETUNED,
        "model": dict(model),
        "descriptor": base.get("descriptor"),
        "normalization": base.get("normalization"),
        "task": {
            "name": task.get("name"),
            "target": task.get("target") or task.get("name"),
            "unit": task.get("unit") or "",
            "task_type": task_type,
            "pooling": task.get("pooling", "mean"),
            "description": task.get("description") or "",
            "out_dim": int(out_dim),
            "target_scaling": dict(target_scaling) if target_scaling else None,
            "classes": [_plain(c) for c in classes] if task_type == "classification" else None,
        },
        "training": base.get("training"),  # the backbone's pre-training (None: scratch)
        "provenance": provenance(mode=mode, base_release=base.get("summary")),
        "results": dict(results) if results else None,
    }


def write_finetuned_release(
    out: str | Path,
    state_dict: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    license: str = LICENSE,
) -> Path:
    """Write a fine-tuned release: weights (backbone + head), config, model card, SHA256SUMS.

    ``state_dict`` is the whole ``PropertyModel``'s (tensors); ``config`` comes from
    :func:`finetuned_config`. The written release passes :func:`verify_release`.
    """
    from safetensors.torch import save_file

    check_config(config, out)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(out / WEIGHTS), metadata={"format": "fmpretrain", "kind": "fine-tuned"})
    (out / CONFIG).write_text(yaml.safe_dump(dict(config), sort_keys=False), "utf-8")
    write_model_card(out, config, license=license)
    write_checksums(out, [WEIGHTS, CONFIG, MODEL_CARD])
    verify_release(out)
    logger.info("wrote fine-tuned release %s", out)
    return out


# ------------------------------------------------------------------------------ model card
def write_model_card(
    out: str | Path,
    config: Mapping[str, Any],
    *,
    results: Mapping[str, Any] | None = None,
    license: str = LICENSE,
) -> Path:
    """Write ``README.md``: what the model is, its corpus, steps, held-out fingerprint R²,
    downstream results (``results`` or ``config['results']``), licence and citation."""
    out = Path(out)
    kind = config.get("kind", KIND_PRETRAINED)
    model = config.get("model") or {}
    descriptor = config.get("descriptor") or {}
    training = config.get("training") or {}
    task = config.get("task") or {}
    results = results if results is not None else config.get("results")
    arch = ", ".join(
        f"{k}={model[k]}"
        for k in ("hidden_channels", "num_layers", "num_heads", "cutoff")
        if k in model
    )
    lines = [f"# fmpretrain {'fine-tuned' if kind == KIND_FINETUNED else 'pre-trained'} model", ""]
    if kind == KIND_FINETUNED:
        unit = f" ({task.get('unit')})" if task.get("unit") else ""
        lines += [
            f"Predicts `{task.get('target')}`{unit} for task `{task.get('name')}` "
            f"({task.get('task_type')}, {task.get('pooling')} pooling).",
            "",
        ]
    else:
        lines += [
            "An equivariant-transformer GNN pre-trained to regress per-atom structural "
            f"fingerprints ({descriptor.get('name', '?')}), not quantum-mechanical labels.",
            "",
        ]
    data = training.get("data") or {}
    r2 = training.get("heldout_r2_median")
    lines += [
        "| | |",
        "|---|---|",
        f"| kind | {kind} |",
        f"| architecture | ET ({arch}) |",
        f"| descriptor | {descriptor.get('name', 'none (trained from scratch)')} "
        f"(dim {descriptor.get('dim', '-')}, hash {descriptor.get('hash', '-')}) |",
        f"| pre-training corpus | {data.get('n_samples', '?')} structures"
        + (f", {data['atoms']} atoms" if data.get("atoms") else "")
        + "".join(
            f"; {label}: {c.get('accepted', '?')} structures"
            for label, c in (data.get("sources") or {}).items()
        )
        + " |"
        if data
        else "| pre-training corpus | n/a |",
        f"| pre-training steps | {training.get('steps', 'n/a')} |",
        f"| held-out fingerprint R² (median over channels) | "
        f"{'n/a' if r2 is None else f'{r2:.4f}'} |",
        f"| licence | {license} |",
        "",
    ]
    if results:
        lines += ["## Downstream results", "", "```", yaml.safe_dump(_plain(results)).strip()]
        lines += ["```", ""]
    lines += [
        "## Use",
        "",
        "```python",
        "import fmpretrain",
        "model = fmpretrain.load('THIS_DIRECTORY')",
        "model.predict(structures)" if kind == KIND_FINETUNED else "model.embed(structures)",
        "```",
        "",
        "Files: `model.safetensors` (weights, safetensors), `config.yaml` (model, descriptor, "
        "normalization, provenance), `SHA256SUMS` (checked on every load).",
        "",
        "## Citation",
        "",
        CITATION,
        "",
        "```bibtex",
        CITATION_BIBTEX,
        "```",
        "",
    ]
    path = out / MODEL_CARD
    path.write_text("\n".join(lines), "utf-8")
    return path


# ------------------------------------------------------------------------------ helpers
def _release_dir(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if path.is_file() and path.name in (WEIGHTS, CONFIG, CHECKSUMS, MODEL_CARD):
        path = path.parent
    if not path.exists():
        raise ReleaseError(path, "no such directory")
    if not path.is_dir():
        raise ReleaseError(
            path, f"not a directory (a release holds {WEIGHTS}, {CONFIG}, {CHECKSUMS})"
        )
    return path


def _plain(value: Any) -> Any:
    """Plain YAML-safe values (numpy scalars and arrays, tuples -> Python)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
