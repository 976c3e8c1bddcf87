"""The two per-edge attention implementations: training-step time, ``reference`` vs ``fused``.

    python benchmarks/attention_impl.py              # small model, one thread, 5 rounds
    python benchmarks/attention_impl.py --quick      # smoke run (~20 s)
    python benchmarks/attention_impl.py --config base --threads 2 --rounds 7
    python benchmarks/attention_impl.py --data ../shared/data/perov_5-val.csv   # real cells

One model (``configs/model/<config>.yaml``, float32, fingerprint head of ``--out-dim``) and
one batch of generated periodic structures (``generate_structures`` of ``--seed``, at most
``--structure-max-atoms`` atoms each, packed greedily up to ``--max-atoms`` atoms; graphs by
``build_graph`` with the model's cutoff). A step is ``zero_grad`` -> forward -> MSE loss ->
backward (no optimizer step: the weights, and so the work, stay the same). Both
implementations run the same weights, switched with ``backbone.attention_impl``; their
outputs are compared first. Each round times ``--steps`` steps of each implementation, the
order alternating round by round; the best round counts (the least disturbed on a shared
machine), the median is shown too, for wall time and for this process's CPU time (less
sensitive to other processes taking the cores). ``os.getloadavg()`` is printed before and
after. Also printed: the memory the forward keeps for the backward under each
implementation (distinct tensor storages, parameters excluded).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch_geometric.data import Batch

from fmpretrain.data.graphs import build_graph
from fmpretrain.generate import generate_structures
from fmpretrain.io import read_structures
from fmpretrain.models import ModelConfig, build_fingerprint_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"
IMPLS = ("reference", "fused")


def make_batch(cutoff: float, args: argparse.Namespace) -> Batch:
    """Structures (generated, or those of ``--data`` in file order), in order, until the next
    would exceed ``--max-atoms`` atoms."""
    graphs, atoms = [], 0
    if args.data:
        structures = read_structures(args.data)
    else:
        structures = generate_structures(10**6, seed=args.seed, max_atoms=args.structure_max_atoms)
    for s in structures:
        if atoms + len(s) > args.max_atoms:
            break
        graphs.append(build_graph(s.numbers, s.positions, s.cell, s.pbc, cutoff))
        atoms += len(s)
    return Batch.from_data_list(graphs)


def step(model: torch.nn.Module, batch: Batch, target: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    F.mse_loss(model(batch), target).backward()


def time_steps(
    model: torch.nn.Module, batch: Batch, target: torch.Tensor, n: int
) -> tuple[float, float]:
    """Wall and CPU (this process) milliseconds per step, averaged over ``n`` steps."""
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        step(model, batch, target)
    return 1e3 * (time.perf_counter() - t0) / n, 1e3 * (time.process_time() - c0) / n


def inference_ms(model: torch.nn.Module, batch: Batch, rounds: int = 3) -> dict[str, float]:
    """Best-of-``rounds`` milliseconds of one forward under ``inference_mode``, per impl."""
    best = {impl: float("inf") for impl in IMPLS}
    for _ in range(rounds):
        for impl in IMPLS:
            model.backbone.attention_impl = impl
            t0 = time.perf_counter()
            with torch.inference_mode():
                model(batch)
            best[impl] = min(best[impl], 1e3 * (time.perf_counter() - t0))
    return {impl: round(ms, 1) for impl, ms in best.items()}


def saved_mib(model: torch.nn.Module, batch: Batch) -> float:
    """MiB the forward keeps for the backward (distinct storages, parameters excluded)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(batch)
    return sum(storages.values()) / 2**20


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--config", default="small", help="model config name (small)")
    add("--threads", type=int, default=1, help="torch threads (1)")
    add("--max-atoms", type=int, default=256, help="atoms of the batch, at most (256)")
    add("--structure-max-atoms", type=int, default=64, help="largest generated cell (64)")
    add("--out-dim", type=int, default=64, help="fingerprint dimension (64, EAD's)")
    add("--steps", type=int, default=3, help="steps per implementation per round (3)")
    add("--rounds", type=int, default=5, help="interleaved rounds (5)")
    add("--seed", type=int, default=0)
    add("--data", help="structures to batch instead of generated ones (e.g. a perov_5 CSV)")
    add("--quick", action="store_true", help="smoke run: 64 atoms, 1 step, 2 rounds")
    args = parser.parse_args(argv)
    if args.quick:
        args.max_atoms, args.steps, args.rounds = 64, 1, 2

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = ModelConfig.from_yaml(CONFIGS / f"{args.config}.yaml")
    model = build_fingerprint_model(cfg, out_dim=args.out_dim).train()
    batch = make_batch(cfg.cutoff, args)
    target = torch.randn(batch.num_nodes, args.out_dim)
    print(
        f"config={args.config} (H={cfg.hidden_channels}, L={cfg.num_layers}), "
        f"threads={args.threads}, atoms={batch.num_nodes}, edges={batch.num_edges}, "
        f"torch {torch.__version__}"
    )
    print(f"loadavg before: {os.getloadavg()}")

    outputs = {}
    for impl in IMPLS:
        model.backbone.attention_impl = impl
        with torch.no_grad():
            outputs[impl] = model(batch)
        step(model, batch, target)  # warm-up
    diff = (outputs["reference"] - outputs["fused"]).abs().max().item()
    print(f"max |reference - fused| output difference (float32): {diff:.2e}")
    print(f"inference (torch.inference_mode, one forward), ms: {inference_ms(model, batch)}")

    for impl in IMPLS:
        model.backbone.attention_impl = impl
        print(f"{impl:>9}: {saved_mib(model, batch):7.1f} MiB saved for the backward")

    wall: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    cpu: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    for r in range(args.rounds):
        for impl in IMPLS if r % 2 == 0 else IMPLS[::-1]:
            model.backbone.attention_impl = impl
            w, c = time_steps(model, batch, target, args.steps)
            wall[impl].append(w)
            cpu[impl].append(c)
    print(f"loadavg after:  {os.getloadavg()}")

    for name, times in (("wall", wall), ("cpu", cpu)):
        for impl in IMPLS:
            print(
                f"{impl:>9} {name:>4}: best {min(times[impl]):8.1f} ms/step, median "
                f"{statistics.median(times[impl]):8.1f}  (rounds: "
                + ", ".join(f"{t:.0f}" for t in times[impl])
                + ")"
            )
        best = min(times["reference"]) / min(times["fused"])
        per_round = statistics.median(
            a / b for a, b in zip(times["reference"], times["fused"], strict=True)
        )
        print(
            f"reference / fused ({name}): {best:.2f} (best), "
            f"{per_round:.2f} (median of per-round ratios)"
        )


if __name__ == "__main__":
    main()
