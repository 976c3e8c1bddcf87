"""Render ``gpu_check.json`` (from ``benchmarks/gpu_check.sh``) as markdown tables.

python benchmarks/gpu_table.py runs/gpu_check.json [> table.md]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _num(value: Any, fmt: str = ",.0f") -> str:
    return format(value, fmt) if isinstance(value, (int, float)) else "–"


def _error(name: str, section: dict[str, Any]) -> list[str]:
    return [f"**{name}**: error — `{str(section['error']).splitlines()[0][:200]}`", ""]


def render(data: dict[str, Any]) -> str:
    """The markdown for one merged gpu_check JSON."""
    out: list[str] = []
    env = data.get("env", {})
    if "error" in env:
        out += _error("env", env)
    else:
        out += [
            f"GPU check of {data.get('written', '?')}: {env.get('gpu', 'no GPU')} "
            f"({_num(env.get('gpu_memory_gib'), '.0f')} GiB), torch {env.get('torch')}, "
            f"CUDA {env.get('cuda')}, NCCL {env.get('nccl', '–')}, "
            f"DeepSpeed {env.get('deepspeed')}",
            "",
        ]

    tests = data.get("pytest", {})
    if "error" in tests:
        out += _error("CUDA tests", tests)
    else:
        counts = ", ".join(f"{v} {k}" for k, v in tests.get("counts", {}).items()) or "none"
        failed = tests.get("failed") or []
        out += [f"CUDA tests (`pytest -k cuda`): {counts}; exit {tests.get('rc')}"]
        out += [f"- failed: `{name}`" for name in failed] + [""]

    desc = data.get("descriptors", {})
    if "error" in desc:
        out += _error("descriptors", desc)
    else:
        out += [
            f"Batched descriptors on `{desc.get('device')}` "
            f"(batch_pairs {_num(desc.get('batch_pairs'))}): atoms/s, best pass"
            + ("" if desc.get("complete", True) else " (INCOMPLETE: the section timed out)"),
            "",
            "| set | descriptor | compute atoms/s | end-to-end atoms/s | end-to-end struct/s "
            "| peak GiB |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for name, entry in desc.get("sets", {}).items():
            if "error" in entry:
                out.append(f"| {name} | error: {entry['error']} | | | | |")
                continue
            for label, r in entry.items():
                if not isinstance(r, dict) or label == "wacsf_goal":
                    continue
                if "error" in r:
                    out.append(f"| {name} | {label} | error: {r['error'][:80]} | | | |")
                    continue
                out.append(
                    f"| {name} | {label} | {_num(r.get('compute_atoms_per_s'))} | "
                    f"{_num(r.get('end_to_end_atoms_per_s'))} | "
                    f"{_num(r.get('end_to_end_structures_per_s'))} | "
                    f"{_num(r.get('max_memory_gib'), '.2f')} |"
                )
            goal = entry.get("wacsf_goal", {})
            out.append(
                f"| {name} | wACSF f32 compute goal >= {_num(goal.get('goal_atoms_per_s'))} | "
                f"{'MET' if goal.get('met') else 'MISSED'} | | | |"
            )
        out.append("")

    rows: dict[str, dict[str, Any]] = {}
    for precision in ("bf16", "fp32"):
        sec = data.get(f"train_{precision}", {})
        if "error" in sec:
            out += _error(f"training {precision}", sec)
            continue
        for row in sec.get("rows", []):
            rows.setdefault(row["config"], {})[precision] = row
    if rows:
        out += [
            "Training step (forward, backward, AdamW), one GPU:",
            "",
            "| model | params | bf16 atoms/s | bf16 peak GiB | fp32 atoms/s | fp32 peak GiB "
            "| bf16 / fp32 |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for config, r in rows.items():
            b, f = r.get("bf16", {}), r.get("fp32", {})
            ratio = (
                b["atoms_per_s"] / f["atoms_per_s"]
                if b.get("atoms_per_s") and f.get("atoms_per_s")
                else None
            )
            params = b.get("params") or f.get("params")
            out.append(
                f"| {config} | {_num(params)} | {_num(b.get('atoms_per_s'))} | "
                f"{_num(b.get('max_memory_gib'), '.2f')} | {_num(f.get('atoms_per_s'))} | "
                f"{_num(f.get('max_memory_gib'), '.2f')} | {_num(ratio, '.2f')} |"
            )
        out.append("")

    ds = data.get("deepspeed", {})
    if "error" in ds:
        out += _error("DeepSpeed", ds)
    else:
        out += [
            f"DeepSpeed, one process: backend probe `{ds.get('backend_probe')}`; "
            f"`fmpretrain pretrain` exit {ds.get('rc')}, {ds.get('steps_logged', 0)} logged "
            f"intervals, {_num(ds.get('atoms_per_s_max'))} atoms/s (best interval)",
            "",
        ]
    return "\n".join(out).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write(__doc__)
        return 2
    sys.stdout.write(render(json.loads(Path(args[0]).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
