"""Fuzz the WebSocket gateway with thousands of random, mutated and valid frames.

Every frame goes over a real socket to a real server, one per backend with the rate limits
lifted so that nothing is throttled, and one with small limits (``THROTTLED_ENV``). An oracle
written from the wire contract (docs/wire-protocol.md) and its limits, not from
``actors/protocol.py``, says whether each frame is valid, invalid, or left open by the
contract. For each frame the test reads exactly the events it caused (it is bracketed by
``ping`` sentinels, which the server answers in order) and checks:

- an invalid frame gets exactly one ``error`` event, code ``invalid_message``, a message,
  details when it was a JSON object, its ``request_id`` echoed when that was usable, and
  nothing else;
- a valid frame gets its documented answer, or one ``error`` with a domain code
  (``not_found``, ``forbidden``, ``conflict``); never ``internal_error``;
- the socket stays open, and sockets that sent nothing get no ``error``;
- on the throttled server, any frame may instead get one ``error`` ``rate_limited`` with
  ``details.retry_after`` and its ``request_id`` echoed (a frame over the socket's rate is
  refused unread, the sentinels too; a write over the user's rate; a join over the read budget).

After the run the stored state must be exactly what the *accepted* frames made: each
conversation's messages (ids, seqs without gaps, contents, deletions, reactions) and read
pointers; the server is healthy and its log shows no traceback and no ERROR line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.settings import Settings
from tests.support.client import Socket, User, unique
from tests.support.fuzz import (
    BIG_INTS,
    CONTROL_CHARS,
    KNOWN_ERROR_CODES,
    DataSource,
    RandomSource,
    Source,
    backends,
    check_limit_error,
    dumps,
    fuzz_settings,
    json_value,
    long_text,
    mutate_bytes,
    nested,
    odd_text,
    odd_value,
    printable_text,
    scalar,
    server_log_problems,
    start_fuzz_server,
    text,
)

DEFAULTS = Settings()
MAX_FRAME_BYTES = DEFAULTS.max_frame_bytes
MAX_CONTENT_CHARS = DEFAULTS.max_content_chars
MAX_METADATA_BYTES = DEFAULTS.max_metadata_bytes
ID_MAX_CHARS = 128
EMOJI_MAX_CHARS = 32
SEQ_MAX = 2**53
# Nesting of metadata objects and arrays (MongoDB stops at 100 levels per whole document).
METADATA_MAX_DEPTH = 32

# Per backend, in the default tier; the slow variants send ten times as many.
HYPOTHESIS_EXAMPLES = 40  # of 1 to 30 frames each
RANDOM_FRAMES = {"mock": 3000, "mongodb": 2500}  # from a seeded random.Random
THROTTLED_EXAMPLES = 25
THROTTLED_FRAMES = {"mock": 800, "mongodb": 500}
# The throttled server's: a socket's frames are limited at five times its user's writes, so
# with a low refill and a deep burst all three limits bite within a run at any machine's pace:
# the frame rate (each frame), the write rate (valid writes) and the read budget (joins). The
# state is read back by others, whose budgets the fuzzing leaves whole.
WEBSOCKET_LIMITS = {"RATE_LIMIT_PER_SEC": "2", "RATE_LIMIT_BURST": "40", "READ_ROWS_PER_SEC": "10", "READ_ROWS_BURST": "20"}
RANDOM_BATCH = 50
SEED = 4_2026
SENTINEL = "\u27c2sentinel\u27c2-"
READ_TIMEOUT_SECS = 20.0

VALID, EITHER, INVALID = 0, 1, 2
DOMAIN_CODES = frozenset({"not_found", "forbidden", "conflict"})

MESSAGE_TYPES = ("text", "emoji", "file", "image")
FILE_TYPES = ("file", "image")
PRESENCE = ("online", "away", "busy", "offline")
BAD_CONTROL = frozenset(c for c in CONTROL_CHARS if c not in "\t\n\r")

# The wire contract's client frames: field -> (kind, required).
SPEC: dict[str, dict[str, tuple[str, bool]]] = {
    "join_conversation": {"conversation_id": ("id", True), "since_seq": ("seq?", False)},
    "leave_conversation": {"conversation_id": ("id", True)},
    "send_message": {
        "conversation_id": ("id", True),
        "content": ("content", True),
        "message_type": ("message_type", False),
        "metadata": ("metadata", False),
        "client_msg_id": ("id?", False),
        "reply_to": ("id?", False),
    },
    "edit_message": {"message_id": ("id", True), "content": ("content", True)},
    "delete_message": {"message_id": ("id", True)},
    "start_typing": {"conversation_id": ("id", True)},
    "stop_typing": {"conversation_id": ("id", True)},
    "add_reaction": {"message_id": ("id", True), "emoji": ("emoji", True)},
    "remove_reaction": {"message_id": ("id", True), "emoji": ("emoji", True)},
    "mark_read": {"conversation_id": ("id", True), "message_id": ("id?", False)},
    "update_presence": {"status": ("status", True)},
    "ping": {},
}
ALL_FIELDS = sorted({name for fields in SPEC.values() for name in fields})


# --- the oracle ---------------------------------------------------------------------------


def _has_bad_control(value: str) -> bool:
    return any(c in BAD_CONTROL for c in value)


def _deeper_than(value: Any, levels: int) -> bool:
    """Whether objects and arrays nest more than ``levels`` deep (stops looking past that)."""
    if not isinstance(value, (dict, list)):
        return False
    if levels == 0:
        return True
    items = value.values() if isinstance(value, dict) else value
    return any(_deeper_than(item, levels - 1) for item in items)


def _storable(value: Any) -> bool:
    """What every MongoDB we run on can store: keys without NUL, '$' at the start or '.';
    integers that fit in 64 bits."""
    if isinstance(value, dict):
        return all(
            "\x00" not in k and not k.startswith("$") and "." not in k and _storable(v) for k, v in value.items()
        )
    if isinstance(value, list):
        return all(_storable(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return -(2**63) <= value < 2**63
    return True


def judge_value(kind: str, value: Any) -> int:
    if kind in ("id?", "seq?") and value is None:
        return VALID
    if kind in ("id", "id?"):
        if not isinstance(value, str) or not 1 <= len(value) <= ID_MAX_CHARS or _has_bad_control(value):
            return INVALID
        return VALID
    if kind in ("seq", "seq?"):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEQ_MAX:
            return INVALID
        return VALID
    if kind == "content":
        if not isinstance(value, str) or len(value) > MAX_CONTENT_CHARS or _has_bad_control(value):
            return INVALID
        return VALID
    if kind == "message_type":
        return VALID if isinstance(value, str) and value in MESSAGE_TYPES else INVALID
    if kind == "metadata":
        if not isinstance(value, dict):
            return INVALID
        if _deeper_than(value, METADATA_MAX_DEPTH) or not _storable(value):
            return INVALID
        return VALID if len(orjson.dumps(value)) <= MAX_METADATA_BYTES else INVALID
    if kind == "emoji":
        if not isinstance(value, str) or not 1 <= len(value) <= EMOJI_MAX_CHARS:
            return INVALID
        if any(c.isspace() for c in value) or _has_bad_control(value):
            return INVALID
        return VALID
    if kind == "status":
        return VALID if isinstance(value, str) and value in PRESENCE else INVALID
    raise AssertionError(kind)


@dataclasses.dataclass
class Judgement:
    verdict: int
    kind: str | None  # the frame's type when it is one of the client types
    echo: Any  # the request_id an answer must carry, or None
    is_object: bool


def judge(raw: bytes) -> Judgement:
    """What the contract says about a frame, from its bytes."""
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Judgement(INVALID, None, None, False)
    if not isinstance(frame, dict):
        return Judgement(INVALID, None, None, False)
    verdict = VALID
    echo = frame.get("request_id")
    if echo is not None:
        usable = (isinstance(echo, str) and len(echo) <= ID_MAX_CHARS) or (
            isinstance(echo, int) and not isinstance(echo, bool)
        )
        if not usable:
            return Judgement(INVALID, None, None, True)
    kind = frame.get("type")
    if not isinstance(kind, str) or kind not in SPEC:
        return Judgement(INVALID, None, echo, True)
    spec = SPEC[kind]
    for name, value in frame.items():
        if name in ("type", "request_id"):
            continue
        if name not in spec:
            return Judgement(INVALID, kind, echo, True)
        verdict = max(verdict, judge_value(spec[name][0], value))
    if any(required and name not in frame for name, (_, required) in spec.items()):
        return Judgement(INVALID, kind, echo, True)
    if kind == "send_message" and verdict != INVALID:
        message_type = frame.get("message_type", "text")
        if message_type in FILE_TYPES:
            file_id = frame.get("metadata", {}).get("file_id")
            if not isinstance(file_id, str) or not file_id:
                verdict = INVALID
        elif not frame["content"].strip():
            verdict = INVALID
    if kind == "edit_message" and verdict == VALID and not frame["content"].strip():
        verdict = EITHER  # blank is refused for text messages only, once the message is found
    return Judgement(verdict, kind, echo, True)


# --- frames -------------------------------------------------------------------------------
#
# Generators take a Source (tests.support.fuzz) and the live World, whose conversation and
# message ids they use; they return a frame as a dict, or raw bytes.

PRESENCE_ODD = ["Online", "online ", " online", "ONLINE", "invisible", "", "online\x00", "offline\n", None, 1]
TYPE_ODD = ["system", "TEXT", "text ", "", "file", "image", "video", None, 0]
SEQ_ODD = [-1, 0, 2**53, 2**53 + 1, 1.0, 0.5, "3", True, False, None, 2**63, 2**64, -(2**63), [], {}]
ID_ODD = ["", "x" * 128, "x" * 129, "a\x00", "a\x1f", "a\x7f", "a\tb", "a\nb", " ", "\u200b", "../x", "%00", "$gt", {"$ne": None}, ["x"], 0, 1.5, True]
CONTENT_ODD = ["", " ", "\n\t", "\u2003", "\u200b", "\u0085", "a\x00", "a\x08", "a\x0b", "a\x0c", "a\x1b", "a\x7f", "\t\nx\r"]
EMOJI_ODD = [
    "x\n", "\nx", " x", "x ", "x\u00a0", "\u2003", "x\t", "x\r", "x\x00", "\u200b", "", "x" * 32, "x" * 33,
    "\U0001f44d" * 32, "\U0001f44d" * 33, "\u2764\ufe0f" * 16, "\u2764\ufe0f" * 17,
]
EMOJI_GOOD = ["\U0001f44d", "\u2764\ufe0f", "\U0001f602", "x", ":+1:", "\U0001f3f3\ufe0f\u200d\U0001f308"]
REQUEST_ID_ODD = [True, False, 1.5, 2**64, -(2**63) - 1, "x" * 128, "x" * 129, [], {}, None]
METADATA_KEYS_ODD = ["a", "$set", "$", "a.b", ".", "", "\x00", "k\x00", "a$", "file_id"]
TYPES_ODD = ["_stop", "on_message", "Ping", "ping ", "PING", "send_message\x00", "__init__", "on_close", "open", "close", "send", "join", "error", "pong"]
EXTRA_KEYS = ["data", "payload", "id", "user_id", "sender_id", "seq", "tenant_id", "Type", "request-id"]
RAW_ODD = ["", " ", "{}", "[]", "null", '{"type":null}', '{"type":"ping","type":"nope"}', '{"type":"ping"} x', "\ufeff{}", '{"type":"ping"}\x00']
# The frames with the most fields come up most.
FRAME_WEIGHTS = {"send_message": 5, "edit_message": 2, "add_reaction": 2, "remove_reaction": 2, "join_conversation": 2, "mark_read": 2}
WEIGHTED_KINDS = [kind for kind in sorted(SPEC) for _ in range(FRAME_WEIGHTS.get(kind, 1))]
ATTACKS = sorted({(kind, name) for kind, spec in SPEC.items() for name in [*spec, "request_id", "type"]})
FIELD_KIND = {
    "conversation_id": "id",
    "message_id": "id",
    "client_msg_id": "id",
    "reply_to": "id",
    "since_seq": "seq",
    "content": "content",
    "message_type": "message_type",
    "metadata": "metadata",
    "emoji": "emoji",
    "status": "status",
}


def good_value(src: Source, world: World, name: str) -> Any:
    if name == "conversation_id":
        return src.choice(world.convs)
    if name in ("message_id", "reply_to"):
        return src.choice(world.pool) if name == "message_id" or src.chance(70) else None
    if name == "client_msg_id":
        return src.choice([None, f"cmid-{src.integer(0, 5)}", printable_text(src, 1, 20)])
    if name == "since_seq":
        return src.choice([None, src.integer(0, 40), SEQ_MAX])
    if name == "content":
        return src.choice(["hello", "x" * MAX_CONTENT_CHARS, "\U0001f44d", "multi\nline\ttext", "e\u0301", "\u202eevil"]) if src.chance(30) else ("m " + printable_text(src, 0, 40))
    if name == "message_type":
        return src.choice(["text", "emoji"])
    if name == "metadata":
        return {printable_text(src, 0, 8): src.choice([None, True, src.integer(-(2**63), 2**63 - 1), printable_text(src)]) for _ in range(src.integer(0, 3))}
    if name == "emoji":
        if src.chance(60):
            return src.choice(EMOJI_GOOD)
        return "".join(c for c in printable_text(src, 1, 8) if not c.isspace()) or "y"
    if name == "status":
        return src.choice(PRESENCE)
    if name == "request_id":
        return printable_text(src, 0, 20) if src.chance(60) else src.integer(-(2**63), 2**64 - 1)
    raise AssertionError(name)


def odd_metadata(src: Source) -> Any:
    kind = src.integer(0, 7)
    if kind == 0:
        return {odd_text(src): json_value(src) for _ in range(src.integer(0, 4))}
    if kind == 1:
        return {src.choice(METADATA_KEYS_ODD): src.choice([scalar(src), src.choice(BIG_INTS), [src.choice(BIG_INTS)]]) for _ in range(src.integer(1, 3))}
    if kind == 2:
        return {"a": {src.choice(["$x", "x.y", "\x00", "ok"]): src.choice(BIG_INTS + [1])}}
    if kind == 3:
        return nested(src.integer(1, 120), src.choice([1, {}, []]), src.chance(30))
    if kind == 4:  # around the size limit
        n = src.integer(MAX_METADATA_BYTES - 30, MAX_METADATA_BYTES + 30)
        return {"k": "x" * (n - len('{"k":""}'))}
    if kind == 5:
        return {"file_id": odd_value(src)}
    return json_value(src)


def odd_for(src: Source, name: str) -> Any:
    """A value aimed at field ``name``: its edges and the ways it is most likely to be wrong."""
    if src.chance(25):
        return odd_value(src)
    if name == "request_id":
        return src.choice(REQUEST_ID_ODD) if src.chance(70) else good_value(src, None, "request_id")
    if name == "type":
        return src.choice(TYPES_ODD + sorted(SPEC)) if src.chance(70) else odd_text(src)
    kind = FIELD_KIND.get(name)
    if kind == "id":
        return src.choice(ID_ODD) if src.chance(70) else odd_text(src)
    if kind == "content":
        return src.choice(CONTENT_ODD) if src.chance(50) else long_text(src) if src.chance(50) else odd_text(src)
    if kind == "emoji":
        return src.choice(EMOJI_ODD) if src.chance(70) else odd_text(src)
    if kind == "seq":
        return src.choice(SEQ_ODD)
    if kind == "status":
        return src.choice(PRESENCE_ODD)
    if kind == "message_type":
        return src.choice(TYPE_ODD)
    if kind == "metadata":
        return odd_metadata(src)
    return odd_value(src)


def valid_frame(src: Source, world: World, kind: str | None = None) -> dict:
    kind = kind or src.choice(WEIGHTED_KINDS)
    frame = {"type": kind}
    if kind == "send_message" and src.chance(10):
        frame.update(
            conversation_id=src.choice(world.convs),
            content=src.choice(["", "caption"]),
            message_type=src.choice(FILE_TYPES),
            metadata={"file_id": src.choice(["file-1", "f"]), **({"name": printable_text(src)} if src.chance(50) else {})},
        )
    else:
        for name, (_, required) in SPEC[kind].items():
            if required or src.chance(50):
                frame[name] = good_value(src, world, name)
    if src.chance(60):
        frame["request_id"] = good_value(src, world, "request_id")
    return frame


def attacked_frame(src: Source, world: World) -> dict:
    """A valid frame with one field (or ``type`` or ``request_id``) set to an odd value."""
    kind, name = src.choice(ATTACKS)
    return {**valid_frame(src, world, kind), name: odd_for(src, name)}


def mutated_frame(src: Source, world: World) -> dict:
    """A valid frame mutated a few ways: fields set odd, swapped, dropped, added; type changed."""
    frame = valid_frame(src, world)
    spec = SPEC[frame["type"]]
    for _ in range(src.choice([1, 1, 2, 3])):
        op = src.integer(0, 8)
        if op <= 3:
            name = src.choice(sorted((set(frame) | set(spec)) - {"type"}) or ALL_FIELDS)
            frame[name] = odd_for(src, name)
        elif op == 4:  # a well-formed value of another field
            frame[src.choice(ALL_FIELDS)] = good_value(src, world, src.choice(ALL_FIELDS))
        elif op == 5 and frame:
            frame.pop(src.choice(sorted(frame)))
        elif op == 6:
            frame[src.choice(EXTRA_KEYS) if src.chance(50) else odd_text(src)] = json_value(src)
        elif op == 7:
            frame["type"] = odd_for(src, "type")
        else:
            frame["request_id"] = odd_for(src, "request_id")
    return frame


def raw_frame(src: Source) -> bytes:
    kind = src.integer(0, 4)
    if kind == 0:
        return src.binary(300)
    if kind == 1:
        return text(src, 300).encode()
    if kind == 2:
        return dumps(json_value(src)).encode()
    if kind == 3:
        return src.choice(RAW_ODD).encode()
    return dumps(odd_value(src)).encode()


# Weighted: 3 valid, 3 one field attacked, 2 mutated several ways, 2 raw or byte-mutated.
CATEGORIES = ["valid"] * 3 + ["attack"] * 3 + ["mutated"] * 2 + ["raw", "bytes"]


def next_frame(src: Source, world: World) -> tuple[int, bytes, bool]:
    """``(socket index, bytes, binary)``; text frames only when the bytes are UTF-8."""
    category = src.choice(CATEGORIES)
    if category == "raw":
        data = raw_frame(src)
    elif category == "bytes":
        data = mutate_bytes(src, dumps(valid_frame(src, world)).encode())
    else:
        frame = {"valid": valid_frame, "attack": attacked_frame, "mutated": mutated_frame}[category](src, world)
        data = dumps(frame, ascii_only=src.chance(30)).encode()
    binary = src.chance(30)
    if not binary:
        try:
            data.decode()
        except UnicodeDecodeError:
            binary = True
    return src.integer(0, 3), data, binary


# --- the live run -------------------------------------------------------------------------


@dataclasses.dataclass
class Expected:
    conversation_id: str
    content: str
    is_deleted: bool = False
    reactions: set = dataclasses.field(default_factory=set)  # {(emoji, user_id)}


class World:
    """The tenant, users, sockets and what the accepted frames should have left behind."""

    def __init__(self, server) -> None:
        self.server = server
        self.tenant = unique("fuzz-tenant")
        self.throttled = server.throttled
        # Their own frames and calls (setup, state checks) wait out the limits the fuzzing runs into.
        self.alice, self.bob, self.carol = (User(server, self.tenant, unique(n), patient=self.throttled) for n in ("alice", "bob", "carol"))
        self.sockets: list[tuple[User, Socket]] = []
        self.convs: list[str] = []
        self.messages: dict[str, Expected] = {}
        self.pool: list[str] = []
        self.read: dict[tuple[str, str], int] = {}
        self.sentinels = itertools.count()
        self.last_socket: int | None = None
        self.frames_sent = 0
        self.counts = {VALID: 0, EITHER: 0, INVALID: 0}
        self.accepted = 0
        self.throttled_frames = 0
        self.broken = False

    async def setup(self) -> None:
        alice, bob, carol = self.alice, self.bob, self.carol
        group = await alice.create_conversation("group", [bob], title="fuzz group")
        channel = await alice.create_conversation("channel", [bob], title="fuzz channel")
        own = await carol.create_conversation("group", [], title="carol alone")
        self.convs = [group, channel, own, "no-such-conversation"]
        await self.connect()
        for index, conv, count in [(0, group, 3), (2, group, 2), (0, channel, 2), (3, own, 1)]:
            user, sock = self.sockets[index]
            for n in range(count):
                answer = await sock.request("send_message", "new_message", conversation_id=conv, content=f"seed {n}")
                self._record_message(answer["message"])
        self.pool.append("no-such-message")
        for _, sock in self.sockets:
            sock.events.clear()
            sock._cursor = 0

    async def connect(self) -> None:
        """Open (or reopen, after a failed example left them out of step) the fuzzing sockets."""
        await self.close()
        alice, bob, carol = self.alice, self.bob, self.carol
        self.sockets = [(alice, await alice.socket()), (alice, await alice.socket()), (bob, await bob.socket()), (carol, await carol.socket())]
        for sock in self.all_sockets():
            sock.conn.protocol.stream.set_nodelay(True)  # a frame and its sentinel go out at once
        group, channel, own = self.convs[:3]
        for index, conv in [(0, group), (0, channel), (2, group), (2, channel), (3, own)]:
            await self.sockets[index][1].request("join_conversation", "conversation_joined", conversation_id=conv)
        self.last_socket = None
        self.broken = False

    async def close(self) -> None:
        for sock in self.all_sockets():
            sock.close()

    def all_sockets(self) -> list[Socket]:
        return [sock for _, sock in self.sockets]

    def _record_message(self, message: dict) -> bool:
        if message["id"] in self.messages:
            return False
        self.messages[message["id"]] = Expected(message["conversation_id"], message["content"])
        self.pool.append(message["id"])
        return True

    # --- reading -------------------------------------------------------------------------

    async def read_until(self, sock: Socket, sentinel: str) -> list[dict]:
        """Events up to (not including) the answer to ``sentinel``: its pong, or on the throttled
        server maybe its ``rate_limited`` error."""
        seen = []
        while True:
            message = await asyncio.wait_for(sock.conn.read_message(), READ_TIMEOUT_SECS)
            assert message is not None, (
                f"socket closed during the fuzz: {sock.conn.close_code} {sock.conn.close_reason}; log:\n{self.server.log()}"
            )
            event = json.loads(message)
            if event.get("request_id") == sentinel:
                if event["type"] == "error":
                    assert self.throttled, event
                    check_limit_error(event, f"the sentinel {sentinel}")
                else:
                    assert event["type"] == "pong", event
                return seen
            seen.append(event)

    def send_sentinel(self, sock: Socket) -> str:
        sentinel = f"{SENTINEL}{next(self.sentinels)}"
        sock.conn.write_message(json.dumps({"type": "ping", "request_id": sentinel}))
        return sentinel

    async def drain(self, index: int) -> None:
        """Events the socket got from others' frames since it was last used: never an error."""
        user, sock = self.sockets[index]
        for event in await self.read_until(sock, self.send_sentinel(sock)):
            assert event.get("type") != "error", f"an error on a socket that sent nothing: {event}"
            assert "request_id" not in event, f"someone else's answer: {event}"

    # --- one batch -----------------------------------------------------------------------

    async def run(self, batch: list[tuple[int, bytes, bool]]) -> None:
        """Send frames in runs per socket, each followed by a sentinel, then check each answer."""
        for index, group in itertools.groupby(batch, key=lambda item: item[0]):
            group = list(group)
            if index != self.last_socket:
                await self.drain(index)
                self.last_socket = index
            user, sock = self.sockets[index]
            pending = []
            for _, data, binary in group:
                if binary:
                    sock.conn.write_message(data, binary=True)
                else:
                    sock.conn.write_message(data.decode())
                pending.append((data, self.send_sentinel(sock)))
            for data, sentinel in pending:
                events = await self.read_until(sock, sentinel)
                self.check_answer(user, data, events)
                self.frames_sent += 1
        # Tornado's client stops reading (and answering the server's pings) while an unread
        # event waits in its queue: read every socket's backlog, so none idles into a timeout.
        for index in range(len(self.sockets)):
            if index != self.last_socket:
                await self.drain(index)

    def check_answer(self, user: User, data: bytes, events: list[dict]) -> None:
        judged = judge(data)
        self.counts[judged.verdict] += 1
        answers = [e for e in events if not _ambient(e, user.user_id)]
        if judged.kind == "update_presence" and judged.echo is None and judged.verdict != INVALID and not answers:
            answers = _presence_answer(events, user.user_id, data)
        context = f"frame {data[:300]!r} from {user.user_id}: verdict {judged.verdict}, answers {answers}"
        errors = [e for e in answers if e.get("type") == "error"]
        if self.throttled and len(answers) == 1 and errors and errors[0].get("code") == "rate_limited":
            check_limit_error(errors[0], context)
            assert errors[0].get("request_id") == judged.echo, f"request_id not echoed as sent; {context}"
            self.throttled_frames += 1
            return
        if errors or judged.verdict == INVALID:
            assert len(errors) == 1 and len(answers) == 1, f"want exactly one error event; {context}"
            error = errors[0]
            code = error.get("code")
            assert code in KNOWN_ERROR_CODES, f"unknown or server-failure code; {context}"
            assert isinstance(error.get("message"), str) and error["message"], context
            assert set(error) <= {"type", "code", "message", "details", "request_id"}, context
            if judged.verdict == INVALID:
                assert code == "invalid_message", f"an invalid frame needs invalid_message; {context}"
                if judged.is_object:
                    assert isinstance(error.get("details"), dict) and error["details"], f"no field details; {context}"
            elif judged.verdict == VALID:
                assert code in DOMAIN_CODES, f"a valid frame refused as {code}; {context}"
            else:
                assert code in DOMAIN_CODES | {"invalid_message"}, context
            assert error.get("request_id") == judged.echo, f"request_id not echoed as sent; {context}"
            return
        self.check_success(user, judged, orjson.loads(data), answers, context)

    def check_success(self, user: User, judged: Judgement, frame: dict, answers: list[dict], context: str) -> None:
        kind = judged.kind
        self.accepted += 1
        if kind in ("start_typing", "stop_typing"):
            assert answers == [], context
            return
        expect = {
            "join_conversation": "conversation_joined",
            "leave_conversation": "conversation_left",
            "send_message": "new_message",
            "edit_message": "message_updated",
            "delete_message": "message_deleted",
            "add_reaction": "reaction_added",
            "remove_reaction": "reaction_removed",
            "mark_read": "read_receipt",
            "update_presence": "presence_update",
            "ping": "pong",
        }[kind]
        direct = [e for e in answers if e.get("type") == expect and ("request_id" in e or judged.echo is None)]
        if kind == "join_conversation":
            replayed = [e["seq"] for e in answers if "seq" in e and "request_id" not in e]
            extra = [e for e in answers if e not in direct and "seq" not in e and e.get("type") != "resync_required"]
            assert len(direct) == 1 and not extra, f"join answer; {context}"
            assert direct[0]["conversation_id"] == frame["conversation_id"], context
            if frame.get("since_seq") is None:
                assert replayed == [], context
            else:
                assert replayed == list(range(frame["since_seq"] + 1, direct[0]["last_seq"] + 1)), context
        elif kind == "update_presence":
            mine = [e for e in direct if e.get("user_id") == user.user_id and e.get("status") == frame["status"]]
            assert len(mine) == 1, f"presence answer; {context}"
            direct = mine
        else:
            assert len(direct) == 1 and len(answers) == 1, f"want exactly the {expect} answer; {context}"
        answer = direct[0]
        assert answer.get("request_id") == judged.echo, f"request_id not echoed; {context}"
        if kind == "send_message":
            message = answer["message"]
            assert message["conversation_id"] == frame["conversation_id"] and message["sender_id"] == user.user_id, context
            if self._record_message(message):
                assert message["content"] == frame["content"], context
                assert message["message_type"] == frame.get("message_type", "text"), context
                assert message["metadata"] == (frame.get("metadata") or {}), context
                assert message["client_msg_id"] == frame.get("client_msg_id"), context
        elif kind == "edit_message":
            message = answer["message"]
            assert message["id"] == frame["message_id"] and message["content"] == frame["content"], context
            self.messages[message["id"]].content = message["content"]
        elif kind == "delete_message":
            expected = self.messages[frame["message_id"]]
            expected.is_deleted, expected.content = True, ""
            expected.reactions.clear()  # a deleted message keeps no reactions
        elif kind == "add_reaction":
            reaction = answer["reaction"]
            assert (reaction["message_id"], reaction["emoji"], reaction["user_id"]) == (frame["message_id"], frame["emoji"], user.user_id), context
            self.messages[frame["message_id"]].reactions.add((frame["emoji"], user.user_id))
        elif kind == "remove_reaction":
            self.messages[frame["message_id"]].reactions.discard((frame["emoji"], user.user_id))
        elif kind == "mark_read":
            assert answer["user_id"] == user.user_id, context
            self.read[(answer["conversation_id"], user.user_id)] = answer["last_read_seq"]

    # --- the state the accepted frames should have left -----------------------------------

    async def ask(self, sock: Socket, frame: dict) -> tuple[dict, list[dict]]:
        """The answer to ``frame`` (sent with a fresh request_id) and every event read up to it and
        its sentinel; on the throttled server a refusal for a limit is waited out and sent again."""
        while True:
            request_id = unique("check")
            sock.send({**frame, "request_id": request_id})
            events = await self.read_until(sock, self.send_sentinel(sock))
            answer = next((e for e in events if e.get("request_id") == request_id), None)
            assert answer is not None, f"no answer to {frame}: {events}"
            if not (self.throttled and answer["type"] == "error" and answer["code"] == "rate_limited"):
                return answer, events
            await asyncio.sleep(answer["details"]["retry_after"])  # the wait the server asks for

    async def check_state(self) -> None:
        """Each conversation is read back by a tenant admin of its own, whose read budget is whole."""
        for conv in self.convs[:3]:
            auditor = User(self.server, self.tenant, unique("auditor"), role="admin", patient=self.throttled)
            status, body = await auditor.api.get(f"conversations/{conv}/participants/")  # first: the replay may spend the budget
            assert status == 200, body
            for participant in body["results"]:
                assert participant["last_read_seq"] == self.read.get((conv, participant["user_id"]), 0), participant
            sock = await auditor.socket()
            expected = {mid: e for mid, e in self.messages.items() if e.conversation_id == conv}
            joined, events = await self.ask(sock, {"type": "join_conversation", "conversation_id": conv, "since_seq": 0})
            assert joined["type"] == "conversation_joined", joined
            stream = [e for e in events if "seq" in e and "request_id" not in e and e["conversation_id"] == conv]
            assert [e["seq"] for e in stream] == list(range(1, joined["last_seq"] + 1)), "seqs with gaps or duplicates"
            replay = [e["message"] for e in stream if e["type"] == "new_message"]
            stored = [m for m in replay if m["message_type"] != "system"]
            assert len(replay) == len(expected), f"{conv}: {len(replay)} messages stored but {len(expected)} were accepted"
            assert {m["id"] for m in stored} == set(expected), "stored messages differ from the accepted sends"
            for message in stored:
                want = expected[message["id"]]
                got_reactions = {(r["emoji"], uid) for r in message["reactions"] for uid in r["user_ids"]}
                assert (message["content"], message["is_deleted"], got_reactions) == (want.content, want.is_deleted, want.reactions), message
            sock.close()


