"""Single-thread speed and peak memory of wACSF, GMP and EAD, with DScribe's ACSF as the peer.

    python benchmarks/descriptors.py                 # the recorded numbers (docs/benchmarks.md)
    python benchmarks/descriptors.py --quick         # smoke run, a few seconds
    python benchmarks/descriptors.py --json out.json
    python benchmarks/descriptors.py --batched       # batched path on perov_5 / carbon_24

What is measured, on one fixed set of generated structures
(``generate_structures(n, seed, max_atoms=...)``):

* speed: structures/s and atoms/s of one full pass over the set, ONE thread; every
  configuration is run ``--repeats`` times, interleaved round by round (the order rotates
  each round), and the best (shortest) pass counts; the CPU time of that pass is reported
  next to it so that interference from other jobs shows (wall >> CPU);
* peer: DScribe's ``ACSF`` with the same cutoff, the same radial ``[η, μ]`` pairs and the same
  centred angular ``[η, ζ, λ]`` triples as wACSF, ``periodic=True``, ``create(atoms, n_jobs=1)``.
  It gets the setting most favourable to it: ``species`` = the elements of each structure
  (its output grows with the number of element pairs), its ``ACSF`` objects are built and the
  structures converted to ``ase.Atoms`` before the clock starts. Before timing, the script
  checks that the settings really match: with unit weights wACSF's G2 equals DScribe's G2
  summed over species, and wACSF's G4 twice DScribe's G4 summed over species pairs;
* peak memory, each configuration in a fresh subprocess: the peak resident set size
  (``VmHWM``, reset through ``/proc/self/clear_refs`` after the baseline) minus the resident
  size after imports, structure generation and descriptor construction; once for the whole
  set and once for ONE large cell (~5,000 atoms), whose time is also reported.

``--batched``: structures/s of the batched path (``d.batch(structures)``, chunks of
``batch_pairs`` neighbour entries) of wACSF, GMP and EAD on the first ``--batched-n`` rows of
the real sets perov_5 and carbon_24 (``--data``), against DScribe's ACSF (as above) and the
per-structure loop ``[d(s) for s in structures]``; one thread, whole-set passes interleaved
round by round, best pass counts, load average and machine busy share printed per pass.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # before torch (and numpy) are imported

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from fmpretrain.descriptors import get_descriptor  # noqa: E402
from fmpretrain.generate import generate_structure, generate_structures  # noqa: E402
from fmpretrain.machine import busy_share, cpu_times, machine_info  # noqa: E402
from fmpretrain.neighbors import neighbor_list  # noqa: E402
from fmpretrain.structures import Structure  # noqa: E402

#: (label, descriptor, dtype); "dscribe" is DScribe's ACSF on the wACSF grid.
CONFIGS: tuple[tuple[str, str, str], ...] = (
    ("wacsf-f64", "wacsf", "float64"),
    ("wacsf-f32", "wacsf", "float32"),
    ("gmp-f64", "gmp", "float64"),
    ("gmp-f32", "gmp", "float32"),
    ("ead-f64", "ead", "float64"),
    ("ead-f32", "ead", "float32"),
    ("dscribe-acsf", "dscribe", "float64"),
)

#: The large cell: a generated 10x10x10 cubic perovskite supercell (index 4 of seed 0 is
#: PbMnO3, ~91 neighbour entries per atom within 6 Å: a dense oxide, the costly case).
CELL_FAMILY, CELL_INDEX = "perovskite", 4


# ============================================================================ structures
def make_structures(n: int, seed: int, max_atoms: int) -> list[Structure]:
    return list(generate_structures(n, seed=seed, max_atoms=max_atoms))


def make_cell(atoms: int) -> Structure:
    """A generated perovskite supercell of exactly ``atoms`` atoms (a multiple of 5)."""
    return generate_structure(
        CELL_INDEX, seed=0, min_atoms=atoms, max_atoms=atoms, families=CELL_FAMILY
    )


def describe_set(structures: Sequence[Structure], cutoff: float) -> dict[str, Any]:
    sizes = np.array([len(s) for s in structures])
    n_elements = Counter(len(set(s.numbers.tolist())) for s in structures)
    pairs = sum(len(neighbor_list(s.positions, s.cell, s.pbc, cutoff).centers) for s in structures)
    edges = [1, 5, 9, 17, 33, 65, 129, 257, 10**9]
    hist = {}
    for lo, hi in itertools.pairwise(edges):
        count = int(((sizes >= lo) & (sizes < hi)).sum())
        if count:
            hist[f"{lo}-{hi - 1}" if hi < 10**9 else f">={lo}"] = count
    return {
        "n_structures": len(sizes),
        "n_atoms": int(sizes.sum()),
        "atoms_min": int(sizes.min()),
        "atoms_median": float(np.median(sizes)),
        "atoms_mean": float(sizes.mean()),
        "atoms_p90": float(np.percentile(sizes, 90)),
        "atoms_max": int(sizes.max()),
        "size_histogram": hist,
        "elements_per_structure": {str(k): v for k, v in sorted(n_elements.items())},
        "neighbors_per_atom": pairs / float(sizes.sum()),
    }


# ============================================================================ runners
def dscribe_params(wacsf) -> dict[str, Any]:
    """DScribe ACSF keyword arguments reproducing the wACSF grid (read from the descriptor)."""
    p = wacsf.params
    if np.any(wacsf.angular_mu != 0):
        raise ValueError("DScribe's G4 has no shift: the wACSF angular grid must be centred")
    return {
        "r_cut": wacsf.cutoff,
        "g2_params": [
            [float(e), float(m)] for e, m in zip(wacsf.radial_eta, wacsf.radial_mu, strict=True)
        ],
        "g4_params": [
            [float(e), float(z), float(lam)]
            for e in wacsf.angular_eta
            for z in p.zeta
            for lam in p.lambdas
        ],
        "periodic": True,
    }


def _symbols(structure: Structure) -> tuple[str, ...]:
    from ase.data import chemical_symbols

    return tuple(sorted({chemical_symbols[int(z)] for z in structure.numbers}))


class DScribeRunner:
    """DScribe ACSF with per-structure species; objects and ase.Atoms prepared up front."""

    def __init__(self, structures: Sequence[Structure], wacsf):
        from dscribe.descriptors import ACSF

        self.kwargs = dscribe_params(wacsf)
        self.atoms = [s.to_ase() for s in structures]
        self.acsf: dict[tuple[str, ...], Any] = {}
        self.keys = []
        for s in structures:
            key = _symbols(s)
            if key not in self.acsf:
                self.acsf[key] = ACSF(species=list(key), **self.kwargs)
            self.keys.append(key)

    def __call__(self, i: int) -> Any:
        return self.acsf[self.keys[i]].create(self.atoms[i], n_jobs=1)


def make_runner(descriptor: str, dtype: str, structures: Sequence[Structure]) -> Callable:
    """``run(i)`` featurizes ``structures[i]``; everything else is prepared here."""
    if descriptor == "dscribe":
        return DScribeRunner(structures, get_descriptor("wacsf"))
    d = get_descriptor(descriptor, dtype=getattr(torch, dtype))
    items = list(structures)
    return lambda i: d(items[i])


def check_dscribe_equivalence(structures: Sequence[Structure]) -> float:
    """Largest relative deviation between wACSF (unit weights) and block-summed DScribe ACSF.

    DScribe's layout per atom: for each species ``[G1, G2 ...]``, then for each unordered
    species pair ``[G4 ...]``; DScribe sums G4 over ``k < j``, wACSF over ordered pairs.
    """
    from dscribe.descriptors import ACSF

    w = get_descriptor("wacsf", weights="unit")
    kwargs = dscribe_params(w)
    n2, n4 = len(kwargs["g2_params"]), len(kwargs["g4_params"])
    worst = 0.0
    for s in structures:
        species = list(_symbols(s))
        x = ACSF(species=species, **kwargs).create(s.to_ase(), n_jobs=1)
        ns = len(species)
        per = 1 + n2
        assert x.shape[1] == ns * per + ns * (ns + 1) // 2 * n4, x.shape
        g2 = sum(x[:, k * per + 1 : (k + 1) * per] for k in range(ns))
        g4 = sum(
            x[:, ns * per + k * n4 : ns * per + (k + 1) * n4] for k in range(ns * (ns + 1) // 2)
        )
        y = w(s).numpy()
        for ours, theirs in ((y[:, :n2], g2), (y[:, n2:], 2.0 * g4)):
            scale = max(float(np.abs(ours).max()), 1e-300)
            worst = max(worst, float(np.abs(ours - theirs).max()) / scale)
    if worst > 1e-9:
        raise AssertionError(f"DScribe ACSF does not reproduce wACSF: rel. deviation {worst:.2e}")
    return worst


# ============================================================================ timing


def time_configs(
    structures: Sequence[Structure],
    configs: Sequence[tuple[str, str, str]],
    repeats: int,
    warmup: int = 10,
) -> dict[str, dict[str, Any]]:
    """Best-of-``repeats`` full passes, configurations interleaved (rotating order)."""
    runners = {label: make_runner(name, dtype, structures) for label, name, dtype in configs}
    n = len(structures)
    for run in runners.values():  # warm-up: lazy initialisation, caches
        for i in range(min(warmup, n)):
            run(i)
    passes: dict[str, list[tuple[float, float, float]]] = {label: [] for label in runners}
    labels = list(runners)
    for r in range(repeats):
        order = labels[r % len(labels) :] + labels[: r % len(labels)]
        for label in order:
            run = runners[label]
            k0, c0, t0 = cpu_times(), time.process_time(), time.perf_counter()
            for i in range(n):
                run(i)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            busy = busy_share(k0, cpu_times())
            passes[label].append((wall, cpu, busy))
            print(
                f"  round {r + 1}/{repeats} {label:13s} {wall:7.2f} s "
                f"(cpu {cpu:6.2f} s, machine busy {100 * busy:3.0f} %)",
                flush=True,
            )
    n_atoms = sum(len(s) for s in structures)
    results = {}
    for label, runs in passes.items():
        walls = [w for w, _, _ in runs]
        best = int(np.argmin(walls))
        results[label] = {
            "best_s": walls[best],
            "cpu_s_of_best": runs[best][1],
            "busy_of_best": runs[best][2],
            "median_s": float(np.median(walls)),
            "all_s": walls,
            "all_cpu_s": [c for _, c, _ in runs],
            "all_busy": [b for _, _, b in runs],
            "structures_per_s": n / walls[best],
            "atoms_per_s": n_atoms / walls[best],
        }
    return results


# ============================================================================ memory (child)
def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _rss_mib() -> float:
    kib = _status_kib("VmRSS")
    if kib is None:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    return kib / 1024


def _peak_mib() -> float:
    kib = _status_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024


def child(mode: str, label: str, args: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS increase of one configuration, in this fresh process."""
    _, name, dtype = next(c for c in CONFIGS if c[0] == label)
    if mode == "set":
        structures = make_structures(args.n, args.seed, args.max_atoms)
        run = make_runner(name, dtype, structures)
        indices = range(len(structures))
    else:
        warm = make_structures(1, args.seed, args.max_atoms)
        make_runner(name, dtype, warm)(0)  # lazy initialisation outside the measurement
        structures = [make_cell(args.cell_atoms)]
        run = make_runner(name, dtype, structures)
        indices = range(1)
    exact = _reset_peak()
    base = _rss_mib()
    t0 = time.perf_counter()
    for i in indices:
        run(i)
    elapsed = time.perf_counter() - t0
    peak = _peak_mib()
    return {
        "label": label,
        "mode": mode,
        "baseline_mib": base,
        "peak_mib": peak,
        "increase_mib": peak - base,
        "exact_reset": exact,
        "time_s": elapsed,  # one pass in this process; the reported times come from main
        "n_atoms": sum(len(s) for s in structures),
    }


