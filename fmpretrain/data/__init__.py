"""Shards on disk: the sample format, running statistics, the manifest, and (later) loading."""
