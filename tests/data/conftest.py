"""The data tests' shard fixtures (``ead_shards``, ``shard_copy``) live in ``tests/conftest.py``,
shared with the training tests so that the shards are featurized once per session."""
