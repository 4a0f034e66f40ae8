"""Frame parsing (actors/protocol.py ``Protocol.parse_frame``) and each client type's rate class."""

from __future__ import annotations

import orjson
import pytest

from actors.errors import InvalidMessage
from actors.principal import ID_MAX_CHARS
from actors.protocol import METADATA_MAX_DEPTH, Protocol, Rate, error_event
from config import Settings

MAX_CONTENT_CHARS = 20
MAX_METADATA_BYTES = 64
PROTOCOL = Protocol(Settings(max_content_chars=MAX_CONTENT_CHARS, max_metadata_bytes=MAX_METADATA_BYTES))

# One valid frame of every client type (without ``type``), and the fields it parses to.
VALID = {
    "join_conversation": ({"conversation_id": "c1", "since_seq": 4}, {"conversation_id": "c1", "since_seq": 4}),
    "leave_conversation": ({"conversation_id": "c1"}, {"conversation_id": "c1"}),
    "send_message": (
        {"conversation_id": "c1", "content": "hi", "client_msg_id": "k1"},
        {"conversation_id": "c1", "content": "hi", "message_type": "text", "metadata": {}, "client_msg_id": "k1", "reply_to": None},
    ),
    "edit_message": ({"message_id": "m1", "content": "fixed"}, {"message_id": "m1", "content": "fixed"}),
    "delete_message": ({"message_id": "m1"}, {"message_id": "m1"}),
    "start_typing": ({"conversation_id": "c1"}, {"conversation_id": "c1"}),
    "stop_typing": ({"conversation_id": "c1"}, {"conversation_id": "c1"}),
    "add_reaction": ({"message_id": "m1", "emoji": "👍"}, {"message_id": "m1", "emoji": "👍"}),
    "remove_reaction": ({"message_id": "m1", "emoji": "👍"}, {"message_id": "m1", "emoji": "👍"}),
    "mark_read": ({"conversation_id": "c1"}, {"conversation_id": "c1", "message_id": None}),
    "update_presence": ({"status": "away"}, {"status": "away"}),
    "ping": ({}, {}),
}

# What each type draws from besides the per-socket frame limit (docs/delivery.md, "Rate limits").
RATES = {
    "join_conversation": Rate.READ,
    "leave_conversation": Rate.FREE,
    "ping": Rate.FREE,
    **{
        kind: Rate.WRITE
        for kind in (
            "send_message",
            "edit_message",
            "delete_message",
            "start_typing",
            "stop_typing",
            "add_reaction",
            "remove_reaction",
            "mark_read",
            "update_presence",
        )
    },
}


def frame(**fields) -> bytes:
    return orjson.dumps(fields)


def refused(raw: str | bytes) -> InvalidMessage:
    with pytest.raises(InvalidMessage) as error:
        PROTOCOL.parse_frame(raw)
    return error.value


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def test_every_client_type_has_a_sample_here():
    assert set(VALID) == set(PROTOCOL.client_messages) == set(RATES)


@pytest.mark.parametrize("kind", sorted(VALID))
def test_a_valid_frame_of_every_type_parses(kind):
    fields, parsed = VALID[kind]
    assert PROTOCOL.parse_frame(frame(type=kind, request_id="r1", **fields)) == (kind, parsed, "r1")
    assert PROTOCOL.parse_frame(frame(type=kind, **fields)) == (kind, parsed, None)


@pytest.mark.parametrize("kind", sorted(RATES))
def test_each_type_declares_its_rate(kind):
    assert PROTOCOL.client_messages[kind].rate is RATES[kind]


def test_request_id_may_be_a_string_or_an_integer():
    assert PROTOCOL.parse_frame(frame(type="ping", request_id=7))[2] == 7
    assert PROTOCOL.parse_frame(frame(type="ping", request_id="x" * ID_MAX_CHARS))[2] == "x" * ID_MAX_CHARS


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"{not json", "The frame is not valid JSON"),
        (b"", "The frame is not valid JSON"),
        (b"[1, 2]", "The frame must be a JSON object"),
        (b'"ping"', "The frame must be a JSON object"),
    ],
)
def test_a_frame_that_is_not_a_json_object_is_refused(raw, message):
    error = refused(raw)
    assert error.message == message and error.details is None and "request_id" not in error.extra


@pytest.mark.parametrize("request_id", [True, 1.5, ["r"], {"r": 1}, "x" * (ID_MAX_CHARS + 1)])
def test_a_bad_request_id_is_refused_and_not_echoed(request_id):
    error = refused(frame(type="ping", request_id=request_id))
    assert error.message == "Invalid request_id" and list(error.details) == ["request_id"]
    assert "request_id" not in error.extra


