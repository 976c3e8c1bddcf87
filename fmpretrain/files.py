"""Atomic file writes: the one place the project writes a file that readers may see.

Every write goes to a uniquely named sibling (``<name>.<pid>-<random>.tmp``), is flushed and
fsynced, then renamed over the target. Concurrent writers (Slurm array tasks, Ray workers)
never share a temporary file, a reader never sees half a file, and a crash leaves at most a
``*.tmp`` file that :func:`is_partial` recognises for cleanup.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "is_partial",
    "replace_dir",
    "temp_sibling",
]

PARTIAL_SUFFIX = ".tmp"


def temp_sibling(path: str | os.PathLike[str]) -> Path:
    """A temporary name next to ``path`` that no other process or call will pick."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}")


def is_partial(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a write interrupted before its rename."""
    return Path(path).name.endswith(PARTIAL_SUFFIX)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on a clean exit it is fsynced and
    renamed to ``path``, on an exception it is removed and ``path`` is left as it was."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open writes whole files: mode {mode!r} must start with 'w'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def replace_dir(src: str | os.PathLike[str], dst: str | os.PathLike[str], tries: int = 10) -> None:
    """Put the finished directory ``src`` at ``dst``, replacing what is there.

    The old ``dst`` is first renamed aside, then ``src`` renamed in, so ``dst`` is only ever
    absent or whole. When concurrent writers replace the same ``dst``, the last rename wins
    and each loser retries; none sees the other's half-written files.
    """
    src, dst = Path(src), Path(dst)
    for _ in range(tries):
        old = temp_sibling(dst)
        with contextlib.suppress(FileNotFoundError):
            os.replace(dst, old)
        try:
            os.replace(src, dst)  # fails when another writer put its dst there meanwhile
        except OSError:
            continue
        finally:
            shutil.rmtree(old, ignore_errors=True)
        return
    raise OSError(f"could not replace {dst} with {src} in {tries} tries (concurrent writers?)")
