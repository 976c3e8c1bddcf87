"""What every descriptor shares: parameters with a stable hash, pairs as tensors, the cutoff.

Every descriptor computes on an :class:`AtomBatch`: the atoms of one or more structures
concatenated, with one neighbour list whose indices are offset per structure. A single
structure is a batch of one, so the per-structure and batched paths are the same code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar, overload

import numpy as np
import torch

from fmpretrain.neighbors import NeighborList, check_cutoff, neighbor_list
from fmpretrain.structures import Structure

#: Default bound on the number of tensor elements one chunk of triplet/pair work may allocate.
DEFAULT_CHUNK_ELEMENTS = 1 << 23

#: Default bound on the neighbour entries of one batch chunk (:meth:`Descriptor.batch`).
DEFAULT_BATCH_PAIRS = 1 << 18


@dataclasses.dataclass(frozen=True)
class DescriptorParams:
    """Base of each descriptor's parameter dataclass; every field is hashed."""

    cutoff: float = 6.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Descriptor(ABC):
    """A per-atom structural fingerprint: ``d(structure) -> Tensor[n_atoms, d.dim]``.

    Construct through :func:`fmpretrain.descriptors.get_descriptor`. ``device`` and ``dtype``
    choose where and in which precision it computes; they are not part of the parameters and
    do not change the hash. ``chunk_elements`` bounds the memory of one chunk of work.

    ``d(structures)`` with a list (or :meth:`batch`) computes many structures in few passes:
    they are grouped into chunks of at most :attr:`batch_pairs` neighbour entries (a larger
    structure is a chunk of its own), and each chunk is one :class:`AtomBatch`.
    """

    name: ClassVar[str]
    params_class: ClassVar[type[DescriptorParams]]
    #: Bumped whenever a change alters the numbers produced for the same parameters.
    version: ClassVar[int] = 1
    #: Neighbour entries per batch chunk; bounds the memory of :meth:`batch`.
    batch_pairs: int = DEFAULT_BATCH_PAIRS

    def __init__(
        self,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float64,
        chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
        **params: Any,
    ):
        valid = {f.name for f in dataclasses.fields(self.params_class)}
        unknown = sorted(set(params) - valid)
        if unknown:
            raise TypeError(
                f"unknown parameter(s) {unknown} for descriptor {self.name!r}; "
                f"valid parameters: {sorted(valid)}"
            )
        self.params = self.params_class(**params)
        check_cutoff(self.params.cutoff, f"{self.name}: cutoff")  # finite, > 0, <= MAX_CUTOFF
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype
        self.chunk_elements = int(chunk_elements)
        self._check_params()

    # ------------------------------------------------------------------ public API
    @property
    @abstractmethod
    def dim(self) -> int:
        """Number of features per atom."""

    @property
    def feature_names(self) -> list[str]:
        """One short label per feature column."""
        return [f"{self.name}_{k}" for k in range(self.dim)]

    @property
    def cutoff(self) -> float:
        return float(self.params.cutoff)

    def config(self) -> dict[str, Any]:
        """``{"name", "params", "version"}``: everything that determines the numbers."""
        return {"name": self.name, "params": self._hashed_params(), "version": self.version}

    @property
    def hash(self) -> str:
        """Stable hex digest of :meth:`config` (independent of device, dtype and key order)."""
        blob = json.dumps(self.config(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @overload
    def __call__(self, structure: Structure | Any) -> torch.Tensor: ...

    @overload
    def __call__(self, structure: list[Any] | tuple[Any, ...]) -> list[torch.Tensor]: ...

    def __call__(self, structure: Any) -> torch.Tensor | list[torch.Tensor]:
        """``[n_atoms, dim]`` of one structure; a list or tuple of them gives :meth:`batch`."""
        if isinstance(structure, (list, tuple)):
            return self.batch(structure)
        return self.batch([structure])[0]

    def batch(self, structures: Iterable[Structure | Any]) -> list[torch.Tensor]:
        """One ``[n_atoms, dim]`` tensor per structure, computed chunk by chunk.

        Equal (to rounding) to calling the descriptor on each structure. An error in any
        structure of a chunk raises; callers that must isolate bad structures retry one by one.
        """
        items = [s if isinstance(s, Structure) else Structure.from_ase(s) for s in structures]
        out: list[torch.Tensor] = []
        for atoms in self._chunks(items):
            if len(atoms):
                features = self._compute(atoms)
            else:
                features = torch.zeros((0, self.dim), dtype=self.dtype, device=self.device)
            out.extend(features.split(atoms.sizes.tolist()))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, hash={self.hash}, {self.params})"

    # ------------------------------------------------------------------ for subclasses
    @abstractmethod
    def _compute(self, atoms: AtomBatch) -> torch.Tensor:
        """``[n_atoms, dim]`` fingerprints of a non-empty batch of atoms."""

    def _check_params(self) -> None:  # noqa: B027 (optional hook)
        """Raise ``ValueError`` for inconsistent parameters."""

    def _hashed_params(self) -> dict[str, Any]:
        return _canonical(self.params.as_dict())

    def _chunks(self, structures: Sequence[Structure]) -> Iterator[AtomBatch]:
        """Consecutive structures as batches of about :attr:`batch_pairs` neighbour entries."""
        group: list[Structure] = []
        lists: list[NeighborList] = []
        n_pairs = 0
        for s in structures:
            nl = neighbor_list(s.positions, s.cell, s.pbc, self.cutoff)
            if group and n_pairs + len(nl) > self.batch_pairs:
                yield AtomBatch.concatenate(group, lists)
                group, lists, n_pairs = [], [], 0
            group.append(s)
            lists.append(nl)
            n_pairs += len(nl)
        if group:
            yield AtomBatch.concatenate(group, lists)

    def _pairs(self, atoms: AtomBatch) -> Pairs:
        centers, neighbors, vectors, distances = atoms.pairs.to_torch(self.device, self.dtype)
        return Pairs(centers, neighbors, vectors, distances)

    def _tensor(self, values: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.float64), device=self.device).to(
            self.dtype
        )


