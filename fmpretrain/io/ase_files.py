"""Every file format ``ase.io`` reads (extxyz, CIF, POSCAR, traj...), one frame at a time."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fmpretrain.io._common import (
    ReadFailure,
    StructureReadError,
    describe,
    entry,
    stem,
)
from fmpretrain.structures import Structure, _is_json_property, _plain

# info keys ASE's CIF reader adds that are not properties
_ASE_NON_PROPERTIES = {"spacegroup", "unit_cell", "occupancy"}


def read_ase(path: Path, format: str | None) -> Iterator[Structure | ReadFailure]:
    """Frames through ``ase.io.iread``; a frame ASE cannot parse ends the file (fatal)."""
    import ase.io
    from ase.io.formats import UnknownFileTypeError, filetype

    name = stem(path)
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
            raise StructureReadError(path, f"{what}: {describe(err)}", index=index) from err
        yield entry(
            path,
            index,
            None,
            lambda atoms=atoms, index=index: structure_from_atoms(
                atoms, path, index, f"{name}:{index}"
            ),
        )
        index += 1


def structure_from_atoms(
    atoms: Any, path: Path, index: int, default_id: str, id: str | None = None
) -> Structure:
    """``Structure.from_ase`` plus array-valued info and calculator results as properties.

    Per-atom arrays (forces, charges) are not kept; a CIF site with partial occupancy is
    refused.
    """
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
                    entry_id=id,
                    fatal=False,
                )
    extra = {k: info.pop(k) for k in list(info) if k in _ASE_NON_PROPERTIES}
    try:
        structure = Structure.from_ase(atoms, id=id)
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
