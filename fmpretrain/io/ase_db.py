"""ASE databases: SQLite (``*.db``), ASE-LMDB (``*.aselmdb``, OMat24), ASE JSON databases.

Rows are fetched :data:`DB_PAGE_SIZE` at a time in id order, so large databases stream. The
LMDB backend is the ``ase-db-backends`` package, which ``ase.db.connect(type="aselmdb")``
imports.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmpretrain.io._common import ReadFailure, StructureReadError, describe, entry, stem
from fmpretrain.io.ase_files import structure_from_atoms
from fmpretrain.structures import Structure, _is_json_property, _plain

#: Number of database rows fetched at a time.
DB_PAGE_SIZE = 1000

#: Row key-value pairs / data entries that carry an id, in order of preference.
ROW_ID_KEYS = ("structure_id", "sid", "id")


def read_ase_db(path: Path, db_type: str) -> Iterator[Structure | ReadFailure]:
    """The rows of an ASE database (``db_type`` ``"db"``, ``"aselmdb"`` or ``"json"``)."""
    import ase.db

    if db_type == "aselmdb":
        try:
            import ase_db_backends  # noqa: F401
            import lmdb
        except ImportError as err:
            raise StructureReadError(
                path, "reading ASE-LMDB files needs the ase-db-backends package (pip install it)"
            ) from err
        try:  # checked here: the backend's constructor leaves a half-built object behind
            lmdb.open(str(path), subdir=False, readonly=True, lock=False).close()
        except lmdb.Error as err:
            raise StructureReadError(path, f"cannot open ASE database: {describe(err)}") from err
        kwargs: dict[str, Any] = {"readonly": True, "use_lock_file": False}
    else:
        kwargs = {"create_indices": False, "use_lock_file": False}
    try:
        db = ase.db.connect(str(path), type=db_type, **kwargs)
    except Exception as err:
        raise StructureReadError(path, f"cannot open ASE database: {describe(err)}") from err
    try:
        yield from _rows(path, db, db_type)
    finally:
        if db_type == "aselmdb":
            db.close()


def _rows(path: Path, db: Any, db_type: str) -> Iterator[Structure | ReadFailure]:
    name = stem(path)
    pages = _lmdb_pages(db) if db_type == "aselmdb" else _sql_pages(db)
    index = 0
    while True:
        try:
            rows = next(pages)
        except StopIteration:
            return
        except Exception as err:
            raise StructureReadError(
                path, f"cannot read ASE database: {describe(err)}", index=index or None
            ) from err
        for row in rows:
            if isinstance(row, _BadRow):
                yield ReadFailure(
                    path, f"cannot read row {row.id}: {row.reason}", index, f"{name}:{row.id}"
                )
            else:
                yield entry(
                    path,
                    index,
                    f"{name}:{row.id}",
                    lambda row=row, index=index: _structure_from_row(row, path, index, name),
                )
            index += 1


@dataclass(frozen=True)
class _BadRow:
    id: int
    reason: str


def _get_row(db: Any, row_id: int) -> Any:
    """Row ``row_id``, or a :class:`_BadRow` when it cannot be decoded."""
    try:
        return db.get(id=row_id)
    except Exception as err:
        return _BadRow(row_id, describe(err))


def _sql_pages(db: Any) -> Iterator[list[Any]]:
    """Pages of rows in id order; a page with an undecodable row is fetched row by row."""
    last_id = 0
    while True:
        selection = f"id>{last_id}"
        try:
            rows = list(db.select(selection, sort="id", limit=DB_PAGE_SIZE))
        except Exception:
            ids = [
                r.id for r in db.select(selection, sort="id", limit=DB_PAGE_SIZE, columns=["id"])
            ]
            rows = [_get_row(db, row_id) for row_id in ids]
        if not rows:
            return
        last_id = rows[-1].id
        yield rows


def _lmdb_pages(db: Any) -> Iterator[list[Any]]:
    """Rows by id; LMDB ``select`` with a sort would load every row, so ids are paged here."""
    ids = list(db.ids)
    for start in range(0, len(ids), DB_PAGE_SIZE):
        yield [_get_row(db, row_id) for row_id in ids[start : start + DB_PAGE_SIZE]]


def _structure_from_row(row: Any, path: Path, index: int, name: str) -> Structure:
    kvp = dict(row.get("key_value_pairs", {}))
    data = row.get("data") or {}
    sid = None
    for key in ROW_ID_KEYS:
        if key in kvp:
            sid = kvp.pop(key)
            break
        if isinstance(data, Mapping) and data.get(key) is not None:
            sid = data[key]
            break
    sid = str(sid) if sid is not None else f"{name}:{row.id}"
    atoms = row.toatoms()
    structure = structure_from_atoms(atoms, path, index, sid, id=sid)
    for key, value in kvp.items():
        if isinstance(value, (int, float, bool, np.integer, np.floating, np.bool_)):
            structure.properties[key] = _plain(value)
    stored = data.get("properties") if isinstance(data, Mapping) else None
    if isinstance(stored, Mapping):
        for key, value in stored.items():
            if _is_json_property(value):
                structure.properties[str(key)] = _plain(value)
    return structure
