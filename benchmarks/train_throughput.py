"""Pre-training throughput: training steps of the ET models vs torchmd-net's, and the loader.

    python benchmarks/train_throughput.py              # the recorded numbers (docs/benchmarks.md)
    python benchmarks/train_throughput.py --quick      # smoke run (~30 s)
    python benchmarks/train_throughput.py --json out.json
    python benchmarks/train_throughput.py --device cuda --bf16 --configs small,base,large \\
        --skip-loader                                   # on a GPU: bf16 atoms/s and peak memory

(1) Training step. A fixed set of generated periodic structures (``generate_structures`` of
seed 0, at most ``--structure-max-atoms`` atoms each) is packed, in generation order, into
``--batches`` batches of at most ``--max-atoms-per-batch`` atoms (the loader's greedy packing,
:func:`fmpretrain.data.batching.pack_by_budget`); graphs come from
:func:`fmpretrain.data.graphs.build_graph` with the model config's cutoff (every periodic
image). Targets are standard-normal ``[N, D]`` (``D = --out-dim``, EAD's default 64; values do
not change the cost). One step = ``zero_grad`` -> forward -> MSE loss -> backward -> gradient
clipping at 10 (as the trainer) -> ``AdamW.step``; a pass is one step on each batch; atoms/s =
atoms of the pass / its wall time. Plain PyTorch, no DeepSpeed engine, for both models.

(2) The peer, in the same run, on the same batches: ``torchmdnet.models.torchmd_et.TorchMD_ET``
(the ``torchmd-net`` package) with the same hidden channels, layers, RBFs (exp-normal,
trainable), heads, cutoff, activations, neighbour embedding and ``distance_influence="both"``,
plus torchmd-net's own ``MLP`` as the head (``H -> H/2 -> D``, SiLU: the same shape as ours).
``TorchMD_ET.forward`` computes its neighbour list inside (``self.distance``, an
``OptimizedDistance``, minimum-image periodicity only); it takes no precomputed edges, so its
``distance`` submodule is replaced by :class:`FixedEdges`, which returns exactly the edges of
our graphs (``edge_index``, ``|v|``, ``v = pos[j] - pos[i] + shift``): everything else is the
package's unmodified forward. Before timing, our weights are copied into a float64 copy of the
peer and both outputs are compared (they must agree: same function, same edges).

Every (threads, config, model) pass is run ``--repeats`` times, interleaved round by round (the
order rotates each round); the best (shortest) pass counts, medians and the median of the
per-round ratios are shown too. Each pass records ``busy``: the share of all cores in use
during it by any process (``/proc/stat``), and its CPU time.

(3) Loader. Shards are made by the real pipeline (``data_pipeline.driver.run_featurize`` with
``load_config("configs/featurize/demo.yaml", [...])``, in a subprocess) or taken from
``--shards``; ``build_loader(..., max_atoms_per_batch, num_workers=W, split="train",
val_shards=1)`` is iterated to the end (worker start-up included, as every epoch pays it) for
each ``W`` in ``--loader-workers``; compared with the ``small`` step's atoms/s from (1). Then
end to end: the ``small`` model trained on the first ``--e2e-batches`` batches of a loader with
``W`` workers, streamed from it, against the same batches built beforehand.

(4) GPU: ``--device cuda`` (``--bf16``: ``torch.autocast(dtype=torch.bfloat16)`` around the
forward, fp32 weights and loss) reports ``torch.cuda.max_memory_allocated`` per pass too.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmpretrain.machine import busy_share, cpu_times, machine_info

REPO = Path(__file__).resolve().parents[1]
DEMO_FEATURIZE = REPO / "configs" / "featurize" / "demo.yaml"
MODEL_CONFIGS = REPO / "configs" / "model"
OURS, PEER = "fmpretrain", "torchmd-net"


# ============================================================================ machine and load
def machine() -> dict[str, Any]:
    return machine_info(("torch", "torch_geometric", "torchmd-net", "warp-lang", "numpy", "vesin"))


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as handle:
            return " ".join(handle.read().split()[:3])
    except OSError:
        return "n/a"


# ============================================================================ structures
def model_config(name: str):
    from fmpretrain.models import ModelConfig

    path = Path(name) if Path(name).is_file() else MODEL_CONFIGS / f"{name}.yaml"
    return ModelConfig.from_yaml(path)


def make_batches(args: argparse.Namespace, cutoff: float) -> tuple[list, list]:
    """``--batches`` full batches of generated structures (graphs with ``cutoff``)."""
    from torch_geometric.data import Batch

    from fmpretrain.data.batching import pack_by_budget
    from fmpretrain.data.graphs import build_graph
    from fmpretrain.generate import generate_structures

    rng = np.random.default_rng(args.seed)
    stream = generate_structures(10**6, seed=args.seed, max_atoms=args.structure_max_atoms)

    def items():
        for s in stream:
            y = rng.standard_normal((len(s), args.out_dim)).astype(np.float32)
            yield s, build_graph(s.numbers, s.positions, s.cell, s.pbc, cutoff, y=y)

    groups = pack_by_budget(items(), lambda it: (len(it[0]),), (args.max_atoms_per_batch,))
    batches, structures = [], []
    for group in groups:
        if len(batches) == args.batches:
            break
        structures.extend(s for s, _ in group)
        batches.append(Batch.from_data_list([g for _, g in group]))
    return batches, structures


def graph_stats(batches: list, structures: list, cutoff: float) -> dict[str, Any]:
    """Sizes of the set, and what torchmd-net's own (minimum-image) box mode could handle."""
    atoms = [b.num_nodes for b in batches]
    edges = [b.num_edges for b in batches]
    unique_pairs = self_images = 0
    for b in batches:
        self_images += int(
            (b.edge_index[0] == b.edge_index[1]).sum()
        )  # one image per (i, j): all a minimum-image neighbour list can hold
        key = b.edge_index[0] * b.num_nodes + b.edge_index[1]
        unique_pairs += int(torch.unique(key).numel())
    as_given = widths_ok = 0
    for s in structures:
        a, bb, c = np.asarray(s.cell, dtype=np.float64)
        rc2 = 2.0 * cutoff
        if (
            abs(a[1]) < 1e-9
            and abs(a[2]) < 1e-9
            and abs(bb[2]) < 1e-9
            and min(a[0], bb[1], c[2]) >= rc2
            and a[0] >= 2 * abs(bb[0])
            and a[0] >= 2 * abs(c[0])
            and bb[1] >= 2 * abs(c[1])
        ):
            as_given += 1
        volume = abs(np.linalg.det(s.cell))
        heights = [volume / np.linalg.norm(np.cross(u, v)) for u, v in ((bb, c), (c, a), (a, bb))]
        widths_ok += int(min(heights) >= rc2)
    sizes = [len(s) for s in structures]
    return {
        "batches": len(batches),
        "structures": len(structures),
        "atoms_per_batch": atoms,
        "edges_per_batch": edges,
        "atoms": sum(atoms),
        "edges": sum(edges),
        "edges_per_atom": sum(edges) / max(sum(atoms), 1),
        "atoms_per_structure": [min(sizes), float(np.median(sizes)), max(sizes)],
        "minimum_image_edge_fraction": unique_pairs / max(sum(edges), 1),
        "self_image_edge_fraction": self_images / max(sum(edges), 1),
        "peer_box_ok_as_given": as_given,
        "peer_box_ok_any_orientation": widths_ok,
    }


