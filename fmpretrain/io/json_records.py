"""JSON structure files, streamed with :mod:`ijson` (also gzip/bz2/xz compressed).

The layout is recognised from the first top-level keys, read as parser events (the file is
never loaded whole for the large layouts), then a second pass streams the entries:

* a list of records: MP-style ``{"material_id", "structure", ...}``, pymatgen dicts,
  MatDeepLearn ``{"structure_id", "positions", "cell", "atomic_numbers", "y"}``,
  ComputedStructureEntry dicts;
* MatBench / pandas ``orient="split"`` tables ``{"index", "columns", "data"}`` (index and rows
  are streamed side by side);
* ``{"data": [records]}`` API wrappers; Alexandria ``{"entries": [...]}``;
* records keyed by id ``{id: record}`` and MPtrj ``{mp_id: {frame_id: frame}}`` (one material
  at a time);
* small layouts read whole: one pymatgen dict or record, pandas ``orient="columns"`` tables,
  ASE JSON databases.
"""

from __future__ import annotations

import io
import json
import lzma
import re
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import ijson
import numpy as np

from fmpretrain.io import alexandria, mptrj
from fmpretrain.io._common import (
    ID_KEYS,
    PER_ATOM_KEYS,
    EntryError,
    ReadFailure,
    StructureReadError,
    add_numeric_properties,
    compression,
    describe,
    entry,
    from_pymatgen,
    is_numeric,
    open_binary,
    open_text,
    record_id,
    scalar_or_vector,
    stem,
    structure_value,
)
from fmpretrain.structures import InvalidStructureError, Structure, _is_json_property

#: Top-level keys that never hold structures (skipped while recognising the layout).
SKIP_KEYS = frozenset({"@module", "@class", "@version", "meta", "metadata"})
#: Top-level keys that mean "one small document": a pymatgen dict or a single record.
WHOLE_KEYS = frozenset({"sites", "structure", "lattice", "positions", "atomic_numbers"})

_READ_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error)


def read_json(path: Path, frames: str = "all") -> Iterator[Structure | ReadFailure]:
    """The structures of a JSON file of any supported layout (see the module docstring)."""
    layout = _sniff(path)
    name = stem(path)
    if layout == "list":
        yield from _records(path, _items(path, "item"), name)
    elif layout == "data_list":
        yield from _records(path, _items(path, "data.item"), name)
    elif layout == "entries":
        yield from _records(path, _items(path, "entries.item"), name)
    elif layout == "split":
        yield from _read_split_table(path, name)
    elif layout == "keyed":
        yield from _read_keyed(path, frames)
    elif layout == "ase_db":
        if path.suffix.lower() != ".json" or compression(path) is not None:
            raise StructureReadError(path, "ASE JSON databases must be plain *.json files")
        from fmpretrain.io.ase_db import read_ase_db

        yield from read_ase_db(path, "json")
    else:
        yield from _read_whole(path, name)


# ---------------------------------------------------------------------------- streaming
def _bad_json(path: Path, err: Exception, index: int | None) -> StructureReadError:
    if isinstance(err, ijson.JSONError):
        reason = f"not valid JSON: {err}"
    else:
        reason = f"cannot read: {describe(err)}"
    if index:
        reason += " (the rest of the file is unreadable)"
    return StructureReadError(path, reason, index=index)


# Python's json module writes NaN, Infinity and -Infinity, which JSON does not allow and ijson
# refuses. A file that holds them is re-read (whole, from where streaming stopped) with each such
# literal outside strings swapped for a sentinel string, turned back into a float afterwards.
_LITERALS = re.compile(rb'"(?:[^"\\]|\\.)*"|-?Infinity|NaN')
_SENTINEL = "\x00fmpretrain-float:"


def _lenient_stream(path: Path) -> io.BytesIO | None:
    """The file with its non-JSON float literals quoted as sentinels, or None if it has none."""
    with open_binary(path) as f:
        raw = f.read()
    found = False

    def swap(match: re.Match[bytes]) -> bytes:
        nonlocal found
        token = match.group(0)
        if token.startswith(b'"'):
            return token
        found = True
        return json.dumps(_SENTINEL + token.decode()).encode()

    text = _LITERALS.sub(swap, raw)
    return io.BytesIO(text) if found else None


