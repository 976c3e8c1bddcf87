"""Tiny releases for the API and release-format tests, written through the release contract.

The pre-trained one has the layout ``fmpretrain export`` writes (no DeepSpeed run needed); the
fine-tuned one is written by :func:`fmpretrain.release_format.write_finetuned_release`, as the
benchmark writes it. Weights are random but seeded, with non-zero head biases so that outputs
are far from zero and scaling mistakes show.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from fmpretrain import release_format as rf
from fmpretrain.generate import generate_structures
from fmpretrain.models import ModelConfig, build_fingerprint_model, build_property_model
from fmpretrain.structures import Structure

TINY = ModelConfig(hidden_channels=16, num_layers=1, num_rbf=8, num_heads=2, cutoff=4.0)
DIM = 4
#: Fingerprint statistics: one constant feature (std below min_std is replaced by 1).
NORMALIZATION = {"mean": [1.5, -2.0, 10.0, 0.25], "std": [0.5, 3.0, 1e-12, 2.0], "min_std": 1e-8}
DESCRIPTOR = {"name": "ead", "params": {"cutoff": 4.0}, "hash": "0123456789abcdef", "dim": DIM}
TRAINING = {
    "checkpoint": "step00000007",
    "steps": 7,
    "data": {"path": "shards/ead-tiny", "n_samples": 120, "shards": 12},
    "heldout_r2_median": 0.8125,
}


def _randomize(module: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.startswith("head.") and name.endswith("bias"):
                param.copy_(torch.randn(param.shape, generator=gen))


def write_pretrained(out: Path, seed: int = 0) -> Path:
    """A pre-trained release (backbone + fingerprint head) with README, config and SHA256SUMS."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = build_fingerprint_model(TINY, out_dim=DIM)
    _randomize(model, seed)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / rf.WEIGHTS))
    config = {
        "format_version": rf.FORMAT_VERSION,
        "kind": rf.KIND_PRETRAINED,
        "model": TINY.to_dict(),
        "descriptor": DESCRIPTOR,
        "normalization": NORMALIZATION,
        "training": TRAINING,
    }
    (out / rf.CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    rf.write_model_card(out, config)
    rf.write_checksums(out, [rf.WEIGHTS, rf.CONFIG, rf.MODEL_CARD])
    return out


def write_finetuned(
    out: Path,
    base: Path,
    *,
    pooling: str = "mean",
    scaling: dict | None = None,
    task_type: str = "regression",
    classes: list | None = None,
    seed: int = 1,
) -> Path:
    """A fine-tuned release: the base's backbone + a property head, target scaling in config."""
    from safetensors.torch import load_file

    out_dim = len(classes) if task_type == "classification" else 1
    torch.manual_seed(seed)
    model = build_property_model(TINY, out_dim=out_dim, pooling=pooling)
    state = load_file(str(base / rf.WEIGHTS))
    backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    model.backbone.load_state_dict(backbone)
    _randomize(model, seed)
    base_config = rf.read_config(base)
    scaling = scaling or {"mean": -3.25, "std": 0.75, "per_atom": pooling == "sum"}
    config = rf.finetuned_config(
        model=TINY.to_dict(),
        task={
            "name": "tiny_task",
            "target": "energy_per_atom" if task_type == "regression" else "is_metal",
            "unit": "eV/atom" if task_type == "regression" else "",
            "task_type": task_type,
            "pooling": pooling,
        },
        out_dim=out_dim,
        target_scaling=scaling if task_type == "regression" else None,
        classes=classes,
        base={**base_config, "summary": {"path": str(base)}},
        results={"test": {"mae": 0.123}},
    )
    return rf.write_finetuned_release(out, model.state_dict(), config)


def tiny_structures(n: int = 4, seed: int = 0) -> list[Structure]:
    """Small generated crystals (up to 6 atoms), each with an ``energy_per_atom`` property."""
    structures = list(generate_structures(n, seed=seed, max_atoms=6))
    for k, s in enumerate(structures):
        s.properties = {"energy_per_atom": -1.0 - 0.5 * k}
    return structures


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
