from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def shards(ead_shards):
    return ead_shards
