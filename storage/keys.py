"""Row ids derived from a row's unique key, so that the ``_id`` alone keeps the key unique.

mongomock checks a unique index by scanning the whole collection on every insert, on the
server's event loop; its ``_id`` check is a dict lookup. Every MongoDB refuses a second
``_id`` with ``DuplicateKeyError`` just as a unique index would, so a collection whose
``_id`` is a function of its unique key needs no unique index on any server.
"""

from __future__ import annotations

import hashlib
import json


def derived_id(*parts: str | int) -> str:
    """32 hex digits of SHA-256 over ``parts`` written as a JSON array.

    JSON quotes every string and escapes its quotes and backslashes, so two different tuples
    never encode alike, whatever characters the ids hold; joining with a separator would let
    ``("a\\x1fb", "c")`` and ``("a", "b\\x1fc")`` meet. A fixed-length hex string fits every
    server's index key limits and is safe to hand out as a public id.
    """
    encoded = json.dumps(parts, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("ascii")).hexdigest()[:32]
