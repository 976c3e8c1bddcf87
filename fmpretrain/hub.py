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

See ``docs/hub.md``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import json
import os
import re
import shutil
import struct
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fmpretrain import release_format
from fmpretrain.download import CACHE_ENV as _CACHE_ENV
from fmpretrain.download import DownloadError, IntegrityError, fetch, file_lock
from fmpretrain.download import cache_root as _cache_root
from fmpretrain.download import sha256_file as _sha256_file
from fmpretrain.files import atomic_open, atomic_write_bytes

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

REGISTRY_SCHEMA = 1
REGISTRY_ENV = "FMPRETRAIN_REGISTRY"
CACHE_ENV = _CACHE_ENV
OFFLINE_ENV = "FMPRETRAIN_OFFLINE"
MARKER = ".fmpretrain-hub.json"
URL_SCHEMES = ("https", "http", "file")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
MODEL_SUMMARY_KEYS = ("hidden_channels", "num_layers", "num_heads", "num_rbf", "cutoff", "max_z")

CHUNK = 1 << 20
RETRY_DELAY_S = 1.0  # download retries wait RETRY_DELAY_S * (attempt - 1)
MAX_REGISTRY_BYTES = 16 << 20
MAX_SAFETENSORS_HEADER = 100 << 20


class HubError(RuntimeError):
    """A release could not be found, downloaded, extracted or verified."""


class ChecksumError(HubError):
    """Bytes on disk or on the wire differ from the recorded sha256 or size."""


class UnsafeArchiveError(HubError):
    """A release archive holds a member that could escape, or is not a plain file."""


class _Transient(Exception):
    """A download attempt failed in a way that a retry (resuming) may fix."""


# ------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class RegistryEntry:
    """One hosted release archive."""

    name: str
    url: str
    sha256: str
    size: int
    descriptor: dict[str, Any] = field(default_factory=dict)  # name, hash, dim
    model: dict[str, Any] = field(default_factory=dict)  # config summary + parameters
    format_version: int = RELEASE_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "entry") -> RegistryEntry:
        """Validate one registry entry (extra keys are ignored: newer registries may add some)."""
        if not isinstance(data, Mapping):
            raise HubError(f"{where}: a release entry must be a JSON object")
        missing = [k for k in ("name", "url", "sha256", "size") if k not in data]
        if missing:
            raise HubError(f"{where}: missing {', '.join(missing)}")
        name, url, sha256, size = data["name"], data["url"], data["sha256"], data["size"]
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise HubError(
                f"{where}: name {name!r} must be letters, digits, '.', '_', '+' or '-' (no '/')"
            )
        where = f"{where} ({name})"
        if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in URL_SCHEMES:
            raise HubError(
                f"{where}: url {url!r} must be an absolute https://, http:// or file:// URL"
            )
        sha256 = _check_sha256(sha256, where)
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise HubError(f"{where}: size must be a positive number of bytes, got {size!r}")
        descriptor = data.get("descriptor", {})
        model = data.get("model", {})
        if not isinstance(descriptor, Mapping) or not isinstance(model, Mapping):
            raise HubError(f"{where}: descriptor and model must be JSON objects")
        format_version = data.get("format_version", RELEASE_FORMAT)
        if not isinstance(format_version, int) or isinstance(format_version, bool):
            raise HubError(f"{where}: format_version must be an integer")
        return cls(name, url, sha256, size, dict(descriptor), dict(model), format_version)


def load_registry(
    registry: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    timeout: float = 30.0,
) -> dict[str, RegistryEntry]:
    """The releases of a registry, by name.

    ``registry`` is a JSON file path or an http(s)/file URL; by default ``FMPRETRAIN_REGISTRY``,
    else the registry shipped with the package. A registry read from a URL is kept in the cache;
    when the URL cannot be reached (or ``FMPRETRAIN_OFFLINE=1``) that copy is used.
    """
    source = _registry_source(registry)
    if source is None:
        shipped = resources.files("fmpretrain").joinpath("releases.json")
        return parse_registry(
            shipped.read_text("utf-8"),
            "the shipped registry fmpretrain/releases.json",
            base=Path(str(shipped)).parent,
        )
    scheme = urllib.parse.urlsplit(source).scheme
    if scheme not in ("http", "https"):
        path = _local_path(source)
        if not path.is_file():
            raise HubError(f"registry {source} does not exist")
        return parse_registry(path.read_text("utf-8"), f"registry {source}", base=path.parent)

    copy = _cache_root(cache_dir) / "registries" / f"{_sha256_text(source)[:16]}.json"
    try:
        if _offline():
            raise _Transient(f"{OFFLINE_ENV} is set")
        text = _http_get_small(source, timeout, MAX_REGISTRY_BYTES).decode("utf-8")
        entries = parse_registry(text, f"registry {source}")
    except _Transient as err:
        if not copy.is_file():
            raise HubError(f"cannot read registry {source}: {err} (and no cached copy)") from err
        warnings.warn(
            f"cannot read registry {source} ({err}); using the copy cached on "
            f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(copy.stat().st_mtime))}",
            stacklevel=2,
        )
        return parse_registry(copy.read_text("utf-8"), f"cached registry {copy}")
    atomic_write_bytes(copy, text.encode("utf-8"))
    return entries


