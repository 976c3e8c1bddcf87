"""Writers: extxyz, MatBench split JSON, MP-style and MatDeepLearn JSON lists, ASE SQLite."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np

from fmpretrain.io._common import is_numeric, strip_compression
from fmpretrain.structures import MAX_ATOMIC_NUMBER, Structure, _is_json_property, _plain

_DB_FORMATS = {"db", "ase-db", "ase_db", "sqlite"}


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
    name = strip_compression(path.name.lower())
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
                if key in ("energy", "free_energy", "magmom") and is_numeric(value):
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
