"""CDVAE / DiffCSP / MatterGen CSV files: an index column, ``material_id``, ``cif``, properties."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from fmpretrain.io._common import (
    ReadFailure,
    StructureReadError,
    entry,
    open_text,
    stem,
    structure_value,
)
from fmpretrain.structures import Structure


def read_cif_csv(path: Path) -> Iterator[Structure | ReadFailure]:
    """Rows stream (:mod:`csv` handles the multi-line quoted CIF field).

    The id is the ``material_id`` column (else ``"{stem}:{row}"``); numeric columns become
    float properties and other non-empty text columns (``formula``) string properties. A row
    with the wrong number of values or a bad CIF is one failure; malformed CSV quoting ends
    the file.
    """
    name = stem(path)
    csv.field_size_limit(1 << 28)
    with open_text(path, newline="") as f:
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
        names = [(i, n) for i, n in enumerate(header) if n and i not in (cif_col, id_col)]
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
            sid = sid or f"{name}:{index}"
            if len(row) != len(header):
                yield ReadFailure(
                    path, f"row holds {len(row)} values for {len(header)} columns", index, sid
                )
            else:
                yield entry(
                    path,
                    index,
                    sid,
                    lambda row=row, sid=sid, index=index: _row(
                        path, row, sid, index, cif_col, names
                    ),
                )
            index += 1


def _row(
    path: Path, row: list[str], sid: str, index: int, cif_col: int, names: list[tuple[int, str]]
) -> Structure:
    structure = structure_value(row[cif_col], path, index, sid)
    structure.id = sid
    for i, name in names:
        value = _csv_value(row[i])
        if value is not None:
            structure.properties[name] = value
    return structure


def _csv_value(text: str) -> float | str | None:
    try:
        return float(text)
    except ValueError:
        return text or None
