"""fmpretrain: pre-train GNNs for materials on cheap per-atom structural fingerprints.

The user-facing names are imported lazily (``import fmpretrain`` does not import torch):

- :func:`load` (:mod:`fmpretrain.api`): a release (path, registry name, URL) as a model with
  ``predict``, ``embed`` and ``fingerprint``;
- :class:`Calculator` (:mod:`fmpretrain.calculator`): an ASE calculator of a fine-tuned model;
- :func:`get_descriptor` (:mod:`fmpretrain.descriptors`): wACSF, GMP, EAD fingerprints;
- :class:`Structure` (:mod:`fmpretrain.structures`): the structure record.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Calculator", "Model", "Structure", "__version__", "get_descriptor", "load"]

_LAZY = {
    "load": "fmpretrain.api",
    "Model": "fmpretrain.api",
    "Calculator": "fmpretrain.calculator",
    "get_descriptor": "fmpretrain.descriptors",
    "Structure": "fmpretrain.structures",
}

if TYPE_CHECKING:
    from fmpretrain.api import Model, load
    from fmpretrain.calculator import Calculator
    from fmpretrain.descriptors import get_descriptor
    from fmpretrain.structures import Structure


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fmpretrain' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
