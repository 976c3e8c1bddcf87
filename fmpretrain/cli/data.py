"""Data commands: fingerprint, featurize, shards, download, corpora, descriptors, generate."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fmpretrain.cli.common import _plain, options_config


def descriptor_params(config: Path | None, overrides: Sequence[str]) -> dict[str, Any]:
    """Merge a YAML file and ``key=value`` overrides into plain descriptor parameters."""
    from omegaconf import OmegaConf

    from fmpretrain.config import named_config, parse_overrides

    dotlist = parse_overrides(overrides)
    base = OmegaConf.load(named_config("descriptors", config)) if config else OmegaConf.create({})
    merged = OmegaConf.merge(base, dotlist)
    return OmegaConf.to_container(merged, resolve=True)  # type: ignore[return-value]


def _fingerprint_descriptor(args: argparse.Namespace) -> Any:
    """The descriptor a ``fingerprint`` command line asks for (unknown parameters: errors)."""
    import torch

    from fmpretrain.descriptors import get_descriptor

    params = descriptor_params(args.config, args.overrides)
    dtype = torch.float32 if args.float32 else torch.float64
    return get_descriptor(args.descriptor, device=args.device, dtype=dtype, **params)


def _min_distance(args: argparse.Namespace) -> float:
    from fmpretrain.structures import DEFAULT_MIN_DISTANCE

    return DEFAULT_MIN_DISTANCE if args.min_distance is None else args.min_distance


def fingerprint_config(args: argparse.Namespace) -> dict[str, Any]:
    """``fingerprint``'s descriptor (name, every parameter, version) and options."""
    descriptor = _fingerprint_descriptor(args)
    return {
        "descriptor": descriptor.config(),
        "files": _plain(args.files),
        "out": _plain(args.out),
        "device": args.device,
        "dtype": "float32" if args.float32 else "float64",
        "min_distance": _min_distance(args),
        "skip_invalid": args.skip_invalid,
    }


