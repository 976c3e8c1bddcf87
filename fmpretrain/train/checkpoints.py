"""Training checkpoints that survive a crash and cannot run code when loaded.

- **Sealed**: after DeepSpeed has written a tag directory (``checkpoints/step00001234/``),
  :func:`seal` hashes every file in it and writes ``SHA256SUMS`` (``sha256sum`` format) last,
  atomically. A tag directory without it was interrupted while being written.
- **Verified**: :func:`checkpoint_problem` says what is wrong with a tag directory (no
  ``SHA256SUMS``, a file missing, changed or not listed), and :func:`select_checkpoint` picks
  the newest intact one, listing those it skipped and why; :func:`choose_checkpoint` (what
  resume and export use) also logs each skipped one and refuses when none is intact.
- **No pickle from disk**: :func:`safe_load` is ``torch.load(weights_only=True)`` with an
  explicit allow-list (:func:`allowed_globals`) of the classes DeepSpeed stores besides tensors
  and containers: ``ZeroStageEnum``, ``LossScaler``/``DynamicLossScaler`` and
  ``fragment_address`` (ZeRO 1/2 ``param_slice_mappings``). :func:`install_safe_loading`
  makes a DeepSpeed engine load through it (DeepSpeed's own checkpoint engine passes
  ``weights_only=False``), and :func:`deepspeed_loads_safely` does the same for DeepSpeed
  helpers that call ``torch.load`` themselves (``zero_to_fp32``). Anything else in a file, such
  as a crafted object whose unpickling would run code, raises :class:`UnsafeCheckpointError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from fmpretrain.files import atomic_write_text

SUMS = "SHA256SUMS"
TAG_GLOB = "step*"
log = logging.getLogger(__name__)


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint file holds objects outside the allow-list."""


class CheckpointCorruptError(RuntimeError, ValueError):
    """A checkpoint asked for is damaged, or none is intact (a ``ValueError`` too: the CLI
    reports it in one line)."""