def run_child(mode: str, label: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        mode,
        label,
        f"--n={args.n}",
        f"--seed={args.seed}",
        f"--max-atoms={args.max_atoms}",
        f"--cell-atoms={args.cell_atoms}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child {mode} {label} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ============================================================================ report
def machine() -> dict[str, Any]:
    return {**machine_info(("torch", "numpy", "dscribe")), "torch_threads": torch.get_num_threads()}


def print_report(report: dict[str, Any]) -> None:
    s = report["set"]
    print()
    print(
        f"set: {s['n_structures']} structures, {s['n_atoms']} atoms "
        f"(min {s['atoms_min']}, median {s['atoms_median']:g}, mean {s['atoms_mean']:.1f}, "
        f"p90 {s['atoms_p90']:g}, max {s['atoms_max']}); "
        f"{s['neighbors_per_atom']:.1f} neighbour entries/atom within {report['cutoff']:g} Å"
    )
    hist = s["size_histogram"]
    print("  atoms per structure: " + ", ".join(f"{k}: {v}" for k, v in hist.items()))
    print(
        "  elements per structure: "
        + ", ".join(f"{k}: {v}" for k, v in s["elements_per_structure"].items())
    )
    print(f"  DScribe vs wACSF (unit weights) max rel. deviation: {report['dscribe_check']:.1e}")
    print()
    mem = report.get("memory", {})
    cell = report.get("cell", {})
    cell_t = report.get("cell_timing", {})
    header = (
        f"{'config':13s} {'dim':>4s} {'struct/s':>9s} {'atoms/s':>9s} {'best s':>7s} "
        f"{'cpu s':>6s} {'busy':>5s} {'median s':>8s} {'peak MiB':>8s} | "
        f"{'cell s':>7s} {'cell MiB':>8s}"
    )
    print(header)
    print("-" * len(header))
    for label, t in report["timing"].items():
        m = mem.get(label, {})
        c = cell.get(label, {})
        print(
            f"{label:13s} {report['dims'].get(label, ''):>4} {t['structures_per_s']:9.1f} "
            f"{t['atoms_per_s']:9.0f} {t['best_s']:7.2f} {t['cpu_s_of_best']:6.2f} "
            f"{100 * t['busy_of_best']:4.0f}% {t['median_s']:8.2f} "
            f"{m.get('increase_mib', float('nan')):8.1f} | "
            f"{cell_t.get(label, {}).get('best_s', float('nan')):7.2f} "
            f"{c.get('increase_mib', float('nan')):8.1f}"
        )
    print()
    print("ratios of structures/s, best passes (medians in brackets):")
    for name, (value, median, goal, met) in report["ratios"].items():
        print(
            f"  {name:28s} {value:6.2f} ({median:5.2f})   goal {goal:6s} "
            f"{'MET' if met else 'MISSED'}"
        )


def ratios(timing: dict[str, dict[str, Any]]) -> dict[str, tuple[float, float, str, bool]]:
    """``name -> (ratio of best passes, ratio of median passes, goal, met)``."""
    best = {k: v["best_s"] for k, v in timing.items()}
    median = {k: v["median_s"] for k, v in timing.items()}
    pairs = []
    if "dscribe-acsf" in best:
        pairs += [(f"wacsf-{dt}", "dscribe-acsf", 3.0) for dt in ("f64", "f32")]
    pairs += [(f"{n}-{dt}", f"wacsf-{dt}", 0.5) for n in ("gmp", "ead") for dt in ("f64", "f32")]
    out = {}
    for fast, slow, goal in pairs:  # rate ratio = inverse time ratio
        value = best[slow] / best[fast]
        value_median = median[slow] / median[fast]
        out[f"{fast} / {slow}"] = (value, value_median, f">= {goal:g}", value >= goal)
    return out


# ============================================================================ batched mode
#: (label, descriptor, dtype, batched); "dscribe" is DScribe's ACSF on the wACSF grid.
BATCHED_CONFIGS: tuple[tuple[str, str, str, bool], ...] = (
    ("wacsf-batch-f64", "wacsf", "float64", True),
    ("wacsf-batch-f32", "wacsf", "float32", True),
    ("gmp-batch-f64", "gmp", "float64", True),
    ("ead-batch-f64", "ead", "float64", True),
    ("wacsf-loop-f64", "wacsf", "float64", False),
    ("dscribe-acsf", "dscribe", "float64", False),
)

#: The real sets of the batched mode: (label, file name).
REAL_SETS = (("perov_5", "perov_5-val.csv"), ("carbon_24", "carbon_24-val.csv"))


def load_real_set(path: str, n: int) -> list[Structure]:
    from fmpretrain.io import read_structures

    return list(itertools.islice(read_structures(path), n))


def make_pass(name: str, dtype: str, batched: bool, structures: Sequence[Structure]) -> Callable:
    """``run()`` featurizes the whole set once; everything else is prepared here."""
    if name == "dscribe":
        runner = DScribeRunner(structures, get_descriptor("wacsf"))
        return lambda: [runner(i) for i in range(len(structures))]
    d = get_descriptor(name, dtype=getattr(torch, dtype))
    items = list(structures)
    if batched:
        return lambda: d.batch(items)
    return lambda: [d(s) for s in items]


def time_passes(
    passes: dict[str, Callable[[], Any]], n: int, n_atoms: int, repeats: int
) -> dict[str, dict[str, Any]]:
    """Best-of-``repeats`` whole-set passes, interleaved (rotating order), load printed."""
    labels = list(passes)
    runs: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in labels}
    for r in range(repeats):
        order = labels[r % len(labels) :] + labels[: r % len(labels)]
        for label in order:
            k0, c0, t0 = cpu_times(), time.process_time(), time.perf_counter()
            passes[label]()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            busy, load = busy_share(k0, cpu_times()), os.getloadavg()[0]
            runs[label].append((wall, cpu, busy, load))
            print(
                f"  round {r + 1}/{repeats} {label:16s} {wall:7.3f} s (cpu {cpu:6.3f} s, "
                f"machine busy {100 * busy:3.0f} %, load {load:4.2f})",
                flush=True,
            )
    out = {}
    for label, rs in runs.items():
        walls = [w for w, _, _, _ in rs]
        best = int(np.argmin(walls))
        out[label] = {
            "best_s": walls[best],
            "cpu_s_of_best": rs[best][1],
            "busy_of_best": rs[best][2],
            "load_of_best": rs[best][3],
            "median_s": float(np.median(walls)),
            "all_s": walls,
            "all_load": [x[3] for x in rs],
            "structures_per_s": n / walls[best],
            "atoms_per_s": n_atoms / walls[best],
        }
    return out