def _ambient(event: dict, user_id: str) -> bool:
    """Events that others' activity or timers can cause at any moment. Presence reaches a socket
    when a PRESENCE_BATCH_SECS interval ends, so a change made on another of the user's sockets,
    or their own coming online, can land anywhere too."""
    kind = event.get("type")
    if "request_id" in event:
        return False
    return (kind == "typing_indicator" and event.get("user_id") != user_id) or kind in ("presence_update", "presence_batch")


def _presence_answer(events: list[dict], user_id: str, frame: bytes) -> list[dict]:
    """The answer to an ``update_presence`` sent without a request_id: like a pushed change, it
    carries none, so it is the first presence_update of the user with the status asked for."""
    status = orjson.loads(frame).get("status")
    mine = [e for e in events if e.get("type") == "presence_update" and "request_id" not in e and e.get("user_id") == user_id]
    return [e for e in mine if e.get("status") == status][:1]


# --- fixtures and tests -------------------------------------------------------------------


@pytest.fixture(scope="module", params=backends())
def fuzz_server(request, mongodb_uri):
    proc = start_fuzz_server(request.param, mongodb_uri, "ws")
    yield proc
    proc.stop()


@pytest.fixture(scope="module", params=backends())
def throttled_server(request, mongodb_uri):
    proc = start_fuzz_server(request.param, mongodb_uri, "ws_throttled", throttled=True, overrides=WEBSOCKET_LIMITS)
    yield proc
    proc.stop()


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()


