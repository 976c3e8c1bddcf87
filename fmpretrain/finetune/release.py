"""Fine-tuning's side of the release contract (:mod:`fmpretrain.release_format`).

Reading: :func:`load_release` verifies a release with THE verifier
(:func:`fmpretrain.release_format.verify_release`: every file in ``SHA256SUMS``, the config's
format, kind and schema), checks that its ``model`` keys are :class:`ModelConfig` fields,
reads the weights with ``safetensors`` only (never ``torch.load``) and requires the backbone
weights to fit the rebuilt backbone exactly. Any violation raises :class:`ReleaseError` (a
``ValueError``) that names the file and the fix.

Writing: :func:`save_finetuned` writes a fine-tuned release (backbone + property head + task
and target scaling in the config); :class:`FoldReleases` does it for the benchmark's folds.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fmpretrain.files import replace_dir, temp_sibling
from fmpretrain.models import ModelConfig, build_backbone
from fmpretrain.release_format import (
    CHECKSUMS,
    CONFIG,
    KINDS,
    SUPPORTED_FORMATS,
    WEIGHTS,
    ReleaseError,
    check_config,
    finetuned_config,
    read_config,
    sha256_file,
    verify_checksums,
    verify_release,
    write_finetuned_release,
)

__all__ = [
    "CHECKSUMS",
    "CONFIG",
    "KNOWN_KINDS",
    "RELEASE_POLICIES",
    "SUPPORTED_FORMATS",
    "WEIGHTS",
    "FoldReleases",
    "Release",
    "ReleaseError",
    "load_release",
    "save_finetuned",
    "verify_checksums",
]

logger = logging.getLogger(__name__)

KNOWN_KINDS = KINDS
BACKBONE_PREFIX = "backbone."
RELEASE_POLICIES = ("best", "all", "none")
NEURAL_MODES = ("pretrained", "scratch")  # the benchmark modes that are GNNs


@dataclass
class Release:
    """A verified release: its config, the rebuilt :class:`ModelConfig` and the weights."""

    path: Path
    config: dict[str, Any]
    model_config: ModelConfig
    state_dict: dict[str, torch.Tensor]  # the whole model (backbone + head)
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


def model_config_of(path: str | Path, config: Mapping[str, Any]) -> ModelConfig:
    """The :class:`ModelConfig` of a release config; unknown keys are a clear error."""
    model = config["model"]
    unknown = sorted(set(model) - set(ModelConfig.field_names()))
    if unknown:
        raise ReleaseError(
            path,
            f"{CONFIG} has model key(s) {unknown} that this code does not know (valid: "
            f"{ModelConfig.field_names()}); the release was made by a different version of "
            "fmpretrain",
        )
    try:
        return ModelConfig.from_dict(dict(model))
    except (TypeError, ValueError) as err:
        raise ReleaseError(path, f"{CONFIG}: invalid model configuration: {err}") from err


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """``model.safetensors`` of a release, with safetensors only (never pickle)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = path / WEIGHTS
    if not file.is_file():
        raise ReleaseError(path, f"{WEIGHTS} is missing")
    try:
        return load_file(str(file), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise ReleaseError(path, f"{WEIGHTS} is not a readable safetensors file: {err}") from err


def load_release(path: str | Path, *, verify: bool = True) -> Release:
    """Verify and load a release (see the module docstring for the checks).

    ``path`` is a release directory, or a registry name or URL that :mod:`fmpretrain.hub`
    downloads (verified, cached) first.
    """
    if not Path(path).exists() and ("://" in str(path) or "/" not in str(path)):
        from fmpretrain.hub import load_pretrained

        path = load_pretrained(str(path))
    if verify:
        verified = verify_release(path)
        path, config, sums = verified.path, verified.config, verified.sums
    else:
        config = read_config(path)
        path, sums = Path(path), {}
        check_config(config, path)
    model_config = model_config_of(path, config)
    state = read_weights(path)
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
        weights_sha256=sums.get(WEIGHTS) or sha256_file(path / WEIGHTS),
    )


