"""Sections of ``benchmarks/gpu_check.sh``: each writes one JSON file, and ``merge`` joins them.

    python benchmarks/gpu_check.py env         --out DIR/env.json
    python benchmarks/gpu_check.py descriptors --out DIR/descriptors.json [--device cuda]
    python benchmarks/gpu_check.py pytest      --out DIR/pytest.json --log DIR/pytest.log --rc N
    python benchmarks/gpu_check.py train       --out DIR/train_bf16.json --train-json RAW.json
    python benchmarks/gpu_check.py deepspeed   --out DIR/deepspeed.json --run RUN_DIR --rc N
    python benchmarks/gpu_check.py merge       --out gpu_check.json --sections DIR

``descriptors``: batched wACSF (float32 and float64), GMP and EAD on the real sets perov_5 and
carbon_24 on the device, two figures each, best of ``--repeats`` passes:

* ``compute``: atoms/s of the descriptor work alone, on batches whose neighbour lists were made
  beforehand (``Descriptor._compute`` on each :class:`AtomBatch`, device synchronized);
* ``end_to_end``: atoms/s of ``d.batch(structures)``, including the per-structure neighbour
  lists on the CPU (vesin) and the transfers.

A section that fails records ``{"error": ...}``; the shell script goes on with the next.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Goal of the batched wACSF compute on one GPU (atoms/s, real sets).
WACSF_GOAL_ATOMS_PER_S = 3.0e6

#: Sections in the order of the merged JSON (and of the table).
SECTIONS = ("env", "pytest", "descriptors", "train_bf16", "train_fp32", "deepspeed")


def write(path: str | Path, data: dict[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1, default=str) + "\n")


# ============================================================================ sections
def section_env(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
        "loadavg": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            gpu_memory_gib=props.total_memory / 2**30,
            bf16_supported=torch.cuda.is_bf16_supported(),
            nccl=".".join(map(str, torch.cuda.nccl.version())),
        )
    try:  # the version only: importing deepspeed takes long
        from importlib.metadata import version

        info["deepspeed"] = version("deepspeed")
    except Exception as err:
        info["deepspeed"] = f"unavailable: {err}"
    return info


def section_pytest(args: argparse.Namespace) -> dict[str, Any]:
    text = Path(args.log).read_text() if args.log and Path(args.log).exists() else ""
    counts = {
        key: int(n)
        for n, key in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", text)
    }
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", text, flags=re.M)
    return {"rc": args.rc, "counts": counts, "failed": failed, "tail": text[-2000:]}


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def section_descriptors(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from fmpretrain.descriptors import get_descriptor
    from fmpretrain.io import read_structures

    device = torch.device(args.device)
    sets: dict[str, Any] = {}
    report = {"device": str(device), "batch_pairs": args.batch_pairs, "sets": sets}
    for name, filename, n in (
        ("perov_5", "perov_5-val.csv", args.n),
        ("carbon_24", "carbon_24-val.csv", max(1, args.n // 2)),
    ):
        path = Path(args.data) / filename
        if not path.exists():
            sets[name] = {"error": f"{path} not found"}
            continue
        t0 = time.perf_counter()
        structures = list(itertools.islice(read_structures(path), n))
        n_atoms = sum(len(s) for s in structures)
        entry: dict[str, Any] = {
            "n_structures": len(structures),
            "n_atoms": n_atoms,
            "read_s": time.perf_counter() - t0,
        }
        for label, desc, dtype in (
            ("wacsf-f32", "wacsf", torch.float32),
            ("wacsf-f64", "wacsf", torch.float64),
            ("gmp-f32", "gmp", torch.float32),
            ("ead-f32", "ead", torch.float32),
        ):
            try:
                d = get_descriptor(desc, device=device, dtype=dtype)
                d.batch_pairs = args.batch_pairs
                batches = list(d._chunks(structures))  # neighbour lists made beforehand
                for atoms in batches:  # warm-up
                    d._compute(atoms)
                _sync(device)
                compute, e2e = [], []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    for atoms in batches:
                        d._compute(atoms)
                    _sync(device)
                    compute.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    d.batch(structures)
                    _sync(device)
                    e2e.append(time.perf_counter() - t0)
                entry[label] = {
                    "compute_atoms_per_s": n_atoms / min(compute),
                    "end_to_end_atoms_per_s": n_atoms / min(e2e),
                    "end_to_end_structures_per_s": len(structures) / min(e2e),
                    "compute_s": compute,
                    "end_to_end_s": e2e,
                    "batches": len(batches),
                }
                if device.type == "cuda":
                    entry[label]["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
                    torch.cuda.reset_peak_memory_stats()
            except Exception as err:
                entry[label] = {"error": f"{type(err).__name__}: {err}"}
            sets[name] = entry
            write(args.out, {**report, "complete": False})  # what a timeout leaves behind
        wacsf = entry.get("wacsf-f32", {}).get("compute_atoms_per_s")
        entry["wacsf_goal"] = {
            "goal_atoms_per_s": WACSF_GOAL_ATOMS_PER_S,
            "met": bool(wacsf and wacsf >= WACSF_GOAL_ATOMS_PER_S),
        }
        sets[name] = entry
    return {**report, "complete": True}


def section_train(args: argparse.Namespace) -> dict[str, Any]:
    raw = json.loads(Path(args.train_json).read_text())
    rows = []
    for row in raw.get("step", {}).get("summary", []):
        ours = row.get("fmpretrain", {})  # train_throughput.py's key for our model
        rows.append(
            {
                "config": row.get("config"),
                "atoms_per_s": ours.get("best_atoms_per_s"),
                "steps_per_s": ours.get("best_steps_per_s"),
                "params": ours.get("params"),
                "max_memory_gib": ours.get("max_memory_gib"),
            }
        )
    return {"rc": args.rc, "device": raw.get("device"), "bf16": raw.get("bf16"), "rows": rows}


def section_deepspeed(args: argparse.Namespace) -> dict[str, Any]:
    run = Path(args.run)
    out: dict[str, Any] = {"rc": args.rc, "run": str(run)}
    metrics = run / "metrics.jsonl"
    if metrics.exists():
        lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
        speeds = [x["train/atoms_per_s"] for x in lines if "train/atoms_per_s" in x]
        out["steps_logged"] = len(speeds)
        out["atoms_per_s_last"] = speeds[-1] if speeds else None
        out["atoms_per_s_max"] = max(speeds) if speeds else None
    log = run.parent / "pretrain.log"
    if log.exists():
        text = log.read_text()
        out["nccl_in_log"] = "nccl" in text.lower()
        out["tail"] = text[-1500:]
    probe = subprocess.run(
        [sys.executable, "-c", _BACKEND_PROBE],
        capture_output=True,
        text=True,
        timeout=args.probe_timeout,
    )
    out["backend_probe"] = (probe.stdout.strip().splitlines() or [probe.stderr[-500:]])[-1]
    return out


#: One process joins a DeepSpeed world of one through the project's set-up and all-reduces.
_BACKEND_PROBE = """
import json, torch
from fmpretrain.train.distributed import init_distributed
info = init_distributed()
x = torch.ones(4, device=info.device)
torch.distributed.all_reduce(x)
print(json.dumps({"backend": torch.distributed.get_backend(), "world_size": info.world_size,
                  "device": str(info.device), "all_reduce_ok": bool((x == 1).all())}))