def open_world(fuzz_server, loop) -> World:
    async def make_world() -> World:
        world = World(fuzz_server)  # made inside the loop, so its HTTP clients bind to it
        await world.setup()
        return world

    return loop.run_until_complete(make_world())


def send_batch(world: World, loop, batch: list[tuple[int, bytes, bool]]) -> None:
    # Frames over the cap close the socket by design: test_oversized_frames_close_1009.
    batch = [item for item in batch if len(item[1]) < MAX_FRAME_BYTES]
    if world.broken:  # an earlier example failed half-way: start from fresh sockets
        loop.run_until_complete(world.connect())
    world.broken = True
    loop.run_until_complete(world.run(batch))
    world.broken = False


def finish(world: World, fuzz_server, loop) -> None:
    """What the accepted frames should have left, and nothing else; a healthy, quiet server."""
    loop.run_until_complete(world.check_state())
    for sock in world.all_sockets():
        assert sock.conn.close_code is None, (sock.conn.close_code, sock.conn.close_reason)
    loop.run_until_complete(world.close())
    health = fuzz_server.health()
    assert health["status"] == "ok", health
    assert server_log_problems(fuzz_server) == []
    print(
        f"{world.frames_sent} frames; verdicts {world.counts} (valid, either, invalid); {world.accepted} accepted; "
        f"{world.throttled_frames} refused for a limit"
    )


