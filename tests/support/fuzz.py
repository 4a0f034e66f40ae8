"""Shared pieces of the fuzz tests: an unthrottled or a throttled server, a log check, and value generators.

Generators draw every choice from a ``Source``: ``RandomSource`` (a seeded ``random.Random``:
fast, reproducible, with exactly the distribution written here) or ``DataSource`` (Hypothesis'
``st.data()``: the same generators, steered by Hypothesis towards edges). The values are *plausible
and wrong*: wrong JSON types, empty and oversized strings, control characters, odd (but
surrogate-free) unicode, big ints and floats, deeply nested objects. Each test file decides
which of them make a frame or a body invalid.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from tests.support.ferretdb import find_ferretdb_binary
from tests.support.server import ServerProcess

# Every ChatError code a client may see for its own mistakes (actors/errors.py). Not in it, and
# never to be seen by a fuzz run: internal_error, storage_unavailable, shutting_down.
KNOWN_ERROR_CODES = frozenset(
    {
        "invalid_message",
        "unauthorized",
        "forbidden",
        "not_found",
        "method_not_allowed",
        "conflict",
        "payload_too_large",
        "unsupported_media_type",
        "rate_limited",
        "upload_quota_exceeded",
        "too_many_connections",
        "bad_request",
    }
)

# Limits far above anything a fuzz run sends, so no answer it sees is a rate-limit one.
UNTHROTTLED_ENV = {
    "RATE_LIMIT_PER_SEC": "1000000",
    "RATE_LIMIT_BURST": "10000000",
    "REPLAY_LIMIT": "1000000",
    "READ_ROWS_PER_SEC": "0",
    "TYPING_TTL_SECS": "60",
    "PRESENCE_GRACE_SECS": "60",
    "ACTOR_IDLE_SECS": "60",
    "LOG_LEVEL": "WARNING",
}

# Limits so small that a fuzz run keeps running into them: then any request a limit applies to
# may be refused for it (429 rate_limited or upload_quota_exceeded; 413 for a file larger than a
# whole quota), and such a refusal must change nothing. Unattached files expire during the run.
# Sockets are never closed for their refused frames: the run goes on through them.
THROTTLED_ENV = {
    **UNTHROTTLED_ENV,
    "RATE_LIMIT_PER_SEC": "2",
    "RATE_LIMIT_BURST": "10",
    "READ_ROWS_PER_SEC": "200",
    "READ_ROWS_BURST": "20",
    "UPLOAD_QUOTA_BYTES": "60",
    "TENANT_UPLOAD_QUOTA_BYTES": "120",
    "UNATTACHED_FILE_TTL_SECS": "2",
    "FLOOD_CLOSE_AFTER": "1000000",
}

_LOG_PROBLEMS = re.compile(r"Traceback|unexpected failure| ERROR | CRITICAL ")


def backends() -> list[str]:
    """The backends of conftest's ``server`` fixture: mock always, MongoDB when there is one."""
    found = ["mock"]
    if os.environ.get("MONGODB_URI") or find_ferretdb_binary():
        found.append("mongodb")
    return found


def start_fuzz_server(
    backend: str, mongodb_uri: str | None, tag: str, *, throttled: bool = False, overrides: dict[str, str] | None = None
) -> ServerProcess:
    uri = mongodb_uri if backend == "mongodb" else None
    env = {**(THROTTLED_ENV if throttled else UNTHROTTLED_ENV), **(overrides or {})}
    proc = ServerProcess(env=env, mongodb_uri=uri, db_name=f"chat_fuzz_{tag}_{os.getpid()}" if uri else None)
    proc.backend = backend
    proc.throttled = throttled
    proc.log_offset = proc.log_path.stat().st_size if proc.log_path.exists() else 0
    return proc.start()


def check_limit_error(error: dict, context: str) -> None:
    """A refusal for being over a limit, as both transports spell it: when to try again is in
    ``details.retry_after`` (seconds)."""
    details = error.get("details")
    assert isinstance(details, dict), f"no details; {context}"
    retry_after = details.get("retry_after")
    assert isinstance(retry_after, (int, float)) and not isinstance(retry_after, bool) and retry_after >= 0, context
    if error["code"] == "rate_limited":
        assert set(details) == {"retry_after"}, context
    else:
        assert error["code"] == "upload_quota_exceeded", f"not a refusal for a limit; {context}"
        assert set(details) == {"quota", "quota_bytes", "used_bytes", "retry_after"}, context
        assert details["quota"] in ("user", "tenant") and details["used_bytes"] <= details["quota_bytes"], context


