"""Read and write structure files as :class:`~fmpretrain.structures.Structure` records.

Reading (:func:`read_structures`), format chosen from the file name unless ``format`` is given;
one module per family of formats:

* :mod:`~fmpretrain.io.ase_files` -- every format ``ase.io`` reads (extxyz/xyz, CIF,
  POSCAR/CONTCAR/``*.vasp``, ``*.traj``...; also gzip/bz2/xz compressed), one frame at a time.
* :mod:`~fmpretrain.io.ase_db` -- ASE databases: SQLite ``*.db`` and ASE-LMDB ``*.aselmdb``
  (OMat24; needs ``ase-db-backends``), read in pages of rows.
* :mod:`~fmpretrain.io.json_records` -- JSON (``*.json``, ``.gz``/``.bz2``/``.xz``), streamed
  with ``ijson``: MatBench tables, MP-style records, pymatgen dicts, MatDeepLearn lists,
  :mod:`~fmpretrain.io.alexandria` entries, :mod:`~fmpretrain.io.mptrj` trajectories.
* :mod:`~fmpretrain.io.cdvae_csv` -- CDVAE / DiffCSP / MatterGen CSV (``*.csv``).

Ids: whatever the format provides, else ``"{file stem}:{index}"`` (0-based position in the
file). Entry-level errors: a bad entry (unknown element, disordered site, malformed record...)
is named by file, index, id and reason, and the rest of the file is read; ``errors="raise"``
(the default) raises it as :class:`StructureReadError`, ``errors="collect"`` yields it as a
:class:`ReadFailure` in place of the structure. A file that cannot be opened or parsed further
(truncated JSON, an extxyz frame ASE cannot parse) ends with one ``fatal`` failure. Readers do
not :func:`~fmpretrain.structures.validate`; callers do.

Writing (:func:`write_structures`): extxyz, MatBench split JSON, MP-style and MatDeepLearn JSON
lists, ASE SQLite databases, and any other ``ase.io.write`` format.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal, overload

from fmpretrain.io._common import (
    COMPRESSION_SUFFIXES,
    ID_KEYS,
    ReadFailure,
    StructureReadError,
    describe,
    strip_compression,
)
from fmpretrain.io.mptrj import FRAMES
from fmpretrain.io.writers import write_structures
from fmpretrain.structures import Structure

__all__ = [
    "COMPRESSION_SUFFIXES",
    "ID_KEYS",
    "STRUCTURE_SUFFIXES",
    "ReadFailure",
    "StructureReadError",
    "iter_structure_files",
    "read_structures",
    "write_structures",
]

#: File name endings (after stripping compression) treated as structure files in directories.
STRUCTURE_SUFFIXES = (
    ".extxyz",
    ".xyz",
    ".cif",
    ".vasp",
    ".poscar",
    ".traj",
    ".db",
    ".aselmdb",
    ".json",
)

_JSON_FORMATS = {"json", "json.gz", "matbench", "mp", "pymatgen", "matdeeplearn"}
_JSON_FORMATS |= {"alexandria", "mptrj"}
_DB_FORMATS = {"db", "ase-db", "ase_db", "sqlite"}
_LMDB_FORMATS = {"aselmdb", "ase-lmdb", "lmdb"}
_CSV_FORMATS = {"csv", "cdvae"}
ERRORS = ("raise", "collect")


@overload
def read_structures(
    path: str | os.PathLike[str],
    *,
    format: str | None = ...,
    errors: Literal["raise"] = ...,
    frames: str = ...,
) -> Iterator[Structure]: ...


@overload
def read_structures(
    path: str | os.PathLike[str],
    *,
    format: str | None = ...,
    errors: Literal["collect"],
    frames: str = ...,
) -> Iterator[Structure | ReadFailure]: ...


def read_structures(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    errors: str = "raise",
    frames: str = "all",
) -> Iterator[Structure] | Iterator[Structure | ReadFailure]:
    """Yield the structures in ``path`` one at a time (see the module docstring for formats).

    ``format`` overrides detection from the file name: ``"json"`` (any JSON flavour, detected
    from the content), ``"db"`` (ASE SQLite), ``"aselmdb"``, ``"csv"`` or an ``ase.io`` format
    name such as ``"extxyz"``. ``errors="raise"`` raises :class:`StructureReadError` at the
    first bad entry; ``errors="collect"`` yields a :class:`ReadFailure` for each bad entry (and
    one ``fatal`` failure for an unreadable file or its unreadable rest) and never raises for
    the file's content. ``frames`` (``"all"`` or ``"last"``) picks the MPtrj frames kept per
    material; other formats ignore it. A file that holds no structure is an error.
    """
    if errors not in ERRORS:
        raise ValueError(f"errors must be one of {ERRORS}, got {errors!r}")
    if frames not in FRAMES:
        raise ValueError(f"frames must be one of {FRAMES}, got {frames!r}")
    if errors == "collect":
        return _collect(Path(path), format, frames)
    return _raise(Path(path), format, frames)


def _raise(path: Path, format: str | None, frames: str) -> Iterator[Structure]:
    for item in _read(path, format, frames):
        if isinstance(item, ReadFailure):
            raise StructureReadError.from_failure(item)
        yield item


def _collect(path: Path, format: str | None, frames: str) -> Iterator[Structure | ReadFailure]:
    try:
        yield from _read(path, format, frames)
    except StructureReadError as err:
        yield err.failure
    except Exception as err:  # a reader bug or an OS error: still one failure, never a crash
        yield ReadFailure(path, f"cannot read: {describe(err)}", fatal=True)


def _read(path: Path, format: str | None, frames: str) -> Iterator[Structure | ReadFailure]:
    """Structures and entry failures; raises :class:`StructureReadError` when it must stop."""
    if not path.exists():
        raise StructureReadError(path, "no such file")
    if path.is_dir():
        raise StructureReadError(path, "is a directory (use iter_structure_files to expand it)")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise StructureReadError(path, f"cannot read: {err}") from err
    if size == 0:
        raise StructureReadError(path, "file is empty")
    kind, ase_format = _detect_format(path, format)
    if kind == "json":
        from fmpretrain.io.json_records import read_json

        reader = read_json(path, frames)
    elif kind in ("db", "aselmdb"):
        from fmpretrain.io.ase_db import read_ase_db

        reader = read_ase_db(path, kind)
    elif kind == "csv":
        from fmpretrain.io.cdvae_csv import read_cif_csv

        reader = read_cif_csv(path)
    else:
        from fmpretrain.io.ase_files import read_ase

        reader = read_ase(path, ase_format)
    count = 0
    for item in reader:
        count += 1
        yield item
    if count == 0:
        raise StructureReadError(path, "contains no structures")


def _detect_format(path: Path, format: str | None) -> tuple[str, str | None]:
    """``("json" | "db" | "aselmdb" | "csv" | "ase", ase format name or None)``."""
    if format is not None:
        key = format.lower()
        for kind, names in (
            ("json", _JSON_FORMATS),
            ("db", _DB_FORMATS),
            ("aselmdb", _LMDB_FORMATS),
            ("csv", _CSV_FORMATS),
        ):
            if key in names:
                return kind, None
        return "ase", format
    name = strip_compression(path.name.lower())
    for suffix, kind in ((".json", "json"), (".db", "db"), (".aselmdb", "aselmdb")):
        if name.endswith(suffix):
            return kind, None
    if name.endswith(".csv"):
        return "csv", None
    return "ase", None


def iter_structure_files(
    paths_or_globs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
) -> Iterator[Path]:
    """Expand files, directories and glob patterns into structure files, deterministically.

    A file named explicitly or matched by a glob (``**`` recurses) is yielded as is; a
    directory is searched recursively for files whose names look like structure files
    (:data:`STRUCTURE_SUFFIXES`, optionally compressed, and ``POSCAR*``/``CONTCAR*``), hidden
    files and folders excluded. Matches are sorted within each argument; arguments keep their
    order; a file reached twice is yielded once. A missing path or a glob matching nothing
    raises :class:`FileNotFoundError`.
    """
    if isinstance(paths_or_globs, (str, os.PathLike)):
        paths_or_globs = [paths_or_globs]
    seen: set[Path] = set()
    for item in paths_or_globs:
        text = os.fspath(item)
        if any(c in text for c in "*?["):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise FileNotFoundError(f"no files match {text!r}")
        else:
            if not Path(text).exists():
                raise FileNotFoundError(f"no such file or directory: {text}")
            matches = [text]
        for match in matches:
            root = Path(match)
            if root.is_dir():
                found = sorted(
                    (
                        p
                        for p in root.rglob("*")
                        if p.is_file()
                        and not any(part.startswith(".") for part in p.relative_to(root).parts)
                        and _looks_like_structure_file(p)
                    ),
                    key=lambda p: p.as_posix(),
                )
            else:
                found = [root]
            for p in found:
                key = p.resolve()
                if key not in seen:
                    seen.add(key)
                    yield p


def _looks_like_structure_file(path: Path) -> bool:
    name = strip_compression(path.name.lower())
    return name.endswith(STRUCTURE_SUFFIXES) or name.startswith(("poscar", "contcar"))
