"""The ``fmpretrain`` argument parser: the sub-commands, ``--print-config`` and the
``KEY=VALUE`` overrides that may follow options."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fmpretrain.cli.common import options_config
from fmpretrain.cli.data import (
    cmd_corpora,
    cmd_descriptors,
    cmd_download,
    cmd_featurize,
    cmd_fingerprint,
    cmd_generate,
    cmd_shards_verify,
    fingerprint_config,
    generate_config,
)
from fmpretrain.cli.evaluation import (
    cmd_benchmark,
    cmd_demo,
    cmd_embed,
    cmd_finetune,
    cmd_predict,
    demo_config,
    finetune_config,
)
from fmpretrain.cli.training import cmd_export, cmd_pretrain, cmd_publish, pretrain_config
from fmpretrain.config import add_config_arguments

__all__ = ["add_print_config", "build_parser", "parse_args"]

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


PRINT_CONFIG_HELP = (
    "check the command line and the configuration as a run does, print the resolved "
    "configuration as YAML and exit without running anything"
)


FINETUNE_OVERRIDES_EXAMPLE = (
    "pretrained=RELEASE_DIR out=DIR task=matbench_jdft2d folds=[0,1] max_epochs=50 "
    "freeze_backbone=true layer_decay=0.8 device=cuda"
)


class _Parser(argparse.ArgumentParser):
    """A sub-command parser whose ``--help`` ends with every configuration key of its config
    dataclass (``config_class = "module:Class"``, imported only when help is asked for)."""

    config_class: str | None = None

    def format_help(self) -> str:
        if self.config_class and self.epilog is None:
            import importlib

            from fmpretrain.config import config_help

            module, name = self.config_class.split(":")
            self.epilog = config_help(getattr(importlib.import_module(module), name))
            self.formatter_class = _KeysFormatter
        return super().format_help()


class _KeysFormatter(argparse.HelpFormatter):
    """Wraps the description as usual, prints the key list line by line."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("configuration keys"):
            return text
        return super()._fill_text(text, width, indent)


#: The config dataclass behind each configured sub-command.
CONFIG_CLASSES = {
    "featurize": "data_pipeline.config:FeaturizeConfig",
    "pretrain": "fmpretrain.train.config:PretrainConfig",
    "finetune": "fmpretrain.finetune.config:FinetuneConfig",
    "benchmark": "fmpretrain.finetune.config:FinetuneConfig",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fmpretrain",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

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
        choices=["wacsf", "gmp", "ead", "concat"],
        help="fingerprint to pre-train on (default ead, the shipped foundation's; concat: all "
        "three side by side)",
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
        "--descriptor", "-d", default="wacsf", help="wacsf, gmp, ead or concat (default: wacsf)"
    )
    add_config_arguments(
        fp,
        "descriptors",
        "cutoff=5.0 zeta=[1,2,4] (see `fmpretrain descriptors` for the parameters)",
        config_help="YAML of descriptor parameters, e.g. configs/descriptors/wacsf.yaml",
    )
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
    add_config_arguments(pre, "pretrain", "data=DIR out=DIR max_steps=500 model=base")
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
    add_config_arguments(ft, "finetune", FINETUNE_OVERRIDES_EXAMPLE)
    ft.add_argument("--data", help="local dataset (MatBench JSON(.gz), MatDeepLearn JSON, folder)")
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
    add_config_arguments(bench, "finetune", FINETUNE_OVERRIDES_EXAMPLE)
    bench.add_argument(
        "--data", help="local dataset (MatBench JSON(.gz), MatDeepLearn JSON, folder + CSV)"
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
    for command, config_class in CONFIG_CLASSES.items():
        sub.choices[command].config_class = config_class  # type: ignore[attr-defined]
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


def _version() -> str:
    from fmpretrain import __version__

    return f"fmpretrain {__version__}"