def _restore(value: Any) -> Any:
    """Sentinel strings back to ``nan`` / ``inf`` / ``-inf`` floats, recursively."""
    if isinstance(value, str) and value.startswith(_SENTINEL):
        return float(value[len(_SENTINEL) :])
    if isinstance(value, dict):
        return {k: _restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v) for v in value]
    return value


def _stream(path: Path, parse: Any) -> Iterator[Any]:
    """``parse(binary file)``'s values; on a JSON error, once more from a lenient copy of the
    file (skipping the values already yielded) when the error came from NaN/Infinity."""
    count = 0
    try:
        with open_binary(path) as f:
            for value in parse(f):
                yield value
                count += 1
        return
    except (ijson.JSONError, *_READ_ERRORS) as err:
        try:
            lenient = _lenient_stream(path) if isinstance(err, ijson.JSONError) else None
        except _READ_ERRORS:
            lenient = None
        if lenient is None:
            raise _bad_json(path, err, count) from err
    skip = count
    try:
        for value in parse(lenient):
            if skip:
                skip -= 1
                continue
            yield _restore(value)
            count += 1
    except ijson.JSONError as err:
        raise _bad_json(path, err, count) from err


def _items(path: Path, prefix: str) -> Iterator[Any]:
    """The values at ``prefix`` (``"item"``, ``"data.item"``...), parsed one at a time."""
    yield from _stream(path, lambda f: ijson.items(f, prefix, use_float=True))


def _first(path: Path, prefix: str) -> Any:
    """The first value at ``prefix``, or None; the file is closed before returning."""
    items = _items(path, prefix)
    try:
        return next(items, None)
    finally:
        items.close()


def _kvitems(path: Path) -> Iterator[tuple[str, Any]]:
    """The top-level ``(key, value)`` pairs, one value built at a time."""
    yield from _stream(path, lambda f: ijson.kvitems(f, "", use_float=True))


def _sniff(path: Path) -> str:
    """The layout, from the parser events of the first top-level keys."""
    try:
        with open_binary(path) as f:
            return _sniff_events(ijson.parse(f, use_float=True))
    except (ijson.JSONError, *_READ_ERRORS) as err:
        lenient = _lenient_stream(path) if isinstance(err, ijson.JSONError) else None
        if lenient is None:
            raise _bad_json(path, err, None) from err
        try:
            return _sniff_events(ijson.parse(lenient, use_float=True))
        except ijson.JSONError as again:
            raise _bad_json(path, again, None) from again
        except StopIteration:
            return "whole"
    except StopIteration:
        return "whole"


def _sniff_events(events: Iterator[tuple[str, str, Any]]) -> str:
    _, event, _ = next(events)
    if event == "start_array":
        return "list"
    if event != "start_map":
        return "whole"
    for _, event, key in events:
        if event != "map_key":  # the end of the top-level object
            return "whole"
        _, event, value = next(events)
        if key in ("columns", "index"):
            return "split"
        if key == "entries" and event == "start_array":
            return "entries"
        if key == "data" and event == "start_array":
            _, first, _ = next(events)
            return "split" if first == "start_array" else "data_list"
        if key in ("ids", "nextid"):
            return "ase_db"
        if key in WHOLE_KEYS:
            return "whole"
        if event == "start_map" and key not in SKIP_KEYS:
            built = _build(events, event, value)
            if isinstance(built, Mapping) and "unique_id" in built and "numbers" in built:
                return "ase_db"
            return "keyed"
        _skip(events, event)
    return "whole"


def _build(events: Iterator[tuple[str, str, Any]], event: str, value: Any) -> Any:
    builder = ijson.ObjectBuilder()
    builder.event(event, value)
    depth = 1
    for _, event, value in events:
        builder.event(event, value)
        if event in ("start_map", "start_array"):
            depth += 1
        elif event in ("end_map", "end_array"):
            depth -= 1
            if depth == 0:
                break
    return builder.value


