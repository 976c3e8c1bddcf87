"""Releases over the network: a registry, verified resumable downloads, a cache, publishing.

A release directory (``model.safetensors``, ``config.yaml``, ``SHA256SUMS``, written by
:func:`fmpretrain.train.export.export_release`) travels as ONE file: a deterministic
``.tar.gz`` of it (plain ``.tar`` is accepted too) made by :func:`publish`. A registry is a JSON
document listing archives by name with their URL, sha256 and size; :func:`download` fetches an
archive into the cache through :func:`fmpretrain.download.fetch` (HTTP Range resume on a
``.part`` file, sha256 and size checked before it is kept), extracts it safely and checks
``SHA256SUMS`` before the release is used. Only the standard library talks HTTP; nothing is
ever unpickled.

Cache layout (``FMPRETRAIN_CACHE``, else ``$XDG_CACHE_HOME/fmpretrain``, else
``~/.cache/fmpretrain``)::

    downloads/<sha256>.part        an archive being downloaded (fmpretrain.download.fetch)
    downloads/<sha256>             a complete, verified archive (deleted once extracted)
    releases/<sha256[:16]>/        an extracted, verified release (+ .fmpretrain-hub.json)
    registries/<hash of url>.json  last copy of each registry read from a URL
    locks/<sha256[:16]>.lock       one download of an archive at a time (POSIX)

Modules: :mod:`~fmpretrain.hub.registry` (registries), :mod:`~fmpretrain.hub.archive` (verify,
pack, extract), :mod:`~fmpretrain.hub.errors`; this one: the cache, downloads, publishing.
See ``docs/hub.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from pathlib import Path
from typing import Any

import yaml

from fmpretrain import release_format
from fmpretrain.download import CACHE_ENV as _CACHE_ENV
from fmpretrain.download import DownloadError, IntegrityError, fetch, file_lock
from fmpretrain.download import cache_root as _cache_root
from fmpretrain.download import sha256_file as _sha256_file
from fmpretrain.hub.archive import VerifiedRelease, extract_archive, pack_release, verify_release
from fmpretrain.hub.errors import ChecksumError, HubError, UnsafeArchiveError
from fmpretrain.hub.registry import (
    NAME_PATTERN,
    OFFLINE_ENV,
    URL_SCHEMES,
    RegistryEntry,
    check_sha256,
    load_registry,
    offline,
    parse_registry,
    registry_label,
)
from fmpretrain.hub.registry import (
    REGISTRY_ENV as REGISTRY_ENV,  # re-exported: the hub's settings live here too
)
from fmpretrain.hub.registry import (
    REGISTRY_SCHEMA as REGISTRY_SCHEMA,
)

__all__ = [
    "ChecksumError",
    "HubError",
    "RegistryEntry",
    "UnsafeArchiveError",
    "VerifiedRelease",
    "cache_dir",
    "download",
    "load_pretrained",
    "load_registry",
    "pack_release",
    "parse_registry",
    "publish",
    "safetensors_parameters",
    "verify_release",
]

# The release contract lives in fmpretrain/release_format.py (torch-free).
RELEASE_FORMAT = release_format.FORMAT_VERSION
WEIGHTS = release_format.WEIGHTS
CONFIG = release_format.CONFIG
CHECKSUMS = release_format.CHECKSUMS
REQUIRED = release_format.REQUIRED_FILES

CACHE_ENV = _CACHE_ENV
MARKER = ".fmpretrain-hub.json"
MODEL_SUMMARY_KEYS = ("hidden_channels", "num_layers", "num_heads", "num_rbf", "cutoff", "max_z")

RETRY_DELAY_S = 1.0  # download retries wait RETRY_DELAY_S * (attempt - 1)
MAX_SAFETENSORS_HEADER = 100 << 20


# ------------------------------------------------------------------------------- registry


# ------------------------------------------------------------------------------- publish


def publish(
    release_dir: str | os.PathLike[str],
    *,
    url: str | None = None,
    name: str | None = None,
    out: str | os.PathLike[str] | None = None,
) -> tuple[Path, RegistryEntry]:
    """Pack ``release_dir`` into ``RELEASE_DIR.tar.gz`` and describe it as a registry entry.

    ``url`` is where the archive will be hosted (default: its local ``file://`` URL, to be
    replaced once uploaded); ``name`` defaults to the directory name. Returns the archive path
    and the entry to add to a registry's ``releases`` list.
    """
    release_dir = Path(release_dir).resolve()
    if not release_dir.is_dir():
        raise HubError(f"{release_dir} is not a release directory")
    name = release_dir.name if name is None else name
    if not NAME_PATTERN.match(name):
        raise HubError(f"name {name!r} must be letters, digits, '.', '_', '+' or '-' (no '/')")
    if url is not None and urllib.parse.urlsplit(url).scheme not in URL_SCHEMES:
        raise HubError(f"url {url!r} must be an absolute https://, http:// or file:// URL")
    archive = Path(out) if out is not None else release_dir.with_name(release_dir.name + ".tar.gz")
    pack_release(release_dir, archive)
    config = _read_config(release_dir)
    descriptor = config.get("descriptor") or {}
    model = config.get("model") or {}
    summary = {k: model[k] for k in MODEL_SUMMARY_KEYS if k in model}
    summary["parameters"] = safetensors_parameters(release_dir / WEIGHTS)
    entry = RegistryEntry.from_dict(
        {
            "name": name,
            "url": url if url is not None else archive.resolve().as_uri(),
            "sha256": _sha256_file(archive),
            "size": archive.stat().st_size,
            "descriptor": {k: descriptor.get(k) for k in ("name", "hash", "dim")},
            "model": summary,
            "format_version": config.get("format_version", RELEASE_FORMAT),
        },
        "publish",
    )
    return archive, entry


def safetensors_parameters(path: str | os.PathLike[str]) -> int:
    """Number of scalars in a ``.safetensors`` file, from its JSON header alone."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) != 8:
            raise HubError(f"{path} is not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_SAFETENSORS_HEADER:
            raise HubError(f"{path} is not a safetensors file (header of {length} bytes)")
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise HubError(f"{path} is not a safetensors file: {err}") from err
    total = 0
    for key, info in header.items():
        if key != "__metadata__":
            count = 1
            for dim in info["shape"]:
                count *= int(dim)
            total += count
    return total


# ------------------------------------------------------------------------------- verify


# ------------------------------------------------------------------------------- download
def cache_dir(cache: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``cache``, else ``FMPRETRAIN_CACHE``, else the platform cache dir."""
    return _cache_root(cache)


def load_pretrained(
    source: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    registry: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> Path:
    """The verified release directory for a registry name, a URL, a local path or an
    ``hf://org/repo[@revision][/subfolder]`` address.

    A local directory is verified in place; a local archive is checked against ``sha256``
    (if given) and extracted into the cache; a name or URL goes through :func:`download`; an
    ``hf://`` address through :func:`fmpretrain.hub.hf.download` (``cache_dir`` is then the
    Hugging Face cache directory). Load the weights from ``<dir>/model.safetensors`` with
    safetensors (never pickle).
    """
    text = os.fspath(source)
    if text.startswith("hf://"):
        return _load_hf(text, sha256=sha256, cache_dir=cache_dir, progress=progress)
    if "://" not in text and Path(text).exists():
        path = Path(text).resolve()
        if path.is_dir():
            return verify_release(path).path
        expected = check_sha256(sha256, "--sha256") if sha256 else _sha256_file(path)
        root = _cache_root(cache_dir)
        with _lock(root, expected):
            cached = _cached_release(root, expected)
            if cached is not None:
                return cached
            if sha256:
                _check_archive_digest(path, expected, None, str(path), delete=False)
            return _install(root, path, expected, {"source": str(path)}, None)
    return download(text, sha256=sha256, registry=registry, cache_dir=cache_dir, progress=progress)


def _load_hf(
    address: str,
    *,
    sha256: str | None,
    cache_dir: str | os.PathLike[str] | None,
    progress: bool | None,
) -> Path:
    """:func:`fmpretrain.hub.hf.download` with the hub's error types."""
    from fmpretrain.hub import hf

    if sha256 is not None:
        raise HubError(
            f"{address}: --sha256 is for archives; an hf:// release is checked against its own "
            f"{CHECKSUMS}"
        )
    try:
        return hf.download(address, cache_dir=cache_dir, progress=progress)
    except release_format.ChecksumError as err:
        raise ChecksumError(f"{address} failed verification: {err.reason}") from err
    except release_format.ReleaseError as err:
        raise HubError(f"{address}: {err.reason}") from err


def download(
    source: str,
    *,
    sha256: str | None = None,
    registry: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    retries: int = 3,
    timeout: float = 60.0,
) -> Path:
    """Download a release by registry name or URL into the cache; return its verified directory.

    A URL that is not in the registry needs ``sha256`` (the archive's). A release already in
    the cache is verified locally and returned without any network access. An interrupted
    download resumes from its ``.part`` file (HTTP Range), here up to ``retries`` times and in
    any later call.
    """
    root = _cache_root(cache_dir)
    entry: RegistryEntry | None = None
    if "://" in source:
        url = source
        if urllib.parse.urlsplit(url).scheme not in URL_SCHEMES:
            raise HubError(f"{url}: only https://, http:// and file:// URLs are supported")
        if sha256 is not None:  # the caller vouches for the bytes: no registry needed
            expected = check_sha256(sha256, "--sha256")
        else:
            entries = load_registry(registry, cache_dir=root).values()
            entry = next((e for e in entries if e.url == url), None)
            if entry is None:
                raise HubError(
                    f"{url} is not in the registry ({registry_label(registry)}), so its "
                    "sha256 is unknown and the download could not be verified. Pass the "
                    "archive's sha256: --sha256 HEX on the command line, sha256='HEX' in "
                    "Python (the publisher's registry entry, or `sha256sum FILE` on a trusted "
                    "copy, gives it)."
                )
            expected = entry.sha256
    else:
        entries = load_registry(registry, cache_dir=root)
        if source not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise HubError(
                f"{source!r} is not a release in the registry ({registry_label(registry)}; "
                f"releases: {known}), an existing path or a URL"
            )
        entry = entries[source]
        url, expected = entry.url, entry.sha256
        if sha256 is not None and check_sha256(sha256, "--sha256") != expected:
            raise HubError(
                f"--sha256 {sha256} does not match the registry's sha256 {expected} for {source}"
            )

    cached = _cached_release(root, expected)
    if cached is not None:
        return cached
    with _lock(root, expected):
        cached = _cached_release(root, expected)  # another process may have finished it
        if cached is not None:
            return cached
        if offline():
            raise HubError(f"{OFFLINE_ENV} is set and {url} is not in the cache {root}")
        archive = root / "downloads" / expected
        size = entry.size if entry is not None else None
        label = entry.name if entry is not None else Path(urllib.parse.urlsplit(url).path).name
        try:
            fetch(
                url,
                archive,
                sha256=expected,
                size=size,
                label=label or "release",
                progress=progress,
                retries=retries,
                timeout=timeout,
                retry_delay=RETRY_DELAY_S,
                lock=False,  # the archive lock is held
            )
        except IntegrityError as err:
            raise ChecksumError(_integrity_message(err, size is not None)) from err
        except DownloadError as err:
            raise HubError(str(err)) from err
        info = {"url": url, "name": entry.name if entry is not None else None}
        release = _install(root, archive, expected, info, entry)
        archive.unlink(missing_ok=True)
        return release


def _integrity_message(err: IntegrityError, registered: bool) -> str:
    """The hub's words for a download whose bytes are not the release's."""
    if err.what == "size":
        source = "the registry says" if registered else "expected"
        return (
            f"{err.url} is {err.actual} bytes but {source} {err.expected}: the hosted file is "
            "not the registered release; nothing was installed"
        )
    return (
        f"sha256 mismatch for {err.url}: expected {err.expected}, got {err.actual}. The archive "
        "is not the release it should be (corrupted in transit or replaced on the server) and "
        "was deleted; nothing was installed."
    )


def _check_archive_digest(
    path: Path, expected: str, size: int | None, origin: str, *, delete: bool
) -> None:
    actual_size = path.stat().st_size
    actual = _sha256_file(path)
    if actual == expected and (size is None or actual_size == size):
        return
    if delete:
        path.unlink(missing_ok=True)
    what = "was deleted; nothing was installed" if delete else "was not installed"
    raise ChecksumError(
        f"sha256 mismatch for {origin}: expected {expected}, got {actual} ({actual_size} bytes"
        + (f", expected {size}" if size is not None else "")
        + f"). The archive is not the release it should be (corrupted in transit or replaced "
        f"on the server) and {what}."
    )


# ------------------------------------------------------------------------------- extract
def _install(
    root: Path, archive: Path, sha256: str, info: dict[str, Any], entry: RegistryEntry | None
) -> Path:
    """Extract ``archive`` next to the cache's releases, verify it, then move it in place."""
    releases = root / "releases"
    releases.mkdir(parents=True, exist_ok=True)
    final = releases / sha256[:16]
    tmp = releases / f".tmp-{sha256[:16]}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        names = extract_archive(archive, tmp)
        verified = verify_release(tmp)
        unlisted = sorted(set(names) - {CHECKSUMS, *verified.files})
        if unlisted:
            raise UnsafeArchiveError(
                f"{info.get('url') or info.get('source')}: the archive holds files that "
                f"{CHECKSUMS} does not list: {', '.join(unlisted)}"
            )
        if entry is not None:
            _check_entry(entry, verified.config)
        marker = {"sha256": sha256, **info, "installed": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if final.exists():  # a broken earlier install (cache hits return before this)
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _check_entry(entry: RegistryEntry, config: dict[str, Any]) -> None:
    descriptor = config.get("descriptor") or {}
    for key in ("name", "hash", "dim"):
        want = entry.descriptor.get(key)
        if want is not None and descriptor.get(key) != want:
            raise HubError(
                f"registry entry {entry.name!r} says descriptor {key} {want!r} but the "
                f"release's {CONFIG} says {descriptor.get(key)!r}: the registry is wrong"
            )


def _cached_release(root: Path, sha256: str) -> Path | None:
    """The cached release of this archive if it is present, complete and still verifies."""
    path = root / "releases" / sha256[:16]
    marker = path / MARKER
    if not marker.is_file():
        return None
    try:
        if json.loads(marker.read_text("utf-8")).get("sha256") != sha256:
            return None
        verify_release(path)
    except (HubError, ValueError, OSError) as err:
        warnings.warn(f"cached release {path} is damaged ({err}); fetching it again", stacklevel=3)
        shutil.rmtree(path, ignore_errors=True)
        return None
    return path


# ------------------------------------------------------------------------------- helpers


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load((path / CONFIG).read_text("utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise HubError(f"cannot read {path / CONFIG}: {err}") from err
    if not isinstance(config, dict):
        raise HubError(f"{path / CONFIG} is not a mapping")
    return config


def _lock(root: Path, sha256: str) -> contextlib.AbstractContextManager[None]:
    """One process at a time per archive (e.g. every rank of a job calling load_pretrained)."""
    return file_lock(root / "locks" / f"{sha256[:16]}.lock")
