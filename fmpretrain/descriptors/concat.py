"""Several descriptors side by side as one fingerprint (the paper's "all three" target).

``get_descriptor("concat")`` is wACSF, GMP and EAD at their defaults, ``[n_atoms, 50 + 25 +
64]``; ``parts`` names others, each a name or ``{"name": ..., "params": {...}}``. The parts
share one cutoff and one neighbour list per chunk; the hash covers every part's name,
parameters and version, so a change to any part re-featurizes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from fmpretrain.descriptors import descriptor_class, get_descriptor, register_descriptor
from fmpretrain.descriptors.base import AtomBatch, Descriptor, DescriptorParams, _canonical


@dataclasses.dataclass(frozen=True)
class ConcatParams(DescriptorParams):
    parts: tuple[Any, ...] = ("wacsf", "gmp", "ead")


@register_descriptor
class Concat(Descriptor):
    """The features of ``parts``, concatenated in order; ``dim`` is the sum of theirs."""

    name = "concat"
    params_class = ConcatParams

    def __init__(self, **kwargs: Any) -> None:
        if "parts" in kwargs:
            kwargs["parts"] = tuple(_plain(p) for p in _as_list(kwargs["parts"]))
        super().__init__(**kwargs)

    def _check_params(self) -> None:
        if not self.params.parts:
            raise ValueError("concat: parts is empty; name at least one descriptor")
        self._parts: list[Descriptor] = []
        for spec in self.params.parts:
            name, params = _part_spec(spec)
            if name == self.name:
                raise ValueError("concat: a part cannot itself be 'concat'; list its parts")
            cutoff = params.setdefault("cutoff", self.params.cutoff)
            if float(cutoff) != self.cutoff:
                raise ValueError(
                    f"concat: part {name!r} has cutoff {cutoff}, the concatenation "
                    f"{self.cutoff}: give every part the same cutoff (set concat's cutoff)"
                )
            self._parts.append(
                get_descriptor(
                    name,
                    device=self.device,
                    dtype=self.dtype,
                    chunk_elements=self.chunk_elements,
                    **params,
                )
            )

    @property
    def parts(self) -> list[Descriptor]:
        return list(self._parts)

    @property
    def dim(self) -> int:
        return sum(part.dim for part in self._parts)

    @property
    def feature_names(self) -> list[str]:
        names = [n for part in self._parts for n in part.feature_names]
        if len(set(names)) == len(names):
            return names
        return [f"p{i}_{n}" for i, part in enumerate(self._parts) for n in part.feature_names]

    def _hashed_params(self) -> dict[str, Any]:
        return _canonical(
            {"cutoff": self.params.cutoff, "parts": [part.config() for part in self._parts]}
        )

    def _compute(self, atoms: AtomBatch) -> torch.Tensor:
        return torch.cat([part._compute(atoms) for part in self._parts], dim=1)


def _part_spec(spec: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(spec, str):
        return spec.lower(), {}
    if isinstance(spec, Mapping) and "name" in spec and set(spec) <= {"name", "params", "version"}:
        name = str(spec["name"]).lower()
        version = spec.get("version")
        current = descriptor_class(name).version  # no instance: GMP would load its densities
        if version is not None and int(version) != current:
            raise ValueError(
                f"concat: part {name!r} was recorded at version {version}, this fmpretrain "
                f"computes version {current}: re-featurize with this version"
            )
        return name, dict(spec.get("params") or {})
    raise ValueError(
        f"concat: part {spec!r} is neither a descriptor name nor {{name: ..., params: {{...}}}}"
    )


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str | Mapping) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def _plain(value: Any) -> Any:
    """Plain Python containers (OmegaConf's nodes are Mappings and Sequences too)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value
