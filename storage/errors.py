"""Storage failures the upper layers need to tell apart."""

from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError, ServerSelectionTimeoutError

# Raised when the database cannot be reached; callers answer "storage_unavailable".
UNAVAILABLE_ERRORS = (ConnectionFailure, ServerSelectionTimeoutError)

__all__ = ["DuplicateKeyError", "PyMongoError", "UNAVAILABLE_ERRORS"]
