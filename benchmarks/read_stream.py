"""Peak memory of reading a large JSON corpus vs a small one (streaming check).

Writes two Alexandria-like files ``{"entries": [ComputedStructureEntry dicts]}`` (streamed to
disk, one entry at a time): a large one (``--large-gb``, default 1 GB) and a small one
(``--small-mb``, default 10 MB). Each is then read in its own subprocess through
:func:`fmpretrain.io.read_structures`, validating every structure (what featurization does
before the descriptor), and the subprocess reports its peak RSS, its RSS after the imports and
its structures/s. Streaming means the two peaks agree (goal: within 10 %).

    python benchmarks/read_stream.py --dir /tmp/read_stream --large-gb 1 --small-mb 10

The files are deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
from fmpretrain.io import read_structures
from fmpretrain.structures import InvalidStructureError, validate
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
n = atoms = failures = rejected = 0
for s in read_structures(sys.argv[1], errors="collect"):
    if not hasattr(s, "numbers"):
        failures += 1
        continue
    try:
        validate(s)
    except InvalidStructureError:
        rejected += 1
    n += 1
    atoms += len(s)
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"n": n, "atoms": atoms, "failures": failures, "rejected": rejected,
                  "seconds": dt,
                  "base_kib": base, "peak_kib": peak}))
"""


def entry_templates(n_templates: int, seed: int = 0) -> list[str]:
    """JSON texts of distinct entries (2-16 atoms) with an ``@ID@`` placeholder for the id."""
    rng = np.random.default_rng(seed)
    elements = ["Li", "O", "Na", "Cl", "Fe", "Si", "Mg", "Al", "Ti", "Cu", "Zn", "N"]
    templates = []
    for _ in range(n_templates):
        n = int(rng.integers(2, 17))
        a = (n * 14.0) ** (1 / 3)
        matrix = (np.eye(3) * a + rng.normal(0, 0.1, (3, 3))).tolist()
        frac = rng.random((n, 3))
        xyz = frac @ np.asarray(matrix)
        species = rng.choice(elements, n)
        structure = {
            "@module": "pymatgen.core.structure",
            "@class": "Structure",
            "charge": 0,
            "lattice": {"matrix": matrix, "pbc": [True, True, True]},
            "properties": {},
            "sites": [
                {
                    "species": [{"element": str(el), "occu": 1}],
                    "abc": f.tolist(),
                    "xyz": p.tolist(),
                    "label": str(el),
                    "properties": {"magmom": 0.0, "charge": 0.1, "forces": [0.0, 0.0, 0.0]},
                }
                for el, f, p in zip(species, frac, xyz, strict=True)
            ],
        }
        entry = {
            "@module": "pymatgen.entries.computed_entries",
            "@class": "ComputedStructureEntry",
            "energy": float(rng.normal(-5 * n, 1)),
            "composition": {},
            "entry_id": "@ID@",
            "correction": 0.0,
            "energy_adjustments": [],
            "parameters": {},
            "data": {
                "mat_id": "@ID@",
                "e_form": float(rng.normal(-1, 0.5)),
                "e_above_hull": float(abs(rng.normal(0, 0.1))),
                "band_gap_ind": float(abs(rng.normal(1, 1))),
                "spg": 1,
                "nsites": n,
                "stress": rng.normal(0, 1, (3, 3)).tolist(),
            },
            "structure": structure,
        }
        templates.append(json.dumps(entry))
    return templates


def write_corpus(path: Path, target_bytes: int, templates: list[str]) -> int:
    """Write entries until the file reaches ``target_bytes``; return how many."""
    n = 0
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"entries": [')
        while written < target_bytes:
            text = templates[n % len(templates)].replace("@ID@", f"agm{n:09d}")
            if n:
                f.write(", ")
            f.write(text)
            written += len(text) + 2
            n += 1
        f.write("]}")
    return n


def measure(path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if out.returncode:
        raise RuntimeError(f"reading {path} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/tmp/read_stream", help="where to write the files")
    parser.add_argument("--large-gb", type=float, default=1.0)
    parser.add_argument("--small-mb", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()

    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    templates = entry_templates(64)
    print(f"load average before: {os.getloadavg()}  cpus: {os.cpu_count()}")
    results = {}
    try:
        for label, size in (("small", args.small_mb * 1e6), ("large", args.large_gb * 1e9)):
            path = folder / f"alexandria_{label}.json"
            t0 = time.perf_counter()
            n = write_corpus(path, int(size), templates)
            print(
                f"{label}: wrote {n} entries, {path.stat().st_size / 1e6:.1f} MB "
                f"in {time.perf_counter() - t0:.1f} s"
            )
            r = measure(path)
            r["mb"] = path.stat().st_size / 1e6
            results[label] = r
            path.unlink()
            print(
                f"{label}: {r['n']} structures ({r['atoms']} atoms, {r['failures']} read failures, "
                f"{r['rejected']} rejected by validate) "
                f"in {r['seconds']:.1f} s = {r['n'] / r['seconds']:.0f} structures/s; "
                f"peak RSS {r['peak_kib'] / 1024:.1f} MiB (after imports "
                f"{r['base_kib'] / 1024:.1f} MiB); load {os.getloadavg()}"
            )
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    small, large = results["small"], results["large"]
    ratio = large["peak_kib"] / small["peak_kib"]
    growth_small = (small["peak_kib"] - small["base_kib"]) / 1024
    growth_large = (large["peak_kib"] - large["base_kib"]) / 1024
    print(
        f"file size ratio {large['mb'] / small['mb']:.0f}x; peak RSS ratio large/small "
        f"{ratio:.3f} ({(ratio - 1) * 100:+.1f} %); growth over imports {growth_small:.1f} MiB "
        f"vs {growth_large:.1f} MiB"
    )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
