"""Read and write structure files as :class:`~fmpretrain.structures.Structure` records.

Reading (:func:`read_structures`), format chosen from the file name unless ``format`` is given:

* every format ASE reads (extxyz/xyz, CIF, POSCAR/CONTCAR/``*.vasp``, ``*.traj``, ...; also
  gzip/bz2/xz compressed), through ``ase.io.iread(path, index=":")``: one structure at a time.
  Ids come from an ``id``/``structure_id`` info key, properties from the other scalar (or
  numeric array) info keys and the scalar/per-configuration calculator results (``energy``,
  ``stress``, ...). Per-atom arrays (forces, charges) are not kept. A CIF site with fractional
  or mixed occupancy is refused.
* ASE databases (``*.db``, SQLite), through ``ase.db.connect``, read in pages of rows so that
  large databases stream. Ids come from a ``structure_id`` key (key-value pair or data) or else
  the row id (``"{stem}:{row id}"``); numeric key-value pairs, scalar calculator results
  (``energy``...) and a ``data["properties"]`` dict become properties.
* JSON (``*.json``, ``*.json.gz``/``.bz2``/``.xz``; compression is recognised from the content),
  whose flavour is detected from the content:

  - MatBench dataset files: pandas ``orient="split"`` tables
    ``{"index": [...], "columns": ["structure", "<target>"], "data": [[{...}, value], ...]}``;
    ids from string index entries, the other columns become properties. The ``"columns"``
    orient (``{"structure": {"0": {...}}, "<target>": {"0": value}}``) is read too.
  - Materials-Project-style dumps: a list of records each holding a pymatgen dict under
    ``"structure"`` plus fields such as ``"material_id"`` (the id; also ``task_id``,
    ``entry_id``, ``structure_id``, ``id``) and numeric properties (``ComputedStructureEntry``
    dicts fit this too); a ``{"data": [...]}`` wrapper; a dict of such records keyed by id.
  - a plain list of pymatgen ``Structure``/``Molecule`` ``as_dict()`` dicts, or a single one.
  - MatDeepLearn lists ``[{"structure_id", "positions", "cell", "atomic_numbers", "y"}, ...]``
    (Cartesian positions; pbc True unless a ``"pbc"`` entry says otherwise; ``y`` scalar or list
    is kept as property ``"y"``).
  - an ASE JSON database (``{"ids": [...], "nextid": ...}``, uncompressed only).

  A ``"structure"`` value may also be a JSON string of a pymatgen dict or a CIF text.
  **JSON files are parsed whole** with :func:`json.load` (structures are then converted one at
  a time); a fully streaming parse of multi-GB dumps would need ``ijson``, which is not a
  dependency. Split such dumps into several files.

Ids: whatever the format provides, else ``"{file stem}:{index}"`` (0-based position in the file).
Any failure raises :class:`StructureReadError` naming the file, the entry (index and id where
known) and the reason. Readers do not :func:`~fmpretrain.structures.validate`; callers do.

Writing (:func:`write_structures`): extxyz (full float precision, properties on the comment
line), MatBench split JSON (the default for ``*.json``/``*.json.gz``), MP-style and MatDeepLearn
JSON lists, ASE SQLite databases, and any other format ``ase.io.write`` knows (CIF, POSCAR...,
without ids or properties).
"""

from __future__ import annotations

import bz2
import glob
import gzip
import io as _io
import json
import lzma
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from fmpretrain.structures import (
    MAX_ATOMIC_NUMBER,
    InvalidStructureError,
    Structure,
    _is_json_property,
    _plain,
)

__all__ = [
    "StructureReadError",
    "iter_structure_files",
    "read_structures",
    "write_structures",
]

#: Record fields that carry an id, in order of preference.
ID_KEYS = ("material_id", "task_id", "entry_id", "structure_id", "mp_id", "mpid", "id")

#: Compression suffixes recognised in file names (ASE and our JSON reader both decompress).
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz")

#: File name endings (after stripping compression) treated as structure files in directories.
STRUCTURE_SUFFIXES = (".extxyz", ".xyz", ".cif", ".vasp", ".poscar", ".traj", ".db", ".json")

