"""What nodes send each other, as JSON that keeps datetimes (stored documents carry them).

Not pickle: whatever can write to Redis could then run code on every node.
"""

from __future__ import annotations

import datetime
from typing import Any

import orjson

_DATETIME = "$dt"


def _default(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return {_DATETIME: value.isoformat()}
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot send a {type(value).__name__} to another node")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME)


def loads(data: bytes) -> Any:
    return _revive(orjson.loads(data))


def _revive(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and _DATETIME in value:
            return datetime.datetime.fromisoformat(value[_DATETIME])
        return {key: _revive(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_revive(item) for item in value]
    return value