def cmd_fingerprint(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from fmpretrain.io import read_structures
    from fmpretrain.structures import InvalidStructureError, validate

    descriptor = _fingerprint_descriptor(args)
    min_distance = _min_distance(args)
    for path in args.files:
        if not path.exists():
            raise FileNotFoundError(f"no such file: {path}")

    blocks, ids, n_atoms, numbers, rejected = [], [], [], [], []
    start = time.perf_counter()
    with tqdm(desc="fingerprints", unit=" structures", disable=None) as bar:
        for path in args.files:
            for structure in read_structures(path):
                try:
                    validate(structure, min_distance=min_distance)
                except InvalidStructureError as err:
                    if not args.skip_invalid:
                        raise ValueError(
                            f"{path}: {err} (use --skip-invalid to report and go on)"
                        ) from err
                    rejected.append(str(err))
                    print(f"skipped {path}: {err}", file=sys.stderr)
                    continue
                blocks.append(descriptor(structure).cpu().numpy())
                ids.append(structure.id)
                n_atoms.append(len(structure))
                numbers.append(structure.numbers)
                bar.update()
    elapsed = time.perf_counter() - start
    if not blocks:
        raise ValueError(f"no valid structures in {[str(p) for p in args.files]}")

    features = np.concatenate(blocks)
    print(f"descriptor   {descriptor.name}  dim={descriptor.dim}  hash={descriptor.hash}")
    print(
        f"structures   {len(blocks)} ({sum(n_atoms)} atoms) in {elapsed:.2f} s; "
        f"{len(rejected)} rejected"
    )
    for sid, block in list(zip(ids, blocks, strict=True))[:5]:
        print(f"  {sid:<30} shape={tuple(block.shape)}")
    if len(blocks) > 5:
        print(f"  ... {len(blocks) - 5} more")
    print(f"fingerprints shape={tuple(features.shape)}  dtype={features.dtype}")
    print(
        f"  values: min={features.min():.4g} mean={features.mean():.4g} "
        f"max={features.max():.4g}; all-zero columns: {int((features == 0).all(0).sum())}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            args.out,
            fingerprints=features,
            n_atoms=np.asarray(n_atoms, dtype=np.int64),
            ids=np.asarray(ids),
            numbers=np.concatenate(numbers),
            feature_names=np.asarray(descriptor.feature_names),
            descriptor=np.asarray(json.dumps(descriptor.config())),
        )
        print(f"wrote {args.out}")
    return 0


def cmd_featurize(args: argparse.Namespace) -> int:
    from fmpretrain.extras import require_extra

    require_extra("featurize", "ray")
    from data_pipeline.cli import run

    return run(args)


def cmd_shards_verify(args: argparse.Namespace) -> int:
    from fmpretrain.data.manifest import Manifest, verify_shards

    manifest = Manifest.load(args.dir, check=False)  # verify_shards reports a bad checksum
    problems = verify_shards(
        args.dir, decode=not args.no_decode, deep=args.deep, inputs=args.inputs
    )
    for problem in problems:
        print(f"PROBLEM {problem}")
    status = "FAILED" if problems else "OK"
    print(
        f"{status}: {len(manifest.shards)} shards, {manifest.n_samples} samples, "
        f"{len(problems)} problem(s) in {args.dir}"
    )
    return 1 if problems else 0


def cmd_download(args: argparse.Namespace) -> int:
    from fmpretrain.hub import HubError, load_pretrained, load_registry

    try:
        if args.list:
            for entry in load_registry(args.registry, cache_dir=args.cache_dir).values():
                d = entry.descriptor
                print(
                    f"{entry.name}: {d.get('name')} (dim={d.get('dim')} hash={d.get('hash')}) "
                    f"{entry.size} bytes {entry.url}"
                )
            return 0
        if args.source is None:
            raise HubError("give a release NAME or URL (or --list)")
        path = load_pretrained(
            args.source,
            sha256=args.sha256,
            registry=args.registry,
            cache_dir=args.cache_dir,
            progress=False if args.no_progress else None,
        )
    except HubError as err:
        print(f"fmpretrain download: error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


def cmd_corpora(args: argparse.Namespace) -> int:
    from fmpretrain.corpora import CorpusError, corpus_files, list_corpora
    from fmpretrain.download import DownloadError

    if args.corpora_command == "list":
        rows = [("NAME", "FORMAT", "FILES", "SIZE", "PINNED", "LICENCE")]
        for entry in list_corpora():
            n_pinned = sum(f.pinned for f in entry.files)
            pinned = (
                "yes" if entry.pinned else f"{n_pinned}/{len(entry.files)}" if n_pinned else "no"
            )
            rows.append(
                (
                    entry.name,
                    entry.format,
                    str(len(entry.files)),
                    _human_bytes(entry.total_bytes, exact=all(f.size for f in entry.files)),
                    pinned,
                    entry.licence + (" [shipped]" if entry.shipped else ""),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
        return 0
    try:
        paths = corpus_files(args.name, args.cache, progress=False if args.no_progress else None)
    except (CorpusError, DownloadError) as err:
        print(f"fmpretrain corpora: error: {err}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


def _human_bytes(size: int | None, *, exact: bool = True) -> str:
    """``3.7 MB``; ``~12.0 GB`` for an approximate size; ``?`` when unknown."""
    if size is None:
        return "?"
    value, unit = float(size), "B"
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            break
        value /= 1000
    text = f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
    return text if exact else f"~{text}"


def cmd_descriptors(args: argparse.Namespace) -> int:
    from fmpretrain.descriptors import available_descriptors, get_descriptor

    for name in available_descriptors():
        d = get_descriptor(name)
        print(f"{name}: dim={d.dim} hash={d.hash}")
        for key, value in d.config()["params"].items():
            if key == "parts":  # concat: its parts' own parameters are listed under their names
                value = ", ".join(part["name"] for part in value)
            print(f"  {key} = {value}")
    return 0


def _generator(args: argparse.Namespace) -> Any:
    """The lazy stream of ``generate`` (its arguments are checked here, nothing is built)."""
    from fmpretrain.generate import generate_structures

    if args.n < 1:
        raise ValueError(f"n must be at least 1, got {args.n}")
    return generate_structures(args.n, seed=args.seed, max_atoms=args.max_atoms)


def generate_config(args: argparse.Namespace) -> dict[str, Any]:
    """``generate``'s settings, checked as the run checks them."""
    _generator(args)
    return options_config(args)


def cmd_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fmpretrain.io import write_structures

    structures = list(
        tqdm(
            _generator(args),
            total=args.n,
            desc="generate",
            unit=" structures",
            disable=None,
        )
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_structures(args.out, structures)
    atoms = sum(len(s) for s in structures)
    print(f"wrote {len(structures)} structures ({atoms} atoms) to {args.out}")
    return 0