#: Number of database rows fetched at a time.
DB_PAGE_SIZE = 1000

_JSON_FORMATS = {"json", "json.gz", "matbench", "mp", "pymatgen", "matdeeplearn"}
_DB_FORMATS = {"db", "ase-db", "ase_db", "sqlite"}
_CSV_FORMATS = {"csv", "cdvae"}
# info keys ASE's CIF reader adds that are not properties
_ASE_NON_PROPERTIES = {"spacegroup", "unit_cell", "occupancy"}


class StructureReadError(ValueError):
    """A structure file could not be read; the message names the file, entry and reason."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        reason: str,
        *,
        index: int | None = None,
        entry_id: str | None = None,
    ):
        self.path = Path(path)
        self.reason = reason
        self.index = index
        self.entry_id = entry_id
        where = str(path)
        if index is not None:
            where += f", entry {index}"
        if entry_id:
            where += f" (id {entry_id!r})"
        super().__init__(f"{where}: {reason}")


# ============================================================================ reading
def read_structures(
    path: str | os.PathLike[str], *, format: str | None = None
) -> Iterator[Structure]:
    """Yield the structures in ``path`` one at a time (see the module docstring for formats).

    ``format`` overrides detection from the file name: ``"json"`` (any JSON flavour, detected
    from the content), ``"db"`` (ASE SQLite database) or an ``ase.io`` format name such as
    ``"extxyz"``, ``"cif"`` or ``"vasp"``. A file that holds no structure is an error.
    """
    path = Path(path)
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
        reader = _read_json(path)
    elif kind == "db":
        reader = _read_ase_db(path, "db")
    elif kind == "csv":
        reader = _read_cif_csv(path)
    else:
        reader = _read_ase(path, ase_format)
    count = 0
    for structure in reader:
        count += 1
        yield structure
    if count == 0:
        raise StructureReadError(path, "contains no structures")


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


def _strip_compression(name: str) -> str:
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _looks_like_structure_file(path: Path) -> bool:
    name = _strip_compression(path.name.lower())
    return name.endswith(STRUCTURE_SUFFIXES) or name.startswith(("poscar", "contcar"))


def _stem(path: Path) -> str:
    """File name without compression and format suffixes: ``data.json.gz`` -> ``data``."""
    name = _strip_compression(path.name)
    return Path(name).stem if Path(name).suffix else name


def _detect_format(path: Path, format: str | None) -> tuple[str, str | None]:
    """``("json" | "db" | "ase", ase format name or None)``."""
    if format is not None:
        key = format.lower()
        if key in _JSON_FORMATS:
            return "json", None
        if key in _DB_FORMATS:
            return "db", None
        if key in _CSV_FORMATS:
            return "csv", None
        return "ase", format
    name = _strip_compression(path.name.lower())
    if name.endswith(".json"):
        return "json", None
    if name.endswith(".db"):
        return "db", None
    if name.endswith(".csv"):
        return "csv", None
    return "ase", None


def _describe(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else f"{type(err).__name__} (malformed input)"


# ---------------------------------------------------------------------------- ASE
def _read_ase(path: Path, format: str | None) -> Iterator[Structure]:
    import ase.io
    from ase.io.formats import UnknownFileTypeError, filetype

    stem = _stem(path)
    frames = ase.io.iread(str(path), index=":", format=format)
    index = 0
    while True:
        try:
            atoms = next(frames)
        except StopIteration:
            return
        except UnknownFileTypeError as err:
            raise StructureReadError(
                path,
                f"unknown file format ({err}); pass format= an ase.io format name, 'json' or 'db'",
            ) from err
        except Exception as err:
            try:
                kind = format or filetype(str(path))
            except Exception:
                kind = None
            what = f"cannot parse as {kind}" if kind else "cannot parse"
            raise StructureReadError(path, f"{what}: {_describe(err)}", index=index) from err
        yield _structure_from_atoms(atoms, path, index, f"{stem}:{index}")
        index += 1


def _structure_from_atoms(
    atoms: Any, path: Path, index: int, default_id: str, id: str | None = None
) -> Structure:
    """``Structure.from_ase`` plus array-valued info and calculator results as properties."""
    from ase.io.extxyz import per_config_properties

    info = atoms.info
    occupancy = info.get("occupancy")
    if isinstance(occupancy, Mapping):
        for site, occ in occupancy.items():
            if len(occ) != 1 or any(abs(float(v) - 1.0) > 1e-6 for v in occ.values()):
                raise StructureReadError(
                    path,
                    f"site {site} is disordered (occupancies {dict(occ)}); only ordered "
                    "structures are supported",
                    index=index,
                )
    extra = {k: info.pop(k) for k in list(info) if k in _ASE_NON_PROPERTIES}
    try:
        structure = Structure.from_ase(atoms, id=id)
    except Exception as err:
        raise StructureReadError(path, _describe(err), index=index) from err
    finally:
        info.update(extra)
    for key, value in info.items():
        if key in _ASE_NON_PROPERTIES or key in ("id", "structure_id"):
            continue
        is_array = isinstance(value, (np.ndarray, list, tuple))
        if is_array and key not in structure.properties and _is_json_property(value):
            structure.properties[key] = _plain(value)
    if atoms.calc is not None:
        for key, value in getattr(atoms.calc, "results", {}).items():
            per_config = np.ndim(value) == 0 or key in per_config_properties
            if per_config and _is_json_property(value):
                structure.properties.setdefault(key, _plain(value))
    if not structure.id:
        structure.id = default_id
    return structure


def _read_ase_db(path: Path, db_type: str) -> Iterator[Structure]:
    """Rows of an ASE database, fetched :data:`DB_PAGE_SIZE` at a time in id order."""
    import ase.db

    stem = _stem(path)
    try:
        db = ase.db.connect(str(path), type=db_type, create_indices=False, use_lock_file=False)
    except Exception as err:
        raise StructureReadError(path, f"cannot open ASE database: {_describe(err)}") from err
    last_id, index = 0, 0
    while True:
        try:
            rows = list(db.select(f"id>{last_id}", sort="id", limit=DB_PAGE_SIZE))
        except Exception as err:
            raise StructureReadError(
                path, f"cannot read ASE database: {_describe(err)}", index=index or None
            ) from err
        if not rows:
            return
        for row in rows:
            last_id = row.id
            yield _structure_from_row(row, path, index, stem)
            index += 1


def _structure_from_row(row: Any, path: Path, index: int, stem: str) -> Structure:
    kvp = dict(row.get("key_value_pairs", {}))
    data = row.get("data") or {}
    sid = kvp.pop("structure_id", None)
    if sid is None and isinstance(data, Mapping):
        sid = data.get("structure_id", data.get("id"))
    sid = str(sid) if sid is not None else f"{stem}:{row.id}"
    try:
        atoms = row.toatoms()
    except Exception as err:
        raise StructureReadError(path, _describe(err), index=index, entry_id=sid) from err
    structure = _structure_from_atoms(atoms, path, index, sid, id=sid)
    for key, value in kvp.items():
        if isinstance(value, (int, float, bool, np.integer, np.floating, np.bool_)):
            structure.properties[key] = _plain(value)
    stored = data.get("properties") if isinstance(data, Mapping) else None
    if isinstance(stored, Mapping):
        for key, value in stored.items():
            if _is_json_property(value):
                structure.properties[str(key)] = _plain(value)
    return structure


# ---------------------------------------------------------------------------- JSON
def _compression(path: Path) -> Any:
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


def _open_text(path: Path) -> IO[str]:
    """Open a text file, decompressing gzip/bz2/xz recognised from the content."""
    module = _compression(path)
    if module is None:
        return open(path, encoding="utf-8")
    return module.open(path, "rt", encoding="utf-8")


def _read_json(path: Path) -> Iterator[Structure]:
    try:
        with _open_text(path) as f:
            doc = json.load(f)
    except json.JSONDecodeError as err:
        raise StructureReadError(path, f"not valid JSON: {err}") from err
    except (OSError, EOFError, UnicodeDecodeError, lzma.LZMAError) as err:
        raise StructureReadError(path, f"cannot read: {_describe(err)}") from err
    stem = _stem(path)

    if isinstance(doc, list):
        yield from _read_records(path, stem, [(None, entry) for entry in doc])
    elif not isinstance(doc, dict):
        raise StructureReadError(
            path, f"unrecognised JSON layout: top level is a {type(doc).__name__}"
        )
    elif "sites" in doc:  # one pymatgen dict
        yield from _read_records(path, stem, [(None, doc)])
    elif "columns" in doc and "data" in doc:
        yield from _read_split_table(path, stem, doc)
    elif "ids" in doc and "nextid" in doc:
        if _compression(path) is not None or path.suffix.lower() != ".json":
            raise StructureReadError(path, "ASE JSON databases must be plain *.json files")
        yield from _read_ase_db(path, "json")
    elif _is_column_table(doc):
        yield from _read_column_table(path, stem, doc)
    elif "structure" in doc or ("positions" in doc and "atomic_numbers" in doc):
        yield from _read_records(path, stem, [(None, doc)])
    elif isinstance(doc.get("data"), list):  # an API response wrapper
        yield from _read_records(path, stem, [(None, entry) for entry in doc["data"]])
    elif doc and all(isinstance(v, dict) for v in doc.values()):  # records keyed by id
        yield from _read_records(path, stem, [(str(k), v) for k, v in doc.items()])
    else:
        keys = ", ".join(repr(k) for k in list(doc)[:8])
        raise StructureReadError(
            path,
            f"unrecognised JSON layout (top-level keys: {keys}); expected a MatBench table, "
            "a pymatgen structure dict, a list of records or a MatDeepLearn list",
        )


def _read_records(
    path: Path, stem: str, entries: Iterable[tuple[str | None, Any]]
) -> Iterator[Structure]:
    for index, (key, entry) in enumerate(entries):
        default_id = key if key is not None else f"{stem}:{index}"
        yield _record_to_structure(entry, path, index, default_id)


def _record_to_structure(entry: Any, path: Path, index: int, default_id: str) -> Structure:
    """One JSON record of any flavour: pymatgen dict, MP-style record or MatDeepLearn dict."""
    if not isinstance(entry, dict):
        raise StructureReadError(
            path, f"entry is a {type(entry).__name__}, expected an object", index=index
        )
    sid = _record_id(entry)
    try:
        if "sites" in entry:
            structure = _from_pymatgen(entry, default_id)
        elif "structure" in entry:
            structure = _structure_value(entry["structure"], path, index, default_id)
            for key, value in entry.items():
                if key != "structure" and key not in ID_KEYS and _is_numeric(value):
                    structure.properties[key] = value
        elif "positions" in entry and "atomic_numbers" in entry:
            structure = _matdeeplearn_structure(entry, sid or default_id)
        else:
            keys = ", ".join(repr(k) for k in list(entry)[:8])
            raise StructureReadError(
                path,
                f"unrecognised record (keys: {keys}); expected a pymatgen dict ('sites'), a "
                "record with a 'structure' or a MatDeepLearn dict ('positions', "
                "'atomic_numbers')",
                index=index,
                entry_id=sid,
            )
    except StructureReadError:
        raise
    except InvalidStructureError as err:
        raise StructureReadError(path, err.reason, index=index, entry_id=sid) from err
    except Exception as err:
        raise StructureReadError(path, _describe(err), index=index, entry_id=sid) from err
    if sid is not None:  # a record-level id wins over one inside the structure dict
        structure.id = sid
    return structure


def _record_id(entry: Mapping[str, Any]) -> str | None:
    for key in ID_KEYS:
        value = entry.get(key)
        if value is None:
            continue
        if isinstance(value, Mapping):  # a serialised MPID {"@class": "MPID", "string": ...}
            value = value.get("string", value.get("id"))
            if value is None:
                continue
        return str(value)
    return None


def _from_pymatgen(d: Any, default_id: str) -> Structure:
    """A pymatgen dict; a string id key in its ``properties`` becomes the id, not a property."""
    structure = Structure.from_pymatgen_dict(d, id=default_id)
    ids = [k for k in ID_KEYS if isinstance(structure.properties.get(k), str)]
    if ids:
        structure.id = structure.properties[ids[0]]
    for key in ids:
        del structure.properties[key]
    return structure


def _structure_value(value: Any, path: Path, index: int, sid: str) -> Structure:
    """A table cell/record field holding a structure: pymatgen dict, its JSON text, or CIF."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            value = json.loads(text)
        elif "data_" in text and "_cell_length_a" in text:
            import ase.io

            atoms = ase.io.read(_io.StringIO(text), format="cif")
            return _structure_from_atoms(atoms, path, index, sid, id=sid)
        else:
            raise InvalidStructureError(sid, "structure is a string but neither JSON nor CIF")
    if not isinstance(value, Mapping):
        raise InvalidStructureError(
            sid, f"structure is a {type(value).__name__}, expected a pymatgen dict"
        )
    return _from_pymatgen(value, sid)


