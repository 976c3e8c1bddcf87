"""``manifest.json``: what a directory of shards holds, and the checks against it.

The manifest records the descriptor (name, full parameters, hash), the feature dimension, the
per-feature statistics merged exactly over all shards, every shard with its sample count, size
and sha256, the accepted/rejected counts, and the software versions that wrote it.

The file also carries ``checksum``: the sha256 of its own content (every other key, as
canonical JSON), written by :meth:`Manifest.save` and checked by :meth:`Manifest.load`, so a
manifest edited by hand (a shard removed from the list, statistics changed) is refused with
:class:`ManifestModifiedError`. :func:`verify_shards` reports it instead, with the shards on
disk that the manifest does not list and, with ``deep``, statistics recomputed from the shards.

A manifest written by the featurization job also records the configuration that shapes the
samples (``config`` and its ``config_hash``) and the identity of every input file it read
(``inputs``: path, size, mtime_ns, sha256); :func:`verify_inputs` compares those with the files
on disk.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmpretrain.data.format import ShardFormatError, read_shard, sha256_file
from fmpretrain.data.stats import RunningMoments
from fmpretrain.files import atomic_write_text

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
CHECKSUM_KEY = "checksum"
#: Relative tolerance of ``verify_shards(deep=True)`` on recomputed means and stds.
STATS_RTOL = 1e-6


class ManifestModifiedError(ShardFormatError):
    """``manifest.json`` does not match the checksum written with it."""


def content_checksum(d: dict[str, Any]) -> str:
    """sha256 of a manifest dict without its ``checksum`` key, as canonical JSON."""
    body = {k: v for k, v in d.items() if k != CHECKSUM_KEY}
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class ShardEntry:
    """One finished shard: chunk ``index`` of the source, written to ``name``."""

    index: int
    name: str
    n_samples: int
    n_atoms: int
    n_rejected: int
    n_inputs: int
    bytes: int
    sha256: str
    moments: dict[str, Any]
    source: str | None = None  # label of the source the chunk came from


@dataclass
class Manifest:
    descriptor: dict[str, Any]  # {"name", "params", "version"}
    descriptor_hash: str
    dim: int
    feature_names: list[str]
    fingerprint_dtype: str
    source: dict[str, Any]
    chunk_size: int
    n_chunks: int | None = None  # known once the source is exhausted
    shards: list[ShardEntry] = field(default_factory=list)
    complete: bool = False
    format_version: int = FORMAT_VERSION
    versions: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] | None = None  # every setting that changes samples
    config_hash: str | None = None  # sha256 of ``config`` (canonical JSON)
    inputs: list[dict[str, Any]] | None = None  # identities of the input files read, in order

    # ------------------------------------------------------------------ derived
    @property
    def n_samples(self) -> int:
        return sum(s.n_samples for s in self.shards)

    @property
    def n_rejected(self) -> int:
        return sum(s.n_rejected for s in self.shards)

    @property
    def n_inputs(self) -> int:
        return sum(s.n_inputs for s in self.shards)

    def statistics(self) -> RunningMoments:
        """Per-feature moments over every atom of every shard, merged in shard order."""
        total = RunningMoments(self.dim)
        for shard in sorted(self.shards, key=lambda s: s.index):
            total.merge(RunningMoments.from_dict(shard.moments))
        return total

    def source_counts(self) -> dict[str, dict[str, int]]:
        """Inputs, accepted samples, rejects and atoms per source label, in first-seen order."""
        counts: dict[str, dict[str, int]] = {}
        for shard in sorted(self.shards, key=lambda s: s.index):
            c = counts.setdefault(
                shard.source or "source", {"inputs": 0, "accepted": 0, "rejected": 0, "atoms": 0}
            )
            c["inputs"] += shard.n_inputs
            c["accepted"] += shard.n_samples
            c["rejected"] += shard.n_rejected
            c["atoms"] += shard.n_atoms
        return counts

    def shard_paths(self, root: str | Path) -> list[Path]:
        return [Path(root) / s.name for s in sorted(self.shards, key=lambda s: s.index)]

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shards"] = sorted(d["shards"], key=lambda s: s["index"])
        stats = self.statistics()
        d["counts"] = {
            "inputs": self.n_inputs,
            "accepted": self.n_samples,
            "rejected": self.n_rejected,
            "atoms": sum(s.n_atoms for s in self.shards),
            "sources": self.source_counts(),
        }
        d["statistics"] = {
            "mean": stats.mean.tolist(),
            "std": stats.std.tolist(),
            "count": stats.count,
        }
        return d

    def save(self, root: str | Path) -> Path:
        """Write atomically, sealed with :func:`content_checksum`: a reader never sees a
        half-written manifest, and a hand edit is detected at load."""
        path = Path(root) / MANIFEST_NAME
        d = self.to_dict()
        d[CHECKSUM_KEY] = content_checksum(d)
        atomic_write_text(path, json.dumps(d, indent=1, allow_nan=False) + "\n")
        return path

    @classmethod
    def load(cls, root: str | Path, *, check: bool = True) -> Manifest:
        """Read ``root/manifest.json``; ``check=False`` skips the checksum (for diagnosis)."""
        path = Path(root) / MANIFEST_NAME
        if not path.exists():
            raise FileNotFoundError(
                f"no {MANIFEST_NAME} in {root}: not a shard directory written by "
                "`fmpretrain featurize`"
            )
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ShardFormatError(f"{path} is not a valid manifest ({err})") from err
        if check and (not isinstance(d, dict) or d.get(CHECKSUM_KEY) != content_checksum(d)):
            raise ManifestModifiedError(modified_message(path))
        try:
            d.pop(CHECKSUM_KEY, None)
            d.pop("counts", None)
            d.pop("statistics", None)
            d["shards"] = [ShardEntry(**s) for s in d["shards"]]
            return cls(**d)
        except (TypeError, KeyError, AttributeError) as err:
            raise ShardFormatError(f"{path} is not a valid manifest ({err})") from err


def modified_message(path: str | Path) -> str:
    return (
        f"{path} was modified after it was written (its checksum does not match): re-run "
        "featurize (delete it first; finished shards are re-verified and kept) or "
        f"`fmpretrain shards verify {Path(path).parent}` to see what differs"
    )


def unlisted_shards(root: str | Path, manifest: Manifest) -> list[str]:
    """Shard files (``*.tar``) in ``root`` that the manifest does not list."""
    listed = {s.name for s in manifest.shards}
    return sorted(p.name for p in Path(root).glob("*.tar") if p.name not in listed)


def input_identity(path: str | Path) -> dict[str, Any]:
    """What identifies an input file: absolute path, size, mtime_ns and sha256 of its bytes."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return {
        "path": str(resolved),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": sha256_file(resolved),
    }