@dataclasses.dataclass(frozen=True)
class AtomBatch:
    """The atoms of consecutive structures, concatenated, and their joint neighbour list.

    ``pairs`` indexes atoms of the batch (each structure's indices offset by the atoms before
    it), sorted by centre; ``sizes[k]`` is the number of atoms of structure ``k``.
    """

    numbers: np.ndarray  # [N] int64
    pairs: NeighborList
    sizes: np.ndarray  # [S] int64

    def __len__(self) -> int:
        return len(self.numbers)

    @classmethod
    def concatenate(
        cls, structures: Sequence[Structure], lists: Sequence[NeighborList]
    ) -> AtomBatch:
        """Join structures and their neighbour lists (one list per structure, same order)."""
        sizes = np.array([len(s) for s in structures], dtype=np.int64)
        if len(structures) == 1:
            return cls(np.asarray(structures[0].numbers, dtype=np.int64), lists[0], sizes)
        offsets = np.repeat(np.cumsum(sizes) - sizes, [len(nl) for nl in lists])
        pairs = NeighborList(
            centers=np.concatenate([nl.centers for nl in lists]) + offsets,
            neighbors=np.concatenate([nl.neighbors for nl in lists]) + offsets,
            shifts=np.concatenate([nl.shifts for nl in lists]),
            vectors=np.concatenate([nl.vectors for nl in lists]),
            distances=np.concatenate([nl.distances for nl in lists]),
        )
        numbers = np.concatenate([np.asarray(s.numbers, dtype=np.int64) for s in structures])
        return cls(numbers, pairs, sizes)


@dataclasses.dataclass(frozen=True)
class Pairs:
    """Neighbour pairs as tensors: ``vectors[p] = r_neighbor - r_center`` (with image)."""

    centers: torch.Tensor
    neighbors: torch.Tensor
    vectors: torch.Tensor
    distances: torch.Tensor

    def __len__(self) -> int:
        return int(self.centers.shape[0])


def cosine_cutoff(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    """``f_c(r) = ½[cos(πr/r_c) + 1]`` for ``r < r_c``, else 0."""
    return torch.where(
        r < cutoff, 0.5 * (torch.cos(r * (math.pi / cutoff)) + 1.0), torch.zeros_like(r)
    )


#: Element weight schemes ``w(Z)`` used by wACSF (g, h) and EAD (c).
ELEMENT_WEIGHTS = ("atomic_number", "unit")


def element_weights(numbers: np.ndarray, scheme: str) -> np.ndarray:
    """Per-atom weights: ``Z`` ("atomic_number") or 1 ("unit")."""
    numbers = np.asarray(numbers, dtype=np.int64)
    if scheme == "atomic_number":
        return numbers.astype(np.float64)
    if scheme == "unit":
        return np.ones(len(numbers))
    raise ValueError(f"unknown element weight scheme {scheme!r}; choose from {ELEMENT_WEIGHTS}")


def _canonical(value: Any) -> Any:
    """JSON-stable form: tuples to lists, floats rounded to 12 significant digits."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(f"{float(value):.12g}")
    if isinstance(value, np.integer):
        return int(value)
    return value