def _matdeeplearn_structure(entry: Mapping[str, Any], sid: str) -> Structure:
    numbers = np.asarray(entry["atomic_numbers"])
    if numbers.ndim != 1 or (len(numbers) and not np.all(numbers == np.round(numbers))):
        raise InvalidStructureError(sid, f"bad atomic_numbers {entry['atomic_numbers']!r}")
    cell = entry.get("cell")
    has_cell = cell is not None
    pbc = entry.get("pbc", has_cell)
    structure = Structure(
        numbers=numbers.astype(np.int64),
        positions=np.asarray(entry["positions"], dtype=np.float64),
        cell=np.asarray(cell, dtype=np.float64) if has_cell else np.zeros((3, 3)),
        pbc=pbc,
        id=sid,
    )
    structural = {"positions", "cell", "atomic_numbers", "pbc", *ID_KEYS}
    for key, value in entry.items():
        if key in structural or value is None:
            continue
        if (key == "y" and _is_json_property(value)) or _is_numeric(value):
            structure.properties[key] = value
    return structure


def _is_numeric(value: Any) -> bool:
    """A number, bool, or (nested) non-empty list of them: what a record field may hold."""
    if isinstance(value, (int, float, bool)):
        return True
    if isinstance(value, list) and value:
        return all(_is_numeric(v) for v in value)
    return False