def fuzz_with_hypothesis(fuzz_server, loop, examples: int) -> World:
    world = open_world(fuzz_server, loop)

    @fuzz_settings(examples)
    @given(data=st.data())
    def fuzz(data) -> None:
        src = DataSource(data)
        send_batch(world, loop, [next_frame(src, world) for _ in range(src.integer(1, 30))])

    fuzz()
    finish(world, fuzz_server, loop)
    return world


def fuzz_with_seed(fuzz_server, loop, frames: int) -> World:
    world = open_world(fuzz_server, loop)
    src = RandomSource(SEED)
    while world.frames_sent < frames:
        send_batch(world, loop, [next_frame(src, world) for _ in range(RANDOM_BATCH)])
    finish(world, fuzz_server, loop)
    return world


def test_websocket_fuzz_hypothesis(fuzz_server, loop):
    world = fuzz_with_hypothesis(fuzz_server, loop, HYPOTHESIS_EXAMPLES)
    assert world.counts[INVALID] > 100 and world.counts[VALID] > 100, world.counts


def test_websocket_fuzz_seeded(fuzz_server, loop):
    frames = RANDOM_FRAMES[fuzz_server.backend]
    world = fuzz_with_seed(fuzz_server, loop, frames)
    assert world.counts[INVALID] > frames // 3 and world.counts[VALID] > frames // 3 and world.accepted > frames // 10, world.counts