def _skip(events: Iterator[tuple[str, str, Any]], event: str) -> None:
    if event not in ("start_map", "start_array"):
        return
    depth = 1
    for _, event, _ in events:
        if event in ("start_map", "start_array"):
            depth += 1
        elif event in ("end_map", "end_array"):
            depth -= 1
            if depth == 0:
                return


# ---------------------------------------------------------------------------- layouts
def _records(path: Path, records: Iterator[Any], name: str) -> Iterator[Structure | ReadFailure]:
    for index, record in enumerate(records):
        yield entry(
            path,
            index,
            _safe_id(record),
            lambda record=record, index=index: record_structure(
                record, path, index, f"{name}:{index}"
            ),
        )


def _safe_id(record: Any) -> str | None:
    if not isinstance(record, Mapping):
        return None
    return (
        alexandria.entry_id(record) if alexandria.is_computed_entry(record) else record_id(record)
    )


def _read_keyed(path: Path, frames: str) -> Iterator[Structure | ReadFailure]:
    """``{id: record}`` or MPtrj ``{mp_id: {frame_id: frame}}``, one value at a time."""
    index = 0
    for key, value in _kvitems(path):
        if key in SKIP_KEYS:
            continue
        if mptrj.is_material(value):
            yield from mptrj.material_structures(path, str(key), value, index, frames)
            index += len(value)
            continue
        yield entry(
            path,
            index,
            (_safe_id(value) or str(key)),
            lambda value=value, key=key, index=index: record_structure(
                value, path, index, str(key)
            ),
        )
        index += 1


def _read_split_table(path: Path, name: str) -> Iterator[Structure | ReadFailure]:
    """A pandas ``orient="split"`` table; the index and the rows stream side by side."""
    columns = _first(path, "columns")
    if not isinstance(columns, list):
        raise StructureReadError(path, "table 'columns' and 'data' must be lists")
    rows = _items(path, "data.item")
    labels = _items(path, "index.item")
    first = next(rows, None)
    if first is None:
        return
    column = _structure_column(columns, first)
    if column is None:
        raise StructureReadError(path, f"table has no structure column (columns: {columns})")
    has_index = True
    index = 0
    row: Any = first
    while True:
        label: Any = index
        if has_index:
            label = next(labels, _END)
            if label is _END:
                if index > 0:
                    raise StructureReadError(
                        path, "table index is shorter than its rows", index=index
                    )
                has_index, label = False, index
        sid = str(label) if isinstance(label, str) else f"{name}:{label}"
        if not isinstance(row, list) or len(row) != len(columns):
            yield ReadFailure(path, f"row does not hold {len(columns)} values", index, sid)
        else:
            yield entry(
                path,
                index,
                sid,
                lambda row=row, sid=sid, index=index: _table_row(
                    path, index, sid, dict(zip(columns, row, strict=True)), column
                ),
            )
        index += 1
        row = next(rows, _END)
        if row is _END:
            break
    if has_index and next(labels, _END) is not _END:
        raise StructureReadError(path, f"table index is longer than its {index} rows")


_END = object()


def _structure_column(columns: list[Any], first_row: Any) -> Any:
    """``"structure"`` if present, else the first column whose first value is a pymatgen dict."""
    if "structure" in columns:
        return "structure"
    first = first_row if isinstance(first_row, list) else []
    for name, value in zip(columns, first, strict=False):
        if isinstance(value, Mapping) and "sites" in value:
            return name
    return None


def _table_row(path: Path, index: int, sid: str, row: Mapping[str, Any], column: Any) -> Structure:
    structure = structure_value(row[column], path, index, sid)
    structure.id = sid
    for name, value in row.items():
        if name != column and value is not None and _is_json_property(value):
            structure.properties[str(name)] = value
    return structure


