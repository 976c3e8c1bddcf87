"""Releases on the Hugging Face Hub: ``hf://org/repo[@revision][/subfolder]`` addresses.

:func:`download` fetches a release's files through ``huggingface_hub`` (its cache, its retries
and HTTP Range resume) and then checks them with the release's own ``SHA256SUMS`` through THE
verifier, :func:`fmpretrain.release_format.verify_release`: bytes that the hub delivers but
that differ from ``SHA256SUMS`` are refused. :func:`publish` verifies a release directory and
uploads exactly ``SHA256SUMS`` and the files it lists in one commit.

Environment, read at each call: ``HF_ENDPOINT`` (the hub's URL), ``HF_HUB_CACHE`` / ``HF_HOME``
(the cache, ``$HF_HOME/hub``), ``HF_HUB_OFFLINE=1`` or ``FMPRETRAIN_OFFLINE=1`` (cache only,
no request), ``HF_TOKEN`` (else the token of ``hf auth login``). See ``docs/hub.md``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmpretrain import release_format
from fmpretrain.hub.errors import HubError
from fmpretrain.hub.registry import OFFLINE_ENV

__all__ = [
    "SCHEME",
    "HfAddress",
    "HfError",
    "Publication",
    "download",
    "endpoint",
    "hub_cache",
    "is_hf",
    "offline",
    "parse",
    "publish",
]

logger = logging.getLogger(__name__)

SCHEME = "hf://"
#: The files of a release fetched first; any other file ``SHA256SUMS`` lists is fetched after.
RELEASE_FILES = (
    release_format.CHECKSUMS,
    release_format.WEIGHTS,
    release_format.CONFIG,
    release_format.MODEL_CARD,
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REPO_TYPES = ("datasets", "spaces", "models", "kernels", "buckets")


class HfError(HubError):
    """An ``hf://`` address is malformed, or the hub could not give or take a release."""


@dataclass(frozen=True)
class HfAddress:
    """A parsed ``hf://org/repo[@revision][/subfolder]`` address (a model repository)."""

    repo_id: str
    revision: str | None = None
    subfolder: str = ""

    def __str__(self) -> str:
        text = SCHEME + self.repo_id
        if self.revision is not None:
            text += "@" + urllib.parse.quote(self.revision, safe="")
        return text + (f"/{self.subfolder}" if self.subfolder else "")

    def pinned(self, commit: str) -> HfAddress:
        """The same address at ``commit``."""
        return HfAddress(self.repo_id, commit, self.subfolder)


@dataclass(frozen=True)
class Publication:
    """What :func:`publish` uploaded: the address pinned to the new commit, and the files."""

    address: HfAddress
    commit: str
    commit_url: str
    files: tuple[str, ...]


