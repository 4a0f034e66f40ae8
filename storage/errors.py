"""Storage failures the upper layers need to tell apart."""

from pymongo.errors import DuplicateKeyError, PyMongoError

__all__ = ["DuplicateKeyError", "PyMongoError"]