# ============================================================================ writing
def save_finetuned(
    out: str | Path,
    model: torch.nn.Module,
    prep: Any,
    *,
    scaler: Any,
    release: Release | None,
    mode: str,
    results: Mapping[str, Any] | None = None,
) -> Path:
    """Write the fine-tuned release of ``model`` (a ``PropertyModel``) into ``out``.

    ``prep`` is the benchmark's prepared task (``spec``, ``model_config``, ``out_dim``,
    ``dataset.classes``); ``scaler`` the fitted ``TargetScaler`` (None for classification);
    ``release`` the pre-trained release the backbone started from (None: from scratch).
    """
    base = None
    if release is not None and mode == "pretrained":
        base = {**release.config, "summary": release.summary()}
    config = finetuned_config(
        model=prep.model_config.to_dict(),
        task=dict(prep.spec.__dict__),
        out_dim=prep.out_dim,
        target_scaling=scaler.to_dict() if scaler is not None else None,
        classes=list(prep.dataset.classes),
        base=base,
        results=results,
        mode=mode,
    )
    return write_finetuned_release(out, model.state_dict(), config)


class FoldReleases:
    """The fine-tuned releases of one benchmark task's folds, under ``task_dir/release/``.

    ``policy``: ``best`` (default) writes ``release/<mode>/`` from the fold with the lowest
    test error among all folds (a fold reused from an earlier run keeps the release that run
    wrote); ``all`` writes ``release/fold_<k>/<mode>/`` for every fold trained; ``none`` writes
    nothing.
    """

    def __init__(self, task_dir: Path, policy: str, prep: Any, release: Release | None):
        if policy not in RELEASE_POLICIES:
            raise ValueError(f"releases must be one of {RELEASE_POLICIES}, got {policy!r}")
        self.root = Path(task_dir) / "release"
        self.policy, self.prep, self.release = policy, prep, release
        self.models: dict[tuple[int, str], tuple[torch.nn.Module, Any]] = {}

    @property
    def keep_models(self) -> bool:
        return self.policy != "none"

    def add(self, fold: int, result: dict[str, Any]) -> None:
        """Take the models of a trained fold out of ``result`` (its ``_models`` entry)."""
        for mode, (model, outcome) in result.pop("_models", {}).items():
            test = result["modes"][mode]["test"]
            if self.policy == "all":
                self._write(self.root / f"fold_{fold}" / mode, model, outcome, mode, fold, test)
            elif self.policy == "best":
                self.models[(fold, mode)] = (model.cpu(), outcome)

    def finish(self, fold_results: Sequence[dict[str, Any]]) -> dict[str, str]:
        """Write the best fold's release of each mode; ``{mode: release dir}``."""
        written: dict[str, str] = {}
        if self.policy != "best":
            return written
        metric = self.prep.metric
        modes = {m for r in fold_results for m in r["modes"] if m in NEURAL_MODES}
        for mode in sorted(modes):
            scored = [(r["modes"][mode]["test"][metric], r["fold"], r) for r in fold_results
                      if mode in r["modes"]]  # fmt: skip
            _, fold, best = min(scored, key=lambda item: (item[0], item[1]))
            target = self.root / mode
            if (fold, mode) in self.models:
                model, outcome = self.models[(fold, mode)]
                self._write(target, model, outcome, mode, fold, best["modes"][mode]["test"])
                written[mode] = str(target)
            elif _released_fold(target) == fold:
                written[mode] = str(target)  # the reused best fold's release from before
            else:
                logger.warning("%s: fold %d (reused) has no saved model to release", mode, fold)
        self.models.clear()
        return written

    def _write(self, out: Path, model, outcome, mode: str, fold: int, test: Mapping) -> None:
        # written aside, then swapped in: concurrent folds (Slurm array tasks) share ``out``
        tmp = temp_sibling(out)
        results = {"fold": fold, "test": dict(test), "best_epoch": outcome.best_epoch}
        try:
            save_finetuned(
                tmp, model, self.prep, scaler=outcome.scaler, release=self.release, mode=mode,
                results=results,
            )  # fmt: skip
            replace_dir(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _released_fold(path: Path) -> int | None:
    """The fold a benchmark release was made from (None if there is no readable release)."""
    try:
        return int((read_config(path).get("results") or {}).get("fold"))
    except (ReleaseError, TypeError, ValueError):
        return None
