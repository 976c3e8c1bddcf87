"""Held-out fingerprint R² of a pre-trained release, per source of a multi-source corpus.

The validation shards of a pre-training run (``val_shards`` held out, spread over the shard
order by :func:`fmpretrain.data.shard_list.split_shards`) are grouped by the source label the
manifest records for each shard (e.g. ``perov_5-test``, ``carbon_24-test``, ``generated``);
for each group the release's fingerprint head is run through :func:`fmpretrain.load` and
scored per feature: R² = 1 - SS_res / SS_tot over the group's atoms (features with no
variance in the group are skipped), reported as the median and mean over features, plus the
MAE divided by the feature's std in the training corpus (the manifest's).

    python benchmarks/heldout_r2.py runs/foundation/release runs/foundation/shards --val-shards 6
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np


def heldout_r2(release: str, shards: str, val_shards: int) -> dict[str, dict[str, float]]:
    """``{source: {atoms, structures, r2_median, r2_mean, mae_over_std}}`` on held-out shards."""
    import fmpretrain
    from fmpretrain.data.format import read_shard
    from fmpretrain.data.manifest import Manifest
    from fmpretrain.data.shard_list import split_shards
    from fmpretrain.structures import Structure

    manifest = Manifest.load(shards)
    ordered = sorted(manifest.shards, key=lambda s: s.index)
    held_out = split_shards(ordered, val_shards, "val")
    std = manifest.statistics().std
    model = fmpretrain.load(release)
    groups: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for entry in held_out:
        samples = list(read_shard(Path(shards) / entry.name))
        structures = [Structure(s.numbers, s.positions, s.cell, s.pbc, id=s.key) for s in samples]
        predicted = model.fingerprint(structures)
        truth, pred = groups.setdefault(entry.source or "all", ([], []))
        truth.extend(s.fingerprint.astype(np.float64) for s in samples)
        pred.extend(np.asarray(p, dtype=np.float64) for p in predicted)
    report = {}
    for label, (truth, pred) in groups.items():
        y, p = np.concatenate(truth), np.concatenate(pred)
        ss_tot = ((y - y.mean(0)) ** 2).sum(0)
        ss_res = ((y - p) ** 2).sum(0)
        keep = ss_tot > 1e-12 * max(1.0, float(ss_tot.max()))
        r2 = 1.0 - ss_res[keep] / ss_tot[keep]
        report[label] = {
            "structures": len(truth),
            "atoms": len(y),
            "r2_median": float(np.median(r2)),
            "r2_mean": float(r2.mean()),
            "mae_over_std": float((np.abs(y - p).mean(0) / np.maximum(std, 1e-12)).mean()),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("release", help="release directory, registry name or URL")
    parser.add_argument("shards", help="the shard directory the release was pre-trained on")
    parser.add_argument("--val-shards", type=int, required=True, help="as in the pre-training")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    report = heldout_r2(args.release, args.shards, args.val_shards)
    print(f"held-out fingerprint fit of {args.release} (load {os.getloadavg()[0]:.1f})")
    print("| source | structures | atoms | median R² | mean R² | MAE/std |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, r in report.items():
        print(
            f"| {label} | {r['structures']} | {r['atoms']} | {r['r2_median']:.3f} | "
            f"{r['r2_mean']:.3f} | {r['mae_over_std']:.3f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
