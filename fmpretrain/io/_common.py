"""Shared pieces of the readers: errors, entry failures, file opening, record helpers."""

from __future__ import annotations

import bz2
import gzip
import io as _io
import json
import lzma
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from fmpretrain.structures import InvalidStructureError, Structure, _is_json_property, _plain

#: Record fields that carry an id, in order of preference.
ID_KEYS = ("material_id", "task_id", "entry_id", "structure_id", "mp_id", "mpid", "id")

#: Per-atom arrays that are never kept as properties (forces, magnetic moments, charges).
PER_ATOM_KEYS = frozenset(
    {"force", "forces", "magmom", "magmoms", "charge", "charges", "initial_magmoms"}
)

#: Compression suffixes recognised in file names (the content decides how to decompress).
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz")


@dataclass(frozen=True)
class ReadFailure:
    """One entry (or the rest of a file) that could not be read.

    ``index`` is the 0-based position of the entry in the file and ``entry_id`` its id where
    known; ``fatal`` means the reader had to stop there (nothing after it was read).
    """

    path: Path
    reason: str
    index: int | None = None
    entry_id: str | None = None
    fatal: bool = False

    @property
    def id(self) -> str:
        """The entry's id, else ``"{path}#{index}"``, else the path."""
        if self.entry_id:
            return self.entry_id
        if self.index is not None:
            return f"{self.path}#{self.index}"
        return str(self.path)

    def __str__(self) -> str:
        where = str(self.path)
        if self.index is not None:
            where += f", entry {self.index}"
        if self.entry_id:
            where += f" (id {self.entry_id!r})"
        return f"{where}: {self.reason}"


class StructureReadError(ValueError):
    """A structure file could not be read; the message names the file, entry and reason."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        reason: str,
        *,
        index: int | None = None,
        entry_id: str | None = None,
        fatal: bool = True,
    ):
        self.path = Path(path)
        self.reason = reason
        self.index = index
        self.entry_id = entry_id
        self.fatal = fatal
        super().__init__(str(self.failure))

    @property
    def failure(self) -> ReadFailure:
        """The same problem as a :class:`ReadFailure` record."""
        return ReadFailure(self.path, self.reason, self.index, self.entry_id, self.fatal)

    @classmethod
    def from_failure(cls, failure: ReadFailure) -> StructureReadError:
        return cls(
            failure.path,
            failure.reason,
            index=failure.index,
            entry_id=failure.entry_id,
            fatal=failure.fatal,
        )


class EntryError(ValueError):
    """A bad entry; its message is the reason, reported without the exception's type."""


def describe(err: BaseException) -> str:
    """``"TypeName: message"`` (the type alone when the message is empty)."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else f"{type(err).__name__} (malformed input)"


def entry(
    path: Path, index: int, sid: str | None, make: Callable[[], Structure]
) -> Structure | ReadFailure:
    """``make()``, or the :class:`ReadFailure` naming this entry when it raises."""
    try:
        return make()
    except StructureReadError as err:
        return ReadFailure(
            path,
            err.reason,
            err.index if err.index is not None else index,
            err.entry_id or sid,
            fatal=False,
        )
    except InvalidStructureError as err:
        return ReadFailure(path, err.reason, index, sid)
    except EntryError as err:
        return ReadFailure(path, str(err), index, sid)
    except Exception as err:
        return ReadFailure(path, describe(err), index, sid)


# ---------------------------------------------------------------------------- files
def strip_compression(name: str) -> str:
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def stem(path: Path) -> str:
    """File name without compression and format suffixes: ``data.json.gz`` -> ``data``."""
    name = strip_compression(path.name)
    return Path(name).stem if Path(name).suffix else name


def compression(path: Path) -> Any:
    """The module (gzip, bz2, lzma) that decompresses ``path``, from its first bytes; or None."""
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip
    if magic.startswith(b"BZh"):
        return bz2
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma
    return None


def open_binary(path: Path) -> IO[bytes]:
    """A binary stream of ``path``, decompressing gzip/bz2/xz recognised from the content."""
    module = compression(path)
    if module is None:
        return open(path, "rb")
    return module.open(path, "rb")


def open_text(path: Path, newline: str | None = None) -> IO[str]:
    """A text stream of ``path``, decompressing gzip/bz2/xz recognised from the content."""
    module = compression(path)
    if module is None:
        return open(path, encoding="utf-8", newline=newline)
    return module.open(path, "rt", encoding="utf-8", newline=newline)


# ---------------------------------------------------------------------------- records
def is_numeric(value: Any) -> bool:
    """A number, bool, or (nested) non-empty list of them: what a record field may hold."""
    if isinstance(value, (int, float, bool)):
        return True
    if isinstance(value, list) and value:
        return all(is_numeric(v) for v in value)
    return False


def record_id(record: Mapping[str, Any], keys: tuple[str, ...] = ID_KEYS) -> str | None:
    """The first id field of ``record`` (a serialised ``MPID`` dict is unwrapped)."""
    for key in keys:
        value = record.get(key)
        if value is None:
            continue
        if isinstance(value, Mapping):  # {"@class": "MPID", "string": ...}
            value = value.get("string", value.get("id"))
            if value is None:
                continue
        return str(value)
    return None


def from_pymatgen(d: Any, default_id: str) -> Structure:
    """A pymatgen dict; a string id key in its ``properties`` becomes the id, not a property."""
    structure = Structure.from_pymatgen_dict(d, id=default_id)
    ids = [k for k in ID_KEYS if isinstance(structure.properties.get(k), str)]
    if ids:
        structure.id = structure.properties[ids[0]]
    for key in ids:
        del structure.properties[key]
    return structure


def structure_value(value: Any, path: Path, index: int, sid: str) -> Structure:
    """A table cell/record field holding a structure: pymatgen dict, its JSON text, or CIF."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            value = json.loads(text)
        elif "data_" in text and "_cell_length_a" in text:
            import ase.io

            from fmpretrain.io.ase_files import structure_from_atoms

            atoms = ase.io.read(_io.StringIO(text), format="cif")
            return structure_from_atoms(atoms, path, index, sid, id=sid)
        else:
            raise InvalidStructureError(sid, "structure is a string but neither JSON nor CIF")
    if not isinstance(value, Mapping):
        raise InvalidStructureError(
            sid, f"structure is a {type(value).__name__}, expected a pymatgen dict"
        )
    return from_pymatgen(value, sid)


def scalar_or_vector(value: Any) -> Any:
    """A one-element (possibly nested) numeric list as its number; other values unchanged."""
    if isinstance(value, list) and is_numeric(value) and np.size(value) == 1:
        return _plain(np.asarray(value).reshape(-1)[0])
    return value


def add_numeric_properties(
    structure: Structure, fields: Mapping[str, Any], skip: set[str] | frozenset[str] = frozenset()
) -> None:
    """Numeric (scalar or array) fields become properties; per-atom arrays are left out."""
    for key, value in fields.items():
        if key in skip or key in PER_ATOM_KEYS or not is_numeric(value):
            continue
        if _is_json_property(value):
            structure.properties[str(key)] = value