def server_log_problems(proc: ServerProcess) -> list[str]:
    """Lines of this server's log (since it started) that show a crash or an ERROR."""
    try:
        with open(proc.log_path, "rb") as log:
            log.seek(getattr(proc, "log_offset", 0))
            text = log.read().decode(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if _LOG_PROBLEMS.search(line)]


def fuzz_settings(examples: int) -> settings:
    """Reproducible: derandomized, no example database, no deadline, no health checks (each
    example talks to a real server, so it is slow and large by design), and no shrinking: the
    server keeps the state of earlier examples, so a shrunk example would not fail the same
    way; each assertion names the exact frame or request instead."""
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.explicit, Phase.reuse, Phase.generate),
        print_blob=True,
    )


def dumps(value: Any, *, ascii_only: bool = False) -> str:
    """JSON as a client might send it; Python's encoder keeps big ints that orjson would refuse."""
    return json.dumps(value, ensure_ascii=ascii_only, allow_nan=False)


# --- sources of choices -----------------------------------------------------------------


class Source:
    def integer(self, low: int, high: int) -> int:
        raise NotImplementedError

    def binary(self, max_size: int) -> bytes:
        raise NotImplementedError

    def choice(self, options: Sequence) -> Any:
        return options[self.integer(0, len(options) - 1)]

    def chance(self, percent: int) -> bool:
        return self.integer(0, 99) < percent

    def size(self, high: int) -> int:
        """A length, small more often than large."""
        return self.integer(0, self.choice([2, 8, high]) if high > 8 else high)


class RandomSource(Source):
    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def integer(self, low: int, high: int) -> int:
        return self.random.randint(low, high)

    def binary(self, max_size: int) -> bytes:
        return self.random.randbytes(self.size(max_size))


class DataSource(Source):
    """Hypothesis' interactive draws (it leans to edges: empty, zero, first options).

    Bounds that depend on the live run (a growing list of message ids, the length of a frame
    that holds them) would make Hypothesis see a different strategy on a replay, so small
    ranges are drawn from one fixed range and folded into the wanted one.
    """

    FOLD = 2**16

    def __init__(self, data) -> None:
        self.data = data

    def integer(self, low: int, high: int) -> int:
        if high - low < self.FOLD:
            return low + self.data.draw(st.integers(0, self.FOLD - 1)) % (high - low + 1)
        return self.data.draw(st.integers(low, high))

    def binary(self, max_size: int) -> bytes:
        return self.data.draw(st.binary(max_size=max_size))


# --- values -------------------------------------------------------------------------------

CONTROL_CHARS = [chr(c) for c in range(0, 32)] + ["\x7f"]
ODD_CHARS = [
    "\u00a0",  # no-break space
    "\u0085",  # next line (whitespace to str.strip)
    "\u2003",  # em space
    "\u200b",  # zero-width space (not whitespace)
    "\u200e",  # left-to-right mark
    "\u2028",  # line separator
    "\u202e",  # right-to-left override
    "\ufeff",  # byte order mark
    "\ufffd",  # replacement character
    "\uffff",  # a noncharacter
    "\U0001f44d",  # thumbs up
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # a ZWJ family
    "e\u0301",  # combining accent
    "\U0010ffff",  # the last code point
    "\U000e0001",  # language tag
    "'\"\\/<>&%$.{}[]",
]
ODD_STRINGS = ["", " ", "\n", "\t", "   \n\t ", "null", "0", "-1", "true", "__proto__", "$where", "a.b", "$set", "../..", "%00", "%s%n"]
BIG_INTS = [2**31, 2**32, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**30, -(2**63), -(2**63) - 1, -1, -(10**30)]
ODD_FLOATS = [0.0, -0.0, 0.5, 1.0, 3.0, 1e308, -1e308, 5e-324, 1.5e300, 2.0**53, 1e-7, 123456.789]
LONG_LENGTHS = [40, 127, 128, 129, 200, 3999, 4000, 4001, 10_000, 30_000]
_CHAR_RANGES = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x600, 0x6FF), (0x4E00, 0x4FFF), (0xE000, 0xF8FF), (0x1F300, 0x1FAFF), (0x10000, 0x10FFFF)]


