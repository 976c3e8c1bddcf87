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
        """Hill-ordered chemical formula, e.g. ``'Cl4Na4'`` (C, H first if carbon is present)."""
        from ase.data import chemical_symbols

        values, counts = np.unique(self.numbers, return_counts=True)
        count = {
            chemical_symbols[z] if 0 < z <= MAX_ATOMIC_NUMBER else "X": int(n)
            for z, n in zip(values, counts, strict=True)
        }
        first = ["C", "H"] if "C" in count else []
        order = [s for s in first if s in count] + sorted(s for s in count if s not in first)
        return "".join(s + (str(count[s]) if count[s] > 1 else "") for s in order)

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
        # pop both id keys always, so an explicit ``id`` never leaves one behind as a property
        info_id = info.pop("id", None)
        info_sid = info.pop("structure_id", None)
        if id is not None:
            sid = id
        else:
            sid = str(info_id if info_id is not None else info_sid if info_sid is not None else "")
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

        Cartesian ``xyz`` site coordinates are used when present, else fractional ``abc``
        (``as_dict(verbosity=0)`` omits ``xyz``). Scalar (and list) entries of the
        structure-level ``properties`` become properties. Partially occupied sites are
        refused: a fingerprint needs one element per site; so are dummy species (``X``).
        """
        from ase.data import atomic_numbers

        if not isinstance(d, Mapping):
            raise InvalidStructureError(id, f"pymatgen dict expected, got {type(d).__name__}")
        sites = d.get("sites")
        if sites is None:
            raise InvalidStructureError(id, "pymatgen dict has no 'sites' entry")
        lattice = d.get("lattice")
        if lattice is not None:
            if not isinstance(lattice, Mapping) or "matrix" not in lattice:
                raise InvalidStructureError(id, "pymatgen lattice has no 'matrix' entry")
            try:
                cell = np.asarray(lattice["matrix"], dtype=np.float64).reshape(3, 3)
            except (TypeError, ValueError) as err:
                raise InvalidStructureError(id, f"bad lattice matrix: {err}") from None
            pbc = np.asarray(lattice.get("pbc", (True, True, True)), dtype=bool)
        else:  # a Molecule
            cell, pbc = np.zeros((3, 3)), np.zeros(3, dtype=bool)
        numbers, positions = [], []
        for n, site in enumerate(sites):
            if not isinstance(site, Mapping):
                raise InvalidStructureError(id, f"site {n} is not a dict")
            species = site.get("species") or []
            if not all(isinstance(sp, Mapping) for sp in species):
                raise InvalidStructureError(id, f"site {n}: malformed species {species!r}")
            if len(species) != 1 or abs(float(species[0].get("occu", 1.0)) - 1.0) > 1e-6:
                raise InvalidStructureError(
                    id, f"site {n} is disordered ({species}); only ordered structures are supported"
                )
            raw = str(species[0].get("element", ""))
            element = "".join(c for c in raw if c.isalpha())  # "Fe2+" -> "Fe"
            z = atomic_numbers.get(element, 0)  # ASE maps the dummy "X" to 0
            if not 1 <= z <= MAX_ATOMIC_NUMBER:
                raise InvalidStructureError(id, f"site {n}: unknown element {raw!r}")
            numbers.append(z)
            xyz, abc = site.get("xyz"), site.get("abc")
            if xyz is None and (abc is None or lattice is None):
                raise InvalidStructureError(id, f"site {n} has no coordinates ('xyz' or 'abc')")
            try:
                if xyz is not None:
                    xyz = np.asarray(xyz, dtype=np.float64).reshape(3)
                else:
                    xyz = np.asarray(abc, dtype=np.float64).reshape(3) @ cell
            except (TypeError, ValueError) as err:
                raise InvalidStructureError(id, f"site {n}: bad coordinates: {err}") from None
            positions.append(xyz)
        props = d.get("properties") or {}
        properties = (
            {str(k): _plain(v) for k, v in props.items() if _is_json_property(v)}
            if isinstance(props, Mapping)
            else {}
        )
        return cls(
            numbers=np.asarray(numbers, dtype=np.int64),
            positions=np.asarray(positions, dtype=np.float64).reshape(-1, 3),
            cell=cell,
            pbc=pbc,
            id=id,
            properties=properties,
        )

    def to_pymatgen_dict(self) -> dict[str, Any]:
        """The pymatgen ``Structure.as_dict()`` layout (readable by pymatgen and by us).

        Structures with no periodic direction become a ``Molecule`` dict. Scalar and list
        properties go into the structure-level ``properties``.
        """
        from ase.data import chemical_symbols
        from ase.geometry import cell_to_cellpar

        periodic = bool(self.pbc.any())
        inv = np.linalg.inv(self.cell) if periodic and abs(np.linalg.det(self.cell)) > 0 else None
        bad = (self.numbers < 1) | (self.numbers > MAX_ATOMIC_NUMBER)
        if bad.any():
            raise InvalidStructureError(
                self.id, f"unknown element: atomic number {int(self.numbers[bad][0])}"
            )
        sites = []
        for z, xyz in zip(self.numbers, self.positions, strict=True):
            symbol = chemical_symbols[int(z)]
            site: dict[str, Any] = {"species": [{"element": symbol, "occu": 1}]}
            if inv is not None:
                site["abc"] = (xyz @ inv).tolist()
            site.update({"xyz": xyz.tolist(), "properties": {}, "label": symbol})
            sites.append(site)
        d: dict[str, Any] = {"@module": "pymatgen.core.structure"}
        if periodic:
            d["@class"] = "Structure"
            d["charge"] = 0
            d["lattice"] = {"matrix": self.cell.tolist(), "pbc": [bool(p) for p in self.pbc]}
            if inv is not None:  # a singular cell (slab with a zero vector) has no parameters
                names = ("a", "b", "c", "alpha", "beta", "gamma")
                cellpar = [float(x) for x in cell_to_cellpar(self.cell)]
                d["lattice"].update(zip(names, cellpar, strict=True))
                d["lattice"]["volume"] = float(abs(np.linalg.det(self.cell)))
        else:
            d["@class"] = "Molecule"
            d["charge"] = 0
            d["spin_multiplicity"] = 1 + int(self.numbers.sum()) % 2
        d["properties"] = {k: _plain(v) for k, v in self.properties.items() if _is_json_property(v)}
        d["sites"] = sites
        return d

    def content_hash(self, decimals: int = 4) -> str:
        """A hash of the geometry that ignores atom order, wrapping, id and properties.

        Atoms are sorted by (Z, fractional coordinates wrapped into [0, 1)) along periodic
        directions; coordinates and the cell are rounded to ``decimals`` (Å or fractions).
        Two copies of a structure with shuffled atoms or shifted images hash alike; symmetry-
        equivalent but differently set cells (another origin, a rotated cell) do not.
        """
        import hashlib

        coords = self.positions.copy()
        if self.pbc.any():
            frac = np.linalg.solve(self.cell.T, self.positions.T).T
            wrapped = np.round(np.mod(frac, 1.0), decimals) % 1.0
            coords = np.where(self.pbc, wrapped, np.round(self.positions, decimals))
        coords = np.round(coords, decimals) + 0.0  # -0.0 -> 0.0
        order = np.lexsort((coords[:, 2], coords[:, 1], coords[:, 0], self.numbers))
        digest = hashlib.sha256()
        digest.update(self.numbers[order].astype("<i8").tobytes())
        digest.update(coords[order].astype("<f8").tobytes())
        digest.update((np.round(self.cell, decimals) + 0.0).astype("<f8").tobytes())
        digest.update(self.pbc.astype("u1").tobytes())
        return digest.hexdigest()[:32]

    def repeat(self, reps: tuple[int, int, int]) -> Structure:
        """A supercell ``reps[0] x reps[1] x reps[2]``; atom order is image-major like ASE."""
        atoms = self.to_ase().repeat(reps)
        return Structure.from_ase(atoms, id=self.id)


def _is_property(value: Any) -> bool:
    return isinstance(value, (int, float, bool, str, np.integer, np.floating, np.bool_))


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def _is_json_property(value: Any) -> bool:
    """A scalar, or a (nested) list/array of scalars: what a JSON file can hold as a target."""
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biuf"
    if isinstance(value, (list, tuple)):
        return all(_is_json_property(v) for v in value)
    return _is_property(value)


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