def _read_split_table(path: Path, stem: str, doc: Mapping[str, Any]) -> Iterator[Structure]:
    """A pandas ``orient="split"`` table (MatBench dataset files)."""
    columns, data, index = doc["columns"], doc["data"], doc.get("index")
    if not isinstance(columns, list) or not isinstance(data, list):
        raise StructureReadError(path, "table 'columns' and 'data' must be lists")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise StructureReadError(path, f"table index does not match its {len(data)} rows")
    column = _structure_column(columns, data)
    if column is None:
        raise StructureReadError(path, f"table has no structure column (columns: {columns})")
    for i, row in enumerate(data):
        label = index[i] if index is not None else i
        sid = str(label) if isinstance(label, str) else f"{stem}:{label}"
        if not isinstance(row, list) or len(row) != len(columns):
            raise StructureReadError(
                path,
                f"row does not hold {len(columns)} values, one per column",
                index=i,
                entry_id=sid,
            )
        yield _table_row(path, i, sid, dict(zip(columns, row, strict=True)), column)


def _structure_column(columns: list[Any], rows: list[Any]) -> Any:
    """``"structure"`` if present, else the first column whose first value is a pymatgen dict."""
    if "structure" in columns:
        return "structure"
    first = rows[0] if rows and isinstance(rows[0], list) else []
    for name, value in zip(columns, first, strict=False):
        if isinstance(value, Mapping) and "sites" in value:
            return name
    return None


