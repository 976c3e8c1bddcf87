"""Optional dependency groups (extras) and the one-line error of a command that lacks one.

The base install covers fingerprints, structure readers and releases (``load``, ``predict``,
``embed``). The extras of ``pyproject.toml``, by the modules they provide:

- ``train``: DeepSpeed, WebDataset, W&B, matplotlib, scikit-learn (``pretrain``, ``export``,
  ``finetune``, ``benchmark``);
- ``ray``: Ray (``featurize``);
- ``all``: both (``demo``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

#: Importable top-level modules of each extra (keep in step with pyproject.toml).
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("deepspeed", "webdataset", "wandb", "matplotlib", "sklearn"),
    "ray": ("ray",),
}
EXTRAS["all"] = EXTRAS["train"] + EXTRAS["ray"]


class MissingExtraError(RuntimeError):
    """A command needs an extra that is not installed; the message is the one line to show."""


def missing_extra_message(command: str, extra: str) -> str:
    """``fmpretrain COMMAND needs the 'EXTRA' extra: pip install 'fmpretrain[EXTRA]'``."""
    return f"fmpretrain {command} needs the {extra!r} extra: pip install 'fmpretrain[{extra}]'"


def is_installed(module: str) -> bool:
    """Whether the top-level ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require_extra(command: str, extra: str, modules: Iterable[str] | None = None) -> None:
    """Raise :class:`MissingExtraError` unless ``modules`` (default: all of ``extra``'s) import."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; choose from {sorted(EXTRAS)}")
    wanted = EXTRAS[extra] if modules is None else tuple(modules)
    if not all(is_installed(m) for m in wanted):
        raise MissingExtraError(missing_extra_message(command, extra))


def extra_of(module: str | None) -> str | None:
    """The smallest extra that provides the top-level package of ``module``, if any."""
    top = (module or "").partition(".")[0]
    return next((name for name, mods in EXTRAS.items() if top in mods), None)
