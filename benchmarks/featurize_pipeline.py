"""Throughput and peak memory of the Ray featurization pipeline (``data_pipeline``).

    python benchmarks/featurize_pipeline.py            # the recorded numbers (docs/benchmarks.md)
    python benchmarks/featurize_pipeline.py --quick    # smoke run
    python benchmarks/featurize_pipeline.py --json out.json

(a) Throughput. The same generated structures (``source.n`` of seed 0) go through

* the bare loop, in this process on one thread: ``generate_structures`` -> ``validate`` ->
  descriptor (batched per chunk as the worker does) -> ``.numpy()``, nothing written;
* ``data_pipeline.driver.run_featurize`` with ``workers=1`` and ``workers=2``, configured as
  ``load_config("configs/featurize/demo.yaml", [overrides])``. Ray is started once beforehand
  (``ray.init(num_cpus=2, include_dashboard=False)``, timed on its own) and reused, so a run's
  wall time includes the start of its actors but not of the cluster. To exclude start-up, the
  actor class is swapped for :class:`TimedChunkFeaturizer` (the same actor plus a tiny side
  file with each chunk's start and end time): "active" time runs from the first chunk's start
  to the last chunk's end, over all actors, and covers the same structures as the bare loop.

All three are run ``--repeats`` times, interleaved (the order rotates each round); the best
(shortest) run of each counts.

(b) Peak memory. For each source size (default 20,000 and 100,000 structures, a cheap setting:
``ead``, ``max_atoms=8``, ``chunk_size=500``, 2 workers), a fresh subprocess runs the pipeline
exactly as the CLI does (``run_featurize`` starts and stops its own Ray cluster) while a thread
samples every 0.2 s the resident set size of the driver and all its descendants (Ray's GCS,
raylet, agents and worker processes). Reported: the peak of the sampled total, and each
process's own peak (``VmHWM``) for the driver and the largest featurizing worker.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # before torch (and numpy) are imported

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from data_pipeline.worker import BATCH_STRUCTURES, ChunkFeaturizer  # noqa: E402
from fmpretrain.machine import busy_share, cpu_times, machine_info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TIMING_DIR = "bench-timing"
DEMO = REPO / "configs" / "featurize" / "demo.yaml"


# ============================================================================ helpers
def machine() -> dict[str, Any]:
    return machine_info(("torch", "ray"))


def make_config(out: Path, overrides: Sequence[str]):
    from data_pipeline.config import load_config

    return load_config(DEMO, [f"out={out}", *overrides])


# ============================================================================ (a) throughput
def bare_loop(cfg) -> dict[str, float]:
    """generate -> validate -> descriptor on one thread, nothing written; per-stage times.

    The descriptor runs as the worker runs it: per chunk of ``chunk_size`` structures, the
    valid ones in batches of ``BATCH_STRUCTURES`` (``descriptor.batch``), each fingerprint
    taken to numpy; so the pipeline's overhead is everything but this work.
    """
    import torch

    from fmpretrain.descriptors import get_descriptor
    from fmpretrain.generate import generate_structures
    from fmpretrain.structures import validate

    torch.set_num_threads(1)
    d = get_descriptor(cfg.descriptor, **cfg.descriptor_params)
    src = cfg.source
    clock = time.perf_counter
    t_gen = t_val = t_desc = 0.0
    chunk_s: list[float] = []
    t0 = clock()
    stream = generate_structures(
        src.n, seed=src.seed, min_atoms=src.min_atoms, max_atoms=src.max_atoms
    )
    while True:
        a = clock()
        chunk = list(itertools.islice(stream, cfg.chunk_size))
        b = clock()
        if not chunk:
            break
        for s in chunk:
            validate(s, min_distance=cfg.min_distance)
        c = clock()
        for start in range(0, len(chunk), BATCH_STRUCTURES):
            [f.cpu().numpy() for f in d.batch(chunk[start : start + BATCH_STRUCTURES])]
        e = clock()
        t_gen, t_val, t_desc = t_gen + b - a, t_val + c - b, t_desc + e - c
        chunk_s.append(e - a)
    return {
        "wall_s": clock() - t0,
        "generate_s": t_gen,
        "validate_s": t_val,
        "descriptor_s": t_desc,
        "chunk_s": chunk_s,
    }


class TimedChunkFeaturizer(ChunkFeaturizer):
    """The pipeline's actor, unchanged, plus a side file with each chunk's start/end and pid.

    Substituted for ``data_pipeline.driver.ChunkFeaturizer`` during the throughput runs only,
    so that start-up can be told apart from work; it costs two clock reads and one tiny
    write per chunk.
    """

    def run(self, chunk):
        start = time.time()
        record = super().run(chunk)
        end = time.time()
        timing = self.out / TIMING_DIR / f"chunk-{chunk.index:06d}.json"
        timing.parent.mkdir(exist_ok=True)
        timing.write_text(
            json.dumps({"index": chunk.index, "pid": os.getpid(), "start": start, "end": end})
        )
        return record


def pipeline_run(cfg) -> dict[str, Any]:
    """One ``run_featurize`` (actors timed per chunk); wall time, active time, per-chunk times."""
    import ray.cloudpickle

    import data_pipeline.driver as driver

    module = TimedChunkFeaturizer.__module__
    if module != "__main__":  # imported, not run: ship the class by value to the workers
        ray.cloudpickle.register_pickle_by_value(sys.modules[module])
    original = driver.ChunkFeaturizer
    driver.ChunkFeaturizer = TimedChunkFeaturizer
    try:
        t_wall0 = time.time()
        t0 = time.perf_counter()
        result = driver.run_featurize(cfg, progress=False)
        wall = time.perf_counter() - t0
    finally:
        driver.ChunkFeaturizer = original
    m = result.manifest
    if m.n_inputs != cfg.source.n or m.n_rejected or not m.complete:
        raise RuntimeError(
            f"pipeline did not featurize every input: {m.n_inputs} inputs, "
            f"{m.n_rejected} rejected, complete={m.complete}"
        )
    chunks = [json.loads(p.read_text()) for p in (Path(cfg.out) / TIMING_DIR).glob("*.json")]
    if len(chunks) != len(m.shards):
        raise RuntimeError(f"{len(chunks)} chunk timings for {len(m.shards)} shards")
    first, last = min(c["start"] for c in chunks), max(c["end"] for c in chunks)
    return {
        "wall_s": wall,
        "startup_s": first - t_wall0,  # run_featurize entry -> first chunk starts in an actor
        "active_s": last - first,  # first chunk starts -> last chunk ends (all workers)
        "in_chunk_s": sum(c["end"] - c["start"] for c in chunks),  # summed over actors
        "tail_s": t_wall0 + wall - last,  # last chunk ends -> run_featurize returns
        "actors": len({c["pid"] for c in chunks}),
        "chunks": sorted(chunks, key=lambda c: c["start"]),
    }


def warm_speed(res: dict[str, Any], bare_chunk_s: Sequence[float]) -> float:
    """Sum over actors of (bare-loop time of the actor's chunks / the actor's time for them),
    leaving out each actor's first chunk (its warm-up) and measuring from that chunk's end:
    1.0 = one bare loop's speed; gaps between an actor's chunks count against it."""
    total = 0.0
    for pid in {c["pid"] for c in res["chunks"]}:
        mine = [c for c in res["chunks"] if c["pid"] == pid]  # sorted by start
        if len(mine) < 2:
            continue
        window = mine[-1]["end"] - mine[0]["end"]
        total += sum(bare_chunk_s[c["index"]] for c in mine[1:]) / window
    return total


def throughput(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import ray

    overrides = [
        f"descriptor={args.descriptor}",
        f"source.n={args.n}",
        "source.seed=0",
        f"source.max_atoms={args.max_atoms}",
        f"chunk_size={args.chunk_size}",
    ]
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_init_s = time.perf_counter() - t0
    print(f"ray.init(num_cpus=2): {ray_init_s:.1f} s", flush=True)
    runs: dict[str, list[dict[str, float]]] = {"bare": [], "workers=1": [], "workers=2": []}
    labels = list(runs)
    counter = 0
    try:
        for r in range(args.repeats):
            order = labels[r % 3 :] + labels[: r % 3]
            for label in order:
                counter += 1
                ticks = cpu_times()
                out = workdir / f"run-{counter:03d}"
                if label == "bare":
                    cfg = make_config(out, overrides)
                    res = bare_loop(cfg)
                else:
                    cfg = make_config(out, [*overrides, f"workers={label.split('=')[1]}"])
                    res = pipeline_run(cfg)
                    shutil.rmtree(out, ignore_errors=True)
                res["busy"] = busy_share(ticks, cpu_times())
                runs[label].append(res)
                extra = (
                    f"start-up {res['startup_s']:.2f} s, active {res['active_s']:.2f} s, "
                    f"{res['actors']} actor(s)"
                    if "active_s" in res
                    else (
                        f"generate {res['generate_s']:.2f} s, validate {res['validate_s']:.2f} s, "
                        f"descriptor {res['descriptor_s']:.2f} s"
                    )
                )
                print(
                    f"  round {r + 1}/{args.repeats} {label:9s} {res['wall_s']:6.2f} s "
                    f"({args.n / res['wall_s']:6.1f} structures/s; {extra}; "
                    f"machine busy {100 * res['busy']:.0f} %)",
                    flush=True,
                )
    finally:
        ray.shutdown()

    best = {label: min(rs, key=lambda x: x["wall_s"]) for label, rs in runs.items()}
    best_active = {
        label: min(rs, key=lambda x: x["active_s"]) for label, rs in runs.items() if label != "bare"
    }
    bare_chunk_s = best["bare"]["chunk_s"]  # the best bare pass, split like the pipeline
    for label, rs in runs.items():
        for res in rs:
            if label != "bare":
                res["warm_x_bare"] = warm_speed(res, bare_chunk_s)
    warm = {
        label: max(r["warm_x_bare"] for r in rs) for label, rs in runs.items() if label != "bare"
    }
    bare = best["bare"]["wall_s"]
    w1, w2 = "workers=1", "workers=2"
    over_incl = best[w1]["wall_s"] / bare - 1.0
    over_active = best_active[w1]["active_s"] / bare - 1.0
    speed_incl = best[w1]["wall_s"] / best[w2]["wall_s"]
    speed_active = best_active[w1]["active_s"] / best_active[w2]["active_s"]
    over_warm = 1.0 / warm[w1] - 1.0
    speed_warm = warm[w2] / warm[w1]
    paired = [
        w["wall_s"] / b["wall_s"] - 1.0 for w, b in zip(runs[w1], runs["bare"], strict=True)
    ]  # each round's 1-worker run against the same round's bare loop
    over_paired = float(np.median(paired))
    goals = {
        "overhead_1_worker_incl_startup": (over_incl, "<= 10 %", over_incl <= 0.10),
        "overhead_1_worker_incl_startup_median_round": (
            over_paired,
            "<= 10 %",
            over_paired <= 0.10,
        ),
        "overhead_1_worker_excl_startup": (over_active, "<= 10 %", over_active <= 0.10),
        "speedup_2_vs_1_incl_startup": (speed_incl, ">= 1.7x", speed_incl >= 1.7),
        "speedup_2_vs_1_excl_startup": (speed_active, ">= 1.7x", speed_active >= 1.7),
        "overhead_1_worker_warm": (over_warm, "<= 10 %", over_warm <= 0.10),
        "speedup_2_vs_1_warm": (speed_warm, ">= 1.7x", speed_warm >= 1.7),
    }
    return {
        "overrides": overrides,
        "ray_init_s": ray_init_s,
        "runs": runs,
        "best": best,
        "best_active": best_active,
        "warm_x_bare": warm,
        "goals": goals,
        "overhead_per_round": paired,
    }


# ============================================================================ (b) memory
def _hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    """Every ``interval`` s: RSS of this process and all its descendants."""

    def __init__(self, interval: float = 0.2):
        super().__init__(daemon=True)
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.interval = interval
        self.stop_event = threading.Event()
        self.samples: list[tuple[float, float, int]] = []  # (t, total MiB, n processes)
        self.hwm: dict[int, tuple[str, int]] = {}  # pid -> (kind, peak KiB)

    def _kind(self, proc) -> str:
        if proc.pid == self.me.pid:
            return "driver"
        try:
            text = " ".join(proc.cmdline()) or proc.name()
        except self.psutil.Error:
            return "other"
        if "ChunkFeaturizer" in text:
            return "featurizer"
        for key in ("gcs_server", "raylet", "dashboard", "agent", "log_monitor", "default_worker"):
            if key in text:
                return key
        return "ray::" + proc.name() if proc.name().startswith("ray::") else proc.name()

    def sample(self) -> None:
        t = time.perf_counter()
        total, count = 0, 0
        for proc in [self.me, *self.me.children(recursive=True)]:
            try:
                rss = proc.memory_info().rss
            except self.psutil.Error:
                continue
            total += rss
            count += 1
            kind, peak = self.hwm.get(proc.pid, (None, 0))
            if kind is None or kind in ("other", "default_worker") or kind.startswith("ray::"):
                kind = self._kind(proc)  # Ray renames a worker when it becomes an actor
            self.hwm[proc.pid] = (kind, max(peak, _hwm_kib(proc.pid), rss // 1024))
        self.samples.append((t, total / 2**20, count))

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()
        self.join()


def memory_child(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """One pipeline run of ``n`` structures in this fresh process, memory sampled."""
    from data_pipeline.driver import run_featurize

    out = Path(tempfile.mkdtemp(prefix="fmp-mem-", dir=args.workdir))
    cfg = make_config(
        out,
        [
            f"descriptor={args.mem_descriptor}",
            f"source.n={n}",
            "source.seed=0",
            f"source.max_atoms={args.mem_max_atoms}",
            f"chunk_size={args.mem_chunk_size}",
            "workers=2",
        ],
    )
    sampler = Sampler(0.2)
    sampler.sample()
    baseline = sampler.samples[-1][1]
    sampler.start()
    t0 = time.perf_counter()
    try:
        result = run_featurize(cfg, progress=False)
        wall = time.perf_counter() - t0
    finally:
        sampler.stop()
    try:
        integrity = check_output(out, n)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    totals = np.array([s[1] for s in sampler.samples])
    by_kind: dict[str, float] = {}
    for kind, peak in sampler.hwm.values():
        by_kind[kind] = max(by_kind.get(kind, 0.0), peak / 1024)
    return {
        "n": n,
        "wall_s": wall,
        "n_inputs": result.manifest.n_inputs,
        "n_atoms": int(sum(s.n_atoms for s in result.manifest.shards)),
        "n_shards": len(result.manifest.shards),
        "baseline_mib": baseline,
        "peak_total_mib": float(totals.max()),
        "median_total_mib": float(np.median(totals)),
        "n_samples": len(totals),
        "max_processes": max(s[2] for s in sampler.samples),
        "peak_driver_mib": by_kind.get("driver", float("nan")),
        "peak_featurizer_mib": by_kind.get("featurizer", float("nan")),
        "sum_of_process_peaks_mib": sum(p for _, p in sampler.hwm.values()) / 1024,
        "peak_by_kind_mib": by_kind,
        **integrity,
    }


def check_output(out: Path, n: int) -> dict[str, Any]:
    """Nothing lost, duplicated or corrupt: the shards verified and every input accounted for.

    ``verify_shards`` checks the manifest, each shard's size and sha256 and decodes every
    sample (dimension, finiteness, count); a second pass lists the tar members to check that
    every sample key is unique. Lost = inputs the source produced that are neither a sample
    nor a logged reject.
    """
    import tarfile

    from fmpretrain.data.manifest import Manifest, verify_shards

    t0 = time.perf_counter()
    problems = verify_shards(out, decode=True)
    manifest = Manifest.load(out)
    keys: set[str] = set()
    duplicates = 0
    for shard in manifest.shards:
        with tarfile.open(out / shard.name) as tar:
            for key in {m.name.split(".", 1)[0] for m in tar.getmembers()}:
                duplicates += key in keys
                keys.add(key)
    return {
        "verify_s": time.perf_counter() - t0,
        "verify_problems": problems[:20],
        "n_problems": len(problems),
        "n_samples": manifest.n_samples,
        "n_rejected": manifest.n_rejected,
        "n_keys": len(keys),
        "n_duplicate_keys": duplicates,
        "n_lost": n - manifest.n_samples - manifest.n_rejected,
    }


def memory(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[int, list[dict[str, Any]]] = {n: [] for n in args.mem_sizes}
    for r in range(args.mem_repeats):
        for n in args.mem_sizes:
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--memory-child",
                str(n),
                f"--workdir={args.workdir}",
                f"--mem-descriptor={args.mem_descriptor}",
                f"--mem-max-atoms={args.mem_max_atoms}",
                f"--mem-chunk-size={args.mem_chunk_size}",
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"memory child n={n} failed:\n{proc.stderr[-4000:]}")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            results[n].append(res)
            print(
                f"  round {r + 1}/{args.mem_repeats} n={n:>7d}: {res['wall_s']:6.1f} s, "
                f"peak total {res['peak_total_mib']:7.1f} MiB, driver "
                f"{res['peak_driver_mib']:6.1f} MiB, largest worker "
                f"{res['peak_featurizer_mib']:6.1f} MiB; {res['n_samples']} samples, "
                f"{res['n_rejected']} rejected, {res['n_lost']} lost, "
                f"{res['n_duplicate_keys']} duplicate keys, {res['n_problems']} shard problems "
                f"(verified in {res['verify_s']:.0f} s)",
                flush=True,
            )
    small, large = min(args.mem_sizes), max(args.mem_sizes)
    peak = {n: max(r["peak_total_mib"] for r in rs) for n, rs in results.items()}
    growth = peak[large] / peak[small] - 1.0
    return {
        "setting": {
            "descriptor": args.mem_descriptor,
            "max_atoms": args.mem_max_atoms,
            "chunk_size": args.mem_chunk_size,
            "workers": 2,
        },
        "runs": {str(n): rs for n, rs in results.items()},
        "goal": (growth, "<= 10 %", growth <= 0.10),
    }


# ============================================================================ report
def print_report(report: dict[str, Any], args: argparse.Namespace) -> None:
    if "throughput" in report:
        tp = report["throughput"]
        print()
        print(
            f"(a) throughput: {args.n} generated structures (seed 0, max_atoms {args.max_atoms}), "
            f"{args.descriptor}, chunk_size {args.chunk_size}; best of {args.repeats} "
            f"interleaved runs; ray.init once: {tp['ray_init_s']:.1f} s (not included)"
        )
        header = (
            f"{'run':10s} {'wall s':>7s} {'struct/s':>9s} {'x bare':>6s} {'busy':>5s} | "
            f"{'start-up s':>10s} {'active s':>8s} {'struct/s':>9s} {'x bare':>6s} "
            f"{'in-chunk s':>10s} | {'x bare':>6s}"
        )
        print(
            f"{'':10s} {'including actor start-up':^30s} | {'excluding start-up':^48s} | "
            f"{'warm':^6s}"
        )
        print(header)
        print("-" * len(header))
        n = args.n
        bare = tp["best"]["bare"]["wall_s"]
        for label, best in tp["best"].items():
            line = (
                f"{label:10s} {best['wall_s']:7.2f} {n / best['wall_s']:9.1f} "
                f"{bare / best['wall_s']:6.2f} {100 * best['busy']:4.0f}% | "
            )
            act = tp["best_active"].get(label)
            if act:
                line += (
                    f"{best['startup_s']:10.2f} {act['active_s']:8.2f} {n / act['active_s']:9.1f} "
                    f"{bare / act['active_s']:6.2f} {act['in_chunk_s']:10.2f} | "
                    f"{tp['warm_x_bare'][label]:6.2f}"
                )
            print(line)
        print(
            "  x bare: speed relative to the bare loop (best runs); wall: the run_featurize call "
            "(Ray already up) or the bare loop;\n"
            "  start-up: call -> first chunk starts in an actor; active: first chunk starts -> "
            "last chunk ends;\n"
            "  in-chunk: time inside ChunkFeaturizer.run summed over actors; warm: per actor, "
            "from the end of its first chunk\n"
            "  (bare time of its other chunks / its time for them), summed over actors;\n"
            "  busy: share of both cores in use during the run, any process (bare alone = 50 %)"
        )
        b = tp["best"]["bare"]
        print(
            f"bare loop breakdown (best run): generate {b['generate_s']:.2f} s, "
            f"validate {b['validate_s']:.2f} s, descriptor {b['descriptor_s']:.2f} s"
        )
        for name, (value, goal, met) in tp["goals"].items():
            shown = f"{100 * value:+.1f} %" if "overhead" in name else f"{value:.2f}x"
            print(f"  {name:32s} {shown:>9s}  (goal {goal})  {'MET' if met else 'MISSED'}")
    if "memory" in report:
        mem = report["memory"]
        st = mem["setting"]
        print()
        print(
            f"(b) peak memory: {st['descriptor']}, max_atoms {st['max_atoms']}, chunk_size "
            f"{st['chunk_size']}, {st['workers']} workers; fresh process + Ray per run; "
            "RSS of driver + all descendants sampled every 0.2 s"
        )
        header = (
            f"{'structures':>10s} {'atoms':>8s} {'shards':>6s} {'wall s':>7s} "
            f"{'peak total':>10s} {'median':>7s} {'driver':>7s} {'worker':>7s} {'procs':>5s}"
        )
        print(header + "   (MiB)")
        print("-" * len(header))
        for rs in mem["runs"].values():
            for r in rs:
                print(
                    f"{r['n']:>10d} {r['n_atoms']:>8d} {r['n_shards']:>6d} {r['wall_s']:7.1f} "
                    f"{r['peak_total_mib']:10.1f} {r['median_total_mib']:7.1f} "
                    f"{r['peak_driver_mib']:7.1f} {r['peak_featurizer_mib']:7.1f} "
                    f"{r['max_processes']:>5d}"
                )
        value, goal, met = mem["goal"]
        print(
            f"  peak growth largest vs smallest source {100 * value:+.1f} % "
            f"(goal {goal})  {'MET' if met else 'MISSED'}"
        )


# ============================================================================ main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="structures for (a) (2000)")
    parser.add_argument("--descriptor", default="wacsf", help="descriptor for (a) (wacsf)")
    parser.add_argument("--max-atoms", type=int, default=64, help="largest cell for (a) (64)")
    parser.add_argument("--chunk-size", type=int, default=100, help="chunk size for (a) (100)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds of (a) (5)")
    parser.add_argument(
        "--mem-sizes",
        type=int,
        nargs="+",
        default=[20_000, 100_000],
        help="source sizes for (b) (20000 100000)",
    )
    parser.add_argument("--mem-descriptor", default="ead", help="descriptor for (b) (ead)")
    parser.add_argument("--mem-max-atoms", type=int, default=8, help="largest cell for (b) (8)")
    parser.add_argument("--mem-chunk-size", type=int, default=500, help="chunk size for (b)")
    parser.add_argument("--mem-repeats", type=int, default=1, help="rounds of (b) (1)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--workdir", help="where shards are written (default: a temp dir)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 400 + 2000/4000 structures, 1 round"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.repeats, args.mem_sizes = 400, 1, [2000, 4000]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_child is not None:
        print(json.dumps(memory_child(args.memory_child, args)))
        return 0
    own_workdir = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="fmp-bench-"))
    args.workdir = str(workdir)
    t_start = time.perf_counter()
    info = machine()
    print(
        f"machine: {info['cpu']}, {info['cores']} cores; torch {info['torch']}, ray {info['ray']}; "
        f"load average before: {os.getloadavg()[0]:.2f}"
    )
    report: dict[str, Any] = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "args": {k: v for k, v in vars(args).items() if k != "memory_child"},
        "machine": info,
        "loadavg_before": os.getloadavg(),
    }
    try:
        if not args.skip_throughput:
            print("(a) throughput")
            report["throughput"] = throughput(args, workdir)
        if not args.skip_memory:
            print("(b) peak memory")
            report["memory"] = memory(args)
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    report["loadavg_after"] = os.getloadavg()
    report["elapsed_s"] = time.perf_counter() - t_start
    print_report(report, args)
    print(
        f"load average after: {report['loadavg_after'][0]:.2f}; total {report['elapsed_s']:.0f} s"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