# ---------------------------------------------------------------------------- small layouts
def _read_whole(path: Path, name: str) -> Iterator[Structure | ReadFailure]:
    try:
        with open_text(path) as f:
            doc = json.load(f)
    except json.JSONDecodeError as err:
        raise StructureReadError(path, f"not valid JSON: {err}") from err
    except (*_READ_ERRORS, UnicodeDecodeError) as err:
        raise StructureReadError(path, f"cannot read: {describe(err)}") from err
    if isinstance(doc, list):  # not reached through _sniff; kept for completeness
        yield from _records(path, iter(doc), name)
    elif not isinstance(doc, dict):
        raise StructureReadError(
            path, f"unrecognised JSON layout: top level is a {type(doc).__name__}"
        )
    elif (
        "sites" in doc
        or ("structure" in doc and not _is_column_table(doc))
        or ("positions" in doc and "atomic_numbers" in doc)
    ):
        yield from _records(path, iter([doc]), name)
    elif _is_column_table(doc):
        for i, label in enumerate(doc["structure"]):
            sid = str(label) if not str(label).isdigit() else f"{name}:{label}"
            row = {column: values.get(label) for column, values in doc.items()}
            yield entry(
                path,
                i,
                sid,
                lambda row=row, sid=sid, i=i: _table_row(path, i, sid, row, "structure"),
            )
    else:
        keys = ", ".join(repr(k) for k in list(doc)[:8])
        raise StructureReadError(
            path,
            f"unrecognised JSON layout (top-level keys: {keys}); expected a MatBench table, "
            "a pymatgen structure dict, a list of records, a MatDeepLearn list, Alexandria "
            "entries or MPtrj",
        )


def _is_single_record(doc: Mapping[str, Any]) -> bool:
    if "sites" in doc or ("positions" in doc and "atomic_numbers" in doc):
        return True
    return "structure" in doc and not _is_column_table(doc)


def _is_column_table(doc: Mapping[str, Any]) -> bool:
    """pandas ``orient="columns"``: ``{"structure": {"0": {...}, ...}, "<target>": {...}}``."""
    column = doc.get("structure")
    return (
        isinstance(column, Mapping)
        and "sites" not in column
        and all(isinstance(v, Mapping) for v in doc.values())
    )


# ---------------------------------------------------------------------------- records
def record_structure(record: Any, path: Path, index: int, default_id: str) -> Structure:
    """One JSON record of any flavour: pymatgen dict, MP-style or Alexandria, MatDeepLearn."""
    if not isinstance(record, Mapping):
        raise EntryError(f"entry is a {type(record).__name__}, expected an object")
    if "structure" in record and alexandria.is_computed_entry(record):
        return alexandria.computed_entry_structure(record, path, index, default_id)
    sid = record_id(record)
    if "sites" in record:
        structure = from_pymatgen(record, default_id)
    elif "structure" in record:
        structure = structure_value(record["structure"], path, index, default_id)
        add_numeric_properties(structure, record, skip={"structure", *ID_KEYS})
    elif "positions" in record and "atomic_numbers" in record:
        structure = matdeeplearn_structure(record, sid or default_id)
    else:
        keys = ", ".join(repr(k) for k in list(record)[:8])
        raise EntryError(
            f"unrecognised record (keys: {keys}); expected a pymatgen dict ('sites'), a "
            "record with a 'structure' or a MatDeepLearn dict ('positions', 'atomic_numbers')"
        )
    if sid is not None:  # a record-level id wins over one inside the structure dict
        structure.id = sid
    return structure


def matdeeplearn_structure(record: Mapping[str, Any], sid: str) -> Structure:
    """A MatDeepLearn record; ``y`` of one element becomes a number, a longer ``y`` a vector."""
    numbers = np.asarray(record["atomic_numbers"])
    if numbers.ndim != 1 or (len(numbers) and not np.all(numbers == np.round(numbers))):
        raise InvalidStructureError(sid, f"bad atomic_numbers {record['atomic_numbers']!r}")
    cell = record.get("cell")
    has_cell = cell is not None
    structure = Structure(
        numbers=numbers.astype(np.int64),
        positions=np.asarray(record["positions"], dtype=np.float64),
        cell=np.asarray(cell, dtype=np.float64) if has_cell else np.zeros((3, 3)),
        pbc=record.get("pbc", has_cell),
        id=sid,
    )
    structural = {"positions", "cell", "atomic_numbers", "pbc", *ID_KEYS, *PER_ATOM_KEYS}
    for key, value in record.items():
        if key in structural or value is None:
            continue
        if key == "y" and _is_json_property(value):
            structure.properties[key] = scalar_or_vector(value)
        elif is_numeric(value):
            structure.properties[key] = value
    return structure