def test_websocket_fuzz_throttled_hypothesis(throttled_server, loop):
    fuzz_with_hypothesis(throttled_server, loop, THROTTLED_EXAMPLES)


def test_websocket_fuzz_throttled_seeded(throttled_server, loop):
    frames = THROTTLED_FRAMES[throttled_server.backend]
    world = fuzz_with_seed(throttled_server, loop, frames)
    assert world.throttled_frames and world.accepted, (world.throttled_frames, world.accepted)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_websocket_fuzz_hypothesis_slow(fuzz_server, loop):
    fuzz_with_hypothesis(fuzz_server, loop, HYPOTHESIS_EXAMPLES * 10)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_websocket_fuzz_seeded_slow(fuzz_server, loop):
    fuzz_with_seed(fuzz_server, loop, RANDOM_FRAMES[fuzz_server.backend] * 10)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_websocket_fuzz_throttled_hypothesis_slow(throttled_server, loop):
    fuzz_with_hypothesis(throttled_server, loop, THROTTLED_EXAMPLES * 10)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_websocket_fuzz_throttled_seeded_slow(throttled_server, loop):
    fuzz_with_seed(throttled_server, loop, THROTTLED_FRAMES[throttled_server.backend] * 10)


# --- what the fuzz found, pinned ------------------------------------------------------------