def _is_column_table(doc: Mapping[str, Any]) -> bool:
    """pandas ``orient="columns"``: ``{"structure": {"0": {...}, ...}, "<target>": {...}}``."""
    column = doc.get("structure")
    return (
        isinstance(column, Mapping)
        and "sites" not in column
        and all(isinstance(v, Mapping) for v in doc.values())
    )


def _read_column_table(path: Path, stem: str, doc: Mapping[str, Any]) -> Iterator[Structure]:
    for i, label in enumerate(doc["structure"]):
        sid = str(label) if not str(label).isdigit() else f"{stem}:{label}"
        row = {name: values.get(label) for name, values in doc.items()}
        yield _table_row(path, i, sid, row, "structure")


def _table_row(path: Path, index: int, sid: str, row: Mapping[str, Any], column: Any) -> Structure:
    try:
        structure = _structure_value(row[column], path, index, sid)
    except StructureReadError:
        raise
    except InvalidStructureError as err:
        raise StructureReadError(path, err.reason, index=index, entry_id=sid) from err
    except Exception as err:
        raise StructureReadError(path, _describe(err), index=index, entry_id=sid) from err
    structure.id = sid
    for name, value in row.items():
        if name != column and value is not None and _is_json_property(value):
            structure.properties[str(name)] = value
    return structure