def verify_inputs(manifest: Manifest) -> list[str]:
    """Input files that changed since ``manifest`` was written: content replaced, removed (or
    not reachable from here) and, for file sources whose paths still resolve, files added."""
    if manifest.inputs is None:
        return ["the manifest records no inputs (written by an older version): re-featurize"]
    problems = []
    recorded = {i["path"]: i for i in manifest.inputs}
    for path, old in recorded.items():
        if not Path(path).is_file():
            problems.append(f"input {path}: removed (or not reachable from here)")
            continue
        now = input_identity(path)
        if now["sha256"] != old["sha256"]:
            problems.append(
                f"input {path}: content replaced since featurization (sha256 "
                f"{old['sha256'][:12]}… now {now['sha256'][:12]}…)"
            )
    for path in _source_files(manifest):
        if path not in recorded:
            problems.append(f"input {path}: added since featurization (not in the shards)")
    return problems


def _source_files(manifest: Manifest) -> list[str]:
    """The files that the manifest's file sources expand to now (those reachable from here)."""
    from fmpretrain.io import iter_structure_files

    found: list[str] = []
    for src in manifest.source.get("sources", []):
        if src.get("kind") != "files":
            continue
        try:
            found += [str(p.resolve()) for p in iter_structure_files(src.get("paths", []))]
        except (FileNotFoundError, OSError):
            continue  # not reachable from here: only recorded files are checked
    return found


