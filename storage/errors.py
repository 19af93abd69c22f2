"""The errors every store raises; callers translate them in one place.

A backend never lets an SDK or OS exception escape from a contract method: it maps it to one of
these so that the server can answer the same way whatever the backend.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every store error; `key` names the object or upload target concerned."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class InvalidKey(StoreError):
    """A key that could escape the store's namespace or is malformed (`..`, absolute, NUL, ...)."""


class NotFound(StoreError):
    """No object or upload target under this key."""


class AlreadyExists(StoreError):
    """A finished object already holds this key; originals are never overwritten."""


class OffsetMismatch(StoreError):
    """An append started at an offset other than the target's durable offset."""

    def __init__(self, message: str, *, key: str | None = None, expected: int, got: int) -> None:
        super().__init__(message, key=key)
        self.expected = expected
        self.got = got


class InvalidRange(StoreError):
    """A byte range that does not lie within the object."""


class StoreUnavailable(StoreError):
    """The backend cannot be reached or refused the credentials; the operation may be retried."""


class StoreFull(StoreError):
    """The backend has no room left (disk full, quota); nothing partial was kept."""


class ObjectLocked(StoreError):
    """The object is under retention or legal hold and cannot be deleted yet."""


class Tampered(StoreError):
    """Stored bytes failed authentication (altered, moved, reordered or cut): never served."""


class KeysUnavailable(StoreUnavailable):
    """The key-encryption key a sealed object needs cannot be used now (key file missing, HSM
    unreachable) or its data key is gone; nothing was written or served."""