"""


def merge(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(args.sections)
    merged: dict[str, Any] = {"written": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    for name in SECTIONS:
        path = folder / f"{name}.json"
        if path.exists():
            try:
                merged[name] = json.loads(path.read_text())
            except ValueError as err:
                merged[name] = {"error": f"unreadable section file: {err}"}
        else:
            merged[name] = {"error": "not run (no section file)"}
    return merged


RUNNERS = {
    "env": section_env,
    "pytest": section_pytest,
    "descriptors": section_descriptors,
    "train": section_train,
    "deepspeed": section_deepspeed,
    "merge": merge,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("section", choices=sorted(RUNNERS))
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data", default="/work/shared/data", help="folder of the real sets")
    parser.add_argument("--n", type=int, default=2000, help="perov_5 rows (carbon_24: half)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-pairs", type=int, default=1 << 22, help="pairs per batch")
    parser.add_argument("--log", help="pytest: its output")
    parser.add_argument("--rc", type=int, default=None, help="exit status of the step")
    parser.add_argument("--train-json", help="train: train_throughput.py --json output")
    parser.add_argument("--run", help="deepspeed: the pre-training run directory")
    parser.add_argument("--sections", help="merge: folder of the section files")
    parser.add_argument("--probe-timeout", type=float, default=60, help="deepspeed: probe (s)")
    args = parser.parse_args(argv)
    try:
        data = RUNNERS[args.section](args)
    except Exception as err:  # fail soft: the error is the section's record
        data = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
        write(args.out, data)
        return 1
    write(args.out, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
