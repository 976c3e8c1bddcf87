"""Per-atom structural fingerprints (wACSF, GMP, EAD, and ``concat`` of several) and their
registry.

>>> from fmpretrain.descriptors import get_descriptor
>>> d = get_descriptor("wacsf", cutoff=6.0)
>>> d(structure).shape  # (n_atoms, d.dim)
"""

from __future__ import annotations

from typing import Any

from fmpretrain.descriptors.base import Descriptor, DescriptorParams, cosine_cutoff

_REGISTRY: dict[str, type[Descriptor]] = {}


def register_descriptor(cls: type[Descriptor]) -> type[Descriptor]:
    """Class decorator: make ``cls`` available to :func:`get_descriptor` under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def available_descriptors() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def descriptor_class(name: str) -> type[Descriptor]:
    """The registered class of ``name`` (case-insensitive); unknown names raise ``KeyError``."""
    _load_builtins()
    key = name.lower()
    if key not in _REGISTRY:
        raise KeyError(f"unknown descriptor {name!r}; available: {sorted(_REGISTRY)}")
    return _REGISTRY[key]


def get_descriptor(name: str, **params: Any) -> Descriptor:
    """Build a descriptor by name with the paper's defaults, overridden by ``params``.

    ``device``, ``dtype`` and ``chunk_elements`` are accepted too (not hashed).
    """
    return descriptor_class(name)(**params)


def _load_builtins() -> None:
    # Imported lazily so that each module registers itself without an import cycle.
    from fmpretrain.descriptors import concat, ead, gmp, wacsf  # noqa: F401


__all__ = [
    "Descriptor",
    "DescriptorParams",
    "available_descriptors",
    "cosine_cutoff",
    "descriptor_class",
    "get_descriptor",
    "register_descriptor",
]
