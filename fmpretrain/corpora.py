"""Public structure corpora for pre-training: a registry of named entries, downloaded verified.

Each :class:`Corpus` names its files (real publisher URLs), their format, licence, citation
and, where known, structure count. :func:`corpus_files` returns the local files of a corpus in
a fixed order, downloading what is missing through :func:`fmpretrain.download.fetch` (cached,
atomic, resumable over HTTP Range, size and sha256 checked). ``fmpretrain corpora list`` and
``fmpretrain corpora download NAME`` are the command line; ``source.kind=corpus
source.name=NAME`` feeds a corpus to featurization.

Integrity:

- a **pinned** file has a sha256 (and size) in the registry: a download that differs is
  refused and deleted;
- an **unpinned** file (its publisher gives no sha256) is trusted on first use: the first
  complete download records its sha256 in ``<file>.sha256.json`` beside it, with a warning that
  says so, and any later download must match that record;
- without a sha256, a ``.gz``/``.bz2``/``.xz`` file is decompressed to its end before it is
  kept, so a cut-off body never enters the cache.

Cache: ``<cache>/corpora/<name>/<file>`` (``FMPRETRAIN_CACHE``, else
``$XDG_CACHE_HOME/fmpretrain``, else ``~/.cache/fmpretrain``). ``FMPRETRAIN_OFFLINE=1``: the
cache and the copies shipped in the package only.

Archives (``aselmdb-tar``: OMat24) are extracted once, safely (regular files with relative
names only), into ``<file>.d/`` beside the download; :func:`corpus_files` returns their
``*.aselmdb`` members.

Shipped entries (``perov_5-test``, ``carbon_24-test``) are the gzip copies in
``fmpretrain/finetune/datasets/`` of published CDVAE files; they work offline, and are checked
against the published files' sha256 (of the decompressed bytes).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import tarfile
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmpretrain.download import CACHE_ENV as _CACHE_ENV
from fmpretrain.download import CHUNK, fetch, file_lock, read_record
from fmpretrain.download import cache_root as _cache_root

__all__ = [
    "CORPORA",
    "FORMATS",
    "Corpus",
    "CorpusError",
    "CorpusFile",
    "corpus",
    "corpus_files",
    "corpus_read_options",
    "list_corpora",
]

log = logging.getLogger(__name__)

CACHE_ENV = _CACHE_ENV
OFFLINE_ENV = "FMPRETRAIN_OFFLINE"
PACKAGE_DIR = Path(__file__).resolve().parent

#: Known formats: what the files hold and the reader options (``None``: no reader yet).
FORMATS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "cdvae-csv": (
        "CSV: index, material_id, a whole CIF in column 'cif', property columns",
        {"format": "cdvae"},
    ),
    "alexandria-json": (
        "bzip2 JSON: {'entries': [pymatgen ComputedStructureEntry dicts]}",
        {"format": "json"},
    ),
    "mptrj-json": (
        "JSON: {mp-id: {frame-id: {'structure': pymatgen dict, energies, forces, ...}}}",
        {"format": "json", "frames": "all"},
    ),
    "aselmdb-tar": (
        "tar.gz of ASE-LMDB databases; corpus_files extracts the *.aselmdb files",
        {"format": "aselmdb"},
    ),
}
#: Formats whose downloaded archives :func:`corpus_files` extracts; the members it returns.
ARCHIVE_MEMBERS = {"aselmdb-tar": ".aselmdb"}
EXTRACTED_MARKER = ".fmpretrain-extracted.json"


class CorpusError(RuntimeError):
    """An unknown corpus, a corpus without a reader, or a damaged shipped copy."""


@dataclass(frozen=True)
class CorpusFile:
    """One file of a corpus: where it is published and, if the publisher says, what it is."""

    url: str
    filename: str
    sha256: str | None = None  # of the file as served at ``url``
    size: int | None = None  # bytes, as served

    @property
    def pinned(self) -> bool:
        return self.sha256 is not None


@dataclass(frozen=True)
class Corpus:
    """A named public corpus."""

    name: str
    format: str
    files: tuple[CorpusFile, ...]
    licence: str
    citation: str
    description: str
    homepage: str = ""
    n_structures: int | None = None
    approx_bytes: int | None = None  # for listing when the exact sizes are not published
    read_options: Mapping[str, Any] = field(default_factory=dict)  # extra reader options
    shipped: str | None = None  # package-relative path of an offline copy (single-file corpora)
    note: str = ""

    @property
    def pinned(self) -> bool:
        """Every file has a published (or registry-recorded) sha256."""
        return all(f.pinned for f in self.files)

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(f.url for f in self.files)

    @property
    def total_bytes(self) -> int | None:
        sizes = [f.size for f in self.files]
        if all(s is not None for s in sizes):
            return sum(s for s in sizes if s is not None)
        return self.approx_bytes


# ------------------------------------------------------------------------------- registry
_CDVAE = "https://raw.githubusercontent.com/txie-93/cdvae/main/data"
_DIFFCSP = "https://raw.githubusercontent.com/jiaor17/DiffCSP/main/data"
_ALEXANDRIA = "https://alexandria.icams.rub.de/data/pbe/2024.12.15"
_OMAT_VAL = "https://dl.fbaipublicfiles.com/opencatalystproject/data/omat/241220/omat/val"
_OMAT_TRAIN = "https://dl.fbaipublicfiles.com/opencatalystproject/data/omat/241018/omat/train"

# sha256 and size of published CDVAE files, computed from byte-identical copies (the gzip
# copies shipped in fmpretrain/finetune/datasets decompress to exactly these bytes).
_CDVAE_PINS = {
    "perov_5/val.csv": (
        "326f401219901270374b71e2faff63df3a29a99fd26f469993b9f476b693daf2",
        3673814,
    ),
    "perov_5/test.csv": (
        "a85878c685037f0a578257f6d4fcdde00e968dbab73c5f1e90ecef65218513f6",
        3671842,
    ),
    "carbon_24/val.csv": (
        "36c00689cd63073c954a58bc6ed6e2adb7aeed5a630c994970959a1babffd50e",
        2321923,
    ),
    "carbon_24/test.csv": (
        "386b17c08816f434818d51e46687bf72ff3f92348f3ba24823e4758f1fe8a969",
        2319350,
    ),
}

_CDVAE_CITATION = (
    "T. Xie, X. Fu, O.-E. Ganea, R. Barzilay, T. Jaakkola, Crystal Diffusion Variational "
    "Autoencoder for Periodic Material Generation, ICLR 2022 (arXiv:2110.06197)"
)
_SOURCES = {
    "mp_20": "A. Jain et al., APL Materials 1, 011002 (2013) (Materials Project)",
    "perov_5": "I. E. Castelli et al., Energy Environ. Sci. 5, 9034 (2012)",
    "carbon_24": "C. J. Pickard, AIRSS data for carbon at 10GPa, Materials Cloud (2020), "
    "doi:10.24435/materialscloud:2020.0026/v1",
}


def _cdvae_files(base: str, dataset: str, splits: tuple[str, ...]) -> tuple[CorpusFile, ...]:
    files = []
    for split in splits:
        sha256, size = _CDVAE_PINS.get(f"{dataset}/{split}.csv", (None, None))
        files.append(CorpusFile(f"{base}/{dataset}/{split}.csv", f"{split}.csv", sha256, size))
    return tuple(files)


def _cdvae(name: str, n: int, what: str) -> Corpus:
    return Corpus(
        name=name,
        format="cdvae-csv",
        files=_cdvae_files(_CDVAE, name, ("train", "val", "test")),
        licence="MIT (CDVAE repository)",
        citation=f"{_CDVAE_CITATION}; data: {_SOURCES[name]}",
        description=f"{what}; the CDVAE train/val/test CSVs",
        homepage="https://github.com/txie-93/cdvae/tree/main/data",
        n_structures=n,
    )


def _shipped(dataset: str, n: int, what: str) -> Corpus:
    (file,) = _cdvae_files(_CDVAE, dataset, ("test",))
    return Corpus(
        name=f"{dataset}-test",
        format="cdvae-csv",
        files=(file,),
        licence="MIT (CDVAE repository)",
        citation=f"{_CDVAE_CITATION}; data: {_SOURCES[dataset]}",
        description=f"{what}; the CDVAE test split, shipped with fmpretrain (offline)",
        homepage="https://github.com/txie-93/cdvae/tree/main/data",
        n_structures=n,
        shipped=f"finetune/datasets/{dataset}-test.csv.gz",
        note="the val split is the fine-tuning task; this test split is the pre-training corpus",
    )


_ALEXANDRIA_CITATION = (
    "J. Schmidt et al., Machine-Learning-Assisted Determination of the Global Zero-Temperature "
    "Phase Diagram of Materials, Adv. Mater. 35, 2210788 (2023)"
)
_OMAT_CITATION = (
    "L. Barroso-Luque et al., Open Materials 2024 (OMat24) Inorganic Materials Dataset and "
    "Models, arXiv:2410.12771 (2024)"
)
_OMAT_NOTE = (
    "files from the download table of fairchem's OMat24 documentation (not gated); the "
    "Hugging Face copy (fairchem/OMAT24) is gated behind accepting the licence and needs a "
    "token. Reading *.aselmdb needs the lmdb extra (ase-db-backends)"
)
_OMAT_VAL_FILES = (
    "rattled-1000",
    "rattled-1000-subsampled",
    "rattled-500",
    "rattled-500-subsampled",
    "rattled-300",
    "rattled-300-subsampled",
    "aimd-from-PBE-1000-npt",
    "aimd-from-PBE-1000-nvt",
    "aimd-from-PBE-3000-npt",
    "aimd-from-PBE-3000-nvt",
    "rattled-relax",
)


def _alexandria(name: str, shards: range, description: str) -> Corpus:
    return Corpus(
        name=name,
        format="alexandria-json",
        files=tuple(
            CorpusFile(f"{_ALEXANDRIA}/alexandria_{k:03d}.json.bz2", f"alexandria_{k:03d}.json.bz2")
            for k in shards
        ),
        licence="CC-BY-4.0",
        citation=_ALEXANDRIA_CITATION,
        description=description,
        homepage="https://alexandria.icams.rub.de/",
    )


def _registry() -> dict[str, Corpus]:
    entries = [
        _cdvae("mp_20", 45231, "Materials Project crystals with at most 20 atoms per cell"),
        _cdvae("perov_5", 18928, "cubic ABX3 perovskites, 5 atoms per cell"),
        _cdvae("carbon_24", 10153, "AIRSS carbon structures at 10 GPa, 6-24 atoms per cell"),
        Corpus(
            name="mpts_52",
            format="cdvae-csv",
            files=_cdvae_files(_DIFFCSP, "mpts_52", ("train", "val", "test")),
            licence="MIT (DiffCSP repository)",
            citation=(
                "R. Jiao et al., Crystal Structure Prediction by Joint Equivariant Diffusion, "
                f"NeurIPS 2023 (arXiv:2309.04475); data: {_SOURCES['mp_20']}"
            ),
            description=(
                "Materials Project crystals with at most 52 atoms per cell, split by time; the "
                "DiffCSP train/val/test CSVs"
            ),
            homepage="https://github.com/jiaor17/DiffCSP",
            n_structures=40476,
        ),
        _shipped("perov_5", 3785, "cubic ABX3 perovskites, 5 atoms per cell"),
        _shipped("carbon_24", 2030, "AIRSS carbon structures at 10 GPa, 6-24 atoms per cell"),
        _alexandria(
            "alexandria-pbe",
            range(50),
            "Alexandria PBE 3D database, release 2024.12.15: all 50 shards "
            "alexandria_000..049.json.bz2",
        ),
        _alexandria(
            "alexandria-pbe-000",
            range(1),
            "Alexandria PBE 3D database, release 2024.12.15: the first shard only",
        ),
        Corpus(
            name="mptrj",
            format="mptrj-json",
            files=(
                CorpusFile(
                    "https://figshare.com/ndownloader/files/41619375", "MPtrj_2022.9_full.json"
                ),
            ),
            licence="CC-BY-4.0 (Materials Project data; see the figshare record)",
            citation=(
                "B. Deng et al., CHGNet as a pretrained universal neural network potential for "
                "charge-informed atomistic modelling, Nat. Mach. Intell. 5, 1031 (2023)"
            ),
            description=(
                "MPtrj: relaxation trajectory frames of the Materials Project (2022.9) with "
                "energies, forces, stresses and magnetic moments; one 11.35 GB JSON file"
            ),
            homepage="https://figshare.com/articles/dataset/23713842",
            n_structures=1580395,
            approx_bytes=11_350_000_000,
            note="figshare publishes no checksum for this file in its page: unpinned",
        ),
        Corpus(
            name="omat24-val",
            format="aselmdb-tar",
            files=tuple(
                CorpusFile(f"{_OMAT_VAL}/{s}.tar.gz", f"{s}.tar.gz") for s in _OMAT_VAL_FILES
            ),
            licence="CC-BY-4.0",
            citation=_OMAT_CITATION,
            description="OMat24 validation split (1M subset, corrected 2024-12-20), 11 tar.gz",
            homepage="https://huggingface.co/datasets/fairchem/OMAT24",
            n_structures=1025361,
            approx_bytes=1_980_000_000,
            note=_OMAT_NOTE,
        ),
        Corpus(
            name="omat24-train-rattled-relax",
            format="aselmdb-tar",
            files=(CorpusFile(f"{_OMAT_TRAIN}/rattled-relax.tar.gz", "rattled-relax.tar.gz"),),
            licence="CC-BY-4.0",
            citation=_OMAT_CITATION,
            description="OMat24 train split, rattled-relax subdataset",
            homepage="https://huggingface.co/datasets/fairchem/OMAT24",
            n_structures=99968,
            approx_bytes=12_000_000_000,
            note=_OMAT_NOTE,
        ),
    ]
    return {entry.name: entry for entry in entries}


#: The registry, by name.
CORPORA: dict[str, Corpus] = _registry()


# ------------------------------------------------------------------------------- API
def list_corpora() -> list[Corpus]:
    """Every registered corpus, in registry order."""
    return list(CORPORA.values())


def corpus(name: str | Corpus) -> Corpus:
    """The registry entry ``name`` (a :class:`Corpus` is returned as is)."""
    if isinstance(name, Corpus):
        return name
    try:
        return CORPORA[name]
    except KeyError:
        raise CorpusError(
            f"unknown corpus {name!r}; known: {', '.join(CORPORA)} (`fmpretrain corpora list`)"
        ) from None


def corpus_read_options(name: str | Corpus) -> dict[str, Any]:
    """Reader options (for :func:`fmpretrain.io.read_structures`) for the files of a corpus."""
    entry = corpus(name)
    if entry.format not in FORMATS:
        raise CorpusError(f"corpus {entry.name!r} has unknown format {entry.format!r}")
    options = FORMATS[entry.format][1]
    if options is None:
        raise CorpusError(
            f"corpus {entry.name!r} ({entry.format}) has no reader in fmpretrain yet; "
            f"`fmpretrain corpora download {entry.name}` fetches its files"
        )
    return {**options, **entry.read_options}


def corpus_files(
    name: str | Corpus,
    cache: str | os.PathLike[str] | None = None,
    *,
    progress: bool | None = None,
    retries: int = 3,
    timeout: float = 60.0,
) -> list[Path]:
    """The local files of a corpus, in registry order, downloaded (verified) where missing.

    A shipped corpus returns its package copy (no network). ``cache`` defaults to
    ``FMPRETRAIN_CACHE`` (else the platform cache dir); files go to ``<cache>/corpora/<name>/``.
    Archives of an archive format (``aselmdb-tar``) are extracted once, safely, beside them
    (``<file>.d/``); their member files are returned, sorted, in place of each archive.
    """
    entry = corpus(name)
    if entry.shipped is not None:
        copy = PACKAGE_DIR / entry.shipped
        if copy.is_file():
            _check_shipped(entry, copy)
            return [copy]
        log.warning("shipped copy %s is missing; downloading %s instead", copy, entry.name)
    folder = _cache_root(cache) / "corpora" / entry.name
    offline = os.environ.get(OFFLINE_ENV, "").lower() in ("1", "true", "yes", "on")
    paths: list[Path] = []
    for file in entry.files:
        path = fetch(
            file.url,
            folder / file.filename,
            sha256=file.sha256,
            size=file.size,
            record=True,
            progress=progress,
            retries=retries,
            timeout=timeout,
            offline=offline,
            label=f"{entry.name}/{file.filename}",
        )
        member = ARCHIVE_MEMBERS.get(entry.format)
        paths.extend([path] if member is None else _extracted(path, member))
    return paths


def _extracted(archive: Path, suffix: str) -> list[Path]:
    """The ``*suffix`` members of a downloaded tar archive, extracted once into ``<archive>.d``.

    Only regular files with relative, traversal-free names are written (anything else is
    refused); extraction goes to a temporary folder renamed into place, with a marker naming
    the archive's sha256, so a half-extracted folder is never used.
    """
    out = archive.with_name(archive.name + ".d")
    digest = (read_record(archive) or {}).get("sha256")
    marker = out / EXTRACTED_MARKER
    try:
        done = digest is not None and json.loads(marker.read_text("utf-8"))["sha256"] == digest
    except (OSError, ValueError, KeyError, TypeError):
        done = False
    if not done:
        with file_lock(archive.with_name(f".{archive.name}.extract.lock")):
            tmp = archive.with_name(f".{archive.name}.d.{uuid.uuid4().hex[:8]}.tmp")
            try:
                _extract_tar(archive, tmp)
                (tmp / EXTRACTED_MARKER).write_text(json.dumps({"sha256": digest}) + "\n")
                if out.exists():
                    shutil.rmtree(out)
                os.replace(tmp, out)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
    found = sorted(p for p in out.rglob(f"*{suffix}") if p.is_file())
    if not found:
        raise CorpusError(f"{archive} holds no *{suffix} file")
    return found


def _extract_tar(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = member.name
                parts = [p for p in name.split("/") if p not in ("", ".")]
                if name.startswith("/") or ".." in parts or "\\" in name or not parts:
                    raise CorpusError(f"{archive}: member {name!r} could escape; refused")
                if member.isdir():
                    continue
                if not member.isreg():
                    raise CorpusError(f"{archive}: member {name!r} is not a regular file; refused")
                target = dest.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None  # a regular file
                with source, open(target, "xb") as handle:
                    shutil.copyfileobj(source, handle, CHUNK)
    except FileExistsError as err:
        raise CorpusError(f"{archive} holds the same file twice: {err.filename}") from err
    except (tarfile.TarError, EOFError, zlib.error) as err:
        raise CorpusError(f"{archive} is not a readable tar archive: {err}") from err


def _check_shipped(entry: Corpus, copy: Path) -> None:
    """The decompressed shipped copy must be the published file (its pinned sha256)."""
    (file,) = entry.files
    if file.sha256 is None:
        return
    digest = hashlib.sha256()
    with gzip.open(copy, "rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != file.sha256:
        raise CorpusError(
            f"shipped copy {copy} of corpus {entry.name!r} is damaged (sha256 of its content "
            f"{digest.hexdigest()}, published {file.sha256}); reinstall fmpretrain"
        )