def parse_registry(
    text: str, where: str = "registry", *, base: Path | None = None
) -> dict[str, RegistryEntry]:
    """Validate a registry document: ``{"schema_version": 1, "releases": [entry, ...]}``.

    In a registry read from a local file (``base``: its folder; the shipped registry too), an
    entry's ``url`` may be a relative path (``releases/NAME.tar.gz``): it is resolved against
    that folder into a ``file://`` URL, so a release can ship inside the package.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise HubError(f"{where} is not valid JSON: {err}") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("releases"), list):
        raise HubError(f'{where} must be a JSON object with a "releases" list')
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise HubError(f"{where}: schema_version must be a positive integer, got {version!r}")
    if version > REGISTRY_SCHEMA:
        raise HubError(
            f"{where} has schema_version {version}; this fmpretrain reads up to "
            f"{REGISTRY_SCHEMA}: upgrade fmpretrain"
        )
    entries: dict[str, RegistryEntry] = {}
    for i, data in enumerate(doc["releases"]):
        url = data.get("url") if isinstance(data, Mapping) else None
        if base is not None and isinstance(url, str) and _is_relative_path(url):
            data = {**data, "url": (base / url).resolve().as_uri()}
        entry = RegistryEntry.from_dict(data, f"{where}: release {i}")
        if entry.name in entries:
            raise HubError(f"{where}: release name {entry.name!r} appears twice")
        entries[entry.name] = entry
    return entries


def _is_relative_path(url: str) -> bool:
    return not urllib.parse.urlsplit(url).scheme and not url.startswith(("/", "\\"))


# ------------------------------------------------------------------------------- publish
def pack_release(release_dir: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write a deterministic ``.tar.gz`` (``.tar`` if ``out`` ends so) of a verified release.

    Members: ``SHA256SUMS`` and every file it lists, at the archive root, sorted by name, with
    mtime 0, mode 0644, owner 0/0 and no user names; the gzip header holds no name or time.
    The same release gives the same bytes (and sha256) whenever and wherever it is packed.
    """
    release_dir = Path(release_dir)
    listed = verify_release(release_dir).files
    names = sorted({CHECKSUMS, *listed})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "wb") as raw:
        if out.name.endswith(".tar"):
            _write_tar(raw, release_dir, names)
        else:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                _write_tar(gz, release_dir, names)
    return out


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
VerifiedRelease = release_format.VerifiedRelease  # path, sums, files, config


def verify_release(path: str | os.PathLike[str]) -> VerifiedRelease:
    """:func:`fmpretrain.release_format.verify_release` (THE verifier: every file listed in
    ``SHA256SUMS``, the format and the config schema) with the hub's error types."""
    try:
        return release_format.verify_release(path)
    except release_format.ChecksumError as err:
        raise ChecksumError(f"release {path} failed verification: {err.reason}") from err
    except release_format.ReleaseError as err:
        raise HubError(str(err)) from err


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
    ``hf://`` address through :func:`fmpretrain.hf.download` (``cache_dir`` is then the
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
        expected = _check_sha256(sha256, "--sha256") if sha256 else _sha256_file(path)
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
    """:func:`fmpretrain.hf.download` with the hub's error types."""
    from fmpretrain import hf

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
            expected = _check_sha256(sha256, "--sha256")
        else:
            entries = load_registry(registry, cache_dir=root).values()
            entry = next((e for e in entries if e.url == url), None)
            if entry is None:
                raise HubError(
                    f"{url} is not in the registry ({_registry_label(registry)}), so its "
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
                f"{source!r} is not a release in the registry ({_registry_label(registry)}; "
                f"releases: {known}), an existing path or a URL"
            )
        entry = entries[source]
        url, expected = entry.url, entry.sha256
        if sha256 is not None and _check_sha256(sha256, "--sha256") != expected:
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
        if _offline():
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
        names = _extract(archive, tmp)
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


