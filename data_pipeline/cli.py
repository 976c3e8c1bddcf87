"""Command-line arguments of the featurization job (shared by both entry points)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from fmpretrain.config import add_config_arguments

if TYPE_CHECKING:
    from data_pipeline.config import FeaturizeConfig

DESCRIPTION = (
    "Featurize structures into WebDataset shards with Ray actors. The configuration is an "
    "OmegaConf YAML (configs/featurize/*.yaml) with key=value overrides, e.g. "
    "`descriptor=wacsf source.n=200 out=DIR workers=2`. Re-running the same command resumes: "
    "finished shards are verified and kept. Under `ray job submit` (RAY_ADDRESS set) the job "
    "joins that cluster; otherwise it starts a local one."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "featurize", "source.n=200 out=DIR workers=2")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="discard an existing output made with another configuration",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def featurize_config(args: argparse.Namespace) -> FeaturizeConfig:
    """The checked configuration of a featurize command line (``--overwrite``: overwrite=true)."""
    from data_pipeline.config import load_config

    overrides = list(args.overrides) + (["overwrite=true"] if args.overwrite else [])
    return load_config(args.config, overrides)


def run(args: argparse.Namespace) -> int:
    from data_pipeline.driver import summary
    from data_pipeline.stage import FeaturizeStage

    cfg = featurize_config(args)
    result = FeaturizeStage(cfg, progress=not args.no_progress).run()
    print(summary(result))
    return 0 if result.manifest.complete else 1