REGRESSIONS = {
    # MongoDB cannot store these: they were answered internal_error (mock and MongoDB) or
    # storage_unavailable (FerretDB), after a failed batch write, with a traceback in the log.
    "metadata-key-with-nul": {"metadata": {"a\x00b": 1}},
    "metadata-int-over-64-bits": {"metadata": {"n": 2**63}},
    "metadata-uint64": {"metadata": {"n": 2**64 - 1}},
    "metadata-big-int-in-list": {"metadata": {"n": [1, 2**63]}},
    "metadata-dollar-key": {"metadata": {"$set": 1}},
    "metadata-nested-dollar-key": {"metadata": {"a": {"$gt": ""}}},
    "metadata-dotted-key": {"metadata": {"a.b": 1}},
    "metadata-too-deep": {"metadata": nested(METADATA_MAX_DEPTH + 1)},
}
ACCEPTED_EDGES = {
    "metadata-int64-bounds": {"metadata": {"lo": -(2**63), "hi": 2**63 - 1}},
    "metadata-deepest": {"metadata": nested(METADATA_MAX_DEPTH)},
    "metadata-odd-but-fine-keys": {"metadata": {"": 1, "a$": 2, "\u00e9": 3}},
}


@pytest.mark.parametrize("name", list(REGRESSIONS))
async def test_unstorable_metadata_is_refused(users, name):
    alice, bob = users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    sock = await alice.socket()
    error = await sock.request("send_message", "error", conversation_id=conv, content="x", **REGRESSIONS[name])
    assert error["code"] == "invalid_message" and "metadata" in error["details"], error
    ack = await sock.request("send_message", "new_message", conversation_id=conv, content="after")
    assert ack["message"]["seq"] == 1


