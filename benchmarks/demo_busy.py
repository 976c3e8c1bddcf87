"""`fmpretrain demo` on a busy machine: the wall time with one CPU-bound competitor.

The demo's goal is "under 10 minutes on 2 cores while the other core is busy". This script
starts that competitor itself (one process spinning on one core, plain Python: no threads of
its own), runs the full demo into a fresh ``--out`` in a subprocess, samples the load average
every few seconds, and prints the demo's own stage timings, the total wall time, the load
(min / mean / max) and whether the goal was met. The competitor is stopped at the end, also
when the demo fails.

    python benchmarks/demo_busy.py --out runs/demo-busy
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

GOAL_MINUTES = 10.0


def spin(stop: Any) -> None:
    """Keep one core busy until ``stop`` is set."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo-busy"), help="fresh demo out")
    parser.add_argument("--competitors", type=int, default=1, help="busy processes (default 1)")
    parser.add_argument("--quick", action="store_true", help="the demo's --quick size")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    if args.out.exists():
        shutil.rmtree(args.out)  # a fresh run: a second run would reuse finished stages
    stop = multiprocessing.Event()
    competitors = [
        multiprocessing.Process(target=spin, args=(stop,), daemon=True)
        for _ in range(args.competitors)
    ]
    for proc in competitors:
        proc.start()
    loads: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(5.0):
            loads.append(os.getloadavg()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cmd = [sys.executable, "-m", "fmpretrain.cli", "demo", "--out", str(args.out)]
    cmd += ["--wandb", "offline"] + (["--quick"] if args.quick else [])
    print(f"load before: {os.getloadavg()[0]:.2f}; {args.competitors} competitor(s) started")
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    finally:
        wall = time.perf_counter() - start
        done.set()
        stop.set()
        for competitor in competitors:
            competitor.join(5)
            if competitor.is_alive():
                competitor.terminate()
    output = proc.stdout + proc.stderr
    if args.out.is_dir():
        (args.out / "demo-output.txt").write_text(output)  # the whole printout, for the record
    if proc.returncode != 0:
        print(output[-4000:])
        print(f"demo failed (exit {proc.returncode})")
        return proc.returncode
    stages = dict(re.findall(r"(\w+) (\d+) s", _finished_line(output)))
    table = output[output.find("=" * 78) :]
    print(table)
    figures = {
        "wall_s": round(wall, 1),
        "stages_s": {k: int(v) for k, v in stages.items()},
        "competitors": args.competitors,
        "load_min": min(loads, default=float("nan")),
        "load_mean": sum(loads) / len(loads) if loads else float("nan"),
        "load_max": max(loads, default=float("nan")),
        "cores": os.cpu_count(),
    }
    print(
        f"wall {wall / 60:.1f} min (stages: {figures['stages_s']}); load average "
        f"{figures['load_min']:.1f} / {figures['load_mean']:.1f} / {figures['load_max']:.1f} "
        f"(min / mean / max) with {args.competitors} competitor(s) on {os.cpu_count()} cores; "
        f"goal < {GOAL_MINUTES:.0f} min: {'met' if wall < GOAL_MINUTES * 60 else 'NOT met'}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


def _finished_line(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("fmpretrain demo finished"):
            return line
    return ""


if __name__ == "__main__":
    raise SystemExit(main())
