"""The hub's error types."""

from __future__ import annotations


class HubError(RuntimeError):
    """A release could not be found, downloaded, extracted or verified."""


class ChecksumError(HubError):
    """Bytes on disk or on the wire differ from the recorded sha256 or size."""


class UnsafeArchiveError(HubError):
    """A release archive holds a member that could escape, or is not a plain file."""


class Transient(Exception):
    """A download attempt failed in a way that a retry (resuming) may fix."""
