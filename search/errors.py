"""Errors of the search layer: each message names the problem and the fix, never a traceback."""

from __future__ import annotations

__all__ = ["CheckpointError", "SearchError", "SpecError", "StorageError"]


class SearchError(Exception):
    """Base class: a search cannot go on; the message says why and what to do."""


class SpecError(SearchError, ValueError):
    """A study spec is invalid; the message names the key (``space.bits.vmem.int``) and the fix."""


class StorageError(SearchError):
    """An Optuna storage URL cannot be opened or used."""

    def __init__(self, message: str, disk_full: bool = False) -> None:
        super().__init__(message)
        self.disk_full = disk_full
        """The cause is a full disk (nothing the storage holds is lost)."""


class CheckpointError(SearchError):
    """A trial checkpoint cannot be read or does not belong to the trials that want it."""
