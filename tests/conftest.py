"""Shared fixtures: real EAD shards from the featurization pipeline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
DEMO = REPO / "configs" / "featurize" / "demo.yaml"
#: Fixtures that start the real pipeline on a local Ray cluster: a test using one is ``slow``.
CLUSTER_FIXTURES = {"ead_shards", "shard_copy"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that need a Ray cluster (through their fixtures) as ``slow``, so that
    ``pytest -m "not slow"`` runs the library's unit tests alone."""
    for item in items:
        if CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def ead_shards(tmp_path_factory) -> Path:
    """120 generated structures (up to 16 atoms) featurized with EAD into 12 shards of 10, via
    the real pipeline on a local Ray (about 10 s, once per session). Treat it as read-only:
    tests that damage shards use :func:`shard_copy`."""
    from data_pipeline.config import load_config
    from data_pipeline.driver import run_featurize

    out = tmp_path_factory.mktemp("ead-shards")
    cfg = load_config(
        DEMO,
        [
            f"out={out}",
            "descriptor=ead",
            "source.n=120",
            "source.max_atoms=16",
            "chunk_size=10",
            "workers=1",
        ],
    )
    result = run_featurize(cfg, progress=False)
    assert result.manifest.complete and len(result.manifest.shards) == 12
    return out


@pytest.fixture
def shard_copy(ead_shards, tmp_path) -> Path:
    """A private copy of :func:`ead_shards` that a test may damage."""
    out = tmp_path / "shards"
    shutil.copytree(ead_shards, out)
    return out
