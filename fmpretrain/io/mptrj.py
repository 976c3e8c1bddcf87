"""MPtrj (``MPtrj_2022.9_full.json``): ``{mp_id: {frame_id: frame}}``, CHGNet's training set.

A frame holds a pymatgen ``"structure"``, ``"uncorrected_total_energy"``,
``"corrected_total_energy"``, ``"energy_per_atom"``, ``"ef_per_atom"``,
``"e_per_atom_relaxed"``, ``"ef_per_atom_relaxed"``, ``"force"``, ``"stress"``, ``"magmom"``,
``"bandgap"`` and ``"mp_id"``. Each frame is a structure with id ``frame_id``
(``"{task_id}-{calc_id}-{ionic_step}"``); numeric per-structure fields (``stress`` included)
become properties, ``mp_id`` a string property; per-atom ``force`` and ``magmom`` are left out.
``frames="last"`` keeps only the last frame listed for each material. Materials stream one at a
time (:mod:`fmpretrain.io.json_records`), so memory holds one material's frames.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fmpretrain.io._common import (
    ID_KEYS,
    EntryError,
    ReadFailure,
    add_numeric_properties,
    entry,
    structure_value,
)
from fmpretrain.structures import Structure

#: Values of the ``frames`` read option.
FRAMES = ("all", "last")


def is_material(value: Any) -> bool:
    """A ``{frame_id: frame}`` dict whose first frame holds a ``"structure"``."""
    if not isinstance(value, Mapping) or not value or "structure" in value or "sites" in value:
        return False
    first = next(iter(value.values()))
    return isinstance(first, Mapping) and "structure" in first


def material_structures(
    path: Path, mp_id: str, material: Mapping[str, Any], start: int, frames: str
) -> Iterator[Structure | ReadFailure]:
    """The frames of one material; entry indices count every frame of the file from ``start``."""
    items = list(material.items())
    offset = 0
    if frames == "last":
        offset = len(items) - 1
        items = items[-1:]
    for i, (frame_id, frame) in enumerate(items):
        index = start + offset + i
        yield entry(
            path,
            index,
            str(frame_id),
            lambda frame_id=frame_id, frame=frame, index=index: _frame(
                path, mp_id, str(frame_id), frame, index
            ),
        )


def _frame(path: Path, mp_id: str, frame_id: str, frame: Any, index: int) -> Structure:
    if not isinstance(frame, Mapping):
        raise EntryError(f"frame is a {type(frame).__name__}, expected an object")
    if "structure" not in frame:
        raise EntryError(f"frame of {mp_id} has no 'structure'")
    structure = structure_value(frame["structure"], path, index, frame_id)
    structure.id = frame_id
    add_numeric_properties(structure, frame, skip={"structure", *ID_KEYS})
    structure.properties["mp_id"] = str(frame.get("mp_id") or mp_id)
    return structure
