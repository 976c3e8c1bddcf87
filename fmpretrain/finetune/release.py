"""Load a pre-trained release: ``model.safetensors`` + ``config.yaml`` + ``SHA256SUMS``.

This is the only way fine-tuning talks to pre-training (``fmpretrain export`` writes the
release). Loading is strict, so that a checkpoint is never silently misread:

- every file listed in ``SHA256SUMS`` (at least the weights and the config) must exist and
  match its sha256;
- ``config.yaml`` must hold ``format_version`` (one this code knows), ``model``, ``descriptor``
  and ``normalization``; its ``model`` keys must all be :class:`ModelConfig` fields;
- weights are read with ``safetensors`` only (never ``torch.load``), and the backbone weights
  must fit the rebuilt backbone exactly (no missing or unexpected tensors, same shapes).

Any violation raises :class:`ReleaseError` (a ``ValueError``) that names the file and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from fmpretrain.data.format import sha256_file
from fmpretrain.models import ModelConfig, build_backbone

__all__ = [
    "CHECKSUMS",
    "CONFIG",
    "KNOWN_KINDS",
    "SUPPORTED_FORMATS",
    "WEIGHTS",
    "Release",
    "ReleaseError",
    "load_release",
    "verify_checksums",
]

#: File names of the release layout (the same as ``fmpretrain.train.export`` writes; a test
#: checks they agree, so that this stage does not import the pre-training stage).
WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
CHECKSUMS = "SHA256SUMS"
#: Release ``format_version`` values this code reads.
SUPPORTED_FORMATS = (1,)
KNOWN_KINDS = ("fingerprint-pretrained",)
BACKBONE_PREFIX = "backbone."
REQUIRED_KEYS = ("format_version", "model", "descriptor", "normalization")


class ReleaseError(ValueError):
    """A release directory is missing, damaged, or does not match this code."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"release {path}: {reason}")


@dataclass
class Release:
    """A verified release: its config, the rebuilt :class:`ModelConfig` and the weights."""

    path: Path
    config: dict[str, Any]
    model_config: ModelConfig
    state_dict: dict[str, torch.Tensor]  # the whole pre-training model (backbone + head)
    weights_sha256: str

    @property
    def cutoff(self) -> float:
        """The graph cutoff (Å) the backbone was pre-trained with; fine-tuning uses it too."""
        return self.model_config.cutoff

    @property
    def descriptor(self) -> dict[str, Any]:
        return dict(self.config.get("descriptor") or {})

    @property
    def normalization(self) -> dict[str, Any]:
        return dict(self.config.get("normalization") or {})

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """The backbone's tensors with the ``backbone.`` prefix removed (copies)."""
        return {
            k[len(BACKBONE_PREFIX) :]: v.clone()
            for k, v in self.state_dict.items()
            if k.startswith(BACKBONE_PREFIX)
        }

    def summary(self) -> dict[str, Any]:
        """What a results file should record about the release."""
        return {
            "path": str(self.path),
            "weights_sha256": self.weights_sha256,
            "format_version": self.config.get("format_version"),
            "descriptor": self.descriptor.get("name"),
            "descriptor_hash": self.descriptor.get("hash"),
            "model": self.model_config.to_dict(),
            "checkpoint": (self.config.get("training") or {}).get("checkpoint"),
        }


