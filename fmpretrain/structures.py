"""The one in-memory structure record, its conversions and its validation.

A :class:`Structure` holds atomic numbers, Cartesian positions (Å, float64), a 3x3 cell (Å),
periodic boundary flags, an id and optional target properties. Readers for files live in
:mod:`fmpretrain.io`; this module only knows the record itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import ase

#: Highest atomic number the project accepts (oganesson).
MAX_ATOMIC_NUMBER = 118

#: Default minimum interatomic distance (Å) below which a structure is rejected as unphysical.
DEFAULT_MIN_DISTANCE = 0.5


class InvalidStructureError(ValueError):
    """A structure failed validation; the message names the structure and the reason."""

    def __init__(self, structure_id: str, reason: str):
        self.structure_id = structure_id
        self.reason = reason
        super().__init__(f"structure {structure_id!r}: {reason}")


@dataclass(eq=False)
class Structure:
    """An atomic structure: a periodic crystal, a slab (mixed pbc) or an isolated molecule."""

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    pbc: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=bool))
    id: str = ""
    properties: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.numbers = np.asarray(self.numbers, dtype=np.int64).reshape(-1)
        self.positions = np.asarray(self.positions, dtype=np.float64).reshape(-1, 3)
        self.cell = np.asarray(self.cell, dtype=np.float64).reshape(3, 3)
        pbc = np.asarray(self.pbc, dtype=bool)
        self.pbc = np.repeat(pbc, 3) if pbc.ndim == 0 else pbc.reshape(3)
        self.id = str(self.id)
        if len(self.numbers) != len(self.positions):
            raise InvalidStructureError(
                self.id,
                f"{len(self.numbers)} atomic numbers but {len(self.positions)} positions",
            )

    def __len__(self) -> int:
        return len(self.numbers)

    def __repr__(self) -> str:
        return (
            f"Structure(id={self.id!r}, formula={self.formula!r}, n_atoms={len(self)}, "
            f"pbc={self.pbc.tolist()})"
        )

    @property
    def formula(self) -> str:
        """Hill-ordered chemical formula, e.g. ``'Cl4Na4'``."""
        from ase.data import chemical_symbols
        from ase.formula import Formula

        symbols = "".join(
            chemical_symbols[z] if 0 < z <= MAX_ATOMIC_NUMBER else "X" for z in self.numbers
        )
        return Formula(symbols).format("hill") if symbols else ""

    def copy(self) -> Structure:
        return Structure(
            self.numbers.copy(),
            self.positions.copy(),
            self.cell.copy(),
            self.pbc.copy(),
            self.id,
            dict(self.properties),
        )

    # ------------------------------------------------------------------ conversions
    @classmethod
    def from_ase(cls, atoms: ase.Atoms, id: str | None = None) -> Structure:
        """Build a record from an ``ase.Atoms``; ``atoms.info`` scalars become properties."""
        info = dict(atoms.info)
        sid = id if id is not None else str(info.pop("id", info.pop("structure_id", "")))
        props = {k: _plain(v) for k, v in info.items() if _is_property(v)}
        return cls(
            numbers=atoms.get_atomic_numbers(),
            positions=atoms.get_positions(),
            cell=np.asarray(atoms.get_cell()),
            pbc=atoms.get_pbc(),
            id=sid,
            properties=props,
        )

    def to_ase(self) -> ase.Atoms:
        """Convert to ``ase.Atoms`` (the id and properties go into ``atoms.info``)."""
        import ase

        atoms = ase.Atoms(
            numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc
        )
        atoms.info["id"] = self.id
        atoms.info.update(self.properties)
        return atoms

    @classmethod
    def from_pymatgen_dict(cls, d: Mapping[str, Any], id: str = "") -> Structure:
        """Read a pymatgen ``Structure.as_dict()`` / ``Molecule.as_dict()`` without pymatgen.

        Partially occupied sites are refused: a fingerprint needs one element per site.
        """
        from ase.data import atomic_numbers

        sites = d.get("sites")
        if sites is None:
            raise InvalidStructureError(id, "pymatgen dict has no 'sites' entry")
        numbers, positions = [], []
        for n, site in enumerate(sites):
            species = site.get("species") or []
            if len(species) != 1 or abs(float(species[0].get("occu", 1.0)) - 1.0) > 1e-6:
                raise InvalidStructureError(
                    id, f"site {n} is disordered ({species}); only ordered structures are supported"
                )
            element = str(species[0]["element"])
            element = "".join(c for c in element if c.isalpha())  # "Fe2+" -> "Fe"
            if element not in atomic_numbers:
                raise InvalidStructureError(id, f"site {n}: unknown element {element!r}")
            numbers.append(atomic_numbers[element])
            positions.append(site["xyz"])
        lattice = d.get("lattice")
        if lattice is not None:
            cell = np.asarray(lattice["matrix"], dtype=np.float64)
            pbc = np.asarray(lattice.get("pbc", (True, True, True)), dtype=bool)
        else:  # a Molecule
            cell, pbc = np.zeros((3, 3)), np.zeros(3, dtype=bool)
        return cls(
            numbers=np.asarray(numbers, dtype=np.int64),
            positions=np.asarray(positions, dtype=np.float64).reshape(-1, 3),
            cell=cell,
            pbc=pbc,
            id=id,
        )

    def to_pymatgen_dict(self) -> dict[str, Any]:
        """The pymatgen ``Structure.as_dict()`` layout (readable by pymatgen and by us)."""
        from ase.data import chemical_symbols

        periodic = bool(self.pbc.any())
        inv = np.linalg.inv(self.cell) if periodic and abs(np.linalg.det(self.cell)) > 0 else None
        sites = []
        for z, xyz in zip(self.numbers, self.positions, strict=True):
            site: dict[str, Any] = {
                "species": [{"element": chemical_symbols[int(z)], "occu": 1}],
                "xyz": xyz.tolist(),
                "label": chemical_symbols[int(z)],
                "properties": {},
            }
            if inv is not None:
                site["abc"] = (xyz @ inv).tolist()
            sites.append(site)
        d: dict[str, Any] = {"charge": 0, "properties": {}, "sites": sites}
        if periodic:
            d["@module"], d["@class"] = "pymatgen.core.structure", "Structure"
            d["lattice"] = {"matrix": self.cell.tolist(), "pbc": self.pbc.tolist()}
        else:
            d["@module"], d["@class"] = "pymatgen.core.structure", "Molecule"
        return d

    def repeat(self, reps: tuple[int, int, int]) -> Structure:
        """A supercell ``reps[0] x reps[1] x reps[2]``; atom order is image-major like ASE."""
        atoms = self.to_ase().repeat(reps)
        return Structure.from_ase(atoms, id=self.id)


def _is_property(value: Any) -> bool:
    return isinstance(value, (int, float, bool, str, np.integer, np.floating, np.bool_))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def validate(structure: Structure, min_distance: float = DEFAULT_MIN_DISTANCE) -> Structure:
    """Check a structure and return it unchanged, or raise :class:`InvalidStructureError`.

    Rejects: no atoms, non-finite positions or cell, unknown elements, a singular cell along
    periodic directions, and any two atoms (periodic images included) closer than
    ``min_distance`` Å.
    """
    sid = structure.id
    n = len(structure)
    if n == 0:
        raise InvalidStructureError(sid, "has no atoms")
    bad = np.nonzero((structure.numbers < 1) | (structure.numbers > MAX_ATOMIC_NUMBER))[0]
    if len(bad):
        raise InvalidStructureError(
            sid,
            f"unknown element: atomic number {int(structure.numbers[bad[0]])} at atom "
            f"{int(bad[0])} (valid: 1-{MAX_ATOMIC_NUMBER})",
        )
    if not np.isfinite(structure.positions).all():
        atom = int(np.nonzero(~np.isfinite(structure.positions).all(axis=1))[0][0])
        raise InvalidStructureError(sid, f"non-finite (NaN/inf) position at atom {atom}")
    if not np.isfinite(structure.cell).all():
        raise InvalidStructureError(sid, "non-finite (NaN/inf) cell")
    periodic = structure.cell[structure.pbc]
    if len(periodic):
        lengths = np.linalg.norm(periodic, axis=1)
        sv = np.linalg.svd(periodic, compute_uv=False)
        if lengths.min() < 1e-6 or sv.min() < 1e-6 * max(1.0, lengths.max()):
            raise InvalidStructureError(
                sid,
                f"singular cell along periodic directions (pbc={structure.pbc.tolist()}, "
                f"cell={structure.cell.round(4).tolist()})",
            )
    if min_distance > 0:
        from fmpretrain.neighbors import neighbor_list

        nl = neighbor_list(structure.positions, structure.cell, structure.pbc, min_distance)
        if len(nl.distances):
            k = int(np.argmin(nl.distances))
            raise InvalidStructureError(
                sid,
                f"atoms {int(nl.centers[k])} and {int(nl.neighbors[k])} are "
                f"{nl.distances[k]:.3f} Å apart, closer than the minimum distance "
                f"{min_distance} Å",
            )
    return structure
