"""What a featurization read and how it was configured, recorded so that a resume can check it.

Every chunk record (``parts/shard-NNNNNN.json``) holds the chunk's *input signature*: its global
start, the source, and for file inputs each file touched (path, size, mtime_ns, sha256 and the
entry range read from it) with the id and content hash of every input, or for generated inputs
the seed and index range. A resume keeps a finished chunk only when the source yields the same
signature now. Every setting that changes samples goes into :func:`sample_config`, whose
:func:`config_hash` is stored in the manifest and in each record.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from data_pipeline.config import FeaturizeConfig, source_record
from fmpretrain.data.manifest import input_identity
from fmpretrain.structures import Structure

#: Digits of a structure's content hash kept per input in a chunk record.
HASH_DIGITS = 16


def sample_config(cfg: FeaturizeConfig, descriptor_hash: str) -> dict[str, Any]:
    """Every setting that changes which samples a chunk holds or what they contain."""
    source = source_record(cfg)
    return {
        "descriptor": descriptor_hash,
        "min_distance": float(cfg.min_distance),
        "fingerprint_dtype": cfg.fingerprint_dtype,
        "chunk_size": cfg.chunk_size,
        "dedupe": source["dedupe"],
        "sources": source["sources"],
    }


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of a :func:`sample_config` as canonical JSON."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Names of the settings that differ, as configuration keys (``min_distance``,
    ``source.read_options``, ``sources[1].n``)."""
    names: list[str] = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key == "sources" and isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                prefix = "source" if len(a) == 1 else f"sources[{i}]"
                names += [
                    f"{prefix}.{k}" for k in sorted(x.keys() | y.keys()) if x.get(k) != y.get(k)
                ]
        else:
            names.append(key)
    return names


def describe_change(old: dict[str, Any], new: dict[str, Any], name: str) -> str:
    """``name`` with its old and new value when both are short scalars."""
    if name in old and name in new:
        a, b = old[name], new[name]
        if not isinstance(a, (dict, list)) and not isinstance(b, (dict, list)):
            return f"{name} ({a} -> {b})"
    return name


class FileIdentities:
    """:func:`~fmpretrain.data.manifest.input_identity` of each file, hashed once per run
    (cached by path, size and mtime_ns); ``seen`` keeps them in first-read order."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int, int], dict[str, Any]] = {}
        self.seen: dict[str, dict[str, Any]] = {}

    def __call__(self, path: str | Path) -> dict[str, Any]:
        resolved = Path(path).resolve()
        stat = resolved.stat()
        key = (str(resolved), stat.st_size, stat.st_mtime_ns)
        identity = self._cache.get(key)
        if identity is None:
            identity = self._cache[key] = input_identity(resolved)
        self.seen[identity["path"]] = identity
        return identity


def structure_digest(item: Structure) -> str:
    """A short content hash of a structure (raw arrays when its cell cannot be inverted)."""
    try:
        return item.content_hash()[:HASH_DIGITS]
    except Exception:  # a singular cell: still a deterministic identity
        digest = hashlib.sha256()
        for array in (item.numbers, item.positions, item.cell):
            digest.update(array.tobytes())
        return "raw-" + digest.hexdigest()[: HASH_DIGITS - 4]


def failure_digest(stage: str, reason: str) -> str:
    """The identity of an input that is a failure (its stage and reason)."""
    return "!" + hashlib.sha256(f"{stage}:{reason}".encode()).hexdigest()[: HASH_DIGITS - 1]


def comparable(signature: dict[str, Any] | None) -> dict[str, Any] | None:
    """A signature without what may change while the content stays (file mtime_ns)."""
    if signature is None:
        return None
    files = [{k: v for k, v in f.items() if k != "mtime_ns"} for f in signature.get("files", [])]
    return {**signature, "files": files}


def recorded_files(records: list[dict[str, Any]]) -> dict[str, str]:
    """``path -> sha256`` of every input file named in chunk records."""
    files: dict[str, str] = {}
    for record in records:
        for f in (record.get("inputs") or {}).get("files", []):
            files[f["path"]] = f["sha256"]
    return files


def file_changes(old: dict[str, str], new: dict[str, str], *, old_complete: bool) -> list[str]:
    """One line per input file added, replaced or removed between two ``path -> sha256``."""
    lines = []
    for path, digest in new.items():
        if path not in old:
            lines.append(f"{path}: file added" if old_complete else f"{path}: not read before")
        elif old[path] != digest:
            lines.append(f"{path}: content replaced")
    lines += [f"{path}: file removed" for path in old if path not in new]
    return lines
