"""The release archive: verify a release directory, pack it into a deterministic ``.tar.gz``,
extract an archive safely (regular files only, no path that could escape)."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Any

from fmpretrain import release_format
from fmpretrain.files import atomic_open
from fmpretrain.hub.errors import ChecksumError, HubError, UnsafeArchiveError

CHECKSUMS = release_format.CHECKSUMS
VerifiedRelease = release_format.VerifiedRelease  # path, sums, files, config
CHUNK = 1 << 20


def verify_release(path: str | os.PathLike[str]) -> VerifiedRelease:
    """:func:`fmpretrain.release_format.verify_release` (THE verifier: every file listed in
    ``SHA256SUMS``, the format and the config schema) with the hub's error types."""
    try:
        return release_format.verify_release(path)
    except release_format.ChecksumError as err:
        raise ChecksumError(f"release {path} failed verification: {err.reason}") from err
    except release_format.ReleaseError as err:
        raise HubError(str(err)) from err


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
            write_tar(raw, release_dir, names)
        else:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                write_tar(gz, release_dir, names)
    return out


def write_tar(fileobj: Any, release_dir: Path, names: list[str]) -> None:
    """The files ``names`` of ``release_dir`` as a tar with no times, owners or user names."""
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


def extract_archive(archive: Path, dest: Path) -> list[str]:
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
                parts = safe_parts(member.name, f"archive member {member.name!r}")
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


def safe_parts(name: str, where: str) -> tuple[str, ...]:
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