# ============================================================================ the peer
class FixedEdges(nn.Module):
    """Stands in for ``TorchMD_ET.distance``: returns the graph's own edges (all images).

    ``(edge_index, |v|, v)`` with ``v = pos[j] - pos[i] + shift`` for ``edge_index = (j, i)``:
    torchmd-net's convention (``OptimizedDistance`` returns ``pos[edge_index[0]] -
    pos[edge_index[1]]``) and ours. No self loops (ours has none; the peer masks them anyway).
    """

    def __init__(self) -> None:
        super().__init__()
        self.edge_index: Tensor | None = None
        self.edge_shift: Tensor | None = None

    def forward(self, pos: Tensor, batch: Tensor | None = None, box: Tensor | None = None):
        assert self.edge_index is not None and self.edge_shift is not None
        src, dst = self.edge_index
        vec = pos.index_select(0, src) - pos.index_select(0, dst) + self.edge_shift.to(pos.dtype)
        return self.edge_index, torch.linalg.vector_norm(vec, dim=-1), vec


class PeerModel(nn.Module):
    """torchmd-net's ``TorchMD_ET`` + torchmd-net's ``MLP`` head, on the graph's edges."""

    def __init__(self, cfg, out_dim: int):
        super().__init__()
        from torchmdnet.models.torchmd_et import TorchMD_ET
        from torchmdnet.models.utils import MLP

        if cfg.head_layers != 1:
            raise ValueError("the peer's head mirrors head_layers=1 only")
        self.et = TorchMD_ET(
            hidden_channels=cfg.hidden_channels,
            num_layers=cfg.num_layers,
            num_rbf=cfg.num_rbf,
            rbf_type="expnorm",
            trainable_rbf=cfg.trainable_rbf,
            activation=cfg.activation,
            attn_activation=cfg.attn_activation,
            neighbor_embedding=cfg.neighbor_embedding,
            num_heads=cfg.num_heads,
            distance_influence="both",
            cutoff_lower=0.0,
            cutoff_upper=cfg.cutoff,
            max_z=cfg.max_z,
            vector_cutoff=cfg.vector_cutoff,
        )
        self.et.distance = FixedEdges()
        hidden = cfg.head_hidden or cfg.hidden_channels // 2
        self.head = MLP(cfg.hidden_channels, out_dim, hidden, cfg.activation, 0)

    def forward(self, data) -> Tensor:
        self.et.distance.edge_index = data.edge_index
        self.et.distance.edge_shift = data.edge_shift
        x, *_ = self.et(data.z, data.pos, data.batch)
        return self.head(x)