def batched_ratios(timing: dict[str, dict[str, Any]]) -> dict[str, tuple[float, float, str, bool]]:
    """Goals: batched wACSF >= 10x DScribe; batched GMP and EAD >= batched wACSF (float64)."""
    best = {k: v["best_s"] for k, v in timing.items()}
    median = {k: v["median_s"] for k, v in timing.items()}
    pairs = [
        ("wacsf-batch-f64", "dscribe-acsf", 10.0),
        ("wacsf-batch-f32", "dscribe-acsf", 10.0),
        ("gmp-batch-f64", "wacsf-batch-f64", 1.0),
        ("ead-batch-f64", "wacsf-batch-f64", 1.0),
        ("wacsf-batch-f64", "wacsf-loop-f64", 1.0),
    ]
    out = {}
    for fast, slow, goal in pairs:
        if fast in best and slow in best:
            value, value_median = best[slow] / best[fast], median[slow] / median[fast]
            out[f"{fast} / {slow}"] = (value, value_median, f">= {goal:g}", value >= goal)
    return out


def run_batched(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--batched`` mode: real sets, batched path vs DScribe and the per-structure loop."""
    info = machine()
    print(
        f"machine: {info['cpu']}, {info['cores']} cores; torch {info['torch']} "
        f"({info['torch_threads']} thread), dscribe {info['dscribe']}; "
        f"load average {os.getloadavg()}"
    )
    cutoff = get_descriptor("wacsf").cutoff
    report: dict[str, Any] = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "args": {k: v for k, v in vars(args).items() if k != "child"},
        "machine": info,
        "cutoff": cutoff,
        "batch_pairs": get_descriptor("wacsf").batch_pairs,
        "sets": {},
    }
    for name, filename in REAL_SETS:
        path = os.path.join(args.data, filename)
        if not os.path.exists(path):
            print(f"{name}: {path} not found, skipped")
            continue
        n = args.batched_n if name == "perov_5" else max(1, args.batched_n // 5)
        structures = load_real_set(path, n)
        n_atoms = sum(len(s) for s in structures)
        info_set = describe_set(structures, cutoff)
        check = check_dscribe_equivalence(structures[:10])
        print(
            f"{name}: {len(structures)} structures, {n_atoms} atoms, "
            f"{info_set['neighbors_per_atom']:.1f} neighbour entries/atom; DScribe check "
            f"{check:.1e}; {args.repeats} interleaved round(s), best pass counts"
        )
        passes = {}
        for label, desc, dtype, batched in BATCHED_CONFIGS:
            passes[label] = make_pass(desc, dtype, batched, structures)
            passes[label]()  # warm-up: lazy initialisation, caches
        timing = time_passes(passes, len(structures), n_atoms, args.repeats)
        report["sets"][name] = {
            "set": info_set,
            "dscribe_check": check,
            "timing": timing,
            "ratios": batched_ratios(timing),
        }
    print_batched_report(report)
    return report


def print_batched_report(report: dict[str, Any]) -> None:
    for name, entry in report["sets"].items():
        s = entry["set"]
        print()
        print(
            f"{name}: {s['n_structures']} structures, {s['n_atoms']} atoms "
            f"({s['neighbors_per_atom']:.1f} neighbour entries/atom)"
        )
        header = (
            f"{'config':16s} {'struct/s':>9s} {'atoms/s':>9s} {'best s':>7s} {'cpu s':>6s} "
            f"{'busy':>5s} {'load':>5s} {'median s':>8s}"
        )
        print(header)
        print("-" * len(header))
        for label, t in entry["timing"].items():
            print(
                f"{label:16s} {t['structures_per_s']:9.1f} {t['atoms_per_s']:9.0f} "
                f"{t['best_s']:7.3f} {t['cpu_s_of_best']:6.3f} {100 * t['busy_of_best']:4.0f}% "
                f"{t['load_of_best']:5.2f} {t['median_s']:8.3f}"
            )
        print("ratios of structures/s, best passes (medians in brackets):")
        for key, (value, median, goal, met) in entry["ratios"].items():
            print(
                f"  {key:36s} {value:6.2f} ({median:5.2f})   goal {goal:6s} "
                f"{'MET' if met else 'MISSED'}"
            )


# ============================================================================ main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="structures in the set (1000)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (0)")
    parser.add_argument("--max-atoms", type=int, default=64, help="largest cell of the set (64)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds (5)")
    parser.add_argument(
        "--cell-atoms", type=int, default=5000, help="atoms of the large cell (5000)"
    )
    parser.add_argument(
        "--cell-repeats", type=int, default=3, help="interleaved timing rounds, large cell (3)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 60 structures, 1 round, 500-atom cell"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--batched", action="store_true", help="batched path on the real perov_5/carbon_24 sets"
    )
    parser.add_argument(
        "--batched-n",
        type=int,
        default=1000,
        help="--batched: perov_5 rows (carbon_24 gets a fifth of it) (1000)",
    )
    parser.add_argument(
        "--data", default="/work/shared/data", help="--batched: folder of the real CSV sets"
    )
    parser.add_argument("--child", nargs=2, metavar=("MODE", "LABEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.repeats, args.cell_atoms, args.cell_repeats = 60, 1, 500, 1
        args.batched_n = 100
    if args.cell_atoms % 5:
        parser.error("--cell-atoms must be a multiple of 5 (perovskite supercell)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child, args)))
        return 0

    if args.batched:
        report = run_batched(args)
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(report, handle, indent=2, default=str)
        return 0

    t_start = time.perf_counter()
    info = machine()
    print(
        f"machine: {info['cpu']}, {info['cores']} cores; torch {info['torch']} "
        f"({info['torch_threads']} thread), dscribe {info['dscribe']}"
    )
    structures = make_structures(args.n, args.seed, args.max_atoms)
    cutoff = get_descriptor("wacsf").cutoff
    dims = {label: get_descriptor(name).dim for label, name, _ in CONFIGS if name != "dscribe"}
    dims["dscribe-acsf"] = "var"
    report: dict[str, Any] = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "args": {k: v for k, v in vars(args).items() if k != "child"},
        "machine": info,
        "cutoff": cutoff,
        "dims": dims,
        "dscribe_params": dscribe_params(get_descriptor("wacsf")),
        "set": describe_set(structures, cutoff),
        "dscribe_check": check_dscribe_equivalence(structures[:20]),
    }
    s = report["set"]
    print(f"set: {s['n_structures']} structures, {s['n_atoms']} atoms, sizes {s['size_histogram']}")
    print(f"timing: {args.repeats} interleaved round(s), best pass counts")
    report["timing"] = time_configs(structures, CONFIGS, args.repeats)
    report["ratios"] = ratios(report["timing"])
    cell = make_cell(args.cell_atoms)
    nl = neighbor_list(cell.positions, cell.cell, cell.pbc, cutoff)
    report["cell_info"] = {
        "formula": cell.formula,
        "n_atoms": len(cell),
        "neighbors_per_atom": len(nl) / len(cell),
    }
    print(
        f"large cell {cell.formula} ({len(cell)} atoms, {len(nl) / len(cell):.1f} neighbour "
        f"entries/atom): {args.cell_repeats} interleaved round(s), best counts"
    )
    report["cell_timing"] = time_configs([cell], CONFIGS, args.cell_repeats, warmup=0)
    if not args.no_memory:
        report["memory"], report["cell"] = {}, {}
        print("memory: one fresh process per configuration and case")
        for label, _, _ in CONFIGS:
            report["memory"][label] = run_child("set", label, args)
            report["cell"][label] = run_child("cell", label, args)
            m, c = report["memory"][label], report["cell"][label]
            print(
                f"  {label:13s} set +{m['increase_mib']:.1f} MiB; "
                f"cell +{c['increase_mib']:.1f} MiB",
                flush=True,
            )
    report["elapsed_s"] = time.perf_counter() - t_start
    print_report(report)
    if "cell_info" in report:
        ci = report["cell_info"]
        print(
            f"large cell: {ci['formula']}, {ci['n_atoms']} atoms, "
            f"{ci['neighbors_per_atom']:.1f} neighbour entries/atom; "
            f"'cell s' best of {args.cell_repeats} interleaved runs, 'cell MiB' peak RSS increase"
        )
    print(f"total {report['elapsed_s']:.0f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
