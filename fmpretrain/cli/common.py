"""Helpers shared by the command modules: a command's options as a plain configuration."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


# ------------------------------------------------------------- resolved configurations
# One per command with --print-config; the command's run starts from the same function, so
# `--print-config` accepts and refuses exactly what the run accepts and refuses.
def options_config(args: argparse.Namespace) -> dict[str, Any]:
    """A command without a configuration file: its options, as a run would use them."""
    skip = {"command", "func", "resolve_config", "print_config"}
    return {k: _plain(v) for k, v in vars(args).items() if k not in skip}


def _plain(value: Any) -> Any:
    """Paths as strings, sequences as lists (for YAML)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