def test_a_missing_or_unknown_type_is_refused_with_the_request_id_echoed():
    missing = refused(frame(request_id="r1", conversation_id="c1"))
    assert missing.details == {"type": ["Missing or not a string."]} and missing.extra == {"request_id": "r1"}
    not_a_string = refused(frame(type=3, request_id="r2"))
    assert not_a_string.details == {"type": ["Missing or not a string."]} and not_a_string.extra == {"request_id": "r2"}
    unknown = refused(frame(type="shout", request_id=9))
    assert unknown.message == "Unknown message type 'shout'" and unknown.extra == {"request_id": 9}
    assert all(kind in unknown.details["type"][0] for kind in PROTOCOL.client_messages)


def test_the_error_event_carries_the_request_id_and_details():
    event = orjson.loads(error_event(refused(frame(type="ping", request_id="r3", extra=1))))
    assert event == {
        "type": "error",
        "code": "invalid_message",
        "message": "Invalid fields",
        "details": {"extra": ["Unknown field."]},
        "request_id": "r3",
    }


@pytest.mark.parametrize(
    "fields, details",
    [
        ({"type": "leave_conversation", "conversation_id": "c1", "since_seq": 1}, {"since_seq": ["Unknown field."]}),
        ({"type": "leave_conversation"}, {"conversation_id": ["Missing data for required field."]}),
        ({"type": "join_conversation", "conversation_id": "c1", "since_seq": True}, {"since_seq": ["Not a valid integer."]}),
        ({"type": "join_conversation", "conversation_id": "c1", "since_seq": "4"}, {"since_seq": ["Not a valid integer."]}),
        ({"type": "join_conversation", "conversation_id": "", "since_seq": None}, {"conversation_id": ["Length must be between 1 and 128."]}),
        ({"type": "send_message", "conversation_id": "c1", "content": "x" * (MAX_CONTENT_CHARS + 1)}, {"content": ["Longer than maximum length 20."]}),
        ({"type": "send_message", "conversation_id": "c1", "content": "   "}, {"content": ["Must not be empty."]}),
        ({"type": "send_message", "conversation_id": "c1", "content": "a\x00b"}, {"content": ["Control characters are not allowed."]}),
        (
            {"type": "send_message", "conversation_id": "c1", "content": "hi", "message_type": "system"},
            {"message_type": ["Must be one of: text, emoji, file, image."]},
        ),
        (
            {"type": "send_message", "conversation_id": "c1", "content": "", "message_type": "file"},
            {"metadata": ["A file message needs metadata.file_id (from upload/)."]},
        ),
        ({"type": "add_reaction", "message_id": "m1", "emoji": "a b"}, {"emoji": ["String does not match expected pattern."]}),
        ({"type": "update_presence", "status": "asleep"}, {"status": ["Must be one of: online, away, busy, offline."]}),
    ],
)
def test_invalid_fields_are_named_and_the_request_id_echoed(fields, details):
    error = refused(frame(request_id="r1", **fields))
    assert (error.message, error.details, error.extra) == ("Invalid fields", details, {"request_id": "r1"})


@pytest.mark.parametrize(
    "metadata, problem",
    [
        ({"blob": "x" * MAX_METADATA_BYTES}, f"Metadata is larger than {MAX_METADATA_BYTES} bytes."),
        (nested(METADATA_MAX_DEPTH + 1), f"Nested deeper than {METADATA_MAX_DEPTH} levels."),
        ({"$where": 1}, "Keys must not contain NUL or '.', nor start with '$'."),
        ({"a.b": 1}, "Keys must not contain NUL or '.', nor start with '$'."),
        ({"big": 2**63}, "Integers must fit in 64 bits."),
    ],
)
def test_metadata_limits(metadata, problem):
    error = refused(frame(type="send_message", request_id="r1", conversation_id="c1", content="hi", metadata=metadata))
    assert error.details == {"metadata": [problem]} and error.extra == {"request_id": "r1"}


def test_metadata_at_the_limits_is_accepted():
    at_depth = nested(METADATA_MAX_DEPTH)  # larger than MAX_METADATA_BYTES: parsed with the default size limit
    _, fields, _ = Protocol(Settings()).parse_frame(frame(type="send_message", conversation_id="c1", content="hi", metadata=at_depth))
    assert fields["metadata"] == at_depth
    fits = {"b": "x" * (MAX_METADATA_BYTES - len(b'{"b":""}'))}
    _, fields, _ = PROTOCOL.parse_frame(frame(type="send_message", conversation_id="c1", content="hi", metadata=fits))
    assert fields["metadata"] == fits