# ---------------------------------------------------------------------------- CSV
def _read_cif_csv(path: Path) -> Iterator[Structure]:
    """CDVAE / DiffCSP / MatterGen CSV: an index column, ``material_id``, ``cif``, properties.

    The rows stream (:mod:`csv` handles the multi-line quoted CIF field); the id is the
    ``material_id`` column (else ``"{stem}:{row}"``), numeric columns become float properties
    and other non-empty text columns (``formula``) string properties.
    """
    import csv

    stem = _stem(path)
    csv.field_size_limit(1 << 28)
    with _open_text_stream(path) as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise StructureReadError(path, f"not a CSV file: {err}") from err
        if "cif" not in header:
            raise StructureReadError(
                path,
                f"CSV has no 'cif' column (columns: {header[:8]}); expected the CDVAE layout "
                "(index, material_id, cif, property columns)",
            )
        cif_col = header.index("cif")
        id_col = header.index("material_id") if "material_id" in header else None
        names = [(i, name) for i, name in enumerate(header) if name and i not in (cif_col, id_col)]
        index = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                raise StructureReadError(path, f"malformed CSV: {err}", index=index) from err
            if not row:
                continue
            sid = row[id_col] if id_col is not None and id_col < len(row) else ""
            sid = sid or f"{stem}:{index}"
            if len(row) != len(header):
                raise StructureReadError(
                    path,
                    f"row holds {len(row)} values for {len(header)} columns",
                    index=index,
                    entry_id=sid,
                )
            try:
                structure = _structure_value(row[cif_col], path, index, sid)
            except InvalidStructureError as err:
                raise StructureReadError(path, err.reason, index=index, entry_id=sid) from err
            except Exception as err:
                raise StructureReadError(path, _describe(err), index=index, entry_id=sid) from err
            structure.id = sid
            for i, name in names:
                value = _csv_value(row[i])
                if value is not None:
                    structure.properties[name] = value
            yield structure
            index += 1


def _csv_value(text: str) -> float | str | None:
    try:
        return float(text)
    except ValueError:
        return text or None


def _open_text_stream(path: Path) -> IO[str]:
    """Like :func:`_open_text`, with universal newlines off (CSV fields hold newlines)."""
    module = _compression(path)
    if module is None:
        return open(path, encoding="utf-8", newline="")
    return module.open(path, "rt", encoding="utf-8", newline="")


# ============================================================================ writing
def write_structures(
    path: str | os.PathLike[str],
    structures: Iterable[Structure],
    *,
    format: str | None = None,
) -> int:
    """Write ``structures`` to ``path`` (overwriting it) and return how many were written.

    ``format`` (else from the file name): ``"extxyz"`` (``*.extxyz``, ``*.xyz``, optionally
    ``.gz``), ``"matbench"`` (``*.json``, ``*.json.gz``: a pandas split table with a
    ``structure`` column, one column per property and the ids as index), ``"mp"`` (a list of
    ``{"material_id", "structure", **properties}``), ``"matdeeplearn"``, ``"db"`` (``*.db``),
    or any ``ase.io.write`` format (CIF, POSCAR...; ids and properties are lost there).
    """
    path = Path(path)
    kind = _write_kind(path, format)
    if kind == "extxyz":
        return _write_extxyz(path, structures)
    if kind == "db":
        return _write_ase_db(path, structures)
    if kind in ("matbench", "mp", "matdeeplearn"):
        return _write_json(path, list(structures), kind)
    import ase.io

    images = [s.to_ase() for s in structures]
    for atoms in images:
        atoms.info.clear()
    ase.io.write(str(path), images, format=None if kind == "ase" else kind)
    return len(images)


