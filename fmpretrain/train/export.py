"""Release export: a DeepSpeed checkpoint -> ``model.safetensors`` + ``config.yaml`` + sha256.

The release is what fine-tuning and the hub load: consolidated fp32 weights (whatever the
ZeRO stage), the model configuration, the descriptor it was pre-trained on and the target
normalization. No pickle leaves the training run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from fmpretrain.data.format import sha256_file
from fmpretrain.train.trainer import CHECKPOINTS, RUN_FILE

RELEASE_FORMAT = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
CHECKSUMS = "SHA256SUMS"


def find_checkpoint(path: str | Path) -> tuple[Path, str, Path]:
    """``(checkpoint dir, tag, run dir)`` from a run dir, its ``checkpoints/`` or one tag dir."""
    path = Path(path)
    if (path / CHECKPOINTS / "latest").exists():
        path = path / CHECKPOINTS
    if (path / "latest").exists():
        tag = (path / "latest").read_text().strip()
        return path, tag, path.parent
    if path.is_dir() and (path.parent / "latest").exists():
        return path.parent, path.name, path.parent.parent
    raise FileNotFoundError(
        f"{path} is not a pre-training run, its checkpoints/ folder or a checkpoint tag folder"
    )


def consolidated_state_dict(ckpt_dir: Path, tag: str) -> dict[str, torch.Tensor]:
    """fp32 weights from a ZeRO 0/1/2/3 checkpoint (the run's own, trusted files)."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    tag_dir = ckpt_dir / tag
    if not tag_dir.is_dir():
        raise FileNotFoundError(f"no checkpoint {tag!r} in {ckpt_dir}")
    if list(tag_dir.glob("*optim_states.pt")):  # ZeRO 1/2/3: fp32 master weights
        state = get_fp32_state_dict_from_zero_checkpoint(str(ckpt_dir), tag=tag)
    else:  # no ZeRO: the module's weights are stored whole
        blob = torch.load(
            tag_dir / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False
        )
        state = blob["module"]
    return {k: v.detach().float().contiguous().clone() for k, v in state.items()}


def export_release(checkpoint: str | Path, out: str | Path) -> Path:
    """Write ``out/model.safetensors``, ``out/config.yaml`` and ``out/SHA256SUMS``."""
    from safetensors.torch import save_file

    ckpt_dir, tag, run_dir = find_checkpoint(checkpoint)
    run_file = run_dir / RUN_FILE
    if not run_file.exists():
        raise FileNotFoundError(f"{run_file} is missing: cannot tell which model this is")
    run = yaml.safe_load(run_file.read_text())
    state = consolidated_state_dict(ckpt_dir, tag)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / WEIGHTS), metadata={"format": "fmpretrain", "tag": tag})
    config: dict[str, Any] = {
        "format_version": RELEASE_FORMAT,
        "kind": "fingerprint-pretrained",
        "model": run["model"],
        "descriptor": run["descriptor"],
        "normalization": run["normalization"],
        "training": {
            "checkpoint": tag,
            "data": run.get("data", {}),
            "pretrain": run.get("pretrain", {}),
        },
    }
    (out / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    lines = [f"{sha256_file(out / name)}  {name}" for name in (WEIGHTS, CONFIG)]
    (out / CHECKSUMS).write_text("\n".join(lines) + "\n")
    return out
