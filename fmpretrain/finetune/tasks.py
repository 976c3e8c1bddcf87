"""Downstream tasks: the offline EMT tasks and the MatBench datasets.

Offline tasks (no network, real physics): generated metal alloys, labelled with ASE's
effective-medium-theory calculator (:class:`ase.calculators.emt.EMT`, parametrised for Al, Cu,
Ag, Au, Ni, Pd and Pt). Structures come from :func:`fmpretrain.generate.generate_structures`
(fcc, bcc, hcp, L1_2, B2, Heusler and random-alloy prototypes, with their supercells,
vacancies, strain and rattle); each structure's elements are then replaced by distinct EMT
metals, its volume set to the composition-weighted equilibrium volume of those metals
(reference fcc lattice constants) times a random volumetric strain of up to ±4 % per axis, so
the energies span equation-of-state, ordering and mixing effects.

- ``emt_energy``: EMT energy per atom (eV/atom), intensive: mean pooling.
- ``emt_total_energy``: EMT energy of the cell (eV), extensive: sum pooling.

Real offline tasks (shipped with the package, ``fmpretrain/finetune/datasets/``, see its
README): DFT-relaxed structures from the CDVAE collection (txie-93/cdvae, MIT), 5-fold MatBench
protocol like every task. Only the publisher's ``*-val.csv`` halves are tasks; the ``*-test.csv``
halves are reserved as the unlabelled pre-training corpus, so tasks and corpus never overlap.

- ``perov_heat``: heat of formation ``heat_all`` (eV, as published by Castelli et al.; every
  cell has 5 atoms) of 3,787 cubic ABX3 perovskites, ``perov_5-val``.
- ``carbon_energy``: DFT energy per atom ``energy_per_atom`` (eV/atom) of 2,032 AIRSS carbon
  structures at 10 GPa (6-24 atoms), ``carbon_24-val``.

Any task can be subsampled for fast runs (``size`` of :func:`load_task`, ``task_size`` in the
fine-tuning configuration): a seeded random subset without replacement, kept in file order.

MatBench tasks ``matbench_<name>``: the official dataset file is downloaded once into a cache
(``<cache>/matbench/matbench_<name>.json.gz``, verified and atomic, through
:mod:`fmpretrain.download`) from ``<url base>/matbench_<name>.json.gz``; the
base is ``https://ml.materialsproject.org/projects`` (the location matminer's dataset loader
uses), ``$FMPRETRAIN_MATBENCH_URL`` or the ``matbench_url`` option. Without a network, pass the
file with ``--data``.
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fmpretrain.download import cache_root
from fmpretrain.finetune.data import LabelledDataset, read_labelled
from fmpretrain.structures import DEFAULT_MIN_DISTANCE, InvalidStructureError, Structure, validate

__all__ = [
    "DATASETS_DIR",
    "EMT_FAMILIES",
    "EMT_METALS",
    "MATBENCH_URL",
    "OFFLINE_TASKS",
    "REAL_TASKS",
    "DatasetUnavailableError",
    "TaskSpec",
    "emt_structures",
    "load_task",
    "make_emt_task",
    "matbench_file",
    "real_task_file",
    "subsample",
    "task_spec",
]

log = logging.getLogger(__name__)

#: Metals of ASE's EMT parametrisation (H, C, N, O are for molecules and are not used).
EMT_METALS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")
#: Prototype families of :mod:`fmpretrain.generate` whose geometry suits metals.
EMT_FAMILIES = ("fcc", "bcc", "hcp", "L1_2", "cesium-chloride", "heusler", "random-alloy")
#: Bumped whenever the generated EMT data change, so old cache files are not reused.
EMT_TASK_VERSION = 1
MATBENCH_URL = "https://ml.materialsproject.org/projects"
MATBENCH_URL_ENV = "FMPRETRAIN_MATBENCH_URL"
#: MatBench v0.1 tasks whose inputs are compositions, not structures: not for a GNN.
MATBENCH_COMPOSITION_ONLY = (
    "matbench_expt_gap",
    "matbench_expt_is_metal",
    "matbench_glass",
    "matbench_steels",
)
MATBENCH_CLASSIFICATION = ("matbench_mp_is_metal",)
#: MatBench v0.1 structure tasks (any other ``matbench_<name>`` is tried as a regression).
MATBENCH_STRUCTURE_TASKS = (
    "matbench_jdft2d",
    "matbench_phonons",
    "matbench_dielectric",
    "matbench_log_gvrh",
    "matbench_log_kvrh",
    "matbench_perovskites",
    "matbench_mp_gap",
    "matbench_mp_is_metal",
    "matbench_mp_e_form",
)


class DatasetUnavailableError(FileNotFoundError):
    """A dataset is neither cached nor downloadable; the message says how to supply it."""


@dataclass(frozen=True)
class TaskSpec:
    """What is learned: the target property, pooling and task type of one benchmark task."""

    name: str
    target: str | None  # None: detect the single target column of the file
    pooling: str = "mean"  # mean: intensive property; sum: extensive
    task_type: str = "regression"
    source: str = "file"  # offline | real | matbench | file
    unit: str = ""
    description: str = ""


OFFLINE_TASKS = {
    "emt_energy": TaskSpec(
        "emt_energy",
        "energy_per_atom",
        "mean",
        source="offline",
        unit="eV/atom",
        description="EMT energy per atom of generated Al/Cu/Ag/Au/Ni/Pd/Pt alloys",
    ),
    "emt_total_energy": TaskSpec(
        "emt_total_energy",
        "energy",
        "sum",
        source="offline",
        unit="eV",
        description="EMT energy of the cell of generated Al/Cu/Ag/Au/Ni/Pd/Pt alloys",
    ),
}


#: Folder of the shipped CDVAE CSV files (package data).
DATASETS_DIR = Path(__file__).resolve().parent / "datasets"

#: Real tasks on shipped DFT data: spec and file in :data:`DATASETS_DIR`.
REAL_TASKS = {
    "perov_heat": TaskSpec(
        "perov_heat",
        "heat_all",
        "mean",
        source="real",
        unit="eV",
        description=(
            "heat of formation (heat_all, eV, 5-atom cells) of cubic ABX3 perovskites, "
            "Castelli et al. 2012 via CDVAE perov_5-val (perov_5-test is the pre-training corpus)"
        ),
    ),
    "carbon_energy": TaskSpec(
        "carbon_energy",
        "energy_per_atom",
        "mean",
        source="real",
        unit="eV/atom",
        description=(
            "DFT energy per atom of AIRSS carbon structures at 10 GPa, Pickard & Needs via "
            "CDVAE carbon_24-val (carbon_24-test is the pre-training corpus)"
        ),
    ),
}
_REAL_FILES = {"perov_heat": "perov_5-val.csv.gz", "carbon_energy": "carbon_24-val.csv.gz"}


def real_task_file(name: str) -> Path:
    """The shipped data file of a real task (:data:`REAL_TASKS`)."""
    if name not in _REAL_FILES:
        raise ValueError(f"unknown real task {name!r}; choose one of {list(REAL_TASKS)}")
    file = DATASETS_DIR / _REAL_FILES[name]
    if not file.is_file():
        raise DatasetUnavailableError(
            f"{file} is missing: the package data of task {name!r} was not installed "
            "(reinstall fmpretrain)"
        )
    return file


def subsample(dataset: LabelledDataset, size: int | None, seed: int = 0) -> LabelledDataset:
    """A seeded random subset of ``size`` entries (file order kept); ``None``: the dataset."""
    if size is None:
        return dataset
    if isinstance(size, bool) or int(size) != size or size < 1:
        raise ValueError(f"task_size must be a positive integer or null, got {size!r}")
    if size >= len(dataset):
        return dataset
    chosen = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7A5])).choice(
        len(dataset), size=int(size), replace=False
    )
    return dataset.subset(np.sort(chosen))


def task_spec(name: str) -> TaskSpec:
    """The spec of an offline or real task or of ``matbench_<name>``; others are file tasks."""
    if name in OFFLINE_TASKS:
        return OFFLINE_TASKS[name]
    if name in REAL_TASKS:
        return REAL_TASKS[name]
    if name.startswith("matbench_"):
        if name in MATBENCH_COMPOSITION_ONLY:
            raise ValueError(
                f"{name} has compositions, not structures, as inputs; a GNN needs structures "
                f"(structure tasks: {list(MATBENCH_STRUCTURE_TASKS)})"
            )
        task_type = "classification" if name in MATBENCH_CLASSIFICATION else "regression"
        return TaskSpec(name, None, "mean", task_type, source="matbench")
    return TaskSpec(name, None, "mean", source="file")


# ============================================================================ EMT task
def emt_structures(
    n: int, seed: int = 0, *, max_atoms: int = 16, min_atoms: int = 1
) -> list[Structure]:
    """``n`` generated EMT-metal structures with properties ``energy`` and ``energy_per_atom``.

    Structure ``k`` depends only on ``(seed, k, max_atoms, min_atoms)``.
    """
    from ase.calculators.emt import EMT
    from ase.data import atomic_numbers, reference_states

    from fmpretrain.generate import generate_structures

    volume = {
        atomic_numbers[s]: reference_states[atomic_numbers[s]]["a"] ** 3 / 4.0 for s in EMT_METALS
    }
    metals = np.array([atomic_numbers[s] for s in EMT_METALS])
    calc = EMT()
    out = []
    bases = generate_structures(
        n, seed, min_atoms=min_atoms, max_atoms=max_atoms, families=EMT_FAMILIES
    )
    for k, base in enumerate(bases):
        rng = np.random.default_rng(np.random.SeedSequence([seed, EMT_TASK_VERSION, k]))
        for _ in range(20):
            structure = _emt_variant(base, rng, metals, volume)
            try:
                validate(structure, min_distance=DEFAULT_MIN_DISTANCE)
                break
            except InvalidStructureError:
                continue
        else:  # pragma: no cover - the variants only rescale valid structures
            raise RuntimeError(f"could not make a valid EMT variant of {base.id}")
        atoms = structure.to_ase()
        atoms.info.clear()
        atoms.calc = calc
        energy = float(atoms.get_potential_energy())
        structure.id = f"emt-{seed}-{k:06d}"
        structure.properties = {
            "energy_per_atom": energy / len(structure),
            "energy": energy,
            "volumetric_strain": structure.properties["volumetric_strain"],
            "family": base.properties.get("family", ""),
        }
        out.append(structure)
    return out


def _emt_variant(
    base: Structure, rng: np.random.Generator, metals: np.ndarray, volume: dict[int, float]
) -> Structure:
    """Distinct EMT metals on the distinct elements; volume from the metals, then strained."""
    distinct = list(dict.fromkeys(int(z) for z in base.numbers))
    chosen = rng.choice(metals, size=len(distinct), replace=False)
    mapping = dict(zip(distinct, (int(z) for z in chosen), strict=True))
    numbers = np.array([mapping[int(z)] for z in base.numbers], dtype=np.int64)
    n_sites = len(numbers) + int(base.properties.get("n_vacancies", 0))
    target = float(np.mean([volume[int(z)] for z in numbers]))
    current = abs(float(np.linalg.det(base.cell))) / n_sites
    strain = float(rng.uniform(-0.04, 0.04))
    scale = (target / current) ** (1.0 / 3.0) * (1.0 + strain)
    return Structure(
        numbers=numbers,
        positions=base.positions * scale,
        cell=base.cell * scale,
        pbc=base.pbc,
        id=base.id,
        properties={"volumetric_strain": strain},
    )


def make_emt_task(
    n: int, seed: int = 0, path: str | Path | None = None, *, max_atoms: int = 16
) -> Path:
    """Write the EMT dataset of ``n`` structures as MatBench JSON and return its path.

    ``path`` is a cache directory (default: ``<cache>/tasks``); the file is
    ``emt-v{version}-n{n}-seed{seed}-max{max_atoms}.json.gz`` and is reused when it exists.
    A path ending in ``.json``/``.json.gz`` is written (or reused) as is.
    """
    from fmpretrain.io import write_structures

    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    name = f"emt-v{EMT_TASK_VERSION}-n{int(n)}-seed{int(seed)}-max{int(max_atoms)}.json.gz"
    if path is not None and str(path).endswith((".json", ".json.gz")):
        file = Path(path).expanduser()
    else:
        base = Path(path).expanduser() if path is not None else cache_root() / "tasks"
        file = base / name
    if file.is_file():
        return file
    structures = emt_structures(int(n), int(seed), max_atoms=int(max_atoms))
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".tmp-", suffix=".json.gz")
    os.close(fd)
    try:
        write_structures(tmp, structures, format="matbench")
        os.replace(tmp, file)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return file


# ============================================================================ MatBench
def matbench_file(
    name: str,
    *,
    cache: str | Path | None = None,
    url_base: str | None = None,
    timeout: float = 60.0,
    progress: bool | None = None,
) -> Path:
    """The cached ``matbench_<name>.json.gz``, downloaded first if needed.

    Through :func:`fmpretrain.download.fetch`: only a complete gzip whose JSON opens with ``{``
    is ever put in the cache (atomically, with a sha256 record beside it); a dropped connection
    leaves a ``.part`` that is resumed (HTTP Range), here or in a later call.
    """
    from fmpretrain.download import DownloadError, fetch

    if not name.startswith("matbench_") or "/" in name:
        raise ValueError(f"not a MatBench task name: {name!r}")
    task_spec(name)  # refuses composition-only tasks
    file = cache_root(cache) / "matbench" / f"{name}.json.gz"
    base = (url_base or os.environ.get(MATBENCH_URL_ENV) or MATBENCH_URL).rstrip("/")
    url = f"{base}/{name}.json.gz"
    cached = file.is_file()
    start = time.monotonic()
    try:
        fetch(
            url,
            file,
            record=True,
            validate=_check_matbench_table,
            progress=progress,
            timeout=timeout,
            label=name,
        )
    except DownloadError as err:
        raise DatasetUnavailableError(
            f"could not download {name} from {url} ({err}); without network access, download "
            f"{name}.json.gz elsewhere and pass it with --data PATH (or data=PATH), or put it "
            f"at {file}"
        ) from err
    if not cached:
        log.info("downloaded %s -> %s in %.1f s", url, file, time.monotonic() - start)
    return file


def _check_matbench_table(path: Path) -> None:
    """A proxy's error page or a cut-off body is not a dataset (the gzip stream is read to its
    end by the downloader; this checks what it holds)."""
    with gzip.open(path, "rb") as check:
        head = check.read(64).lstrip()
    if not head.startswith(b"{"):
        raise ValueError("the file is not a gzipped JSON table")


# ============================================================================ one entry point
def load_task(
    name: str | None,
    *,
    data: str | Path | None = None,
    target: str | None = None,
    targets_csv: str | Path | None = None,
    task_type: str | None = None,
    pooling: str | None = None,
    n: int = 300,
    seed: int = 0,
    max_atoms: int = 16,
    cache: str | Path | None = None,
    url_base: str | None = None,
    min_distance: float = DEFAULT_MIN_DISTANCE,
    size: int | None = None,
    size_seed: int = 0,
) -> tuple[LabelledDataset, TaskSpec]:
    """The labelled dataset and spec of a task.

    - offline task (``emt_energy``...): generated (``n``, ``seed``, ``max_atoms``), cached;
    - real task (``perov_heat``, ``carbon_energy``): the shipped CSV file;
    - ``matbench_<name>``: ``data`` if given, else the cached/downloaded official file;
    - with ``data`` and no (or another) name: a local file task named ``name`` or the file stem.

    ``target``, ``task_type`` and ``pooling`` override the spec's. ``size`` keeps a seeded
    random subset (:func:`subsample` with ``size_seed``).
    """
    if name in REAL_TASKS:
        if data is not None:
            raise ValueError(
                f"task {name!r} uses its shipped data file; with data=PATH pass task=null or a "
                "name of your own"
            )
        spec = REAL_TASKS[name]
        data = real_task_file(name)
    elif name in OFFLINE_TASKS:
        if data is not None:
            raise ValueError(
                f"task {name!r} generates its own data; with data=PATH pass task=null or a "
                "name of your own (or a matbench_<name>)"
            )
        spec = OFFLINE_TASKS[name]
        data = make_emt_task(n, seed, cache_root(cache) / "tasks", max_atoms=max_atoms)
    elif name is not None and name.startswith("matbench_"):
        spec = task_spec(name)
        if data is None:
            data = matbench_file(name, cache=cache, url_base=url_base)
    else:
        if data is None:
            raise ValueError(
                f"unknown task {name!r}: choose {[*OFFLINE_TASKS, *REAL_TASKS]}, "
                "matbench_<name>, or pass data=PATH (--data) for a local dataset"
            )
        spec = task_spec(name or _default_name(Path(data)))
    spec = replace(
        spec,
        target=target or spec.target,
        task_type=task_type or spec.task_type,
        pooling=pooling or spec.pooling,
    )
    if name in REAL_TASKS:  # shipped, read-only: parse its CIFs once per process
        stat = Path(data).stat()
        dataset = _read_shipped(
            str(data), stat.st_mtime_ns, stat.st_size, spec.target, spec.task_type, spec.name,
            min_distance,
        )  # fmt: skip
        dataset = dataset.subset(range(len(dataset)))  # callers get their own lists
    else:
        dataset = read_labelled(
            data,
            target=spec.target,
            targets_csv=targets_csv,
            task_type=spec.task_type,
            name=spec.name,
            min_distance=min_distance,
        )
    dataset = subsample(dataset, size, size_seed)
    return dataset, replace(spec, target=dataset.target_name)


@functools.lru_cache(maxsize=4)
def _read_shipped(
    path: str,
    mtime_ns: int,
    size: int,
    target: str,
    task_type: str,
    name: str,
    min_distance: float,
) -> LabelledDataset:
    """A shipped task file, read once per process (the demo and the study fine-tune several
    models on one task; its thousands of CIFs take seconds to parse). ``mtime_ns`` and ``size``
    key the cache to the file's identity."""
    del mtime_ns, size
    return read_labelled(
        path, target=target, task_type=task_type, name=name, min_distance=min_distance
    )


def _default_name(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".bz2", ".xz", ".json", ".csv"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name or "data"
