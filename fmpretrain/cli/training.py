"""Pre-training commands: pretrain, export, publish."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def pretrain_config(args: argparse.Namespace) -> Any:
    """``pretrain``'s configuration with the ``--deepspeed-config`` entries merged in; the
    model it names must resolve (a wrong name fails here, not after the launcher started)."""
    from omegaconf import OmegaConf

    from fmpretrain.config import deep_merge, load_yaml, named_config
    from fmpretrain.train.config import load_pretrain_config

    cfg = load_pretrain_config(args.config, args.overrides)
    if args.deepspeed_config:
        path = named_config("deepspeed", args.deepspeed_config)
        extra = OmegaConf.to_container(load_yaml(path), resolve=True)
        cfg.deepspeed = deep_merge(cfg.deepspeed, extra)  # type: ignore[arg-type]
    return cfg


def cmd_pretrain(args: argparse.Namespace) -> int:
    from fmpretrain.extras import require_extra

    cfg = pretrain_config(args)
    wandb = ["wandb"] if cfg.wandb.mode != "disabled" else []
    require_extra("pretrain", "train", ["deepspeed", "webdataset", *wandb])
    from fmpretrain.train.stages import PretrainStage
    from fmpretrain.train.trainer import describe_validation

    result = PretrainStage(cfg, progress=not args.no_progress).run()
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
    from fmpretrain.train.stages import ExportStage

    out = ExportStage(args.checkpoint, args.out, results=args.results).run()
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
    from fmpretrain.hub import HubError, hf
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
