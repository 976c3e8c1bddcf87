"""Target scalings: zscore / minmax from the manifest, robust / log from the training shards."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fmpretrain.data.loader import sample_fingerprints
from fmpretrain.data.manifest import Manifest
from fmpretrain.data.scaling import SCALINGS, Normalizer, fit_normalizer
from fmpretrain.data.shard_list import split_shards


@pytest.fixture(scope="module")
def training_rows(ead_shards) -> np.ndarray:
    return np.concatenate(list(sample_fingerprints(ead_shards, val_shards=2, max_atoms=10**9)))


def test_sample_reads_whole_training_shards_only(ead_shards):
    manifest = Manifest.load(ead_shards)
    shards = sorted(manifest.shards, key=lambda s: s.index)
    train = split_shards(shards, 2, "train")
    every = list(sample_fingerprints(ead_shards, val_shards=2, max_atoms=10**9))
    assert len(every) == sum(s.n_samples for s in train)
    assert sum(len(f) for f in every) == sum(s.n_atoms for s in train)
    few = list(sample_fingerprints(ead_shards, val_shards=2, max_atoms=30))
    atoms = sum(len(f) for f in few)
    assert 30 <= atoms < sum(s.n_atoms for s in train)  # stops after the shard that reached it


def test_zscore_and_minmax_come_from_the_manifest(ead_shards):
    manifest = Manifest.load(ead_shards)
    stats = manifest.statistics()
    z = fit_normalizer("zscore", manifest)
    np.testing.assert_allclose(z.mean.numpy(), stats.mean, rtol=1e-6)
    m = fit_normalizer("minmax", manifest)
    columns = stats.maximum > stats.minimum
    every = np.concatenate(list(sample_fingerprints(ead_shards, split="all", max_atoms=10**9)))
    y = m.normalize_numpy(every)
    np.testing.assert_allclose(y.min(0)[columns], 0.0, atol=1e-6)
    np.testing.assert_allclose(y.max(0)[columns], 1.0, atol=1e-6)


def test_robust_centres_on_the_median_with_unit_iqr(ead_shards, training_rows):
    norm = fit_normalizer("robust", Manifest.load(ead_shards), [training_rows])
    y = norm.normalize_numpy(training_rows).astype(np.float64)
    iqr = np.subtract(*np.percentile(training_rows, [75, 25], axis=0))
    spread = iqr > 1e-6  # below min_std the std is the scale
    assert spread.sum() > 10
    np.testing.assert_allclose(np.median(y, axis=0)[spread], 0.0, atol=1e-5)
    q25, q75 = np.percentile(y, [25, 75], axis=0)
    np.testing.assert_allclose((q75 - q25)[spread], 1.0, rtol=1e-5)


def test_robust_falls_back_to_the_std_where_the_iqr_is_zero():
    rows = np.zeros((100, 2))
    rows[:, 0] = np.arange(100.0)
    rows[95:, 1] = [5.0, 6.0, 7.0, 8.0, 9.0]  # mostly zero: IQR 0, std > 0
    norm = fit_normalizer("robust", None, [rows])
    assert norm.std[0] == pytest.approx(np.subtract(*np.percentile(rows[:, 0], [75, 25])))
    assert norm.std[1] == pytest.approx(rows[:, 1].std())


def test_log_round_trips_heavy_tails_and_standardizes(ead_shards, training_rows):
    norm = fit_normalizer("log", Manifest.load(ead_shards), [training_rows])
    y = norm.normalize_numpy(training_rows).astype(np.float64)
    varying = training_rows.std(0) > 0
    np.testing.assert_allclose(y.mean(0)[varying], 0.0, atol=1e-4)
    np.testing.assert_allclose(y.std(0)[varying], 1.0, rtol=1e-4)
    x = np.array([[-1e4, -0.5, 0.0, 3.0, 2e5]]).T @ np.ones((1, norm.dim))
    back = norm.denormalize(norm.normalize(torch.from_numpy(x)))
    torch.testing.assert_close(back, torch.from_numpy(x), rtol=1e-10, atol=1e-10)
    y32 = norm.normalize_numpy(x)  # float32 targets: the round trip keeps ~float32 precision
    np.testing.assert_allclose(norm.denormalize_numpy(y32), x, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("scaling", SCALINGS)
def test_every_scaling_survives_the_release_record(ead_shards, training_rows, scaling):
    norm = fit_normalizer(scaling, Manifest.load(ead_shards), [training_rows])
    back = Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert back.scaling == scaling
    x = torch.from_numpy(training_rows[:7])
    torch.testing.assert_close(back.normalize(x), norm.normalize(x))


def test_older_records_are_zscore_and_unknown_scalings_are_refused():
    assert Normalizer.from_dict({"mean": [0.0], "std": [1.0]}).scaling == "zscore"
    with pytest.raises(ValueError, match="target_scaling='quantile'"):
        Normalizer([0.0], [1.0], scaling="quantile")
    with pytest.raises(ValueError, match="needs fingerprints of at least 2 atoms"):
        fit_normalizer("robust", None, [np.zeros((1, 3))])
