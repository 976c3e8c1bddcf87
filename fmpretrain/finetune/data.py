"""Labelled datasets for fine-tuning: structures + one target each -> graphs.

Readers (:func:`read_labelled`), all through :func:`fmpretrain.io.read_structures`:

- a MatBench dataset file (``*.json`` / ``*.json.gz``: pandas split table with columns
  ``[structure, <target>]``, ids from the index);
- a MatDeepLearn JSON list (``[{"structure_id", "positions", "cell", "atomic_numbers", "y"}]``;
  the target is ``y``);
- a folder of structure files plus a targets CSV (``id,target`` per line, optional header; by
  default ``targets.csv`` in the folder): the structure of id ``X`` is the file whose name
  without extension(s) is ``X`` (``X.cif``, ``X.vasp``, ``X.extxyz``, ``X.json``...).

Every entry is checked before training: the target must be present, numeric and finite (an
integer class label for classification) and the structure must pass
:func:`fmpretrain.structures.validate`. All bad entries are reported at once in a
:class:`BadEntriesError` naming their ids and reasons.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from fmpretrain.data.batching import pack_by_budget
from fmpretrain.data.graphs import build_graph
from fmpretrain.io import iter_structure_files, read_structures
from fmpretrain.structures import (
    DEFAULT_MIN_DISTANCE,
    InvalidStructureError,
    Structure,
    validate,
)

__all__ = [
    "TASK_TYPES",
    "BadEntriesError",
    "LabelledDataset",
    "batches",
    "build_graphs",
    "read_labelled",
    "read_targets_csv",
]

TASK_TYPES = ("regression", "classification")
#: Properties the readers attach that are never targets.
NON_TARGETS = {"family", "seed", "index", "sites", "setting", "supercell", "n_vacancies"}
#: Bad entries listed in full in an error message (the count is always given).
MAX_LISTED = 20


class BadEntriesError(ValueError):
    """Some entries of a labelled dataset are unusable; ``entries`` is ``[(id, reason)]``."""

    def __init__(self, source: str | Path, entries: Sequence[tuple[str, str]]):
        self.source = str(source)
        self.entries = list(entries)
        lines = [f"  {sid}: {reason}" for sid, reason in self.entries[:MAX_LISTED]]
        if len(self.entries) > MAX_LISTED:
            lines.append(f"  ... and {len(self.entries) - MAX_LISTED} more")
        super().__init__(
            f"{source}: {len(self.entries)} bad entr{'y' if len(self.entries) == 1 else 'ies'} "
            "(fix or remove them):\n" + "\n".join(lines)
        )


@dataclass
class LabelledDataset:
    """Structures with one target each (float for regression, class index for classification)."""

    name: str
    structures: list[Structure]
    targets: np.ndarray
    target_name: str
    task_type: str = "regression"
    classes: list[Any] = field(default_factory=list)  # original labels of the class indices
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.structures) != len(self.targets):
            raise ValueError(f"{len(self.structures)} structures but {len(self.targets)} targets")
        if self.task_type not in TASK_TYPES:
            raise ValueError(f"task_type must be one of {TASK_TYPES}, got {self.task_type!r}")

    def __len__(self) -> int:
        return len(self.structures)

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.structures]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def subset(self, indices: Iterable[int]) -> LabelledDataset:
        idx = [int(i) for i in indices]
        return LabelledDataset(
            self.name,
            [self.structures[i] for i in idx],
            self.targets[idx],
            self.target_name,
            self.task_type,
            list(self.classes),
            self.source,
        )


# ============================================================================ reading
def read_labelled(
    path: str | Path,
    *,
    target: str | None = None,
    targets_csv: str | Path | None = None,
    task_type: str = "regression",
    name: str | None = None,
    min_distance: float = DEFAULT_MIN_DISTANCE,
) -> LabelledDataset:
    """Read a labelled dataset (see the module docstring for the layouts) and check it.

    ``target`` names the property to learn; by default the only candidate property of the
    file (``y`` for MatDeepLearn lists, the single target column of a MatBench table). A path
    to a ``.csv`` file means "the folder it is in, with these targets".
    """
    if task_type not in TASK_TYPES:
        raise ValueError(f"task_type must be one of {TASK_TYPES}, got {task_type!r}")
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    if path.is_file() and path.suffix.lower() == ".csv":
        targets_csv, path = path, path.parent
    if path.is_dir():
        structures, raw, target_name = _read_folder(path, targets_csv)
    else:
        if targets_csv is not None:
            raise ValueError("targets_csv is only used with a folder of structure files")
        structures = list(read_structures(path))
        target_name = target or _detect_target(path, structures)
        raw = [s.properties.get(target_name, _MISSING) for s in structures]
    label = name or _stem(path)
    return _checked(label, path, structures, raw, target_name, task_type, min_distance)


_MISSING = object()


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".bz2", ".xz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name.rsplit(".", 1)[0] if "." in name and not path.is_dir() else name


def _detect_target(path: Path, structures: Sequence[Structure]) -> str:
    keys: dict[str, None] = {}
    for s in structures:
        for k in s.properties:
            if k not in NON_TARGETS:
                keys.setdefault(k, None)
    candidates = list(keys)
    if len(candidates) == 1:
        return candidates[0]
    if "y" in candidates:
        return "y"
    if not candidates:
        raise ValueError(f"{path}: no target property found in any entry")
    raise ValueError(f"{path}: several candidate targets {candidates}; choose one with target=NAME")


def read_targets_csv(path: str | Path) -> list[tuple[str, str]]:
    """``[(id, raw target text)]`` from an ``id,target`` CSV; a header row is skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no targets CSV {path}")
    rows: list[tuple[str, str]] = []
    with open(path, newline="", encoding="utf-8") as handle:
        for n, row in enumerate(csv.reader(handle), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < 2:
                raise ValueError(f"{path} line {n}: expected 'id,target', got {row!r}")
            sid, value = row[0].strip(), row[1].strip()
            if n == 1 and sid.lower() in ("id", "structure_id", "material_id", "name"):
                continue  # header
            rows.append((sid, value))
    if not rows:
        raise ValueError(f"{path}: no targets")
    return rows


def _read_folder(
    folder: Path, targets_csv: str | Path | None
) -> tuple[list[Structure], list[Any], str]:
    csv_path = Path(targets_csv) if targets_csv is not None else folder / "targets.csv"
    rows = read_targets_csv(csv_path)
    files: dict[str, Path] = {}
    for file in iter_structure_files(folder):
        files.setdefault(_file_id(file), file)
    structures: list[Structure] = []
    raw: list[Any] = []
    problems: list[tuple[str, str]] = []
    for sid, value in rows:
        file = files.get(sid)
        if file is None:
            problems.append((sid, f"no structure file named {sid}.* in {folder}"))
            continue
        try:
            found = list(read_structures(file))
        except ValueError as err:
            problems.append((sid, f"cannot read {file.name}: {err}"))
            continue
        if len(found) != 1:
            problems.append((sid, f"{file.name} holds {len(found)} structures, expected 1"))
            continue
        structure = found[0]
        structure.id = sid
        structures.append(structure)
        raw.append(value)
    if problems:
        raise BadEntriesError(csv_path, problems)
    return structures, raw, "target"


def _file_id(file: Path) -> str:
    """``mp-1.cif`` -> ``mp-1``; ``mp-1.json.gz`` -> ``mp-1``; ``POSCAR`` stays ``POSCAR``."""
    name = file.name
    for suffix in (".gz", ".bz2", ".xz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    lower = name.lower()
    for suffix in (".extxyz", ".xyz", ".cif", ".vasp", ".poscar", ".traj", ".db", ".json"):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _number(value: Any) -> float | None:
    """The float value of a numeric target, or None (bools and non-numbers are not numbers).

    A one-element list (MatDeepLearn publishes ``"y": [63.59]``) is its element; a longer
    list is not a number.
    """
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    while isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _checked(
    name: str,
    source: Path,
    structures: list[Structure],
    raw: list[Any],
    target_name: str,
    task_type: str,
    min_distance: float,
) -> LabelledDataset:
    problems: list[tuple[str, str]] = []
    values: list[Any] = []
    seen: dict[str, int] = {}
    for s, value in zip(structures, raw, strict=True):
        reasons = []
        if s.id in seen:
            reasons.append("duplicate id")
        seen.setdefault(s.id, 0)
        if value is _MISSING or value is None or (isinstance(value, str) and not value.strip()):
            reasons.append(f"missing target {target_name!r}")
        elif task_type == "classification":
            label = _class_label(value)
            if label is None:
                reasons.append(f"target {target_name!r} = {value!r} is not a class label")
            value = label
        else:
            number = _number(value)
            if number is None:
                reasons.append(f"target {target_name!r} = {value!r} is not a number")
            elif not math.isfinite(number):
                reasons.append(f"target {target_name!r} = {value!r} is not finite")
            value = number
        try:
            validate(s, min_distance=min_distance)
        except InvalidStructureError as err:
            reasons.append(f"invalid structure: {err.reason}")
        if reasons:
            problems.append((s.id, "; ".join(reasons)))
        values.append(value)
    if problems:
        raise BadEntriesError(source, problems)
    if not structures:
        raise ValueError(f"{source}: no entries")
    classes: list[Any] = []
    if task_type == "classification":
        classes = sorted(set(values), key=lambda v: (str(type(v)), v))
        if len(classes) < 2:
            raise ValueError(f"{source}: classification needs at least 2 classes, got {classes}")
        lookup = {c: i for i, c in enumerate(classes)}
        targets = np.asarray([lookup[v] for v in values], dtype=np.int64)
    else:
        targets = np.asarray(values, dtype=np.float64)
    return LabelledDataset(name, structures, targets, target_name, task_type, classes, str(source))


def _class_label(value: Any) -> bool | int | str | None:
    """A class label: a bool, an integer (also an integer-valued float) or a non-empty string."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        number = _number(text)
        if number is not None and number.is_integer():
            return int(number)
        return text or None
    number = _number(value)
    if number is not None and number.is_integer():
        return int(number)
    return None


# ============================================================================ graphs
def build_graphs(dataset: LabelledDataset, cutoff: float) -> list[Data]:
    """One graph per structure with the model's ``cutoff``; ``y`` ``[1]`` and ``idx`` ``[1]``.

    Regression targets are stored raw (float32); standardization happens in the trainer with
    statistics of the training split only. Classification targets are class indices (int64).
    """
    graphs = []
    for i, (s, t) in enumerate(zip(dataset.structures, dataset.targets, strict=True)):
        data = build_graph(s.numbers, s.positions, s.cell, s.pbc, cutoff)
        if dataset.task_type == "classification":
            data.y = torch.tensor([int(t)], dtype=torch.long)
        else:
            data.y = torch.tensor([float(t)], dtype=torch.float32)
        data.idx = torch.tensor([i], dtype=torch.long)
        graphs.append(data)
    return graphs


def batches(
    graphs: Sequence[Data],
    max_atoms: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    max_edges: int | None = None,
) -> list[Batch]:
    """Group graphs into ``Batch`` objects of at most ``max_atoms`` atoms (and ``max_edges``).

    A graph larger than the budget forms a batch alone. ``shuffle`` permutes the order first
    with ``numpy.random.default_rng(seed)``.
    """
    if max_atoms < 1:
        raise ValueError(f"max_atoms must be >= 1, got {max_atoms}")
    order = np.arange(len(graphs))
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(graphs))
    groups = pack_by_budget(
        (graphs[int(i)] for i in order),
        lambda g: (int(g.num_nodes), int(g.num_edges)),
        (int(max_atoms), max_edges),
    )
    return [Batch.from_data_list(group) for group in groups]
