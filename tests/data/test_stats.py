"""Mergeable moments: any split of the rows gives the statistics of the whole."""

from __future__ import annotations

import numpy as np

from fmpretrain.data.stats import RunningMoments


def test_merge_equals_whole_for_any_split():
    rng = np.random.default_rng(0)
    rows = rng.normal(loc=3.0, scale=[1.0, 1e3, 1e-3], size=(1000, 3))
    whole = RunningMoments(3)
    whole.update(rows)
    np.testing.assert_allclose(whole.mean, rows.mean(0), rtol=1e-12)
    np.testing.assert_allclose(whole.std, rows.std(0), rtol=1e-10)
    for cuts in ([500], [1, 2, 999], [10, 300, 301, 700]):
        parts = np.split(rows, cuts)
        merged = RunningMoments(3)
        for part in parts:
            m = RunningMoments(3)
            m.update(part)
            merged.merge(m)
        assert merged.count == 1000
        np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-12)
        np.testing.assert_allclose(merged.std, whole.std, rtol=1e-10)
        np.testing.assert_array_equal(merged.minimum, rows.min(0))
        np.testing.assert_array_equal(merged.maximum, rows.max(0))


def test_round_trip_and_empty():
    m = RunningMoments(2)
    assert m.to_dict()["count"] == 0
    assert RunningMoments.from_dict(m.to_dict()).count == 0
    m.update(np.array([[1.0, 2.0], [3.0, 5.0]]))
    back = RunningMoments.from_dict(m.to_dict())
    np.testing.assert_array_equal(back.mean, m.mean)
    np.testing.assert_array_equal(back.m2, m.m2)
    m.merge(RunningMoments(2))  # merging nothing changes nothing
    assert m.count == 2
