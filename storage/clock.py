"""Ids and timestamps as stored: opaque string ids, UTC datetimes at MongoDB's precision."""

import datetime
import uuid


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime.datetime:
    """Now, truncated to milliseconds so that what we return equals what MongoDB keeps."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def as_utc(value: datetime.datetime | None) -> datetime.datetime | None:
    """MongoDB hands back naive UTC datetimes; make them aware."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=datetime.timezone.utc)


def isoformat(value: datetime.datetime | None) -> str | None:
    if value is None:
        return None
    return as_utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_isoformat(value: str | None) -> datetime.datetime | None:
    """The inverse of ``isoformat``."""
    if value is None:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
