"""Verified file downloads: resumable, atomic, cached. The bottom layer under the release hub,
the corpus registry and the MatBench tasks; only the standard library talks HTTP.

:func:`fetch` brings ``url`` (``https://``, ``http://``, ``file://`` or a plain local path) to
``dest`` and guarantees:

- **nothing partial is ever at ``dest``**: bytes go to ``<dest>.part`` and are renamed onto
  ``dest`` only once complete and verified (``os.replace``, atomic on one file system);
- **resume**: an interrupted transfer keeps its ``.part`` and continues with an HTTP ``Range``
  request, here (up to ``retries`` times, on dropped connections, timeouts, HTTP 408/429/5xx)
  and in any later call; a server that ignores ``Range`` restarts the file cleanly;
- **verification**: a known ``size`` is checked against ``Content-Length`` before the body and
  against the bytes after it; a known ``sha256`` is checked before the rename; either mismatch
  deletes the ``.part`` and raises :class:`IntegrityError`. Without a ``sha256``, a gzip, bzip2
  or xz file is decompressed to its end first, so a body cut short is never accepted;
- **trust on first use** (``record=True``): the sha256 and size of the first verified download
  are written to ``<dest>.sha256.json`` (a warning says so when no sha256 was given); later
  downloads must match it, and a cache hit checks the recorded size without re-reading the file;
- **one writer**: a POSIX lock (``.<dest name>.lock`` beside it) serialises concurrent fetches
  of one file (every rank of a job, say).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import http.client
import json
import logging
import lzma
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fmpretrain.files import atomic_write_bytes

__all__ = [
    "CACHE_ENV",
    "DownloadError",
    "IntegrityError",
    "cache_root",
    "fetch",
    "file_lock",
    "is_local",
    "local_path",
    "read_record",
    "record_path",
    "sha256_file",
]

#: Environment variable naming the cache root shared by releases, corpora and datasets.
CACHE_ENV = "FMPRETRAIN_CACHE"


def cache_root(cache: str | os.PathLike[str] | None = None) -> Path:
    """``cache``, else ``$FMPRETRAIN_CACHE``, else ``$XDG_CACHE_HOME/fmpretrain``, else
    ``~/.cache/fmpretrain``; absolute."""
    if cache is not None:
        root = Path(cache)
    elif os.environ.get(CACHE_ENV):
        root = Path(os.environ[CACHE_ENV])
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "fmpretrain"
    return root.expanduser().absolute()


log = logging.getLogger(__name__)

CHUNK = 1 << 20
RETRY_DELAY_S = 1.0  # wait retry_delay * (attempt - 1) before each retry
RECORD_SUFFIX = ".sha256.json"
PART_SUFFIX = ".part"
_DECOMPRESSORS: dict[str, Callable[..., Any]] = {
    ".gz": gzip.open,
    ".bz2": bz2.open,
    ".xz": lzma.open,
}


class DownloadError(RuntimeError):
    """A file could not be downloaded, or what arrived is not usable."""


class IntegrityError(DownloadError):
    """Bytes differ from the expected (or recorded) sha256 or size."""

    def __init__(self, message: str, *, url: str, what: str, expected: Any, actual: Any) -> None:
        super().__init__(message)
        self.url, self.what, self.expected, self.actual = url, what, expected, actual


class _Transient(Exception):
    """A download attempt failed in a way that a retry (resuming) may fix."""


# ------------------------------------------------------------------------------- fetch
def fetch(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    size: int | None = None,
    record: bool = False,
    validate: Callable[[Path], None] | None = None,
    progress: bool | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    retry_delay: float | None = None,
    lock: bool = True,
    offline: bool = False,
    label: str | None = None,
) -> Path:
    """Download ``url`` to ``dest`` (verified, atomic, resumable) unless it is already there.

    ``sha256``/``size``: what the publisher gives (either may be ``None``). ``record``: keep a
    ``<dest>.sha256.json`` record and verify later downloads against it (trust on first use).
    ``validate(path)`` raises if the complete ``.part`` is not usable (it runs before the
    rename). ``offline``: never touch the network; a missing file is an error. Returns ``dest``.
    """
    dest = Path(dest)
    if sha256 is not None:
        sha256 = _check_sha256(sha256)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise DownloadError(f"size must be a number of bytes, got {size!r}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    guard = file_lock(dest.with_name(f".{dest.name}.lock")) if lock else contextlib.nullcontext()
    with guard:
        if _cached(dest, url, sha256, size, record, validate):
            return dest
        if offline:
            raise DownloadError(
                f"offline: {dest.name} is not in the cache ({dest.parent}); not fetching {url}"
            )
        part = dest.with_name(dest.name + PART_SUFFIX)
        _fetch(
            url,
            part,
            size,
            label or dest.name,
            progress,
            retries,
            timeout,
            RETRY_DELAY_S if retry_delay is None else retry_delay,
        )
        digest = _verify(part, url, sha256, size, _recorded_sha256(dest) if record else None)
        try:
            if sha256 is None:
                _check_stream(part, dest.name)
            if validate is not None:
                validate(part)
        except (DownloadError, OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as err:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url} is not a usable file ({err}); it was deleted") from err
        if record:
            _write_record(dest, url, digest, part.stat().st_size, pinned=sha256 is not None)
        os.replace(part, dest)
        return dest


def _cached(
    dest: Path,
    url: str,
    sha256: str | None,
    size: int | None,
    record: bool,
    validate: Callable[[Path], None] | None,
) -> bool:
    """Whether ``dest`` is present and good; a bad copy is removed (with a warning)."""
    if not dest.is_file():
        return False
    have = dest.stat().st_size
    rec = read_record(dest) if record else None
    problem = None
    if size is not None and have != size:
        problem = f"it is {have} bytes, expected {size}"
    elif rec is not None:
        if rec.get("size") != have:
            problem = f"it is {have} bytes, its record says {rec.get('size')}"
        elif sha256 is not None and rec.get("sha256") != sha256:
            problem = f"its record says sha256 {rec.get('sha256')}, expected {sha256}"
        else:
            return True  # verified when it was written
    elif sha256 is not None:
        actual = sha256_file(dest)
        if actual != sha256:
            problem = f"its sha256 is {actual}, expected {sha256}"
        elif record:
            _write_record(dest, url, actual, have, pinned=True)
    elif record or validate is not None:  # a file placed by hand, or by an older version
        try:
            _check_stream(dest, dest.name)
            if validate is not None:
                validate(dest)
        except (DownloadError, OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as err:
            problem = f"it is not usable ({err})"
        else:
            if record:
                _write_record(dest, url, sha256_file(dest), have, pinned=False)
    if problem is None:
        return True
    log.warning("cached %s is damaged (%s); fetching it again", dest, problem)
    dest.unlink(missing_ok=True)
    return False


def _verify(
    part: Path, url: str, sha256: str | None, size: int | None, recorded: str | None
) -> str:
    """The sha256 of the complete ``part``; a mismatch deletes it and raises."""
    have = part.stat().st_size
    if size is not None and have != size:
        part.unlink(missing_ok=True)
        raise IntegrityError(
            f"{url} gave {have} bytes, expected {size}; the download was deleted",
            url=url,
            what="size",
            expected=size,
            actual=have,
        )
    digest = sha256_file(part)
    want, source = (sha256, "expected") if sha256 is not None else (recorded, "recorded")
    if want is not None and digest != want:
        part.unlink(missing_ok=True)
        hint = (
            ""
            if sha256 is not None
            else " on the first download (the file changed on the server; delete the record "
            "beside the cached file to accept the new one)"
        )
        raise IntegrityError(
            f"sha256 mismatch for {url}: {source} {want}{hint}, got {digest} ({have} bytes); "
            "the download was deleted",
            url=url,
            what="sha256",
            expected=want,
            actual=digest,
        )
    return digest


# ------------------------------------------------------------------------------- transfer
def _fetch(
    url: str,
    part: Path,
    size: int | None,
    label: str,
    progress: bool | None,
    retries: int,
    timeout: float,
    retry_delay: float,
) -> None:
    """Bring ``part`` to the full file, resuming and retrying transient failures."""
    from tqdm import tqdm

    disable = None if progress is None else not progress
    with tqdm(
        total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=disable
    ) as bar:
        attempt = 0
        while True:
            attempt += 1
            try:
                if is_local(url):
                    _copy_local(url, part, size, bar)
                else:
                    _fetch_once(url, part, size, bar, timeout)
                return
            except _Transient as err:
                if attempt > retries:
                    have = part.stat().st_size if part.exists() else 0
                    raise DownloadError(
                        f"downloading {url} failed after {attempt} attempt(s): {err}. "
                        f"{have} bytes are kept in {part}; run the same download again to "
                        "resume."
                    ) from err
                log.info("retrying %s (attempt %d failed: %s)", url, attempt, err)
                time.sleep(retry_delay * (attempt - 1))


def _fetch_once(url: str, part: Path, size: int | None, bar: Any, timeout: float) -> None:
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        return  # complete already: the checks decide
    headers = {"User-Agent": _user_agent(), "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416 and offset:  # what we hold is not a prefix the server agrees with
            part.unlink(missing_ok=True)
            raise _Transient("the server refused to resume (HTTP 416); starting over") from err
        if err.code in (408, 429) or err.code >= 500:
            raise _Transient(f"HTTP {err.code} {err.reason}") from err
        raise DownloadError(f"cannot download {url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise _Transient(str(getattr(err, "reason", err))) from err
    with response:
        status = response.status
        if status == 206 and offset:
            start = content_range_start(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink(missing_ok=True)
                raise _Transient(f"the server resumed at byte {start}, not {offset}; restarting")
            mode = "ab"
        elif status == 200:
            mode, offset = "wb", 0  # the full file (a server that ignores Range: restart)
        else:
            raise DownloadError(f"cannot download {url}: unexpected HTTP status {status}")
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        if size is not None and total is not None and total != size:
            part.unlink(missing_ok=True)
            raise IntegrityError(
                f"{url} is {total} bytes, expected {size}; nothing was kept",
                url=url,
                what="size",
                expected=size,
                actual=total,
            )
        bar.reset(total=total if total is not None else size)
        bar.update(offset)
        with open(part, mode) as handle:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as err:
                    raise _Transient(f"connection lost ({type(err).__name__}: {err})") from err
                if not chunk:
                    break
                handle.write(chunk)
                bar.update(len(chunk))
                if size is not None and handle.tell() > size:
                    break
    have = part.stat().st_size
    if size is not None and have > size:
        part.unlink()
        raise IntegrityError(
            f"{url} sent more than the expected {size} bytes; the download was deleted",
            url=url,
            what="size",
            expected=size,
            actual=have,
        )
    if total is not None and have < total:
        raise _Transient(f"connection closed after {have} of {total} bytes")


def _copy_local(url: str, part: Path, size: int | None, bar: Any) -> None:
    source = local_path(url)
    if not source.is_file():
        raise DownloadError(f"{url}: no such file")
    total = source.stat().st_size
    offset = part.stat().st_size if part.exists() else 0
    if offset > total:
        part.unlink()
        offset = 0
    bar.reset(total=total)
    bar.update(offset)
    with open(source, "rb") as src, open(part, "ab") as dst:
        src.seek(offset)
        while chunk := src.read(CHUNK):
            dst.write(chunk)
            bar.update(len(chunk))


def _check_stream(path: Path, name: str) -> None:
    """Decompress a ``.gz``/``.bz2``/``.xz`` file (by ``name``) to its end: a cut-off stream
    raises (EOFError or a decompressor error); other files pass."""
    opener = _DECOMPRESSORS.get(Path(name).suffix.lower())
    if opener is None:
        return
    with opener(path, "rb") as stream:
        while stream.read(CHUNK):
            pass


# ------------------------------------------------------------------------------- records
def record_path(dest: str | os.PathLike[str]) -> Path:
    """The sha256 record kept beside a downloaded file."""
    dest = Path(dest)
    return dest.with_name(dest.name + RECORD_SUFFIX)


def read_record(dest: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record of a downloaded file (``url``, ``sha256``, ``size``, ``pinned``,
    ``recorded``), or ``None`` when there is none (or it is unreadable)."""
    path = record_path(dest)
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _recorded_sha256(dest: Path) -> str | None:
    rec = read_record(dest)
    value = rec.get("sha256") if rec else None
    return value if isinstance(value, str) else None


