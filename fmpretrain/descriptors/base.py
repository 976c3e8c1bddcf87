"""What every descriptor shares: parameters with a stable hash, pairs as tensors, the cutoff."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch

from fmpretrain.neighbors import neighbor_list
from fmpretrain.structures import Structure

#: Default bound on the number of tensor elements one chunk of triplet/pair work may allocate.
DEFAULT_CHUNK_ELEMENTS = 1 << 23


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
    """

    name: ClassVar[str]
    params_class: ClassVar[type[DescriptorParams]]
    #: Bumped whenever a change alters the numbers produced for the same parameters.
    version: ClassVar[int] = 1

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
        if self.params.cutoff <= 0:
            raise ValueError(f"{self.name}: cutoff must be positive, got {self.params.cutoff}")
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

    def __call__(self, structure: Structure | Any) -> torch.Tensor:
        if not isinstance(structure, Structure):
            structure = Structure.from_ase(structure)
        n = len(structure)
        if n == 0:
            return torch.zeros((0, self.dim), dtype=self.dtype, device=self.device)
        return self._compute(structure)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, hash={self.hash}, {self.params})"

    # ------------------------------------------------------------------ for subclasses
    @abstractmethod
    def _compute(self, structure: Structure) -> torch.Tensor:
        """``[n_atoms, dim]`` fingerprint of a non-empty structure."""

    def _check_params(self) -> None:  # noqa: B027 (optional hook)
        """Raise ``ValueError`` for inconsistent parameters."""

    def _hashed_params(self) -> dict[str, Any]:
        return _canonical(self.params.as_dict())

    def _pairs(self, structure: Structure) -> Pairs:
        nl = neighbor_list(structure.positions, structure.cell, structure.pbc, self.cutoff)
        centers, neighbors, vectors, distances = nl.to_torch(self.device, self.dtype)
        return Pairs(centers, neighbors, vectors, distances)

    def _tensor(self, values: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.float64), device=self.device).to(
            self.dtype
        )


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