# ------------------------------------------------------------------------------ addresses
def is_hf(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` is an ``hf://`` address."""
    return isinstance(source, str) and source.startswith(SCHEME)


def parse(address: str | HfAddress) -> HfAddress:
    """Parse ``hf://org/repo[@revision][/subfolder]``.

    ``revision`` is a branch, a tag or a commit hash (URL-encode a ``/`` in it:
    ``@refs%2Fpr%2F1``); ``subfolder`` is the release's folder inside the repository.
    """
    if isinstance(address, HfAddress):
        return address
    if not is_hf(address):
        raise HfError(f"{address!r} is not an hf:// address (want hf://ORG/REPO[@REVISION][/DIR])")
    parts = address[len(SCHEME) :].split("/")
    while parts and parts[-1] == "":
        parts.pop()
    if len(parts) >= 3 and parts[0] in _REPO_TYPES:
        raise HfError(f"{address}: only model repositories hold releases (drop '{parts[0]}/')")
    if len(parts) < 2:
        raise HfError(f"{address}: an hf:// address needs ORG/REPO, e.g. hf://my-org/my-model")
    org, name = parts[0], parts[1]
    revision = None
    if "@" in name:
        name, revision = name.split("@", 1)
        revision = urllib.parse.unquote(revision)
        if not revision or revision != revision.strip() or any(c.isspace() for c in revision):
            raise HfError(f"{address}: empty or malformed revision after '@'")
    for part in (org, name):
        if not _NAME.match(part) or "--" in part or ".." in part or part.endswith((".", "-")):
            raise HfError(
                f"{address}: {part!r} is not a valid name (letters, digits, '-', '_', '.'; "
                "no '--' or '..'; at most 96 characters)"
            )
    sub = parts[2:]
    if any(p in ("", ".", "..") or "@" in p for p in sub):
        raise HfError(f"{address}: malformed subfolder {'/'.join(sub)!r}")
    return HfAddress(f"{org}/{name}", revision, "/".join(sub))


# ------------------------------------------------------------------------------ settings
def endpoint() -> str:
    """The hub's URL: ``HF_ENDPOINT`` now, else huggingface_hub's default."""
    value = os.environ.get("HF_ENDPOINT")
    if not value:
        from huggingface_hub import constants

        value = constants.ENDPOINT
    return value.rstrip("/")


def hub_cache(cache: str | os.PathLike[str] | None = None) -> Path:
    """The hub cache: ``cache``, else ``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else the default."""
    if cache is not None:
        return Path(cache).expanduser()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def offline() -> bool:
    """``HF_HUB_OFFLINE`` or ``FMPRETRAIN_OFFLINE`` is set (to 1/true/yes/on)."""
    truthy = ("1", "true", "yes", "on")
    env = os.environ
    hf_value = env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE") or ""
    return (hf_value.strip().lower() in truthy) or (
        env.get(OFFLINE_ENV, "").strip().lower() in truthy
    )


# ------------------------------------------------------------------------------ download
def download(
    address: str | HfAddress,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    progress: bool | None = None,
) -> Path:
    """The verified local directory of the release at ``address`` (fetched into the hub cache).

    Only the release's files are fetched: ``SHA256SUMS``, the weights, the config and the
    model card, then any other file ``SHA256SUMS`` lists. A cached snapshot costs one metadata
    request for a branch or tag and none for a commit hash (or offline). A file that differs
    from ``SHA256SUMS`` is fetched once more; if it still differs the release is refused
    (:class:`fmpretrain.release_format.ChecksumError`). ``cache_dir``: the hub cache (default
    :func:`hub_cache`); ``token``: for private repositories (default: ``HF_TOKEN``, else the
    login's); ``progress``: progress bars (default: on a terminal).
    """
    addr = parse(address)
    cache = hub_cache(cache_dir)
    quiet = progress is False or (progress is None and not sys.stderr.isatty())
    snapshot = _snapshot(addr, addr.revision, _patterns(addr, RELEASE_FILES), cache, token, quiet)
    commit = snapshot.name
    release = snapshot / addr.subfolder if addr.subfolder else snapshot
    if not (release / release_format.CHECKSUMS).is_file():
        where = f"folder {addr.subfolder!r} of the " if addr.subfolder else ""
        raise HfError(
            f"{addr}: the {where}repository at {commit[:12]} holds no "
            f"{release_format.CHECKSUMS}, so it is not an fmpretrain release (publish one "
            f"with: fmpretrain publish RELEASE_DIR --to {addr})"
        )
    listed = release_format.read_checksums(release)
    missing = [name for name in listed if not (release / name).is_file()]
    if missing:  # files beyond the usual four: fetch them from the same commit
        _snapshot(addr, commit, _patterns(addr, missing), cache, token, quiet)
    try:
        verified = release_format.verify_release(release)  # THE verifier
    except release_format.ChecksumError:
        if offline() or any(not (release / name).is_file() for name in listed):
            raise  # nothing to fetch again: the hub lacks a listed file, or we may not ask
        bad = [name for name, digest in listed.items() if not _matches(release / name, digest)]
        logger.warning(
            "%s: %s differ(s) from %s; fetching again",
            addr,
            ", ".join(bad),
            release_format.CHECKSUMS,
        )
        _refetch(addr, commit, bad, cache, token, quiet)
        verified = release_format.verify_release(release)  # still different: refused
    logger.info("%s: verified release in %s", addr, verified.path)
    return verified.path


def _patterns(addr: HfAddress, names: Sequence[str]) -> list[str]:
    """Exact repository paths (glob characters escaped) of ``names`` in the release folder."""
    prefix = f"{addr.subfolder}/" if addr.subfolder else ""
    return [re.sub(r"([*?\[])", r"[\1]", prefix + name) for name in names]


def _matches(path: Path, digest: str) -> bool:
    return release_format.sha256_file(path) == digest


def _snapshot(
    addr: HfAddress,
    revision: str | None,
    patterns: list[str],
    cache: Path,
    token: str | bool | None,
    quiet: bool,
) -> Path:
    """``snapshot_download`` of ``patterns`` into ``cache``; hub errors become one line."""
    from huggingface_hub import snapshot_download

    local_only = offline()
    try:
        path = snapshot_download(
            addr.repo_id,
            revision=revision,
            cache_dir=cache,
            endpoint=endpoint(),
            token=token,
            local_files_only=local_only,
            allow_patterns=patterns,
            library_name="fmpretrain",
            library_version=_version(),
            tqdm_class=_quiet_tqdm() if quiet else None,
        )
    except Exception as err:  # huggingface_hub raises many types; all become one line here
        raise _hub_error(addr, err, cache, local_only) from err
    return Path(path)


def _refetch(
    addr: HfAddress,
    commit: str,
    names: list[str],
    cache: Path,
    token: str | bool | None,
    quiet: bool,
) -> None:
    """Download ``names`` of ``commit`` again (replacing the cached blobs)."""
    from huggingface_hub import hf_hub_download

    prefix = f"{addr.subfolder}/" if addr.subfolder else ""
    for name in names:
        try:
            hf_hub_download(
                addr.repo_id,
                prefix + name,
                revision=commit,
                cache_dir=cache,
                endpoint=endpoint(),
                token=token,
                force_download=True,
                library_name="fmpretrain",
                library_version=_version(),
                tqdm_class=_quiet_tqdm() if quiet else None,
            )
        except Exception as err:
            raise _hub_error(addr, err, cache, False) from err


def _hub_error(addr: HfAddress, err: Exception, cache: Path, local_only: bool) -> HfError:
    """A one-line :class:`HfError` for an exception raised by huggingface_hub."""
    from huggingface_hub import errors

    url = endpoint()
    if isinstance(err, errors.RevisionNotFoundError):
        return HfError(f"{addr}: revision {addr.revision!r} does not exist on {url}")
    if isinstance(err, errors.RepositoryNotFoundError):
        return HfError(
            f"{addr}: repository {addr.repo_id} not found on {url} (or it is private or gated: "
            "set HF_TOKEN or run `hf auth login`)"
        )
    if isinstance(err, errors.LocalEntryNotFoundError):
        if local_only:
            return HfError(
                f"{addr}: offline (HF_HUB_OFFLINE or {OFFLINE_ENV} is set) and the release is "
                f"not in the cache {cache}; download it once with network access"
            )
        return HfError(
            f"{addr}: cannot reach {url} and the release is not in the cache {cache} "
            f"({_first_line(err.__cause__ or err)})"
        )
    if isinstance(err, errors.HfHubHTTPError):
        return HfError(f"{addr}: the hub at {url} answered: {_first_line(err)}")
    return HfError(f"{addr}: talking to {url} failed: {type(err).__name__}: {_first_line(err)}")


# ------------------------------------------------------------------------------ publish
def publish(
    release_dir: str | os.PathLike[str],
    address: str | HfAddress,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
) -> Publication:
    """Verify ``release_dir`` and upload ``SHA256SUMS`` and the files it lists to ``address``.

    The repository is created if needed (``private``: its visibility then); a revision in
    the address names a branch, created from the default branch if needed; a subfolder is the
    folder the files go to. Other files in the directory are not uploaded. The token is
    ``token``, else ``HF_TOKEN``, else the one of ``hf auth login``.
    """
    from huggingface_hub import HfApi, get_token

    addr = parse(address)
    if addr.revision is not None and _COMMIT.match(addr.revision):
        raise HfError(f"{addr}: cannot publish to a commit hash; name a branch or none")
    verified = release_format.verify_release(release_dir)  # a damaged release never leaves
    files = tuple(sorted({release_format.CHECKSUMS, *verified.files}))
    if offline():
        raise HfError(f"{addr}: offline (HF_HUB_OFFLINE or {OFFLINE_ENV} is set): cannot publish")
    token = token or get_token()
    if not token:
        raise HfError(
            f"{addr}: no Hugging Face token: set HF_TOKEN (a write token) or run `hf auth login`"
        )
    api = HfApi(endpoint=endpoint(), token=token, library_name="fmpretrain",
                library_version=_version())  # fmt: skip
    message = commit_message or f"Upload fmpretrain release {verified.path.name}"
    try:
        api.create_repo(addr.repo_id, exist_ok=True, private=private)
        if addr.revision is not None:
            api.create_branch(addr.repo_id, branch=addr.revision, exist_ok=True)
        info = api.upload_folder(
            repo_id=addr.repo_id,
            folder_path=verified.path,
            path_in_repo=addr.subfolder or None,
            revision=addr.revision,
            allow_patterns=_patterns(HfAddress(addr.repo_id), files),
            commit_message=message,
        )
    except Exception as err:
        if _is_auth_error(err):
            raise HfError(
                f"{addr}: the hub at {endpoint()} refused the token (HTTP "
                f"{err.response.status_code}): use a write token with access to "
                f"{addr.repo_id.split('/')[0]}"
            ) from err
        raise _hub_error(addr, err, hub_cache(), False) from err
    commit = str(info.oid)
    logger.info("published %s (%d files) to %s at %s", verified.path, len(files), addr, commit)
    return Publication(addr.pinned(commit), commit, str(info.commit_url), files)


def _is_auth_error(err: Exception) -> bool:
    response: Any = getattr(err, "response", None)
    return response is not None and getattr(response, "status_code", None) in (401, 403)


# ------------------------------------------------------------------------------ helpers
def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _quiet_tqdm() -> type:
    from huggingface_hub.utils import tqdm as hf_tqdm

    class Quiet(hf_tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Quiet


def _version() -> str:
    from fmpretrain import __version__

    return __version__