def _write_record(dest: Path, url: str, sha256: str, size: int, *, pinned: bool) -> None:
    previous = _recorded_sha256(dest)
    doc = {
        "url": url,
        "sha256": sha256,
        "size": size,
        "pinned": pinned,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_bytes(record_path(dest), (json.dumps(doc, indent=2) + "\n").encode("utf-8"))
    if not pinned and previous is None:
        log.warning(
            "%s has no published sha256; recorded sha256 %s (%d bytes) in %s: later downloads "
            "must match it",
            url,
            sha256,
            size,
            record_path(dest),
        )


# ------------------------------------------------------------------------------- helpers
def is_local(url: str) -> bool:
    """A ``file://`` URL or a plain path (no scheme)."""
    return "://" not in url or urllib.parse.urlsplit(url).scheme == "file"


def local_path(url: str) -> Path:
    """The path of a ``file://`` URL or of a plain path."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    return Path(url).expanduser()


def content_range_start(value: str | None) -> int | None:
    """The first byte of a ``Content-Range: bytes START-END/TOTAL`` header."""
    match = re.match(r"^\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*$", value or "")
    return int(match.group(1)) if match else None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive POSIX lock on ``path`` (created if needed); no-op where unsupported."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:  # a file system without locks
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check_sha256(value: str) -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    if not isinstance(text, str) or not re.fullmatch(r"[0-9a-f]{64}", text):
        raise DownloadError(f"sha256 must be 64 hexadecimal digits, got {value!r}")
    return text


def _user_agent() -> str:
    from fmpretrain import __version__

    return f"fmpretrain/{__version__} (+urllib)"
