"""Alexandria (``alexandria_*.json.bz2``): ``{"entries": [ComputedStructureEntry dicts]}``.

Each entry holds a pymatgen ``"structure"``, ``"energy"``, ``"correction"``, ``"entry_id"``
and a ``"data"`` dict (``mat_id``, ``e_form``, ``e_above_hull``, ``band_gap_ind``, ``stress``,
...). The id is ``entry_id`` (else ``data["mat_id"]``); ``energy``, ``correction`` and the
numeric ``data`` fields become properties (strings such as ``formula`` and per-atom arrays do
not). The ``entries`` list is streamed by :mod:`fmpretrain.io.json_records`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fmpretrain.io._common import ID_KEYS, EntryError, add_numeric_properties, structure_value
from fmpretrain.structures import Structure

#: ``data`` fields that name the entry rather than describe it.
DATA_ID_KEYS = ("mat_id", "prototype_id", "location")


def is_computed_entry(record: Mapping[str, Any]) -> bool:
    """A pymatgen ``ComputedStructureEntry.as_dict()`` (Alexandria's entry layout)."""
    if record.get("@class") in ("ComputedStructureEntry", "ComputedEntry"):
        return True
    return "entry_id" in record and "energy" in record and isinstance(record.get("data"), Mapping)


def entry_id(record: Mapping[str, Any]) -> str | None:
    """``entry_id``, else ``data["mat_id"]``."""
    value = record.get("entry_id")
    if value is None and isinstance(record.get("data"), Mapping):
        value = record["data"].get("mat_id")
    return None if value is None else str(value)


def computed_entry_structure(
    record: Mapping[str, Any], path: Path, index: int, default_id: str
) -> Structure:
    """One entry as a structure with its energies and numeric data as properties."""
    sid = entry_id(record) or default_id
    if "structure" not in record:
        raise EntryError("entry has no 'structure' (a ComputedEntry without positions)")
    structure = structure_value(record["structure"], path, index, sid)
    structure.id = sid
    add_numeric_properties(structure, record, skip={"structure", "data", *ID_KEYS})
    data = record.get("data")
    if isinstance(data, Mapping):
        add_numeric_properties(structure, data, skip={*DATA_ID_KEYS, *ID_KEYS})
    return structure