def software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("fmpretrain", "torch", "numpy", "ase", "vesin", "ray", "webdataset"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def verify_shards(
    root: str | Path, *, decode: bool = True, deep: bool = False, inputs: bool = False
) -> list[str]:
    """Check every shard of ``root`` against its manifest; return the problems found.

    Checks the manifest's own checksum, shard files it does not list, presence, size and
    sha256 of each shard and, with ``decode``, that it decodes into exactly the recorded number
    of well-formed samples with the manifest's feature dimension and finite fingerprints.
    ``deep`` (implies ``decode``) also recomputes each shard's per-feature statistics (count,
    mean, std, min, max) and compares them with the manifest's. ``inputs`` also checks the
    recorded input files against the files on disk (:func:`verify_inputs`).
    """
    root = Path(root)
    manifest = Manifest.load(root, check=False)
    problems = []
    try:
        Manifest.load(root)
    except ManifestModifiedError as err:
        problems.append(str(err))
    problems.extend(
        f"{name}: on disk but not listed in {MANIFEST_NAME}"
        for name in unlisted_shards(root, manifest)
    )
    if not manifest.complete:
        problems.append("manifest is not complete: featurization did not finish (re-run it)")
    indices = sorted(s.index for s in manifest.shards)
    if manifest.n_chunks is not None and indices != list(range(manifest.n_chunks)):
        missing = sorted(set(range(manifest.n_chunks)) - set(indices))
        problems.append(f"manifest lacks chunk(s) {missing[:10]}")
    for shard in sorted(manifest.shards, key=lambda s: s.index):
        path = root / shard.name
        if not path.exists():
            problems.append(f"{shard.name}: missing")
            continue
        size = path.stat().st_size
        if size != shard.bytes:
            problems.append(f"{shard.name}: {size} bytes, manifest says {shard.bytes}")
            continue
        digest = sha256_file(path)
        if digest != shard.sha256:
            problems.append(f"{shard.name}: sha256 {digest[:12]}… differs from the manifest")
            continue
        if decode or deep:
            problems.extend(_check_samples(path, shard, manifest.dim, deep=deep))
    if inputs:
        problems.extend(verify_inputs(manifest))
    return problems


def _check_samples(path: Path, shard: ShardEntry, dim: int, *, deep: bool = False) -> list[str]:
    count = 0
    moments = RunningMoments(dim)
    try:
        for sample in read_shard(path):
            count += 1
            if sample.fingerprint.shape[1] != dim:
                return [f"{shard.name}: sample {sample.key} has dim {sample.fingerprint.shape[1]}"]
            if not np.isfinite(sample.fingerprint).all():
                return [f"{shard.name}: sample {sample.key} has a non-finite fingerprint"]
            if deep:
                moments.update(sample.fingerprint)
    except ShardFormatError as err:
        return [f"{shard.name}: {err}"]
    if count != shard.n_samples:
        return [f"{shard.name}: {count} samples, manifest says {shard.n_samples}"]
    return _compare_moments(shard, moments) if deep else []


def _compare_moments(shard: ShardEntry, moments: RunningMoments) -> list[str]:
    """Statistics recomputed from a shard against its manifest entry."""
    recorded = RunningMoments.from_dict(shard.moments)
    if recorded.count != moments.count:
        return [
            f"{shard.name}: statistics over {moments.count} atoms recomputed, manifest says "
            f"{recorded.count}"
        ]
    problems = []
    for what, ours, theirs in (
        ("mean", moments.mean, recorded.mean),
        ("std", moments.std, recorded.std),
        ("min", moments.minimum, recorded.minimum),
        ("max", moments.maximum, recorded.maximum),
    ):
        scale = np.maximum(np.abs(ours), np.abs(theirs))
        bad = np.flatnonzero(~(np.abs(ours - theirs) <= STATS_RTOL * scale + 1e-12))
        if len(bad):
            k = int(bad[0])
            problems.append(
                f"{shard.name}: feature {k} {what} recomputed {ours[k]:.9g}, manifest says "
                f"{theirs[k]:.9g} ({len(bad)} feature(s) differ)"
            )
    return problems
