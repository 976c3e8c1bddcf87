"""The ``fmpretrain`` command line: one entry point, one sub-command per stage."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

DESCRIPTION = """\
fmpretrain: pre-train graph neural networks for materials on cheap per-atom structural
fingerprints (wACSF, GMP, EAD) instead of quantum-mechanical labels.

Commands:
  demo          the whole method offline in minutes: featurize, pre-train, fine-tune, compare
  fingerprint   compute per-atom fingerprints of structure files and print a summary
  featurize     featurize a structure source into WebDataset shards with Ray (resumable)
  shards        inspect shard directories: `shards verify DIR` checks them against the manifest
  pretrain      pre-train a GNN on the fingerprints of a shard directory with DeepSpeed
  export        turn a pre-training checkpoint into a release (safetensors + config + sha256)
  finetune      fine-tune a release (and a from-scratch baseline) on a labelled task
  benchmark     MatBench-style 5-fold benchmark: pre-trained vs scratch, results table + plot
  publish       pack a release into one .tar.gz (or upload it: --to hf://org/repo)
  download      download, verify and cache a release by name, URL or hf://org/repo
  corpora       list the public structure corpora, download one (verified, cached)
  predict       predict a fine-tuned model's property for structure files (CSV)
  embed         backbone embeddings of structure files (.npz)
  descriptors   list the descriptors with their dimension, hash and default parameters
  generate      write built-in generated crystal structures to a file (offline, seedable)

Run `fmpretrain COMMAND --help` for the options of one command.
"""

OVERRIDES_HELP = (
    "descriptor parameter overrides as key=value (OmegaConf dotlist), e.g. cutoff=5.0 "
    "zeta=[1,2,4]; see `fmpretrain descriptors` for the parameters"
)

PRINT_CONFIG_HELP = (
    "check the command line and the configuration as a run does, print the resolved "
    "configuration as YAML and exit without running anything"
)

FINETUNE_OVERRIDES_HELP = (
    "configuration overrides, e.g. pretrained=RELEASE_DIR out=DIR task=matbench_jdft2d "
    "folds=[0,1] max_epochs=50 freeze_backbone=true layer_decay=0.8 device=cuda"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fmpretrain",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="run the whole method end to end, offline, in minutes",
        description=(
            "Featurize real DFT-relaxed structures (the shipped perov_5 and carbon_24 corpora) "
            "plus generated crystals with Ray into WebDataset shards, pre-train the small GNN on "
            "the fingerprints (1 DeepSpeed process), export a release, fine-tune it, the shipped "
            "foundation et-small-ead and a from-scratch twin on a real task (perovskite heats "
            "of formation, 3 MatBench folds) next to gradient-boosting and mean baselines, and "
            "print the MAE table. Everything goes under --out; a second run reuses finished "
            "stages."
        ),
    )
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="default runs/demo")
    demo.add_argument(
        "--descriptor",
        default="ead",
        choices=["wacsf", "gmp", "ead"],
        help="fingerprint to pre-train on (default ead, the shipped foundation's)",
    )
    demo.add_argument("--workers", type=int, default=2, help="Ray workers (default 2)")
    demo.add_argument(
        "--quick",
        action="store_true",
        help="a tiny version of every stage (a smoke test; the numbers mean nothing)",
    )
    demo.add_argument(
        "--wandb",
        default="offline",
        choices=["offline", "online", "disabled"],
        help="W&B mode (default offline; online needs WANDB_API_KEY)",
    )
    add_print_config(demo, demo_config)
    demo.set_defaults(func=cmd_demo)

    fp = sub.add_parser(
        "fingerprint",
        help="compute per-atom fingerprints of structure files",
        description=(
            "Read every structure in FILE... (extxyz, CIF, POSCAR, ASE db, MatBench / Materials "
            "Project JSON(.gz), MatDeepLearn JSON), validate it, compute the chosen descriptor "
            "and print the shape and a summary. --out saves everything to one .npz file: "
            "`fingerprints` [total_atoms, dim], `n_atoms`, `ids`, `numbers`, `feature_names` "
            "and the descriptor config (JSON)."
        ),
    )
    fp.add_argument("files", nargs="+", type=Path, metavar="FILE", help="structure files")
    fp.add_argument(
        "--descriptor", "-d", default="wacsf", help="wacsf, gmp or ead (default: wacsf)"
    )
    fp.add_argument(
        "--config",
        type=Path,
        help="YAML of descriptor parameters, e.g. configs/descriptors/wacsf.yaml",
    )
    fp.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE", help=OVERRIDES_HELP)
    fp.add_argument("--out", type=Path, help="write the fingerprints to this .npz file")
    fp.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    fp.add_argument("--float32", action="store_true", help="compute in float32 (default float64)")
    fp.add_argument(
        "--min-distance",
        type=float,
        default=None,
        help="reject structures with atoms closer than this (Å, default 0.5)",
    )
    fp.add_argument(
        "--skip-invalid",
        action="store_true",
        help="report invalid structures and go on (default: stop at the first one)",
    )
    add_print_config(fp, fingerprint_config)
    fp.set_defaults(func=cmd_fingerprint)

    from data_pipeline.cli import DESCRIPTION as FEATURIZE_DESCRIPTION
    from data_pipeline.cli import add_arguments as add_featurize_arguments
    from data_pipeline.cli import featurize_config

    feat = sub.add_parser(
        "featurize",
        help="featurize structures into shards with Ray",
        description=FEATURIZE_DESCRIPTION,
    )
    add_featurize_arguments(feat)
    add_print_config(feat, featurize_config)
    feat.set_defaults(func=cmd_featurize)

    shards = sub.add_parser("shards", help="inspect and verify shard directories")
    shards_sub = shards.add_subparsers(dest="shards_command", metavar="ACTION", required=True)
    verify = shards_sub.add_parser(
        "verify",
        help="check every shard against manifest.json",
        description=(
            "Check that DIR/manifest.json matches its own checksum, that DIR holds no shard it "
            "does not list, and that every shard it lists exists, has the recorded size and "
            "sha256, and decodes into the recorded number of well-formed samples with finite "
            "fingerprints. Exit status 1 lists each problem."
        ),
    )
    verify.add_argument("dir", type=Path, help="shard directory (holds manifest.json)")
    verify.add_argument("--no-decode", action="store_true", help="check sizes and sha256 only")
    verify.add_argument(
        "--deep",
        action="store_true",
        help="also recompute each shard's per-feature statistics and compare them with the "
        "manifest's",
    )
    verify.add_argument(
        "--inputs",
        action="store_true",
        help="also check that the input files recorded in the manifest are unchanged on disk "
        "(reports files replaced, removed or added)",
    )
    verify.set_defaults(func=cmd_shards_verify)

    pre = sub.add_parser(
        "pretrain",
        help="pre-train a GNN on fingerprint shards (DeepSpeed)",
        description=(
            "Pre-train a GNN to regress normalized per-atom fingerprints. One process on CPU "
            "(gloo) with no launcher; under torchrun, the deepspeed launcher or srun on many "
            "GPUs. Re-running the same command resumes from the latest checkpoint in out/. "
            "SIGUSR1/SIGTERM (e.g. Slurm's pre-emption warning) checkpoints and stops."
        ),
    )
    pre.add_argument("--config", type=Path, help="YAML (configs/pretrain/...)")
    pre.add_argument(
        "overrides",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="configuration overrides, e.g. data=DIR out=DIR max_steps=500 zero_stage=2",
    )
    pre.add_argument(
        "--deepspeed-config",
        type=Path,
        help="YAML/JSON of DeepSpeed entries merged into the run's (configs/deepspeed/...)",
    )
    pre.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_print_config(pre, pretrain_config)
    pre.set_defaults(func=cmd_pretrain)

    exp = sub.add_parser(
        "export",
        help="export a release from a pre-training checkpoint",
        description=(
            "Consolidate a DeepSpeed checkpoint (any ZeRO stage) into a release: fp32 "
            "model.safetensors, config.yaml (model, descriptor, normalization) and SHA256SUMS. "
            "CKPT is a run directory (its latest checkpoint), its checkpoints/ folder or one "
            "checkpoint tag folder."
        ),
    )
    exp.add_argument("checkpoint", type=Path, metavar="CKPT", help="run or checkpoint directory")
    exp.add_argument("--out", type=Path, required=True, help="release directory to write")
    exp.add_argument(
        "--results", type=Path, help="benchmark results.json to quote in the model card"
    )
    add_print_config(exp, options_config)
    exp.set_defaults(func=cmd_export)

    ft = sub.add_parser(
        "finetune",
        help="fine-tune a release on a labelled task",
        description=(
            "Fine-tune a release (pretrained=DIR) with a new graph-level head on a labelled "
            "task, and the from-scratch baseline with the identical architecture and budget, on "
            "one seeded train/val/test split (60/20/20 by default). Writes OUT/finetune.json, "
            "the fine-tuned weights (OUT/TASK/MODE/model.safetensors + config.yaml), "
            "metrics.jsonl and an offline W&B run. pretrained=null trains from scratch only."
        ),
    )
    ft.add_argument("--config", type=Path, help="YAML (configs/finetune/...)")
    ft.add_argument("--data", help="local dataset (MatBench JSON(.gz), MatDeepLearn JSON, folder)")
    ft.add_argument(
        "overrides",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help=FINETUNE_OVERRIDES_HELP,
    )
    add_print_config(ft, finetune_config)
    ft.set_defaults(func=cmd_finetune)

    bench = sub.add_parser(
        "benchmark",
        help="MatBench-style benchmark: pre-trained vs scratch",
        description=(
            "MatBench protocol: KFold(5, shuffle=True, random_state=18012019) over the task's "
            "dataset; in each fold a seeded validation split of the training part for early "
            "stopping; the pre-trained model and the from-scratch baseline are trained and "
            "tested. Writes OUT/TASK/fold_K.json, OUT/results.json, OUT/results.md (table), "
            "OUT/results.png (plot), metrics.jsonl and an offline W&B run. Tasks: emt_energy, "
            "emt_total_energy (offline), matbench_<name> (downloaded once, or --data FILE)."
        ),
    )
    bench.add_argument("--config", type=Path, help="YAML (configs/finetune/...)")
    bench.add_argument(
        "--data", help="local dataset (MatBench JSON(.gz), MatDeepLearn JSON, folder + CSV)"
    )
    bench.add_argument(
        "overrides",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help=FINETUNE_OVERRIDES_HELP,
    )
    bench.add_argument(
        "--releases",
        default="best",
        choices=["best", "all", "none"],
        help="fine-tuned releases to write under OUT/TASK/release/ (default: the best fold's)",
    )
    add_print_config(bench, finetune_config)
    bench.set_defaults(func=cmd_benchmark)

    pub = sub.add_parser(
        "publish",
        help="pack a release into one archive and print its registry entry",
        description=(
            "Pack RELEASE_DIR (SHA256SUMS and the files it lists, verified first) into "
            "RELEASE_DIR.tar.gz, deterministically (sorted members, zero mtimes), and print the "
            "registry entry (JSON: name, url, sha256, size, descriptor, model, format_version). "
            "Upload the archive anywhere, put the entry in a registry file and point "
            "FMPRETRAIN_REGISTRY at it. With --to hf://ORG/REPO[@BRANCH][/DIR], upload the "
            "verified files to the Hugging Face Hub instead (token: HF_TOKEN or `hf auth "
            "login`) and print the address pinned to the new commit; see docs/hub.md."
        ),
    )
    pub.add_argument("release", type=Path, metavar="RELEASE_DIR", help="release directory")
    pub.add_argument(
        "--url", help="where the archive will be hosted (default: its local file:// URL)"
    )
    pub.add_argument("--name", help="release name (default: the directory name)")
    pub.add_argument("--out", type=Path, help="archive to write (default: RELEASE_DIR.tar.gz)")
    pub.add_argument(
        "--to",
        metavar="hf://ORG/REPO",
        help="upload to this Hugging Face Hub repository (created if needed) instead of packing",
    )
    pub.add_argument(
        "--private", action="store_true", help="with --to: create the repository private"
    )
    pub.set_defaults(func=cmd_publish)

    dl = sub.add_parser(
        "download",
        help="download and verify a release into the cache",
        description=(
            "Download a release archive by registry NAME or URL into the cache (FMPRETRAIN_CACHE, "
            "else $XDG_CACHE_HOME/fmpretrain or ~/.cache/fmpretrain), resuming an interrupted "
            "download, check its sha256, extract it and check SHA256SUMS. A cached release is "
            "used without network access. Prints the release directory. A URL that is not in "
            "the registry needs --sha256. An hf://ORG/REPO[@REVISION][/DIR] address is fetched "
            "with huggingface_hub into its cache (HF_HOME) and checked against SHA256SUMS."
        ),
    )
    dl.add_argument(
        "source",
        nargs="?",
        metavar="NAME|URL|hf://ORG/REPO",
        help="release name, archive URL or Hugging Face Hub address",
    )
    dl.add_argument("--sha256", metavar="HEX", help="sha256 of the archive (needed for a URL)")
    dl.add_argument(
        "--registry",
        metavar="PATH_OR_URL",
        help="registry JSON (default: FMPRETRAIN_REGISTRY, else the shipped one)",
    )
    dl.add_argument("--cache-dir", type=Path, metavar="DIR", help="cache root directory")
    dl.add_argument("--list", action="store_true", help="list the registry's releases and exit")
    dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    dl.set_defaults(func=cmd_download)

    corp = sub.add_parser(
        "corpora",
        help="list and download public structure corpora",
        description=(
            "The registry of public corpora (CDVAE/DiffCSP CSVs, Alexandria, MPtrj, OMat24, and "
            "the copies shipped with fmpretrain). `list` prints name, format, size, whether "
            "the sha256 is pinned, and licence; `download NAME` fetches the files into the "
            "cache (resumable, verified, atomic) and prints their paths. See docs/featurize.md."
        ),
    )
    corp_sub = corp.add_subparsers(dest="corpora_command", metavar="ACTION", required=True)
    corp_sub.add_parser("list", help="the registered corpora").set_defaults(func=cmd_corpora)
    corp_dl = corp_sub.add_parser("download", help="download a corpus and print its files")
    corp_dl.add_argument("name", metavar="NAME", help="corpus name (see `corpora list`)")
    corp_dl.add_argument("--cache", type=Path, metavar="DIR", help="cache root directory")
    corp_dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    corp_dl.set_defaults(func=cmd_corpora)

    ds = sub.add_parser(
        "descriptors",
        help="list descriptors and their default parameters",
        description="List every registered descriptor: dimension, parameter hash, defaults.",
    )
    ds.set_defaults(func=cmd_descriptors)

    gen = sub.add_parser(
        "generate",
        help="write generated crystal structures to a file",
        description=(
            "Write N structures from the built-in generator (prototype crystals with element "
            "substitution, strain, vacancies, rattle and supercells) to OUT. The format follows "
            "the extension: .extxyz, or .json / .json.gz for the MatBench structure layout."
        ),
    )
    gen.add_argument("n", type=int, help="number of structures")
    gen.add_argument("--out", type=Path, required=True, help="output file")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--max-atoms", type=int, default=200, help="largest cell (default 200)")
    add_print_config(gen, generate_config)
    gen.set_defaults(func=cmd_generate)
    _add_model_commands(sub)
    return parser


def _add_model_commands(sub: Any) -> None:
    """``predict`` and ``embed``: a release (path, registry name or URL) on structure files."""
    model_help = "release directory, registry name or archive URL"
    files_help = "structure files (extxyz, CIF, POSCAR, ASE db, MatBench/MP JSON, ...)"
    pred = sub.add_parser(
        "predict",
        help="predict a fine-tuned model's property for structure files",
        description=(
            "Predict the property of a fine-tuned release for every structure in FILE... and "
            "write a CSV: id,prediction (in the target's units; class labels for a "
            "classification task), plus a target column when the files hold that property."
        ),
    )
    pred.add_argument("model", metavar="MODEL", help=model_help)
    pred.add_argument("files", nargs="+", type=Path, metavar="FILE", help=files_help)
    pred.add_argument("--out", type=Path, required=True, help="CSV file to write")
    emb = sub.add_parser(
        "embed",
        help="backbone embeddings of structure files",
        description=(
            "Embed every structure in FILE... with the release's backbone and write an .npz "
            "(no pickle): ids [n], embeddings [n, hidden] (mean over atoms); with --per-atom "
            "embeddings [total_atoms, hidden] and n_atoms [n]."
        ),
    )
    emb.add_argument("model", metavar="MODEL", help=model_help)
    emb.add_argument("files", nargs="+", type=Path, metavar="FILE", help=files_help)
    emb.add_argument("--out", type=Path, required=True, help=".npz file to write")
    emb.add_argument("--per-atom", action="store_true", help="one row per atom")
    for p in (pred, emb):
        p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: auto)")
        p.add_argument("--max-atoms", type=int, default=2048, help="atoms per batch (2048)")
        add_print_config(p, options_config)
    pred.set_defaults(func=cmd_predict)
    emb.set_defaults(func=cmd_embed)


#: A ``key=value`` (or ``a.b=value``) configuration override on the command line.
OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def add_print_config(
    parser: argparse.ArgumentParser, resolve: Callable[[argparse.Namespace], Any]
) -> None:
    """Give a command ``--print-config``: :func:`main` then prints ``resolve(args)`` (the
    command's configuration, checked as the run checks it) as YAML and runs nothing."""
    parser.add_argument("--print-config", action="store_true", help=PRINT_CONFIG_HELP)
    parser.set_defaults(resolve_config=resolve)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line as :func:`main` reads it; a malformed one exits with status 2."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    # KEY=VALUE overrides may follow options (`fingerprint my.cif --descriptor wacsf cutoff=5`):
    # argparse leaves them over once the positionals before the options are filled.
    if extras and hasattr(args, "overrides") and all(OVERRIDE.match(e) for e in extras):
        args.overrides = [*args.overrides, *extras]
    elif extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    # `fingerprint my.cif cutoff=5`: the FILE... list swallows the overrides after it (give a
    # file named like KEY=VALUE with its absolute path).
    files = getattr(args, "files", None)
    if files and hasattr(args, "overrides"):
        keep = len(files)
        while keep > 1 and OVERRIDE.match(str(files[keep - 1])):
            keep -= 1
        args.files, args.overrides = files[:keep], [*map(str, files[keep:]), *args.overrides]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 0
    from fmpretrain.config import config_yaml
    from fmpretrain.extras import MissingExtraError, extra_of, missing_extra_message

    try:
        if getattr(args, "print_config", False):
            sys.stdout.write(config_yaml(args.resolve_config(args)))
            return 0
        return int(args.func(args) or 0)
    except MissingExtraError as err:
        print(err, file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        extra = extra_of(err.name)
        if extra is None:
            raise
        print(missing_extra_message(args.command, extra), file=sys.stderr)
        return 2
    except (ValueError, KeyError, TypeError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"fmpretrain {args.command}: error: {message}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------------------- commands
def descriptor_params(config: Path | None, overrides: Sequence[str]) -> dict[str, Any]:
    """Merge a YAML file and ``key=value`` overrides into plain descriptor parameters."""
    from omegaconf import OmegaConf

    from fmpretrain.config import named_config, parse_overrides

    dotlist = parse_overrides(overrides)
    base = OmegaConf.load(named_config("descriptors", config)) if config else OmegaConf.create({})
    merged = OmegaConf.merge(base, dotlist)
    return OmegaConf.to_container(merged, resolve=True)  # type: ignore[return-value]


# ------------------------------------------------------------- resolved configurations
# One per command with --print-config; the command's run starts from the same function, so
# `--print-config` accepts and refuses exactly what the run accepts and refuses.
def options_config(args: argparse.Namespace) -> dict[str, Any]:
    """A command without a configuration file: its options, as a run would use them."""
    skip = {"command", "func", "resolve_config", "print_config"}
    return {k: _plain(v) for k, v in vars(args).items() if k not in skip}


def _plain(value: Any) -> Any:
    """Paths as strings, sequences as lists (for YAML)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def demo_config(args: argparse.Namespace) -> dict[str, Any]:
    """``demo``'s settings and the sizes of its stages."""
    import dataclasses

    from fmpretrain.demo import SIZES

    size = "tiny" if args.quick else "full"
    return {
        "out": str(args.out),
        "descriptor": args.descriptor,
        "size": size,
        "workers": args.workers,
        "wandb_mode": args.wandb,
        "stages": _plain(dataclasses.asdict(SIZES[size])),
    }


def cmd_demo(args: argparse.Namespace) -> int:
    from fmpretrain.extras import require_extra

    cfg = demo_config(args)
    require_extra("demo", "all")
    from fmpretrain.demo import run_demo

    run_demo(
        cfg["out"],
        descriptor=cfg["descriptor"],
        size=cfg["size"],
        workers=cfg["workers"],
        wandb_mode=cfg["wandb_mode"],
    )
    return 0


def _fingerprint_descriptor(args: argparse.Namespace) -> Any:
    """The descriptor a ``fingerprint`` command line asks for (unknown parameters: errors)."""
    import torch

    from fmpretrain.descriptors import get_descriptor

    params = descriptor_params(args.config, args.overrides)
    dtype = torch.float32 if args.float32 else torch.float64
    return get_descriptor(args.descriptor, device=args.device, dtype=dtype, **params)


def _min_distance(args: argparse.Namespace) -> float:
    from fmpretrain.structures import DEFAULT_MIN_DISTANCE

    return DEFAULT_MIN_DISTANCE if args.min_distance is None else args.min_distance


def fingerprint_config(args: argparse.Namespace) -> dict[str, Any]:
    """``fingerprint``'s descriptor (name, every parameter, version) and options."""
    descriptor = _fingerprint_descriptor(args)
    return {
        "descriptor": descriptor.config(),
        "files": _plain(args.files),
        "out": _plain(args.out),
        "device": args.device,
        "dtype": "float32" if args.float32 else "float64",
        "min_distance": _min_distance(args),
        "skip_invalid": args.skip_invalid,
    }


def cmd_fingerprint(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from fmpretrain.io import read_structures
    from fmpretrain.structures import InvalidStructureError, validate

    descriptor = _fingerprint_descriptor(args)
    min_distance = _min_distance(args)
    for path in args.files:
        if not path.exists():
            raise FileNotFoundError(f"no such file: {path}")

    blocks, ids, n_atoms, numbers, rejected = [], [], [], [], []
    start = time.perf_counter()
    with tqdm(desc="fingerprints", unit=" structures", disable=None) as bar:
        for path in args.files:
            for structure in read_structures(path):
                try:
                    validate(structure, min_distance=min_distance)
                except InvalidStructureError as err:
                    if not args.skip_invalid:
                        raise ValueError(
                            f"{path}: {err} (use --skip-invalid to report and go on)"
                        ) from err
                    rejected.append(str(err))
                    print(f"skipped {path}: {err}", file=sys.stderr)
                    continue
                blocks.append(descriptor(structure).cpu().numpy())
                ids.append(structure.id)
                n_atoms.append(len(structure))
                numbers.append(structure.numbers)
                bar.update()
    elapsed = time.perf_counter() - start
    if not blocks:
        raise ValueError(f"no valid structures in {[str(p) for p in args.files]}")

    features = np.concatenate(blocks)
    print(f"descriptor   {descriptor.name}  dim={descriptor.dim}  hash={descriptor.hash}")
    print(
        f"structures   {len(blocks)} ({sum(n_atoms)} atoms) in {elapsed:.2f} s; "
        f"{len(rejected)} rejected"
    )
    for sid, block in list(zip(ids, blocks, strict=True))[:5]:
        print(f"  {sid:<30} shape={tuple(block.shape)}")
    if len(blocks) > 5:
        print(f"  ... {len(blocks) - 5} more")
    print(f"fingerprints shape={tuple(features.shape)}  dtype={features.dtype}")
    print(
        f"  values: min={features.min():.4g} mean={features.mean():.4g} "
        f"max={features.max():.4g}; all-zero columns: {int((features == 0).all(0).sum())}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            args.out,
            fingerprints=features,
            n_atoms=np.asarray(n_atoms, dtype=np.int64),
            ids=np.asarray(ids),
            numbers=np.concatenate(numbers),
            feature_names=np.asarray(descriptor.feature_names),
            descriptor=np.asarray(json.dumps(descriptor.config())),
        )
        print(f"wrote {args.out}")
    return 0


def cmd_featurize(args: argparse.Namespace) -> int:
    from fmpretrain.extras import require_extra

    require_extra("featurize", "ray")
    from data_pipeline.cli import run

    return run(args)


def cmd_shards_verify(args: argparse.Namespace) -> int:
    from fmpretrain.data.manifest import Manifest, verify_shards

    manifest = Manifest.load(args.dir, check=False)  # verify_shards reports a bad checksum
    problems = verify_shards(
        args.dir, decode=not args.no_decode, deep=args.deep, inputs=args.inputs
    )
    for problem in problems:
        print(f"PROBLEM {problem}")
    status = "FAILED" if problems else "OK"
    print(
        f"{status}: {len(manifest.shards)} shards, {manifest.n_samples} samples, "
        f"{len(problems)} problem(s) in {args.dir}"
    )
    return 1 if problems else 0


def pretrain_config(args: argparse.Namespace) -> Any:
    """``pretrain``'s configuration with the ``--deepspeed-config`` entries merged in; the
    model it names must resolve (a wrong name fails here, not after the launcher started)."""
    from omegaconf import OmegaConf

    from fmpretrain.config import load_yaml, named_config
    from fmpretrain.models import ModelConfig
    from fmpretrain.train.config import load_pretrain_config

    cfg = load_pretrain_config(args.config, args.overrides)
    if args.deepspeed_config:
        path = named_config("deepspeed", args.deepspeed_config)
        extra = OmegaConf.to_container(load_yaml(path), resolve=True)
        cfg.deepspeed = {**cfg.deepspeed, **extra}  # type: ignore[dict-item]
    ModelConfig.from_name(cfg.model, cfg.model_overrides)
    return cfg


def cmd_pretrain(args: argparse.Namespace) -> int:
    from fmpretrain.extras import require_extra

    cfg = pretrain_config(args)
    wandb = ["wandb"] if cfg.wandb.mode != "disabled" else []
    require_extra("pretrain", "train", ["deepspeed", "webdataset", *wandb])
    from fmpretrain.train.trainer import describe_validation, pretrain

    result = pretrain(cfg, progress=not args.no_progress)
    import torch.distributed as torch_dist

    if not torch_dist.is_initialized() or torch_dist.get_rank() == 0:
        print(f"{result.status} at step {result.step}; checkpoint {result.checkpoint}")
        if result.last_val:
            print(f"  validation: {describe_validation(result.last_val)}")
        print(f"  export a release: fmpretrain export {result.out} --out RELEASE_DIR")
    return 0 if result.status == "finished" else 3


def cmd_export(args: argparse.Namespace) -> int:
    from fmpretrain.extras import require_extra

    require_extra("export", "train", ["deepspeed"])
    from fmpretrain.train.export import export_release

    out = export_release(args.checkpoint, args.out, results=args.results)
    print(f"wrote release {out}: " + ", ".join(sorted(p.name for p in out.iterdir())))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from fmpretrain.hub import HubError, publish

    if args.to is not None:
        return _publish_hf(args)
    if args.private:
        print("fmpretrain publish: error: --private needs --to hf://ORG/REPO", file=sys.stderr)
        return 2
    try:
        archive, entry = publish(args.release, url=args.url, name=args.name, out=args.out)
    except HubError as err:
        print(f"fmpretrain publish: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(entry.to_dict(), indent=2))
    print(f"wrote {archive} ({entry.size} bytes, sha256 {entry.sha256})", file=sys.stderr)
    if args.url is None:
        print(
            "url is the local file; upload the archive and replace it (or pass --url)",
            file=sys.stderr,
        )
    return 0


def _publish_hf(args: argparse.Namespace) -> int:
    """``publish RELEASE_DIR --to hf://ORG/REPO``: upload; print the pinned address."""
    from fmpretrain import hf
    from fmpretrain.hub import HubError
    from fmpretrain.release_format import ReleaseError

    if args.url is not None or args.out is not None or args.name is not None:
        print("fmpretrain publish: error: --url, --out and --name are for archives, not --to",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        done = hf.publish(args.release, args.to, private=True if args.private else None)
    except (HubError, ReleaseError) as err:
        print(f"fmpretrain publish: error: {err}", file=sys.stderr)
        return 2
    print(done.address)
    print(
        f"uploaded {', '.join(done.files)} to {hf.endpoint()}/{done.address.repo_id} "
        f"(commit {done.commit})",
        file=sys.stderr,
    )
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from fmpretrain.hub import HubError, load_pretrained, load_registry

    try:
        if args.list:
            for entry in load_registry(args.registry, cache_dir=args.cache_dir).values():
                d = entry.descriptor
                print(
                    f"{entry.name}: {d.get('name')} (dim={d.get('dim')} hash={d.get('hash')}) "
                    f"{entry.size} bytes {entry.url}"
                )
            return 0
        if args.source is None:
            raise HubError("give a release NAME or URL (or --list)")
        path = load_pretrained(
            args.source,
            sha256=args.sha256,
            registry=args.registry,
            cache_dir=args.cache_dir,
            progress=False if args.no_progress else None,
        )
    except HubError as err:
        print(f"fmpretrain download: error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


def cmd_corpora(args: argparse.Namespace) -> int:
    from fmpretrain.corpora import CorpusError, corpus_files, list_corpora
    from fmpretrain.download import DownloadError

    if args.corpora_command == "list":
        rows = [("NAME", "FORMAT", "FILES", "SIZE", "PINNED", "LICENCE")]
        for entry in list_corpora():
            n_pinned = sum(f.pinned for f in entry.files)
            pinned = (
                "yes" if entry.pinned else f"{n_pinned}/{len(entry.files)}" if n_pinned else "no"
            )
            rows.append(
                (
                    entry.name,
                    entry.format,
                    str(len(entry.files)),
                    _human_bytes(entry.total_bytes, exact=all(f.size for f in entry.files)),
                    pinned,
                    entry.licence + (" [shipped]" if entry.shipped else ""),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
        return 0
    try:
        paths = corpus_files(args.name, args.cache, progress=False if args.no_progress else None)
    except (CorpusError, DownloadError) as err:
        print(f"fmpretrain corpora: error: {err}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


def _human_bytes(size: int | None, *, exact: bool = True) -> str:
    """``3.7 MB``; ``~12.0 GB`` for an approximate size; ``?`` when unknown."""
    if size is None:
        return "?"
    value, unit = float(size), "B"
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            break
        value /= 1000
    text = f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
    return text if exact else f"~{text}"


def finetune_config(args: argparse.Namespace) -> Any:
    """``finetune``/``benchmark``'s configuration (``--data FILE`` is ``data=FILE``); without a
    release, the from-scratch model it names must resolve."""
    from fmpretrain.finetune.trainer import load_finetune_config, resolve_model_config

    overrides = list(args.overrides)
    if args.data is not None:
        overrides.append(f"data={args.data}")
        if not any(o.split("=", 1)[0] == "task" for o in overrides):
            overrides.append("task=null")  # the dataset is named after the file
    cfg = load_finetune_config(args.config, overrides)
    if cfg.pretrained is None:
        resolve_model_config(cfg.model, dict(cfg.model_overrides))
    return cfg


def _finetune_config(args: argparse.Namespace) -> Any:
    """The fine-tuning configuration, once the extra modules it needs are known to be there."""
    from fmpretrain.extras import require_extra

    cfg = finetune_config(args)
    modules = ["wandb"] if cfg.wandb.mode != "disabled" else []
    if args.command == "benchmark":
        modules += ["matplotlib", *(["sklearn"] if cfg.baselines else [])]
    require_extra(args.command, "train", modules)
    return cfg


def cmd_finetune(args: argparse.Namespace) -> int:
    from fmpretrain.finetune.benchmark import run_finetune

    cfg = _finetune_config(args)
    report = run_finetune(cfg)
    for task in report["tasks"]:
        metric = task["metric"]
        for mode in ("pretrained", "scratch"):
            if task.get(mode):
                print(f"{task['task']} {mode}: test {metric} {task[mode]['mean']:.5g}")
        if task["improvement_pct"] is not None:
            print(f"{task['task']} improvement over scratch: {task['improvement_pct']:+.1f}%")
    print(f"wrote {Path(cfg.out) / 'finetune.json'} and the fine-tuned weights under {cfg.out}")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from fmpretrain.finetune.benchmark import run_benchmark

    cfg = _finetune_config(args)
    run_benchmark(cfg, releases=args.releases)
    out = Path(cfg.out)
    print((out / "results.md").read_text())
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'results.png'}")
    return 0


def cmd_descriptors(args: argparse.Namespace) -> int:
    from fmpretrain.descriptors import available_descriptors, get_descriptor

    for name in available_descriptors():
        d = get_descriptor(name)
        print(f"{name}: dim={d.dim} hash={d.hash}")
        for key, value in d.config()["params"].items():
            print(f"  {key} = {value}")
    return 0


def _generator(args: argparse.Namespace) -> Any:
    """The lazy stream of ``generate`` (its arguments are checked here, nothing is built)."""
    from fmpretrain.generate import generate_structures

    if args.n < 1:
        raise ValueError(f"n must be at least 1, got {args.n}")
    return generate_structures(args.n, seed=args.seed, max_atoms=args.max_atoms)


def generate_config(args: argparse.Namespace) -> dict[str, Any]:
    """``generate``'s settings, checked as the run checks them."""
    _generator(args)
    return options_config(args)


def cmd_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fmpretrain.io import write_structures

    structures = list(
        tqdm(
            _generator(args),
            total=args.n,
            desc="generate",
            unit=" structures",
            disable=None,
        )
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_structures(args.out, structures)
    atoms = sum(len(s) for s in structures)
    print(f"wrote {len(structures)} structures ({atoms} atoms) to {args.out}")
    return 0


def _load_model(args: argparse.Namespace):
    """The model and the structures of a ``predict``/``embed`` command (hub errors: one line)."""
    from fmpretrain.api import as_structures, load
    from fmpretrain.hub import HubError

    for path in args.files:
        if not path.exists():
            raise FileNotFoundError(f"no such file: {path}")
    try:
        model = load(args.model, device=args.device, max_atoms=args.max_atoms)
    except HubError as err:
        raise ValueError(str(err)) from err
    return model, as_structures(list(args.files))


def cmd_predict(args: argparse.Namespace) -> int:
    import csv

    model, structures = _load_model(args)
    predictions = model.predict(structures)
    target = model.target
    has_target = any(target in s.properties for s in structures)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "prediction"] + (["target"] if has_target else []))
        for s, value in zip(structures, predictions, strict=True):
            row = [s.id, value] + ([s.properties.get(target, "")] if has_target else [])
            writer.writerow(row)
    unit = f" ({model.unit})" if model.unit else ""
    print(f"wrote {len(structures)} predictions of {target}{unit} to {args.out}")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np

    model, structures = _load_model(args)
    embeddings = model.embed(structures, per_atom=args.per_atom)
    arrays = {"ids": np.asarray([s.id for s in structures], dtype=str)}
    if args.per_atom:
        arrays["embeddings"] = np.concatenate(embeddings).astype(np.float32)
        arrays["n_atoms"] = np.asarray([len(s) for s in structures], dtype=np.int64)
    else:
        arrays["embeddings"] = np.asarray(embeddings, dtype=np.float32)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as handle:  # the exact name (np.savez would add .npz)
        np.savez(handle, **arrays)
    shape = tuple(arrays["embeddings"].shape)
    print(f"wrote embeddings {shape} of {len(structures)} structures to {args.out}")
    return 0


def _version() -> str:
    from fmpretrain import __version__

    return f"fmpretrain {__version__}"


if __name__ == "__main__":
    raise SystemExit(main())