def char(src: Source) -> str:
    """One character: mostly printable, sometimes odd or a control character; never a lone surrogate."""
    kind = src.integer(0, 9)
    if kind <= 5:
        low, high = _CHAR_RANGES[0] if kind <= 2 else src.choice(_CHAR_RANGES)
        return chr(src.integer(low, high))
    if kind <= 7:
        return src.choice(ODD_CHARS)
    return src.choice(CONTROL_CHARS + ["\t", "\n", "\r"])


def text(src: Source, max_size: int = 24) -> str:
    return "".join(char(src) for _ in range(src.size(max_size)))


def printable_text(src: Source, min_size: int = 0, max_size: int = 24) -> str:
    """Text without control characters."""
    chars = []
    for _ in range(max(min_size, src.size(max_size))):
        low, high = _CHAR_RANGES[0] if src.chance(60) else src.choice(_CHAR_RANGES)
        chars.append(chr(src.integer(low, high)))
    return "".join(chars)


def odd_text(src: Source) -> str:
    kind = src.integer(0, 2)
    if kind == 0:
        return text(src)
    if kind == 1:
        return src.choice(ODD_STRINGS)
    return "".join(src.choice(ODD_CHARS + CONTROL_CHARS + ["a", " "]) for _ in range(src.integer(1, 6)))


def long_text(src: Source) -> str:
    n = src.choice(LONG_LENGTHS)
    return (src.choice(["x", " ", "\U0001f44d", "\u00e9", "a\x01"]) * n)[:n]


def scalar(src: Source) -> Any:
    kind = src.integer(0, 6)
    if kind == 0:
        return None
    if kind == 1:
        return src.choice([True, False])
    if kind == 2:
        return src.integer(-1000, 1000)
    if kind == 3:
        return src.choice(BIG_INTS)
    if kind == 4:
        return src.choice(ODD_FLOATS) * src.choice([1, -1])
    return odd_text(src)


def json_value(src: Source, depth: int = 0) -> Any:
    kind = src.integer(0, 5) if depth < 3 else 0
    if kind <= 3:
        return scalar(src)
    if kind == 4:
        return [json_value(src, depth + 1) for _ in range(src.integer(0, 3))]
    return {odd_text(src): json_value(src, depth + 1) for _ in range(src.integer(0, 3))}


def nested(depth: int, leaf: Any = 1, as_list: bool = False) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if as_list else {"k": value}
    return value


def odd_value(src: Source) -> Any:
    """Anything at all, in the place of a field."""
    kind = src.integer(0, 9)
    if kind <= 4:
        return scalar(src)
    if kind <= 6:
        return json_value(src)
    if kind == 7:
        return long_text(src)
    if kind == 8:
        return nested(src.integer(20, 300), scalar(src), src.chance(50))
    return src.choice([[], {}, [None], {"": None}, {"$ne": None}, {"$gt": ""}])


def mutate_bytes(src: Source, data: bytes) -> bytes:
    """``data`` with a few edits: bit flips, deletions, insertions, duplications, truncation."""
    data = bytearray(data)
    for _ in range(src.integer(1, 4)):
        op = src.integer(0, 5) if data else 2
        pos = src.integer(0, max(0, len(data) - 1))
        if op == 0:
            data[pos] ^= 1 << src.integer(0, 7)
        elif op == 1:
            del data[pos : pos + src.integer(1, 8)]
        elif op == 2:
            data[pos:pos] = src.binary(8) if src.chance(30) else src.choice(
                [b'"', b"{", b"}", b"[", b",", b":", b"\\", b"\\u0000", b"\\ud800", b"\xff", b"\xc3", b"null", b"1e999", b"-", b"\x00"]
            )
        elif op == 3:
            data[pos:pos] = data[pos : pos + src.integer(1, 16)]
        elif op == 4:
            del data[pos:]
        else:
            data[pos : pos + 1] = src.choice([b"0", b'"', b" ", b"\x00", b"\n", b"\xf0", b"}"])
    return bytes(data)
