"""The failures storage reports, in its own types: no driver exception is named above storage/.

Every repository method translates what the driver raises (``Repository`` wraps them all), so
the layers above tell an unreachable or failing database apart without knowing which driver,
or which MongoDB-compatible server, is underneath.
"""

from __future__ import annotations

from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

# Driver errors repositories may catch themselves (a duplicate _id is how a key stays unique).
__all__ = ["DuplicateKeyError", "OrderedInsertStopped", "StorageError", "translated"]

DUPLICATE_KEY_CODE = 11000


class StorageError(Exception):
    """The database failed or could not be reached: the operation may or may not have happened."""


class OrderedInsertStopped(StorageError):
    """An ordered insert stopped part way: the first ``inserted`` documents are stored; the next
    one was refused because its ``_id`` exists (``duplicate``) or for another reason."""

    def __init__(self, message: str, inserted: int, duplicate: bool) -> None:
        super().__init__(message)
        self.inserted = inserted
        self.duplicate = duplicate


def translated(error: PyMongoError) -> StorageError:
    if isinstance(error, BulkWriteError):
        details = error.details or {}
        first = (details.get("writeErrors") or [{}])[0]
        return OrderedInsertStopped(
            first.get("errmsg") or str(error), details.get("nInserted", 0), first.get("code") == DUPLICATE_KEY_CODE
        )
    return StorageError(str(error))
