"""Fine-tuning speed against the pre-training step, on the same real cells.

The same seeded subset of a real task (default ``perov_heat``, 5-atom perovskite cells) is
trained two ways with the ``small`` model, one thread, the same atom budget per batch:

- ``finetune``: :func:`fmpretrain.finetune.trainer.fit` for ``--epochs`` epochs (validation
  each epoch, as in a benchmark fold); atoms/s = training atoms x epochs / wall time, so the
  per-epoch work (shuffling, batching, validation) counts against it;
- ``pretrain-step``: the pre-training step on the same graphs (fingerprint head, 64 standard
  normal targets per atom, MSE, AdamW), batches built once; atoms/s = atoms / wall time.

Interleaved rounds, best of ``--rounds``; the load average is printed before each pass.

    python benchmarks/finetune_speed.py [--task perov_heat] [--size 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="perov_heat")
    parser.add_argument("--size", type=int, default=400, help="structures of the task subset")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-atoms-per-batch", type=int, default=256)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from torch_geometric.data import Batch

    from fmpretrain.data.batching import pack_by_budget
    from fmpretrain.finetune.config import load_finetune_config
    from fmpretrain.finetune.data import build_graphs
    from fmpretrain.finetune.tasks import load_task
    from fmpretrain.finetune.trainer import build_model, fit
    from fmpretrain.models import ModelConfig, build_fingerprint_model

    torch.set_num_threads(1)
    cfg = load_finetune_config(
        None,
        [
            "out=/tmp/finetune-speed",
            f"max_epochs={args.epochs}",
            f"patience={args.epochs}",
            f"max_atoms_per_batch={args.max_atoms_per_batch}",
            "wandb.mode=disabled",
        ],
    )
    model_cfg = ModelConfig.from_name("small", {})  # attention_impl auto: fused on CPU
    dataset, spec = load_task(args.task, size=args.size)
    graphs = build_graphs(dataset, model_cfg.cutoff)
    n_val = max(1, len(graphs) // 5)
    train, val = graphs[n_val:], graphs[:n_val]
    train_atoms = sum(g.num_nodes for g in train)

    rng = np.random.default_rng(0)
    targets = [rng.standard_normal((g.num_nodes, 64)).astype(np.float32) for g in train]
    groups = pack_by_budget(
        iter(range(len(train))), lambda i: (train[i].num_nodes,), (args.max_atoms_per_batch,)
    )
    batches = []
    for group in groups:
        batch = Batch.from_data_list([train[i] for i in group])
        batch.y = torch.from_numpy(np.concatenate([targets[i] for i in group]))
        batches.append(batch)

    def finetune_pass() -> float:
        model = build_model(model_cfg, out_dim=1, pooling=spec.pooling, seed=0)
        start = time.perf_counter()
        fit(model, train, val, cfg, task_type=spec.task_type, pooling=spec.pooling)
        return train_atoms * args.epochs / (time.perf_counter() - start)

    def pretrain_pass() -> float:
        torch.manual_seed(0)
        model = build_fingerprint_model(model_cfg, 64)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        start = time.perf_counter()
        for batch in batches:
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(model(batch), batch.y).backward()
            optimizer.step()
        return train_atoms / (time.perf_counter() - start)

    passes = {"finetune": finetune_pass, "pretrain-step": pretrain_pass}
    runs: dict[str, list[float]] = {name: [] for name in passes}
    print(
        f"{args.task}: {len(train)} training structures, {train_atoms} atoms, "
        f"{len(batches)} batches of <= {args.max_atoms_per_batch} atoms; one thread",
        flush=True,
    )
    for r in range(args.rounds):
        order = list(passes) if r % 2 == 0 else list(passes)[::-1]
        for name in order:
            load = os.getloadavg()[0]
            rate = passes[name]()
            runs[name].append(rate)
            print(f"round {r}: {name:<13} {rate:7.1f} atoms/s (load {load:.2f})", flush=True)
    best = {name: max(rates) for name, rates in runs.items()}
    ratio = best["finetune"] / best["pretrain-step"]
    per_round = [f / p for f, p in zip(runs["finetune"], runs["pretrain-step"], strict=True)]
    median = statistics.median(per_round)
    print(
        f"best: fine-tuning {best['finetune']:.1f} atoms/s, pre-training step "
        f"{best['pretrain-step']:.1f} atoms/s; fine-tuning / pre-training = {ratio:.2f} best, "
        f"{median:.2f} median of per-round ratios, {min(per_round):.2f} worst round "
        "(goal: >= 1, fine-tuning at least at pre-training speed)"
    )
    if args.json:
        payload = {"best": best, "ratio": ratio, "per_round": per_round, "runs": runs}
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