def _write_kind(path: Path, format: str | None) -> str:
    if format is not None:
        key = format.lower()
        if key in ("json", "json.gz", "pymatgen"):
            return "matbench"
        if key in _DB_FORMATS:
            return "db"
        if key in ("extxyz", "xyz"):
            return "extxyz"
        return key
    name = _strip_compression(path.name.lower())
    if name.endswith(".json"):
        return "matbench"
    if name.endswith((".extxyz", ".xyz")):
        return "extxyz"
    if name.endswith(".db"):
        return "db"
    return "ase"


def _open_write(path: Path) -> IO[str]:
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "wt", encoding="utf-8")
    if name.endswith(".bz2"):
        return bz2.open(path, "wt", encoding="utf-8")
    if name.endswith(".xz"):
        return lzma.open(path, "wt", encoding="utf-8")
    return open(path, "w", encoding="utf-8")


def _symbols(structure: Structure) -> list[str]:
    from ase.data import chemical_symbols

    bad = (structure.numbers < 1) | (structure.numbers > MAX_ATOMIC_NUMBER)
    if bad.any():
        raise ValueError(
            f"structure {structure.id!r}: cannot write atomic number "
            f"{int(structure.numbers[bad][0])}"
        )
    return [chemical_symbols[int(z)] for z in structure.numbers]


# ---------------------------------------------------------------------------- extxyz
_EXTXYZ_RESERVED = {"lattice", "properties", "pbc", "id", "structure_id"}


def _extxyz_value(key: str, value: Any) -> Any:
    """A property value that ASE's extxyz parser reads back as the same value."""
    from ase.io.extxyz import key_val_dict_to_str, key_val_str_to_dict

    if key in ("stress", "virial"):  # extxyz stores these as 3x3 matrices
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape == (6,):
            from ase.stress import voigt_6_to_full_3x3_stress

            arr = voigt_6_to_full_3x3_stress(arr)
        if arr.shape not in ((3, 3), (9,)):
            raise ValueError(f"property {key!r} must be a 3x3 or Voigt-6 tensor for extxyz")
        return arr.reshape(3, 3)
    value = _plain(value)
    if isinstance(value, str):
        back = key_val_str_to_dict(key_val_dict_to_str({"k": value})).get("k")
        if not (isinstance(back, str) and back == value):
            return "_JSON " + json.dumps(value)
    return value


def _write_extxyz(path: Path, structures: Iterable[Structure]) -> int:
    from ase.io.extxyz import key_val_dict_to_str, key_val_str_to_dict

    count = 0
    with _open_write(path) as f:
        for s in structures:
            symbols = _symbols(s)
            info: dict[str, Any] = {}
            if s.id:
                info["id"] = _extxyz_value("id", s.id)
            for key, value in s.properties.items():
                if key.lower() in _EXTXYZ_RESERVED or not key:
                    raise ValueError(
                        f"structure {s.id!r}: property name {key!r} cannot be written to extxyz"
                    )
                if not _is_json_property(value):
                    raise ValueError(
                        f"structure {s.id!r}: property {key!r} is a {type(value).__name__}"
                    )
                info[key] = _extxyz_value(key, value)
            parts = []
            if s.cell.any():
                lattice = " ".join(repr(float(x)) for x in s.cell.reshape(-1))
                parts.append(f'Lattice="{lattice}"')
            parts.append("Properties=species:S:1:pos:R:3")
            parts.append('pbc="' + " ".join("T" if p else "F" for p in s.pbc) + '"')
            if info:
                text = key_val_dict_to_str(info)
                bad = set(info) ^ set(key_val_str_to_dict(text))
                if bad:
                    raise ValueError(
                        f"structure {s.id!r}: property names {sorted(bad)} cannot be written "
                        "to extxyz"
                    )
                parts.append(text)
            width = max(2, *(len(x) for x in symbols)) if symbols else 2
            f.write(f"{len(s)}\n{' '.join(parts)}\n")
            for symbol, xyz in zip(symbols, s.positions, strict=True):
                coords = " ".join(f"{float(x)!r:>24}" for x in xyz)
                f.write(f"{symbol:<{width}} {coords}\n")
            count += 1
    return count


