"""``fmpretrain demo``: the whole method, offline, on a laptop CPU, in minutes.

Real DFT-relaxed structures (the shipped perov_5 / carbon_24 corpora) plus generated crystals
-> featurize them with Ray into shards -> pre-train the small GNN on the fingerprints with
DeepSpeed -> export a release -> fine-tune it, the shipped foundation release and a
from-scratch twin on a real labelled task (perovskite heats of formation), 3 MatBench folds,
next to a gradient-boosting and a mean baseline -> table, plots, W&B offline runs. Every
stage keeps its output under ``--out``; running again reuses the finished stages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DemoSizes:
    """How big each stage is; ``full`` is the README's demo, ``tiny`` the suite's version."""

    corpora: tuple[str, ...]  # real corpora of the registry (shipped copies: offline)
    generated: int  # generated crystals next to the real structures
    max_atoms: int
    chunk_size: int
    steps: int
    model_keys: dict[str, Any]  # on top of the default model config (small)
    max_atoms_per_batch: int
    task: str
    task_size: int
    folds: tuple[int, ...]
    epochs: int
    patience: int


SIZES = {
    "full": DemoSizes(
        corpora=("perov_5-test", "carbon_24-test"),
        generated=400,
        max_atoms=16,
        chunk_size=200,
        steps=60,
        model_keys={},
        max_atoms_per_batch=192,
        task="perov_heat",
        task_size=150,
        folds=(0, 1, 2),
        epochs=10,
        patience=5,
    ),
    "tiny": DemoSizes(
        corpora=("carbon_24-test",),
        generated=30,
        max_atoms=8,
        chunk_size=400,
        steps=6,
        model_keys={"hidden_channels": 32, "num_layers": 2, "num_rbf": 16, "num_heads": 4},
        max_atoms_per_batch=96,
        task="perov_heat",
        task_size=40,
        folds=(0,),
        epochs=2,
        patience=2,
    ),
}

#: The shipped foundation the demo also fine-tunes on the same folds, when the registry has it.
FOUNDATION = "et-small-ead"


def run_demo(
    out: str | Path = "runs/demo",
    descriptor: str = "ead",
    size: str = "full",
    workers: int = 2,
    wandb_mode: str = "offline",
) -> dict[str, Any]:
    """Run every stage (reusing finished ones) and return the fine-tuning results."""

    from data_pipeline.config import FeaturizeConfig, SourceConfig
    from data_pipeline.driver import summary
    from data_pipeline.stage import FeaturizeStage
    from fmpretrain.finetune.config import load_finetune_config
    from fmpretrain.finetune.stages import BenchmarkStage
    from fmpretrain.models.config import DEFAULT_MODEL, ModelConfig
    from fmpretrain.pipeline import Stage, run_stages
    from fmpretrain.train.config import PretrainConfig, WandbConfig
    from fmpretrain.train.stages import ExportStage, PretrainStage
    from fmpretrain.train.trainer import describe_validation

    # Threads: pre-training and fine-tuning apply the thread policy (fmpretrain.threads): on a
    # machine where another process keeps a core busy they take one thread, since two threads
    # then ran about 10x slower (OpenMP threads waiting on each other; docs/benchmarks.md).
    sizes = SIZES[size]
    out = Path(out)
    paths = {
        "shards": out / "shards",
        "pretrain": out / "pretrain",
        "release": out / "release",
        "finetune": out / "finetune",
        "foundation": out / "finetune-foundation",
    }
    start = time.perf_counter()

    sources = [SourceConfig(kind="corpus", name=name) for name in sizes.corpora]
    sources.append(
        SourceConfig(kind="generated", n=sizes.generated, seed=0, max_atoms=sizes.max_atoms)
    )
    folds = ", ".join(str(f) for f in sizes.folds)
    common = [
        f"task={sizes.task}",
        f"task_size={sizes.task_size}",
        f"max_epochs={sizes.epochs}",
        f"patience={sizes.patience}",
        "lr=5e-4",
        f"folds=[{folds}]",
        f"wandb.mode={wandb_mode}",
        f"cache_dir={out / 'cache'}",
    ]
    foundation = _foundation_available()
    stages: list[Stage] = [
        FeaturizeStage(
            FeaturizeConfig(
                descriptor=descriptor,
                sources=sources,
                dedupe=True,
                out=str(paths["shards"]),
                chunk_size=sizes.chunk_size,
                workers=workers,
            )
        ),
        PretrainStage(
            PretrainConfig(
                data=str(paths["shards"]),
                out=str(paths["pretrain"]),
                model=ModelConfig.from_name(DEFAULT_MODEL, sizes.model_keys),
                max_steps=sizes.steps,
                warmup_steps=max(1, sizes.steps // 10),
                max_atoms_per_batch=sizes.max_atoms_per_batch,
                val_shards=1,
                eval_every=max(1, sizes.steps // 2),
                checkpoint_every=max(1, sizes.steps // 2),
                log_every=max(1, sizes.steps // 12),
                wandb=WandbConfig(mode=wandb_mode, name="demo-pretrain"),
            )
        ),
        ExportStage(paths["pretrain"], paths["release"]),
        BenchmarkStage(
            load_finetune_config(
                None, [f"out={paths['finetune']}", f"pretrained={paths['release']}", *common]
            ),
            name="finetune",
        ),
    ]
    if foundation:
        stages.append(
            BenchmarkStage(
                load_finetune_config(
                    None,
                    [
                        f"out={paths['foundation']}",
                        f"pretrained={FOUNDATION}",
                        "scratch=false",
                        "baselines=false",
                        *common,
                    ],
                ),
                releases="none",
                name="foundation",
            )
        )
    corpora = " + ".join(sizes.corpora)
    headers = {
        "featurize": f"real DFT-relaxed structures ({corpora}) + {sizes.generated} generated "
        f"crystals with {descriptor}, {workers} Ray workers -> {paths['shards']}",
        "pretrain": f"small equivariant transformer, {sizes.steps} steps, 1 DeepSpeed "
        f"process -> {paths['pretrain']}",
        "export": f"release (safetensors + config + sha256) -> {paths['release']}",
        "finetune": f"real task {sizes.task} ({sizes.task_size} structures), MatBench folds "
        f"{folds}: this release, "
        + (f"the shipped foundation {FOUNDATION}, " if foundation else "")
        + f"from scratch, GBM and mean baselines -> {paths['finetune']}",
    }

    def announce(number: int, stage: Stage) -> None:
        if stage.name in headers:
            _stage(number, stage.name, headers[stage.name])

    done = run_stages(stages, announce=announce)
    if not done.reused("featurize"):
        print(summary(done["featurize"]))
    if not done.reused("pretrain") and done["pretrain"].last_val:
        result = done["pretrain"]
        print(f"pre-trained to step {result.step}: {describe_validation(result.last_val)}")
    results = done["finetune"]
    shipped = done["foundation"] if foundation else None
    timings = done.timings
    timings["finetune"] += timings.pop("foundation", 0.0)

    total = time.perf_counter() - start
    print()
    print("=" * 78)
    print(
        f"fmpretrain demo finished in {total / 60:.1f} min "
        + "("
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + ")"
    )
    print()
    print(demo_table(results, shipped, sizes))
    print()
    print("where everything is:")
    print(f"  shards + manifest    {paths['shards']}")
    print(f"  pre-training run     {paths['pretrain']} (checkpoints/, metrics.jsonl, wandb/)")
    print(f"  release              {paths['release']}")
    print(f"  fine-tuning results  {paths['finetune']} (results.md/json/png, plots/, predictions/)")
    print("  W&B offline runs     wandb sync <run dir>/wandb/offline-run-*")
    return results


def demo_table(results: dict[str, Any], shipped: dict[str, Any] | None, sizes: DemoSizes) -> str:
    """Every model on the same folds, one row each, with the verdict in one sentence."""
    [task] = results["tasks"]
    unit = task.get("unit") or ""
    scratch = task["scratch"]["mean"]
    rows = [
        (f"pre-trained here ({sizes.steps} steps)", task["pretrained"]),
        *(
            [(f"shipped foundation {FOUNDATION}", shipped["tasks"][0]["pretrained"])]
            if shipped
            else []
        ),
        ("from scratch", task["scratch"]),
        ("GBM (pooled fingerprint)", task.get("gbm")),
        ("mean predictor", task.get("mean")),
    ]
    lines = [
        f"{task['task']}: test MAE ({unit}) over folds {task['folds']}, "
        f"{task['n_structures']} structures",
        "",
        "| Model | MAE mean ± std | per fold | vs scratch |",
        "|---|---:|---|---:|",
    ]
    for name, stats in rows:
        if not stats:
            continue
        per_fold = ", ".join(f"{v:.4g}" for v in stats["per_fold"])
        gain = 100 * (scratch - stats["mean"]) / scratch
        vs = "" if name == "from scratch" else f"{gain:+.1f}%"
        lines.append(f"| {name} | {stats['mean']:.4g} ± {stats['std']:.2g} | {per_fold} | {vs} |")
    own = 100 * (scratch - task["pretrained"]["mean"]) / scratch
    lines.append("")
    if own < 5:
        lines.append(
            f"At this size ({sizes.steps} pre-training steps, {sizes.task_size} labelled "
            "structures, a few epochs) pre-training here does not measurably help."
        )
    else:
        lines.append(
            f"Pre-training here lowered the test MAE by {own:.1f}% against the same model "
            "from scratch."
        )
    if shipped:
        stats = shipped["tasks"][0]["pretrained"]
        gain = 100 * (scratch - stats["mean"]) / scratch
        better = sum(
            p < s for p, s in zip(stats["per_fold"], task["scratch"]["per_fold"], strict=True)
        )
        verb = "lowered" if gain > 0 else "raised"
        lines.append(
            f"The shipped foundation {FOUNDATION}, pre-trained longer, {verb} the test MAE by "
            f"{abs(gain):.1f}% ({better} of {len(stats['per_fold'])} folds better than scratch)."
        )
    lines.append(
        "Folds this small are noisy: docs/results.md has the study with its spread and tests."
    )
    return "\n".join(lines)


def _foundation_available() -> bool:
    """Whether the registry (shipped or ``FMPRETRAIN_REGISTRY``) lists the foundation."""
    from fmpretrain import hub

    try:
        return FOUNDATION in hub.load_registry()
    except hub.HubError:
        return False


def _stage(number: int, name: str, what: str) -> None:
    print()
    print(f"[{number}/4] {name}: {what}")