def _extract(archive: Path, dest: Path) -> list[str]:
    """Write the regular files of a tar(.gz) under ``dest``; refuse anything that could escape.

    Members must be regular files (or directories, skipped) with relative names free of '..';
    links, devices and absolute names are refused before anything is written. One top-level
    folder around the release (``tar czf x.tar.gz release/``) is stripped.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            files: list[tuple[tarfile.TarInfo, tuple[str, ...]]] = []
            for member in members:
                parts = _safe_parts(member.name, f"archive member {member.name!r}")
                if member.isdir():
                    continue
                if not member.isreg():
                    raise UnsafeArchiveError(
                        f"archive member {member.name!r} is not a regular file (link, device "
                        "or fifo): refused"
                    )
                files.append((member, parts))
            if not files:
                raise HubError(f"{archive} holds no files")
            roots = {parts[0] for _, parts in files}
            flat = any(parts == (CHECKSUMS,) for _, parts in files)
            if not flat and len(roots) == 1 and all(len(p) > 1 for _, p in files):
                files = [(m, p[1:]) for m, p in files]
            names = ["/".join(p) for _, p in files]
            if len(set(names)) != len(names):
                raise UnsafeArchiveError(f"{archive} holds the same file twice")
            base = dest.resolve()
            for (member, parts), name in zip(files, names, strict=True):
                target = dest.joinpath(*parts)
                if not target.resolve().is_relative_to(base):
                    raise UnsafeArchiveError(f"archive member {name!r} escapes the release")
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None  # regular file
                with source, open(target, "xb") as out:
                    shutil.copyfileobj(source, out, CHUNK)
            return names
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise HubError(f"{archive} is not a readable tar/tar.gz archive: {err}") from err


def _safe_parts(name: str, where: str) -> tuple[str, ...]:
    """The path components of a relative, traversal-free member name (``./`` is dropped)."""
    if (
        not name
        or "\x00" in name
        or "\\" in name
        or name.startswith("/")
        or re.match(r"^[A-Za-z]:", name)
    ):
        raise UnsafeArchiveError(f"{where}: absolute or malformed path refused")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(f"{where}: '..' in the path refused (path traversal)")
    if not parts:
        raise UnsafeArchiveError(f"{where}: empty path refused")
    return parts


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
def _write_tar(fileobj: Any, release_dir: Path, names: list[str]) -> None:
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            path = release_dir / name
            info = tarfile.TarInfo(name)
            info.size = path.stat().st_size
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(path, "rb") as handle:
                tar.addfile(info, handle)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load((path / CONFIG).read_text("utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise HubError(f"cannot read {path / CONFIG}: {err}") from err
    if not isinstance(config, dict):
        raise HubError(f"{path / CONFIG} is not a mapping")
    return config


def _registry_source(registry: str | os.PathLike[str] | None) -> str | None:
    if registry is not None:
        return os.fspath(registry)
    return os.environ.get(REGISTRY_ENV) or None


def _registry_label(registry: str | os.PathLike[str] | None) -> str:
    source = _registry_source(registry)
    return source if source is not None else "the shipped registry"


def _local_path(source: str) -> Path:
    parsed = urllib.parse.urlsplit(source)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    return Path(source).expanduser()


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").lower() in ("1", "true", "yes", "on")


def _http_get_small(url: str, timeout: float, limit: int) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": _user_agent()})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read(limit + 1)
    except urllib.error.HTTPError as err:
        err.close()
        raise HubError(f"cannot read {url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise _Transient(str(getattr(err, "reason", err))) from err
    if len(data) > limit:
        raise HubError(f"{url} is larger than {limit} bytes: not a registry")
    return data


def _check_sha256(value: Any, where: str) -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    if not isinstance(text, str) or not SHA256_PATTERN.match(text):
        raise HubError(f"{where}: sha256 must be 64 hexadecimal digits, got {value!r}")
    return text


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _user_agent() -> str:
    from fmpretrain import __version__

    return f"fmpretrain/{__version__} (+urllib)"


def _lock(root: Path, sha256: str) -> contextlib.AbstractContextManager[None]:
    """One process at a time per archive (e.g. every rank of a job calling load_pretrained)."""
    return file_lock(root / "locks" / f"{sha256[:16]}.lock")
