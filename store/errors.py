"""Typed store errors. Callers map them to HTTP (503, 404, 409) in one place each."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error the store raises."""


class StoreUnavailable(StoreError):
    """etcd could not be reached or did not answer in time; the operation may be retried."""


class NotFound(StoreError):
    """The object asked for does not exist."""


class InvalidSegment(StoreError, ValueError):
    """A value cannot be used as an etcd key segment (empty, `/`, `..`, control chars, too long)."""


class Conflict(StoreError):
    """An optimistic update lost its race too many times."""
