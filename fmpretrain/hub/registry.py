"""Registries: JSON documents listing release archives by name with URL, sha256 and size;
read from the package, a file or a URL (with a cached copy for when the URL is unreachable)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fmpretrain import release_format
from fmpretrain.download import cache_root
from fmpretrain.files import atomic_write_bytes
from fmpretrain.hub.errors import HubError, Transient

RELEASE_FORMAT = release_format.FORMAT_VERSION
REGISTRY_SCHEMA = 1
REGISTRY_ENV = "FMPRETRAIN_REGISTRY"
OFFLINE_ENV = "FMPRETRAIN_OFFLINE"
URL_SCHEMES = ("https", "http", "file")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
MAX_REGISTRY_BYTES = 16 << 20


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
        sha256 = check_sha256(sha256, where)
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
    source = registry_source(registry)
    if source is None:
        shipped = resources.files("fmpretrain").joinpath("releases.json")
        return parse_registry(
            shipped.read_text("utf-8"),
            "the shipped registry fmpretrain/releases.json",
            base=Path(str(shipped)).parent,
        )
    scheme = urllib.parse.urlsplit(source).scheme
    if scheme not in ("http", "https"):
        path = local_path(source)
        if not path.is_file():
            raise HubError(f"registry {source} does not exist")
        return parse_registry(path.read_text("utf-8"), f"registry {source}", base=path.parent)

    copy = cache_root(cache_dir) / "registries" / f"{sha256_text(source)[:16]}.json"
    try:
        if offline():
            raise Transient(f"{OFFLINE_ENV} is set")
        text = http_get_small(source, timeout, MAX_REGISTRY_BYTES).decode("utf-8")
        entries = parse_registry(text, f"registry {source}")
    except Transient as err:
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
        if base is not None and isinstance(url, str) and is_relative_path(url):
            data = {**data, "url": (base / url).resolve().as_uri()}
        entry = RegistryEntry.from_dict(data, f"{where}: release {i}")
        if entry.name in entries:
            raise HubError(f"{where}: release name {entry.name!r} appears twice")
        entries[entry.name] = entry
    return entries


def is_relative_path(url: str) -> bool:
    return not urllib.parse.urlsplit(url).scheme and not url.startswith(("/", "\\"))


def registry_source(registry: str | os.PathLike[str] | None) -> str | None:
    if registry is not None:
        return os.fspath(registry)
    return os.environ.get(REGISTRY_ENV) or None


def registry_label(registry: str | os.PathLike[str] | None) -> str:
    source = registry_source(registry)
    return source if source is not None else "the shipped registry"


def local_path(source: str) -> Path:
    parsed = urllib.parse.urlsplit(source)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    return Path(source).expanduser()


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").lower() in ("1", "true", "yes", "on")


def http_get_small(url: str, timeout: float, limit: int) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": user_agent()})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read(limit + 1)
    except urllib.error.HTTPError as err:
        err.close()
        raise HubError(f"cannot read {url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise Transient(str(getattr(err, "reason", err))) from err
    if len(data) > limit:
        raise HubError(f"{url} is larger than {limit} bytes: not a registry")
    return data


def check_sha256(value: Any, where: str) -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    if not isinstance(text, str) or not SHA256_PATTERN.match(text):
        raise HubError(f"{where}: sha256 must be 64 hexadecimal digits, got {value!r}")
    return text


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def user_agent() -> str:
    from fmpretrain import __version__

    return f"fmpretrain/{__version__} (+urllib)"