# ---------------------------------------------------------------------------- ASE db
def _write_ase_db(path: Path, structures: Iterable[Structure]) -> int:
    import warnings

    import ase.db
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.db.core import check

    if path.exists():
        path.unlink()
    db = ase.db.connect(str(path), type="db", append=False)
    count = 0
    with db:
        for s in structures:
            _symbols(s)
            atoms = s.to_ase()
            atoms.info.clear()
            kvp: dict[str, Any] = {}
            data: dict[str, Any] = {}
            results: dict[str, Any] = {}
            stored: dict[str, Any] = {}
            if s.id:
                try:
                    check({"structure_id": s.id})
                    kvp["structure_id"] = s.id
                except ValueError:  # e.g. a numeric-looking id string
                    data["structure_id"] = s.id
            for key, value in s.properties.items():
                value = _plain(value)
                if key in ("energy", "free_energy", "magmom") and _is_numeric(value):
                    results[key] = value
                    continue
                if not _is_json_property(value):
                    raise ValueError(
                        f"structure {s.id!r}: property {key!r} is a {type(value).__name__}"
                    )
                if isinstance(value, (int, float)):  # searchable key-value pair if allowed
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            check({key: value})
                        kvp[key] = value
                        continue
                    except ValueError:
                        pass
                stored[key] = value  # strings, lists, reserved names: in the row's data
            if stored:
                data["properties"] = stored
            if results:
                atoms.calc = SinglePointCalculator(atoms, **results)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                db.write(atoms, key_value_pairs=kvp, data=data)
            count += 1
    return count


# ---------------------------------------------------------------------------- JSON
def _write_json(path: Path, structures: list[Structure], layout: str) -> int:
    for s in structures:
        _symbols(s)
        for key, value in s.properties.items():
            if not _is_json_property(value):
                raise ValueError(
                    f"structure {s.id!r}: property {key!r} is a {type(value).__name__}"
                )
    if layout == "matbench":
        columns: list[str] = []
        for s in structures:
            columns.extend(k for k in s.properties if k not in columns)
        if "structure" in columns:
            raise ValueError("a property named 'structure' clashes with the structure column")
        doc: Any = {
            "index": [s.id for s in structures],
            "columns": ["structure", *columns],
            "data": [
                [_bare_pymatgen_dict(s), *(_plain(s.properties.get(c)) for c in columns)]
                for s in structures
            ],
        }
    elif layout == "mp":
        doc = []
        for s in structures:
            if {"material_id", "structure"} & set(s.properties):
                raise ValueError(
                    f"structure {s.id!r}: properties 'material_id'/'structure' clash with "
                    "the record fields"
                )
            record = {"material_id": s.id, "structure": _bare_pymatgen_dict(s)}
            record.update({k: _plain(v) for k, v in s.properties.items()})
            doc.append(record)
    elif layout == "matdeeplearn":
        doc = []
        structural = {"structure_id", "positions", "cell", "atomic_numbers", "pbc"}
        for s in structures:
            if structural & set(s.properties):
                raise ValueError(f"structure {s.id!r}: a property name clashes with a field")
            record = {
                "structure_id": s.id,
                "positions": s.positions.tolist(),
                "cell": s.cell.tolist(),
                "atomic_numbers": s.numbers.tolist(),
            }
            if not s.pbc.all():
                record["pbc"] = s.pbc.tolist()
            record.update({k: _plain(v) for k, v in s.properties.items()})
            doc.append(record)
    else:
        raise ValueError(f"unknown JSON layout {layout!r}")
    with _open_write(path) as f:
        json.dump(doc, f)
    return len(structures)


def _bare_pymatgen_dict(structure: Structure) -> dict[str, Any]:
    d = structure.to_pymatgen_dict()
    d["properties"] = {}
    return d
