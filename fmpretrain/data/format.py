"""The shard sample contract: one tar member per field, ``.npy`` arrays and JSON, no pickle.

A sample with key ``K`` is stored as the tar members ``K.numbers.npy`` (int64 ``[n]``),
``K.positions.npy`` (float64 ``[n, 3]``, Å), ``K.cell.npy`` (float64 ``[3, 3]``),
``K.pbc.npy`` (bool ``[3]``), ``K.fingerprint.npy`` (float32 or float16 ``[n, D]``) and
``K.meta.json`` (id, formula, properties, ...). This is WebDataset's layout, so shards stream
with ``webdataset`` and any tar tool can inspect them. Shards are model-agnostic: graphs are
built at load time with the model's cutoff.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from fmpretrain.files import atomic_open
from fmpretrain.structures import Structure

ARRAY_FIELDS = ("numbers", "positions", "cell", "pbc", "fingerprint")
FIELDS = (*ARRAY_FIELDS, "meta")
_DTYPES = {"numbers": np.int64, "positions": np.float64, "cell": np.float64, "pbc": bool}
FINGERPRINT_DTYPES = ("float32", "float16")


class ShardFormatError(ValueError):
    """A shard or sample does not follow the sample contract."""


@dataclass
class Sample:
    """One decoded shard sample."""

    key: str
    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    fingerprint: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_structure(
        cls, key: str, structure: Structure, fingerprint: np.ndarray, dtype: str = "float32"
    ) -> Sample:
        if dtype not in FINGERPRINT_DTYPES:
            raise ValueError(f"fingerprint dtype must be one of {FINGERPRINT_DTYPES}, got {dtype}")
        meta = {
            "id": structure.id,
            "formula": structure.formula,
            "n_atoms": len(structure),
            "properties": structure.properties,
        }
        return cls(
            key=key,
            numbers=structure.numbers,
            positions=structure.positions,
            cell=structure.cell,
            pbc=structure.pbc,
            fingerprint=np.asarray(fingerprint, dtype=dtype),
            meta=meta,
        )

    def to_structure(self) -> Structure:
        return Structure(
            self.numbers,
            self.positions,
            self.cell,
            self.pbc,
            id=str(self.meta.get("id", self.key)),
            properties=dict(self.meta.get("properties", {})),
        )

    def encode(self) -> dict[str, bytes]:
        """``{"numbers.npy": b"...", ..., "meta.json": b"..."}`` (member suffix -> bytes)."""
        out = {f"{name}.npy": _npy_bytes(getattr(self, name)) for name in ARRAY_FIELDS}
        out["meta.json"] = json.dumps(self.meta, sort_keys=True, default=_json_default).encode()
        return out

    @classmethod
    def decode(cls, key: str, members: Mapping[str, bytes]) -> Sample:
        """Inverse of :meth:`encode`; checks presence, dtypes and shapes of every field."""
        missing = [f"{n}.npy" for n in ARRAY_FIELDS if f"{n}.npy" not in members]
        if "meta.json" not in members:
            missing.append("meta.json")
        if missing:
            raise ShardFormatError(f"sample {key!r} lacks member(s) {missing}")
        arrays = {name: _load_npy(key, name, members[f"{name}.npy"]) for name in ARRAY_FIELDS}
        for name, dtype in _DTYPES.items():
            arrays[name] = arrays[name].astype(dtype, copy=False)
        n = len(arrays["numbers"])
        fp = arrays["fingerprint"]
        if (
            arrays["positions"].shape != (n, 3)
            or arrays["cell"].shape != (3, 3)
            or arrays["pbc"].shape != (3,)
            or fp.ndim != 2
            or fp.shape[0] != n
        ):
            raise ShardFormatError(
                f"sample {key!r}: inconsistent shapes numbers={arrays['numbers'].shape} "
                f"positions={arrays['positions'].shape} fingerprint={fp.shape}"
            )
        try:
            meta = json.loads(members["meta.json"])
        except json.JSONDecodeError as err:
            raise ShardFormatError(f"sample {key!r}: meta.json is not valid JSON ({err})") from err
        return cls(key=key, meta=meta, **arrays)


def write_shard(path: str | Path, samples: Iterable[Sample]) -> tuple[int, int, str]:
    """Write samples to ``path`` atomically (a uniquely named ``.tmp`` file, then rename).

    Returns ``(n_samples, n_bytes, sha256)``. The tar is plain POSIX ustar, the bytes that
    ``tarfile`` writes for these members (``tests/data/test_format.py`` compares them), with
    no timestamps or owners, so the same samples always give the same bytes. Headers are built
    here because ``tarfile`` spends about 30 µs per member, which was half of what the
    featurization pipeline added to the descriptor's work on small cells.
    """
    path = Path(path)
    count = 0
    with atomic_open(path, "wb") as raw:
        sink = _HashingWriter(raw)
        for sample in samples:
            if "." in sample.key or "/" in sample.key:
                raise ShardFormatError(f"sample key {sample.key!r} may not contain '.' or '/'")
            parts = []
            for suffix, payload in sample.encode().items():
                parts += [_ustar_header(f"{sample.key}.{suffix}", len(payload)), payload]
                parts.append(b"\0" * (-len(payload) % _BLOCK))
            sink.write(b"".join(parts))
            count += 1
        sink.write(b"\0" * (2 * _BLOCK))  # end of archive, then pad to a whole record
        sink.write(b"\0" * (-sink.size % tarfile.RECORDSIZE))
    return count, sink.size, sink.digest.hexdigest()


_BLOCK = tarfile.BLOCKSIZE


def _ustar_header(name: str, size: int) -> bytes:
    """The 512-byte ustar header of a regular file ``name`` of ``size`` bytes, mode 0644,
    owner 0/0, mtime 0 (what ``tarfile.TarInfo.tobuf(USTAR_FORMAT)`` gives for it)."""
    if not name.isascii() or len(name) > 100 or size >= 8**11:
        raise ShardFormatError(
            f"tar member {name!r} of {size} bytes does not fit a ustar header (ASCII names of "
            "at most 100 bytes, files under 8 GiB): use shorter sample keys"
        )
    header = bytearray(_BLOCK)
    header[: len(name)] = name.encode("ascii")
    mode_uid_gid = b"0000644\x00" + b"0000000\x00" * 2
    header[100:148] = mode_uid_gid + b"%011o\x00" % size + b"0" * 11 + b"\x00"  # size, mtime 0
    header[148:156] = b" " * 8  # the checksum counts its own field as spaces
    header[156:157] = tarfile.REGTYPE
    header[257:265] = tarfile.POSIX_MAGIC
    header[148:156] = b"%06o\x00 " % sum(header)
    return bytes(header)


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, raw: BinaryIO):
        self.raw, self.digest, self.size = raw, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def tell(self) -> int:
        return self.size


def read_shard(path: str | Path) -> Iterator[Sample]:
    """Decode the samples of one local shard in order (for checks and tools; training streams
    shards through :mod:`fmpretrain.data.loader`, which verifies counts and hashes too)."""
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            yield from iter_samples(stream)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ShardFormatError(f"shard {path}: unreadable tar ({err})") from err


def iter_samples(stream: BinaryIO) -> Iterator[Sample]:
    """The one shard decoder: the samples of a tar read front to back from ``stream`` (a file,
    a pipe, an HTTP body), members grouped by key as :func:`write_shard` wrote them.

    Raises :class:`ShardFormatError` for a malformed sample and ``tarfile.TarError`` /
    ``EOFError`` / ``OSError`` for a truncated or unreadable stream.
    """
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        key, members = None, {}
        for info in tar:
            if not info.isfile():
                continue
            sample_key, _, suffix = info.name.partition(".")
            if key is not None and sample_key != key:
                yield Sample.decode(key, members)
                members = {}
            key = sample_key
            handle = tar.extractfile(info)
            members[suffix] = handle.read() if handle else b""
        if key is not None:
            yield Sample.decode(key, members)


def sha256_file(path: str | Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _load_npy(key: str, name: str, payload: bytes) -> np.ndarray:
    try:
        return np.load(io.BytesIO(payload), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ShardFormatError(f"sample {key!r}: {name}.npy is not a valid array ({err})") from err


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in meta.json")