def _interleave_heads(parts: list[Tensor | None], heads: int, like: Tensor) -> Tensor:
    """torchmd-net's ``[heads, (x, vec1, vec2), head_dim]`` row layout from per-part blocks."""
    rows = like.shape[0] // 3
    blocks = [torch.zeros_like(like[:rows]) if p is None else p for p in parts]
    shape = (heads, rows // heads, *blocks[0].shape[1:])
    stacked = torch.stack([b.reshape(shape) for b in blocks], dim=1)
    return stacked.reshape(like.shape)


@torch.no_grad()
def copy_weights_into_peer(ours: nn.Module, peer: PeerModel) -> None:
    """Our parameters into the peer (the parts ours omits - they only meet zero vectors or
    feed unused outputs - are set to zero)."""
    bb, et = ours.backbone, peer.et
    et.embedding.weight.copy_(bb.embedding.weight)
    et.distance_expansion.means.copy_(bb.rbf.means)
    et.distance_expansion.betas.copy_(bb.rbf.betas)
    ne, pne = bb.neighbor_embedding, et.neighbor_embedding
    if ne is not None:
        pne.load_state_dict(
            {
                "embedding.weight": ne.embedding.weight,
                "distance_proj.weight": ne.distance_proj.weight,
                "distance_proj.bias": ne.distance_proj.bias,
                "combine.weight": ne.combine.weight,
                "combine.bias": ne.combine.bias,
            }
        )
    for layer, p in zip(bb.layers, et.attention_layers, strict=True):
        H, nh = layer.hidden_channels, layer.num_heads
        p.layernorm.load_state_dict(layer.layernorm.state_dict())

        def blocks(t: Tensor, n: int, H: int = H) -> list[Tensor | None]:
            return [*t.split(H, dim=0), *[None] * (n - t.shape[0] // H)]

        # ours: qkv rows [q, k, v_x, (v_2), (v_1)], dkv rows [dk, dv_x, (dv_2), (dv_1)]
        q, k, vx, v2, v1 = blocks(layer.qkv.weight, 5)
        qb, kb, vxb, v2b, v1b = blocks(layer.qkv.bias, 5)
        dk, dvx, dv2, dv1 = blocks(layer.dkv.weight, 4)
        dkb, dvxb, dv2b, dv1b = blocks(layer.dkv.bias, 4)
        p.q_proj.weight.copy_(q)
        p.q_proj.bias.copy_(qb)
        p.k_proj.weight.copy_(k)
        p.k_proj.bias.copy_(kb)
        p.dk_proj.weight.copy_(dk)
        p.dk_proj.bias.copy_(dkb)
        # the peer's value parts per head: x (v_x), vec1 (multiplies vec_j: v_1), vec2 (r_hat: v_2)
        p.v_proj.weight.copy_(_interleave_heads([vx, v1, v2], nh, p.v_proj.weight))
        p.v_proj.bias.copy_(_interleave_heads([vxb, v1b, v2b], nh, p.v_proj.bias))
        p.dv_proj.weight.copy_(_interleave_heads([dvx, dv1, dv2], nh, p.dv_proj.weight))
        p.dv_proj.bias.copy_(_interleave_heads([dvxb, dv1b, dv2b], nh, p.dv_proj.bias))
        # ours: vec_proj rows [u1, u2, (u3)] (none in layer 0); the peer's [vec1, vec2, vec3]
        if layer.vec_proj is None:
            p.vec_proj.weight.zero_()
        else:
            u = blocks(layer.vec_proj.weight, 3)
            p.vec_proj.weight.copy_(
                torch.cat([torch.zeros_like(p.vec_proj.weight[:H]) if t is None else t for t in u])
            )
        # ours: o_proj rows [o3, (o2), (o1)]; the peer's [o1, o2, o3]
        o3, o2, o1 = blocks(layer.o_proj.weight, 3)
        o3b, o2b, o1b = blocks(layer.o_proj.bias, 3)
        zero_w, zero_b = torch.zeros_like(o3), torch.zeros_like(o3b)
        p.o_proj.weight.copy_(torch.cat([zero_w if t is None else t for t in (o1, o2, o3)]))
        p.o_proj.bias.copy_(torch.cat([zero_b if t is None else t for t in (o1b, o2b, o3b)]))
    et.out_norm.load_state_dict(bb.out_norm.state_dict())
    lin = [m for m in peer.head.layers if isinstance(m, nn.Linear)]
    for mine, theirs in zip(ours.head.mlp.linears, lin, strict=True):
        theirs.load_state_dict(mine.state_dict())


def check_peer_equivalence(ours: nn.Module, peer: PeerModel, batch) -> dict[str, float]:
    """Both models with our weights, float64, on ``batch``: the largest output difference.

    Edges from an atom to its own periodic images (``i == j``) are left out of this check:
    torchmd-net takes ``i == j`` for a zero-length self loop, drops such edges from its
    neighbour embedding and does not normalize their vectors, so with them the two functions
    differ (the cost does not: the timed runs keep every edge for both models).
    """
    a, b = copy.deepcopy(ours).double(), copy.deepcopy(peer).double()
    copy_weights_into_peer(a, b)
    data = batch.clone()
    keep = data.edge_index[0] != data.edge_index[1]
    data.edge_index = data.edge_index[:, keep]
    data.edge_shift = data.edge_shift[keep].double()
    data.pos = data.pos.double()
    with torch.no_grad():
        out_a, out_b = a(data), b(data)
    return {
        "atoms": data.num_nodes,
        "edges": int(keep.sum()),
        "max_abs_diff": float((out_a - out_b).abs().max()),
        "max_abs_output": float(out_a.abs().max()),
    }


def peer_available() -> str | None:
    """``None`` if torchmd-net imports, else the reason it does not."""
    try:
        importlib.import_module("torchmdnet.models.torchmd_et")
        importlib.import_module("torchmdnet.models.utils")
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return None


# ============================================================================ training steps
class Runner:
    """One model + AdamW on the device; :meth:`run_pass` times one step per batch."""

    def __init__(self, model: nn.Module, batches: list, device: torch.device, bf16: bool):
        self.model = model.to(device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=5e-4)
        self.batches = [b.to(device) for b in batches]
        self.device, self.bf16 = device, bf16
        self.params = sum(p.numel() for p in self.model.parameters())

    def step(self, batch) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            prediction = self.model(batch)
        loss = F.mse_loss(prediction.float(), batch.y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
        self.optimizer.step()
        return float(loss.detach())

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run_pass(self) -> dict[str, float]:
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        self.sync()
        ticks, cpu0, t0 = cpu_times(), time.process_time(), time.perf_counter()
        for batch in self.batches:
            self.step(batch)
        self.sync()
        wall = time.perf_counter() - t0
        record = {
            "wall_s": wall,
            "cpu_s": time.process_time() - cpu0,
            "busy": busy_share(ticks, cpu_times()),
            "atoms": sum(b.num_nodes for b in self.batches),
            "steps": len(self.batches),
        }
        record["atoms_per_s"] = record["atoms"] / wall
        record["steps_per_s"] = record["steps"] / wall
        if cuda:
            record["max_memory_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        return record


def step_benchmark(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from torch_geometric.data import Batch

    from fmpretrain.models import build_fingerprint_model

    configs = {name: model_config(name) for name in args.configs}
    peer_missing = None if args.no_peer else peer_available()
    with_peer = not args.no_peer and peer_missing is None
    if peer_missing:
        print(f"torchmd-net is not importable ({peer_missing}): the peer is NOT measured")
    threads = args.threads if device.type == "cpu" else [torch.get_num_threads()]

    batch_sets: dict[float, tuple[list, list]] = {}
    stats, runners, equivalence = {}, {}, {}
    for name, cfg in configs.items():
        if cfg.cutoff not in batch_sets:
            batch_sets[cfg.cutoff] = make_batches(args, cfg.cutoff)
        batches, structures = batch_sets[cfg.cutoff]
        stats[name] = graph_stats(batches, structures, cfg.cutoff)
        torch.manual_seed(args.seed)
        ours = build_fingerprint_model(cfg, args.out_dim)
        runners[(name, OURS)] = Runner(ours, batches, device, args.bf16)
        if with_peer:
            torch.manual_seed(args.seed)
            peer = PeerModel(cfg, args.out_dim)
            small = min(batches, key=lambda b: b.num_nodes)
            check = Batch.from_data_list(small.index_select(list(range(min(4, small.num_graphs)))))
            equivalence[name] = eq = check_peer_equivalence(ours, peer, check)
            print(
                f"{name}: peer with our weights (float64, {eq['atoms']} atoms, "
                f"{eq['edges']} edges without self images): "
                f"max |out - out_peer| = {equivalence[name]['max_abs_diff']:.2e} "
                f"(max |out| {equivalence[name]['max_abs_output']:.2f})",
                flush=True,
            )
            runners[(name, PEER)] = Runner(peer, batches, device, args.bf16)
        s = stats[name]
        print(
            f"{name}: {s['batches']} batches, {s['structures']} structures, {s['atoms']} atoms, "
            f"{s['edges']} edges ({s['edges_per_atom']:.1f}/atom); params "
            + ", ".join(f"{impl} {r.params:,}" for (n, impl), r in runners.items() if n == name),
            flush=True,
        )

    keys = [(t, name, impl) for t in threads for (name, impl) in runners]
    warm = set()
    runs: dict[tuple[int, str, str], list[dict[str, float]]] = {key: [] for key in keys}
    print(f"load average before: {loadavg()}", flush=True)
    for r in range(args.repeats):
        shift = r % len(keys)
        for key in keys[shift:] + keys[:shift]:
            t, name, impl = key
            if device.type == "cpu":
                torch.set_num_threads(t)
            runner = runners[(name, impl)]
            if (t, name, impl) not in warm:  # first and compiled-kernel calls; not timed
                for _ in range(args.warmup):
                    runner.step(runner.batches[0])
                runner.sync()
                warm.add((t, name, impl))
            res = runner.run_pass()
            runs[key].append(res)
            mem = f", max mem {res['max_memory_gib']:.2f} GiB" if "max_memory_gib" in res else ""
            print(
                f"  round {r + 1}/{args.repeats} threads={t} {name:5s} {impl:11s} "
                f"{res['wall_s']:7.2f} s {res['atoms_per_s']:8.1f} atoms/s "
                f"(cpu {res['cpu_s']:.2f} s, busy {100 * res['busy']:.0f} %{mem})",
                flush=True,
            )
    print(f"load average after: {loadavg()}", flush=True)

    summary = []
    for t in threads:
        for name in configs:
            row: dict[str, Any] = {"threads": t, "config": name}
            for impl in (OURS, PEER):
                rs = runs.get((t, name, impl))
                if not rs:
                    continue
                best = min(rs, key=lambda x: x["wall_s"])
                row[impl] = {
                    "best_atoms_per_s": best["atoms_per_s"],
                    "median_atoms_per_s": statistics.median(x["atoms_per_s"] for x in rs),
                    "best_steps_per_s": best["steps_per_s"],
                    "best_busy": best["busy"],
                    "best_cpu_over_wall": best["cpu_s"] / best["wall_s"],
                    "max_memory_gib": max((x.get("max_memory_gib", 0.0) for x in rs), default=0),
                    "params": runners[(name, impl)].params,
                }
            if PEER in row:
                o, p = runs[(t, name, OURS)], runs[(t, name, PEER)]
                row["ratio_best"] = row[OURS]["best_atoms_per_s"] / row[PEER]["best_atoms_per_s"]
                row["ratio_median_of_rounds"] = statistics.median(
                    a["atoms_per_s"] / b["atoms_per_s"] for a, b in zip(o, p, strict=True)
                )
                row["goal_met"] = row["ratio_best"] >= 1.5
            summary.append(row)
    return {
        "threads": threads,
        "stats": stats,
        "equivalence": equivalence,
        "peer_missing": peer_missing,
        "runs": {"|".join(map(str, k)): v for k, v in runs.items()},
        "summary": summary,
        "_runners": runners,
    }


# ============================================================================ loader
def featurize_shards(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The real pipeline, in a subprocess (Ray starts and stops there)."""
    overrides = [
        f"out={out}",
        f"descriptor={args.loader_descriptor}",
        f"source.n={args.loader_structures}",
        "source.seed=0",
        f"source.max_atoms={args.structure_max_atoms}",
        f"chunk_size={args.loader_chunk_size}",
        "workers=2",
    ]
    code = (
        "import json, sys\n"
        "from data_pipeline.config import load_config\n"
        "from data_pipeline.driver import run_featurize\n"
        "m = run_featurize(load_config(sys.argv[1], sys.argv[2:]), progress=False).manifest\n"
        "print(json.dumps({'samples': m.n_samples, 'shards': len(m.shards), 'dim': m.dim}))\n"
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, str(DEMO_FEATURIZE), *overrides],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if proc.returncode:
        raise RuntimeError(f"featurization failed:\n{proc.stderr[-3000:]}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    info.update(wall_s=time.perf_counter() - t0, overrides=overrides[1:])
    return info


def loader_pass(shards: Path, cutoff: float, args: argparse.Namespace, workers: int):
    from fmpretrain.data.loader import build_loader

    ticks, t0 = cpu_times(), time.perf_counter()
    loader = build_loader(
        shards,
        cutoff=cutoff,
        max_atoms_per_batch=args.max_atoms_per_batch,
        num_workers=workers,
        split="train",
        val_shards=1,
        shuffle_buffer=256,
        seed=0,
        epoch=0,
    )
    first, batches, atoms = None, 0, 0
    for batch in loader:
        if first is None:
            first = time.perf_counter() - t0
        batches += 1
        atoms += batch.num_nodes
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "first_batch_s": first,
        "batches": batches,
        "atoms": atoms,
        "batches_per_s": batches / wall,
        "atoms_per_s": atoms / wall,
        "busy": busy_share(ticks, cpu_times()),
    }


def e2e_pass(runner: Runner, shards: Path, cutoff: float, args, workers: int, prebuilt: bool):
    """The small model on the first ``--e2e-batches`` batches of a loader with ``workers``
    processes: straight from the loader, or (``prebuilt``) the same batches built beforehand."""
    from fmpretrain.data.loader import build_loader

    loader = build_loader(
        shards,
        cutoff=cutoff,
        max_atoms_per_batch=args.max_atoms_per_batch,
        num_workers=workers,
        split="train",
        val_shards=1,
        shuffle_buffer=256,
        seed=0,
        epoch=0,
    )
    source: Any = loader
    if prebuilt:
        source = []
        iterator = iter(loader)
        for batch in iterator:
            source.append(batch)
            if len(source) == args.e2e_batches:
                break
        iterator.close()  # stops the loader's workers
    ticks, t0 = cpu_times(), time.perf_counter()
    steps = atoms = edges = 0
    iterator = iter(source)
    for batch in iterator:
        runner.step(batch)
        steps += 1
        atoms += batch.num_nodes
        edges += batch.num_edges
        if steps == args.e2e_batches:
            break
    close = getattr(iterator, "close", None)
    if close is not None:
        close()  # stops the loader's workers
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "steps": steps,
        "atoms": atoms,
        "edges": edges,
        "atoms_per_s": atoms / wall,
        "busy": busy_share(ticks, cpu_times()),
    }


def loader_benchmark(args: argparse.Namespace, step: dict[str, Any] | None) -> dict[str, Any]:
    from fmpretrain.data.loader import build_loader

    cutoff = model_config("small").cutoff
    tmp = None
    if args.shards:
        shards, featurize = Path(args.shards), None
    else:
        tmp = tempfile.TemporaryDirectory(prefix="fmp-train-bench-")
        shards = Path(tmp.name) / "shards"
        print(
            f"featurizing {args.loader_structures} structures ({args.loader_descriptor})...",
            flush=True,
        )
        featurize = featurize_shards(args, shards)
        print(f"  {featurize}", flush=True)
    torch.set_num_threads(1)
    try:
        runs: dict[int, list[dict[str, Any]]] = {w: [] for w in args.loader_workers}
        for r in range(args.loader_repeats):
            shift = r % len(args.loader_workers)
            for w in args.loader_workers[shift:] + args.loader_workers[:shift]:
                res = loader_pass(shards, cutoff, args, w)
                runs[w].append(res)
                print(
                    f"  round {r + 1}/{args.loader_repeats} loader workers={w} "
                    f"{res['wall_s']:5.2f} s: {res['batches']} batches "
                    f"{res['batches_per_s']:6.1f}/s, {res['atoms_per_s']:8.0f} atoms/s "
                    f"(first batch {res['first_batch_s']:.2f} s, busy {100 * res['busy']:.0f} %)",
                    flush=True,
                )
        best = {w: min(rs, key=lambda x: x["wall_s"]) for w, rs in runs.items()}
        comparison = []
        if step is not None:
            for row in step["summary"]:
                if row["config"] != "small" or OURS not in row:
                    continue
                consume = row[OURS]["best_atoms_per_s"]
                for w, b in best.items():
                    comparison.append(
                        {
                            "threads": row["threads"],
                            "loader_workers": w,
                            "step_atoms_per_s": consume,
                            "loader_atoms_per_s": b["atoms_per_s"],
                            "ratio": b["atoms_per_s"] / consume,
                            "goal_met": b["atoms_per_s"] / consume >= 5.0,
                        }
                    )

        e2e: dict[str, list[dict[str, Any]]] = {}
        if args.e2e_batches > 0:
            from fmpretrain.data.manifest import Manifest
            from fmpretrain.models import build_fingerprint_model

            torch.set_num_threads(args.e2e_threads)
            torch.manual_seed(args.seed)
            dim = Manifest.load(shards).dim
            model = build_fingerprint_model(model_config("small"), dim)
            runner = Runner(model, [], torch.device("cpu"), bf16=False)
            warm = next(
                iter(
                    build_loader(
                        shards, cutoff=cutoff, max_atoms_per_batch=args.max_atoms_per_batch
                    )
                )
            )
            runner.step(warm)  # untimed
            variants = [(w, p) for w in args.loader_workers for p in (True, False)]
            labels = [f"workers={w} " + ("pre-built" if p else "streamed") for w, p in variants]
            e2e = {label: [] for label in labels}
            pairs = list(zip(variants, labels, strict=True))
            for r in range(args.e2e_repeats):
                shift = r % len(pairs)
                for (w, p), label in pairs[shift:] + pairs[:shift]:
                    res = e2e_pass(runner, shards, cutoff, args, w, p)
                    e2e[label].append(res)
                    print(
                        f"  round {r + 1}/{args.e2e_repeats} small step, "
                        f"threads={args.e2e_threads}, {label:21s} {res['wall_s']:6.2f} s "
                        f"{res['atoms_per_s']:7.1f} atoms/s (busy {100 * res['busy']:.0f} %)",
                        flush=True,
                    )
        return {
            "shards": str(shards) if args.shards else None,
            "featurize": featurize,
            "runs": {str(w): rs for w, rs in runs.items()},
            "best": {str(w): b for w, b in best.items()},
            "comparison": comparison,
            "e2e_threads": args.e2e_threads,
            "e2e": e2e,
        }
    finally:
        if tmp is not None:
            tmp.cleanup()


# ============================================================================ report
def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print("\n=== machine")
    print(
        f"{m['cpu']}, {m['cores']} cores; python {m['python']}, torch {m['torch']}, "
        f"torchmd-net {m['torchmd-net']}, device {report['device']}"
        + (", bf16 autocast" if report["bf16"] else "")
    )
    print(f"load average: start {report['load_start']}, end {report['load_end']}")
    step = report.get("step")
    if step:
        print("\n=== training step (best pass; median in brackets)")
        for name, s in step["stats"].items():
            print(
                f"{name}: {s['batches']} batches ({s['atoms_per_batch']} atoms, "
                f"{s['edges_per_batch']} edges), {s['structures']} structures "
                f"({s['atoms_per_structure'][0]}-{s['atoms_per_structure'][2]} atoms); a "
                f"minimum-image list would hold {100 * s['minimum_image_edge_fraction']:.1f} % "
                f"of the edges, {100 * s['self_image_edge_fraction']:.1f} % are self images; "
                f"peer box mode usable as given for {s['peer_box_ok_as_given']}, "
                f"in any orientation for {s['peer_box_ok_any_orientation']} of "
                f"{s['structures']} cells"
            )
        for name, eq in step["equivalence"].items():
            print(f"{name}: peer with our weights, max |diff| {eq['max_abs_diff']:.2e}")
        header = "| threads | config | ours atoms/s | peer atoms/s | ours/peer | goal ≥ 1.5 |"
        print(header)
        print("| --- | --- | ---: | ---: | ---: | --- |")
        for row in step["summary"]:
            o = row[OURS]
            mem = f" {o['max_memory_gib']:.2f} GiB" if o["max_memory_gib"] else ""
            ours = f"{o['best_atoms_per_s']:.1f} ({o['median_atoms_per_s']:.1f}){mem}"
            if PEER in row:
                p = row[PEER]
                pmem = f" {p['max_memory_gib']:.2f} GiB" if p["max_memory_gib"] else ""
                peer = f"{p['best_atoms_per_s']:.1f} ({p['median_atoms_per_s']:.1f}){pmem}"
                ratio = f"{row['ratio_best']:.2f} ({row['ratio_median_of_rounds']:.2f})"
                goal = "met" if row["goal_met"] else "MISSED"
            else:
                peer, ratio, goal = "not measured", "-", "-"
            print(f"| {row['threads']} | {row['config']} | {ours} | {peer} | {ratio} | {goal} |")
    loader = report.get("loader")
    if loader:
        print("\n=== loader (best pass)")
        for w, b in loader["best"].items():
            print(
                f"workers={w}: {b['batches']} batches, {b['atoms']} atoms in {b['wall_s']:.2f} s "
                f"= {b['batches_per_s']:.1f} batches/s, {b['atoms_per_s']:.0f} atoms/s "
                f"(first batch {b['first_batch_s']:.2f} s)"
            )
        for c in loader["comparison"]:
            print(
                f"loader workers={c['loader_workers']} vs small step threads={c['threads']}: "
                f"{c['loader_atoms_per_s']:.0f} / {c['step_atoms_per_s']:.1f} = "
                f"{c['ratio']:.1f}x ({'met' if c['goal_met'] else 'MISSED'}, goal ≥ 5x)"
            )
        e2e = loader["e2e"]
        for label, rs in e2e.items():
            best = min(rs, key=lambda x: x["wall_s"])
            line = (
                f"end to end, small, threads={loader['e2e_threads']}, {label}: "
                f"{best['atoms_per_s']:.1f} atoms/s ({best['steps']} steps, {best['atoms']} atoms)"
            )
            twin = label.replace("streamed", "pre-built")
            if twin != label and twin in e2e:
                pre = min(e2e[twin], key=lambda x: x["wall_s"])["wall_s"]
                line += f"; {100 * (best['wall_s'] / pre - 1):+.1f} % time vs pre-built"
            print(line)


# ============================================================================ main
def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--configs", default="small,base", help="model configs (small,base)")
    add("--threads", type=_ints, default=[1, 2], help="torch threads on CPU (1,2)")
    add("--batches", type=int, default=3, help="batches per pass (3)")
    add("--max-atoms-per-batch", type=int, default=512, help="atom budget of a batch (512)")
    add("--structure-max-atoms", type=int, default=64, help="largest generated cell (64)")
    add("--out-dim", type=int, default=64, help="fingerprint dimension D (64, EAD's)")
    add("--repeats", type=int, default=3, help="interleaved rounds of passes (3)")
    add("--warmup", type=int, default=1, help="untimed steps per model and thread count (1)")
    add("--seed", type=int, default=0)
    add("--no-peer", action="store_true", help="skip torchmd-net")
    add("--device", default="cpu", help="cpu or cuda")
    add("--bf16", action="store_true", help="bfloat16 autocast around the forward")
    add("--skip-step", action="store_true", help="skip (1)-(2)")
    add("--skip-loader", action="store_true", help="skip (3)")
    add("--shards", help="shard directory for (3) (default: featurize into a temp dir)")
    add("--loader-structures", type=int, default=2000, help="structures featurized (2000)")
    add("--loader-descriptor", default="ead", help="descriptor of the shards (ead)")
    add("--loader-chunk-size", type=int, default=100, help="structures per shard (100)")
    add("--loader-workers", type=_ints, default=[0, 2], help="loader processes (0,2)")
    add("--loader-repeats", type=int, default=3, help="interleaved loader passes (3)")
    add("--e2e-batches", type=int, default=16, help="steps fed by the loader (16; 0: skip)")
    add("--e2e-threads", type=int, default=1, help="torch threads of the e2e steps (1)")
    add("--e2e-repeats", type=int, default=3, help="interleaved e2e rounds (3)")
    add("--quick", action="store_true", help="smoke run: small config, 1 thread, tiny sizes")
    add("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    args.configs = [c for c in args.configs.split(",") if c]
    if args.quick:
        args.configs, args.threads, args.batches, args.repeats = ["small"], [1], 1, 2
        args.max_atoms_per_batch = 256
        args.loader_structures, args.loader_chunk_size, args.loader_repeats = 300, 50, 1
        args.e2e_batches, args.e2e_repeats = 4, 1
    if args.bf16 and args.device == "cpu":
        print("note: --bf16 on CPU runs CPU autocast; the recorded bf16 numbers need a GPU")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no GPU visible")
    report: dict[str, Any] = {
        "machine": machine(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "bf16": args.bf16,
        "args": {k: v for k, v in vars(args).items()},
        "load_start": loadavg(),
    }
    t0 = time.perf_counter()
    step = None
    if not args.skip_step:
        step = step_benchmark(args, device)
        report["step"] = step
    if not args.skip_loader:
        report["loader"] = loader_benchmark(args, step)
    report["load_end"] = loadavg()
    report["total_s"] = time.perf_counter() - t0
    print_report(report)
    print(f"\ntotal {report['total_s']:.0f} s")
    if step is not None:
        step.pop("_runners")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