def _release_dir(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if path.is_file() and path.name in (WEIGHTS, CONFIG, CHECKSUMS):
        path = path.parent
    if not path.exists():
        raise ReleaseError(path, "no such directory")
    if not path.is_dir():
        raise ReleaseError(
            path, f"not a directory (a release holds {WEIGHTS}, {CONFIG}, {CHECKSUMS})"
        )
    return path


def verify_checksums(path: str | Path) -> dict[str, str]:
    """Check every file listed in ``SHA256SUMS``; return ``{file name: sha256}``."""
    path = _release_dir(path)
    sums_file = path / CHECKSUMS
    if not sums_file.is_file():
        raise ReleaseError(path, f"{CHECKSUMS} is missing: cannot verify the release")
    sums: dict[str, str] = {}
    for n, line in enumerate(sums_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 64:
            raise ReleaseError(path, f"{CHECKSUMS} line {n} is malformed: {line!r}")
        digest, name = parts[0].lower(), parts[1].lstrip("*")
        if "/" in name or "\\" in name or name.startswith("."):
            raise ReleaseError(path, f"{CHECKSUMS} line {n} names a file outside the release")
        sums[name] = digest
    for required in (WEIGHTS, CONFIG):
        if required not in sums:
            raise ReleaseError(path, f"{CHECKSUMS} does not list {required}")
    for name, digest in sums.items():
        file = path / name
        if not file.is_file():
            raise ReleaseError(path, f"{name} is missing (listed in {CHECKSUMS})")
        actual = sha256_file(file)
        if actual != digest:
            raise ReleaseError(
                path,
                f"sha256 mismatch for {name}: expected {digest}, got {actual} (the file is "
                "damaged or was modified; download or export the release again)",
            )
    return sums


def _check_config(path: Path, config: Any) -> ModelConfig:
    if not isinstance(config, dict):
        raise ReleaseError(path, f"{CONFIG} is not a mapping")
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if missing:
        raise ReleaseError(path, f"{CONFIG} lacks the key(s) {missing}")
    version = config["format_version"]
    if isinstance(version, bool) or version not in SUPPORTED_FORMATS:
        raise ReleaseError(
            path,
            f"format_version {version!r} is not supported by this version of fmpretrain "
            f"(it reads {list(SUPPORTED_FORMATS)}); upgrade fmpretrain or re-export the release",
        )
    kind = config.get("kind", KNOWN_KINDS[0])
    if kind not in KNOWN_KINDS:
        raise ReleaseError(path, f"unknown release kind {kind!r}; expected one of {KNOWN_KINDS}")
    model = config["model"]
    if not isinstance(model, dict):
        raise ReleaseError(path, f"{CONFIG}: 'model' must be a mapping of ModelConfig fields")
    unknown = sorted(set(model) - set(ModelConfig.field_names()))
    if unknown:
        raise ReleaseError(
            path,
            f"{CONFIG} has model key(s) {unknown} that this code does not know (valid: "
            f"{ModelConfig.field_names()}); the release was made by a different version of "
            "fmpretrain",
        )
    try:
        return ModelConfig.from_dict(model)
    except (TypeError, ValueError) as err:
        raise ReleaseError(path, f"{CONFIG}: invalid model configuration: {err}") from err


def load_release(path: str | Path, *, verify: bool = True) -> Release:
    """Verify and load a release (see the module docstring for the checks).

    ``path`` is a release directory, or a registry name or URL that :mod:`fmpretrain.hub`
    downloads (verified, cached) first.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not Path(path).exists() and ("://" in str(path) or "/" not in str(path)):
        from fmpretrain.hub import load_pretrained

        path = load_pretrained(str(path))
    path = _release_dir(path)
    sums = verify_checksums(path) if verify else {}
    config_file, weights_file = path / CONFIG, path / WEIGHTS
    for file in (config_file, weights_file):
        if not file.is_file():
            raise ReleaseError(path, f"{file.name} is missing")
    try:
        config = yaml.safe_load(config_file.read_text())
    except yaml.YAMLError as err:
        raise ReleaseError(path, f"{CONFIG} is not valid YAML: {err}") from err
    model_config = _check_config(path, config)
    try:
        state = load_file(str(weights_file), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise ReleaseError(path, f"{WEIGHTS} is not a readable safetensors file: {err}") from err
    backbone_state = {
        k[len(BACKBONE_PREFIX) :]: v for k, v in state.items() if k.startswith(BACKBONE_PREFIX)
    }
    if not backbone_state:
        raise ReleaseError(path, f"{WEIGHTS} holds no '{BACKBONE_PREFIX}*' tensors")
    backbone = build_backbone(model_config)
    try:
        backbone.load_state_dict(backbone_state, strict=True)
    except RuntimeError as err:
        raise ReleaseError(
            path, f"the backbone weights do not fit the model in {CONFIG}: {err}"
        ) from err
    return Release(
        path=path,
        config=config,
        model_config=model_config,
        state_dict=state,
        weights_sha256=sums.get(WEIGHTS) or sha256_file(weights_file),
    )
