"""Release export: a DeepSpeed checkpoint -> a release (see :mod:`fmpretrain.release_format`).

The release is what fine-tuning, the hub and :func:`fmpretrain.load` read: consolidated fp32
weights (whatever the ZeRO stage), ``config.yaml`` (model, descriptor, normalization,
provenance, the pre-training corpus, steps and held-out fingerprint R²), the model card
``README.md`` and ``SHA256SUMS``. No pickle leaves the training run.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from fmpretrain.release_format import (
    CHECKSUMS,
    CONFIG,
    FORMAT_VERSION,
    KIND_PRETRAINED,
    MODEL_CARD,
    WEIGHTS,
    check_config,
    provenance,
    verify_release,
    write_checksums,
    write_model_card,
)
from fmpretrain.train.logging import log_release_artifact
from fmpretrain.train.trainer import CHECKPOINTS, RUN_FILE

__all__ = ["CHECKSUMS", "CONFIG", "RELEASE_FORMAT", "WEIGHTS", "export_release", "find_checkpoint"]

logger = logging.getLogger(__name__)

RELEASE_FORMAT = FORMAT_VERSION  # the name this module always exported


def find_checkpoint(path: str | Path) -> tuple[Path, str, Path]:
    """``(checkpoint dir, tag, run dir)`` from a run dir, its ``checkpoints/`` or one tag dir,
    verified against its ``SHA256SUMS``.

    For a run dir or ``checkpoints/`` the tag is the newest intact one (resume's choice), with
    a warning for each newer one skipped and why; a damaged tag dir is refused
    (:class:`~fmpretrain.train.checkpoints.CheckpointCorruptError`, naming the intact ones).
    """
    from fmpretrain.train.checkpoints import choose_checkpoint

    path = Path(path)
    if (path / CHECKPOINTS / "latest").exists():
        path = path / CHECKPOINTS
    if (path / "latest").exists():
        tag = choose_checkpoint(
            path, purpose="exporting", remedy="restore the files or export another run"
        )
        if tag is None:
            raise FileNotFoundError(f"{path} holds no checkpoint folder: nothing to export")
        return path, tag, path.parent
    if path.is_dir() and (path.parent / "latest").exists():
        _check_intact(path.parent, path.name)
        return path.parent, path.name, path.parent.parent
    raise FileNotFoundError(
        f"{path} is not a pre-training run, its checkpoints/ folder or a checkpoint tag folder"
    )


def _check_intact(ckpt_dir: Path, tag: str) -> None:
    """Refuse a damaged tag in one line that lists the intact ones to export instead."""
    from fmpretrain.train.checkpoints import (
        CheckpointCorruptError,
        checkpoint_problem,
        intact_checkpoints,
    )

    tag_dir = ckpt_dir / tag
    if not tag_dir.is_dir():
        raise FileNotFoundError(f"no checkpoint {tag!r} in {ckpt_dir}")
    problem = checkpoint_problem(tag_dir)
    if problem is not None:
        intact = intact_checkpoints(ckpt_dir)
        instead = (
            f"export an intact one ({', '.join(intact)}) or the run folder (the newest intact)"
            if intact
            else f"no checkpoint in {ckpt_dir} is intact: restore the files"
        )
        raise CheckpointCorruptError(f"checkpoint {tag_dir} is damaged: {problem}; {instead}")


def consolidated_state_dict(
    ckpt_dir: Path, tag: str, *, verify: bool = True
) -> dict[str, torch.Tensor]:
    """fp32 weights from a ZeRO 0/1/2/3 checkpoint, verified against its ``SHA256SUMS``
    (``verify=False``: the caller just did) and read with ``weights_only=True`` and the
    checkpoint allow-list."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    from fmpretrain.train.checkpoints import deepspeed_loads_safely, safe_load

    tag_dir = ckpt_dir / tag
    if verify:
        _check_intact(ckpt_dir, tag)
    if list(tag_dir.glob("*optim_states.pt")):  # ZeRO 1/2/3: fp32 master weights
        with deepspeed_loads_safely():
            state = get_fp32_state_dict_from_zero_checkpoint(str(ckpt_dir), tag=tag)
    else:  # no ZeRO: the module's weights are stored whole
        blob = safe_load(tag_dir / "mp_rank_00_model_states.pt", map_location="cpu")
        state = blob["module"]
    return {k: v.detach().float().contiguous().clone() for k, v in state.items()}


def _step(tag: str) -> int | None:
    match = re.search(r"(\d+)$", tag)
    return int(match.group(1)) if match else None


def heldout_metrics(run_dir: Path, step: int | None) -> dict[str, float]:
    """The last validation record at or before ``step`` in the run's ``metrics.jsonl``."""
    path = run_dir / "metrics.jsonl"
    found: dict[str, float] = {}
    if not path.is_file():
        return found
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "val/r2_median" not in record:
            continue
        if step is not None and int(record.get("step", 0)) > step:
            continue
        found = {
            "heldout_r2_median": record["val/r2_median"],
            "heldout_r2_mean": record.get("val/r2_mean"),
            "heldout_mae_normalized": record.get("val/mae_normalized_mean"),
            "heldout_step": record.get("step"),
        }
    return {
        k: float(v)
        for k, v in found.items()
        if isinstance(v, (int, float)) and not math.isnan(float(v))
    }


def export_release(
    checkpoint: str | Path,
    out: str | Path,
    *,
    results: Mapping[str, Any] | str | Path | None = None,
) -> Path:
    """Write the release of a checkpoint into ``out``; return ``out``.

    ``checkpoint``: a run dir or its ``checkpoints/`` (the newest intact checkpoint) or one
    checkpoint tag dir (refused if damaged); see :func:`find_checkpoint`.
    ``results``: downstream results for the model card (a mapping, or a benchmark
    ``results.json`` whose per-task summaries are used).
    """
    from safetensors.torch import save_file

    ckpt_dir, tag, run_dir = find_checkpoint(checkpoint)
    run_file = run_dir / RUN_FILE
    if not run_file.exists():
        raise FileNotFoundError(f"{run_file} is missing: cannot tell which model this is")
    run = yaml.safe_load(run_file.read_text())
    state = consolidated_state_dict(ckpt_dir, tag, verify=False)  # find_checkpoint verified it
    step = _step(tag)
    config: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "kind": KIND_PRETRAINED,
        "model": run["model"],
        "descriptor": run["descriptor"],
        "normalization": run["normalization"],
        "training": {
            "checkpoint": tag,
            "steps": step,
            "data": _corpus(run.get("data", {})),
            **heldout_metrics(run_dir, step),
            "pretrain": run.get("pretrain", {}),
        },
        "provenance": provenance(source=str(ckpt_dir / tag)),
    }
    check_config(config, out)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / WEIGHTS), metadata={"format": "fmpretrain", "tag": tag})
    (out / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    write_model_card(out, config, results=_results(results))
    write_checksums(out, [WEIGHTS, CONFIG, MODEL_CARD])
    verify_release(out)
    logger.info("exported %s (%s) to %s", ckpt_dir / tag, config["training"], out)
    wandb_settings = (run.get("pretrain") or {}).get("wandb") or {}
    artifact = log_release_artifact(run_dir, out, wandb_settings, config["training"])
    if artifact:
        logger.info("logged the release as W&B model artifact %s of the pre-training run", artifact)
    return out


def _corpus(data: Mapping[str, Any]) -> dict[str, Any]:
    """The run's data record plus, when its shards are still there, the manifest's counts per
    source (what the model card says the model was trained on)."""
    from fmpretrain.data.manifest import Manifest

    data = dict(data)
    path = Path(str(data.get("path", "")))
    if data.get("path") and (path / "manifest.json").is_file():
        try:
            manifest = Manifest.load(path)
        except Exception as err:  # a damaged manifest must not block an export
            logger.warning("not recording the corpus counts: %s", err)
        else:
            data["atoms"] = sum(s.n_atoms for s in manifest.shards)
            data["sources"] = manifest.source_counts()
    return data


def _results(results: Mapping[str, Any] | str | Path | None) -> dict[str, Any] | None:
    if results is None or isinstance(results, Mapping):
        return dict(results) if results is not None else None
    doc = json.loads(Path(results).read_text())
    summary = {}
    for task in doc.get("tasks", []):
        entry = {k: task.get(k) for k in ("metric", "unit", "improvement_pct")}
        for mode in ("pretrained", "scratch"):
            entry[mode] = (task.get(mode) or {}).get("mean")
        summary[task["task"]] = entry
    return summary