@pytest.mark.parametrize("name", list(ACCEPTED_EDGES))
async def test_storable_metadata_at_the_edges_is_kept(users, name):
    (alice,) = users("alice")
    conv = await alice.create_conversation("group")
    sock = await alice.socket()
    ack = await sock.request("send_message", "new_message", conversation_id=conv, content="x", **ACCEPTED_EDGES[name])
    assert ack["message"]["metadata"] == ACCEPTED_EDGES[name]["metadata"]


@pytest.mark.parametrize("emoji", ["x\n", "\U0001f44d\n", "x\n\n"])
async def test_emoji_with_a_trailing_newline_is_refused(users, emoji):
    # The pattern ^\S+$ let one trailing newline through ($ matches before it): stored as
    # a distinct reaction "x\n".
    (alice,) = users("alice")
    conv = await alice.create_conversation("group")
    sock = await alice.socket()
    sent = await sock.request("send_message", "new_message", conversation_id=conv, content="x")
    error = await sock.request("add_reaction", "error", message_id=sent["message"]["id"], emoji=emoji)
    assert error["code"] == "invalid_message" and "emoji" in error["details"], error


async def test_answers_back_to_back_are_not_held_for_delayed_acks(users):
    # With Nagle's algorithm on, the second of two small events written back to back (an
    # error, then the pong) waited for the client's delayed ACK: ~40 ms instead of ~0.3 ms.
    (alice,) = users("alice")
    sock = await alice.socket()
    sock.conn.protocol.stream.set_nodelay(True)
    loop = asyncio.get_running_loop()
    waits = []
    for n in range(25):
        started = loop.time()
        sock.send("not json")
        await sock.request("ping", "pong")
        waits.append(loop.time() - started)
    waits.sort()
    assert waits[len(waits) // 2] < 0.02, waits


@pytest.mark.parametrize("binary", [False, True])
async def test_frames_at_and_over_the_size_cap(users, binary):
    """Up to MAX_FRAME_BYTES a frame is answered; one byte more closes only that socket (1009)."""
    (alice,) = users("alice")
    other = await alice.socket()
    sock = await alice.socket()
    ping = b'{"type": "ping", "request_id": "at-cap"}'
    at_cap = ping + b" " * (MAX_FRAME_BYTES - len(ping))
    sock.conn.write_message(at_cap if binary else at_cap.decode(), binary=binary)
    assert (await sock.next("pong", request_id="at-cap"))["type"] == "pong"
    junk = b"x" * MAX_FRAME_BYTES
    sock.conn.write_message(junk if binary else junk.decode(), binary=binary)
    assert (await sock.next("error"))["code"] == "invalid_message"
    for size in (MAX_FRAME_BYTES + 1, 2 * MAX_FRAME_BYTES):
        victim = await alice.socket()
        victim.conn.write_message(b"x" * size if binary else "x" * size, binary=binary)
        code, _ = await victim.wait_closed()
        assert code in (1009, None)  # Tornado sends 1009 and drops the connection at once
    assert (await other.request("ping", "pong"))["type"] == "pong"
    assert (await sock.request("ping", "pong"))["type"] == "pong"
