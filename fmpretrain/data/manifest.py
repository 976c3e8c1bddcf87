"""``manifest.json``: what a directory of shards holds, and the checks against it.

The manifest records the descriptor (name, full parameters, hash), the feature dimension, the
per-feature statistics merged exactly over all shards, every shard with its sample count, size
and sha256, the accepted/rejected counts, and the software versions that wrote it.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fmpretrain.data.format import ShardFormatError, read_shard, sha256_file
from fmpretrain.data.stats import RunningMoments

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


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
        }
        d["statistics"] = {
            "mean": stats.mean.tolist(),
            "std": stats.std.tolist(),
            "count": stats.count,
        }
        return d

    def save(self, root: str | Path) -> Path:
        """Write atomically: a reader never sees a half-written manifest."""
        path = Path(root) / MANIFEST_NAME
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, root: str | Path) -> Manifest:
        path = Path(root) / MANIFEST_NAME
        if not path.exists():
            raise FileNotFoundError(
                f"no {MANIFEST_NAME} in {root}: not a shard directory written by "
                "`fmpretrain featurize`"
            )
        try:
            d = json.loads(path.read_text())
            d.pop("counts", None)
            d.pop("statistics", None)
            d["shards"] = [ShardEntry(**s) for s in d["shards"]]
            return cls(**d)
        except (json.JSONDecodeError, TypeError, KeyError) as err:
            raise ShardFormatError(f"{path} is not a valid manifest ({err})") from err


def software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("fmpretrain", "torch", "numpy", "ase", "vesin", "ray", "webdataset"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def verify_shards(root: str | Path, *, decode: bool = True) -> list[str]:
    """Check every shard of ``root`` against its manifest; return the problems found.

    Checks presence, size and sha256 of each shard and, with ``decode``, that it decodes into
    exactly the recorded number of well-formed samples with the manifest's feature dimension.
    """
    root = Path(root)
    manifest = Manifest.load(root)
    problems = []
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
        if decode:
            problems.extend(_check_samples(path, shard, manifest.dim))
    return problems


def _check_samples(path: Path, shard: ShardEntry, dim: int) -> list[str]:
    count = 0
    try:
        for sample in read_shard(path):
            count += 1
            if sample.fingerprint.shape[1] != dim:
                return [f"{shard.name}: sample {sample.key} has dim {sample.fingerprint.shape[1]}"]
    except ShardFormatError as err:
        return [f"{shard.name}: {err}"]
    if count != shard.n_samples:
        return [f"{shard.name}: {count} samples, manifest says {shard.n_samples}"]
    return []