# --------------------------------------------------------------------------- checksums
def _sha256(path: Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def _files(tag_dir: Path) -> list[str]:
    return sorted(
        p.relative_to(tag_dir).as_posix()
        for p in tag_dir.rglob("*")
        if p.is_file() and p.name != SUMS and not p.name.endswith(".tmp")
    )


def seal(tag_dir: str | Path) -> Path:
    """Write ``tag_dir/SHA256SUMS`` over every file in it (call once all ranks have saved)."""
    tag_dir = Path(tag_dir)
    lines = [f"{_sha256(tag_dir / name)}  {name}" for name in _files(tag_dir)]
    if not lines:
        raise CheckpointCorruptError(f"{tag_dir} holds no file to seal: the save did not happen")
    atomic_write_text(tag_dir / SUMS, "\n".join(lines) + "\n")
    return tag_dir / SUMS


def unseal(tag_dir: str | Path) -> None:
    """Remove ``SHA256SUMS`` before a tag directory is (re)written."""
    (Path(tag_dir) / SUMS).unlink(missing_ok=True)


def checkpoint_problem(tag_dir: str | Path) -> str | None:
    """What is wrong with a tag directory, or ``None`` when every file matches its sum."""
    tag_dir = Path(tag_dir)
    sums = tag_dir / SUMS
    if not sums.is_file():
        return f"no {SUMS} (the save was interrupted, or it predates checksummed checkpoints)"
    listed: dict[str, str] = {}
    for line in sums.read_text().splitlines():
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            return f"{SUMS} has a malformed line {line!r}"
        listed[name] = digest
    for name, digest in listed.items():
        path = tag_dir / name
        if not path.is_file():
            return f"{name} is missing"
        if _sha256(path) != digest:
            return f"{name} differs from its sha256 in {SUMS} (truncated or changed)"
    extra = sorted(set(_files(tag_dir)) - set(listed))
    if extra:
        return f"{extra[0]} is not listed in {SUMS}"
    return None


def select_checkpoint(ckpt_dir: str | Path) -> tuple[str | None, list[tuple[str, str]]]:
    """The newest intact tag in ``ckpt_dir`` and ``(tag, why)`` for each newer one skipped."""
    ckpt_dir = Path(ckpt_dir)
    tags = sorted((p.name for p in ckpt_dir.glob(TAG_GLOB) if p.is_dir()), reverse=True)
    skipped: list[tuple[str, str]] = []
    for tag in tags:
        problem = checkpoint_problem(ckpt_dir / tag)
        if problem is None:
            return tag, skipped
        skipped.append((tag, problem))
    return None, skipped


def intact_checkpoints(ckpt_dir: str | Path) -> list[str]:
    """The intact tags in ``ckpt_dir``, newest first."""
    ckpt_dir = Path(ckpt_dir)
    tags = sorted((p.name for p in ckpt_dir.glob(TAG_GLOB) if p.is_dir()), reverse=True)
    return [tag for tag in tags if checkpoint_problem(ckpt_dir / tag) is None]


def choose_checkpoint(ckpt_dir: str | Path, *, purpose: str, remedy: str) -> str | None:
    """The newest intact tag in ``ckpt_dir`` (``None`` when it holds no tag at all), logging a
    warning for each newer one skipped and why.

    ``purpose`` names the use in the log ("resuming from"); ``remedy`` ends the
    :class:`CheckpointCorruptError` raised when no tag is intact.
    """
    ckpt_dir = Path(ckpt_dir)
    tag, skipped = select_checkpoint(ckpt_dir)
    for bad, why in skipped:
        log.warning("skipping checkpoint %s: %s", ckpt_dir / bad, why)
    if tag is None and skipped:
        bad, why = skipped[0]
        raise CheckpointCorruptError(f"no intact checkpoint in {ckpt_dir} ({bad}: {why}): {remedy}")
    if tag is not None and skipped:
        log.warning("%s %s, the newest intact checkpoint", purpose, ckpt_dir / tag)
    return tag


# --------------------------------------------------------------------------- safe loading
def allowed_globals() -> list[Any]:
    """The non-tensor classes DeepSpeed writes into its checkpoint files."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [ZeroStageEnum, LossScaler, DynamicLossScaler, fragment_address]


_TORCH_LOAD = torch.load


def safe_load(path: str | Path, map_location: Any = None, **kwargs: Any) -> Any:
    """``torch.load`` with ``weights_only=True`` and :func:`allowed_globals`; anything else in
    the file raises :class:`UnsafeCheckpointError` before it is constructed."""
    kwargs.pop("weights_only", None)
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            return _TORCH_LOAD(path, map_location=map_location, weights_only=True, **kwargs)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        why = next((line for line in lines if "GLOBAL" in line), lines[0] if lines else "")
        raise UnsafeCheckpointError(
            f"{path} holds objects outside the checkpoint allow-list, refused without running "
            f"them ({why[:200]}): it was not written by this trainer or was tampered with; "
            "resume from another checkpoint or start a new run"
        ) from None


def install_safe_loading(engine: Any) -> None:
    """Make ``engine.load_checkpoint`` read every file through :func:`safe_load`."""
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

    current = engine.checkpoint_engine
    if not isinstance(current, TorchCheckpointEngine):
        raise RuntimeError(
            f"unsupported DeepSpeed checkpoint engine {type(current).__name__}: remove the "
            "checkpoint engine setting from the deepspeed config (only the default is verified)"
        )

    def load(path: str, map_location: Any = None) -> Any:
        return safe_load(path, map_location=map_location)

    current.load = load


@contextlib.contextmanager
def deepspeed_loads_safely() -> Iterator[None]:
    """Within the block, every ``torch.load`` call goes through :func:`safe_load`."""
    torch.load = safe_load  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.load = _TORCH_LOAD  # type: ignore[assignment]
