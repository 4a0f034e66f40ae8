"""Every wire message in one place: what clients send (schemas) and what the server sends (builders).

Inbound WebSocket frames and REST bodies are checked here with marshmallow; outbound
events are built here and encoded once (orjson) so a broadcast serializes one time.
Limits come from ``Settings``, so the schemas are built per ``Protocol`` instance.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Any

import orjson
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from actors.errors import ChatError, InvalidMessage
from actors.principal import ID_MAX_CHARS, SAFE_ID_CHARS, SAFE_ID_PATTERN, is_safe_id
from config import Settings
from storage.clock import isoformat, utcnow
from storage.conversations import CONVERSATION_TYPES
from storage.messages import FILE_MESSAGE_TYPES, MESSAGE_TYPES
from storage.participants import ROLES
from storage.presence import PRESENCE_STATUSES

EMOJI_MAX_CHARS = 32
TITLE_MAX_CHARS = 200
DESCRIPTION_MAX_CHARS = 2000
MAX_PARTICIPANTS_PER_REQUEST = 500
# Metadata is stored as is: keep it to what every MongoDB stores (which stops at 100 levels).
METADATA_MAX_DEPTH = 32
BSON_INT_RANGE = range(-(2**63), 2**63)
CLIENT_MESSAGE_TYPES = tuple(t for t in MESSAGE_TYPES if t != "system")

# C0 controls and DEL, except tab, newline and carriage return.
_CONTROLS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f"
_CONTROL_CHARS = re.compile(f"[{_CONTROLS}]")


def _no_control_chars(value: str) -> None:
    if _CONTROL_CHARS.search(value):
        raise ValidationError("Control characters are not allowed.")


def _metadata_problem(value: Any, level: int = 1) -> str | None:
    """Why MongoDB could not store ``value`` (a JSON object or array at nesting ``level``), if it could not."""
    if level > METADATA_MAX_DEPTH:
        return f"Nested deeper than {METADATA_MAX_DEPTH} levels."
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(key, str) and ("\x00" in key or key.startswith("$") or "." in key):
            return "Keys must not contain NUL or '.', nor start with '$'."
        if isinstance(item, (dict, list)):
            problem = _metadata_problem(item, level + 1)
            if problem:
                return problem
        elif isinstance(item, int) and not isinstance(item, bool) and item not in BSON_INT_RANGE:
            return "Integers must fit in 64 bits."
    return None


def _identifier(**kwargs) -> fields.String:
    return fields.String(validate=[validate.Length(min=1, max=ID_MAX_CHARS), _no_control_chars], **kwargs)


def _safe_id(value: str) -> None:
    if not is_safe_id(value):
        raise ValidationError(f"A user id is 1 to {ID_MAX_CHARS} of {SAFE_ID_CHARS}.")


def _user_id(**kwargs) -> fields.String:
    """A user id as tokens carry them: anything else could never sign in."""
    return fields.String(validate=_safe_id, **kwargs)


# Each validator above that is a plain function, as the JSON Schema ``pattern`` stating its rule (openapi.json).
VALIDATOR_PATTERNS = {_no_control_chars: f"^[^{_CONTROLS}]*$", _safe_id: SAFE_ID_PATTERN}


class _RequestId(fields.Field):
    """A client's correlation id: a short string or an integer, echoed back verbatim."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValidationError("Must be a string or an integer.")
        if isinstance(value, str) and len(value) > ID_MAX_CHARS:
            raise ValidationError(f"Longer than {ID_MAX_CHARS} characters.")
        return value


class _Seq(fields.Integer):
    """A sequence number: a JSON integer, never a bool, a float or a string."""

    def __init__(self, **kwargs) -> None:
        super().__init__(strict=True, validate=validate.Range(min=0, max=2**53), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise ValidationError("Not a valid integer.")
        return super()._deserialize(value, attr, data, **kwargs)


class _Base(Schema):
    class Meta:
        unknown = RAISE


class Rate(enum.Enum):
    """What a client message draws from besides the per-socket frame limit."""

    WRITE = "write"  # the user's write bucket (RATE_LIMIT_PER_SEC)
    READ = "read"  # the user's read budget (READ_ROWS_PER_SEC), paid by the rows it sends
    FREE = "free"


@dataclasses.dataclass(frozen=True)
class ClientMessage:
    schema: Schema
    rate: Rate


class Protocol:
    """The schemas with this deployment's limits, and the frame parser."""

    def __init__(self, settings: Settings) -> None:
        self.max_metadata_bytes = settings.max_metadata_bytes
        content = fields.String(
            required=True,
            validate=[validate.Length(max=settings.max_content_chars), _no_control_chars],
        )
        metadata = fields.Dict(keys=fields.String(), load_default=dict, validate=self._check_metadata)
        emoji = fields.String(
            required=True,
            validate=[validate.Length(min=1, max=EMOJI_MAX_CHARS), validate.Regexp(r"\A\S+\Z"), _no_control_chars],
        )
        check_message = self._check_message_body

        conversation = {"conversation_id": _identifier(required=True)}
        message_body = {
            "content": content,
            "message_type": fields.String(load_default="text", validate=validate.OneOf(CLIENT_MESSAGE_TYPES)),
            "metadata": metadata,
            "client_msg_id": _identifier(load_default=None),
            "reply_to": _identifier(load_default=None),
        }

        def schema(name: str, spec: dict, *, checked: bool = False) -> Schema:
            spec = {**spec}
            if checked:
                spec["_check"] = validates_schema(lambda self, data, **kw: check_message(data))
            return type(name, (_Base,), spec)()

        # Every client message type, declared once: its fields and what it costs (``Rate``). Its
        # handler (web/websocket.py) names the type it serves.
        self.client_messages: dict[str, ClientMessage] = {
            "join_conversation": ClientMessage(
                schema("JoinConversation", {**conversation, "since_seq": _Seq(load_default=None)}), Rate.READ
            ),
            "leave_conversation": ClientMessage(schema("LeaveConversation", conversation), Rate.FREE),
            "send_message": ClientMessage(schema("SendMessage", {**conversation, **message_body}, checked=True), Rate.WRITE),
            "edit_message": ClientMessage(
                schema("EditMessage", {"message_id": _identifier(required=True), "content": content}), Rate.WRITE
            ),
            "delete_message": ClientMessage(schema("DeleteMessage", {"message_id": _identifier(required=True)}), Rate.WRITE),
            "start_typing": ClientMessage(schema("StartTyping", conversation), Rate.WRITE),
            "stop_typing": ClientMessage(schema("StopTyping", conversation), Rate.WRITE),
            "add_reaction": ClientMessage(
                schema("AddReaction", {"message_id": _identifier(required=True), "emoji": emoji}), Rate.WRITE
            ),
            "remove_reaction": ClientMessage(
                schema("RemoveReaction", {"message_id": _identifier(required=True), "emoji": emoji}), Rate.WRITE
            ),
            "mark_read": ClientMessage(
                schema("MarkRead", {**conversation, "message_id": _identifier(load_default=None)}), Rate.WRITE
            ),
            "update_presence": ClientMessage(
                schema("UpdatePresence", {"status": fields.String(required=True, validate=validate.OneOf(PRESENCE_STATUSES))}),
                Rate.WRITE,
            ),
            "ping": ClientMessage(schema("Ping", {}), Rate.FREE),
        }

        self.rest_bodies: dict[str, Schema] = {
            "create_conversation": schema(
                "CreateConversation",
                {
                    "type": fields.String(required=True, validate=validate.OneOf(CONVERSATION_TYPES)),
                    "title": fields.String(
                        load_default=None, allow_none=True, validate=[validate.Length(max=TITLE_MAX_CHARS), _no_control_chars]
                    ),
                    "description": fields.String(
                        load_default=None,
                        allow_none=True,
                        validate=[validate.Length(max=DESCRIPTION_MAX_CHARS), _no_control_chars],
                    ),
                    "participant_ids": fields.List(
                        _user_id(), load_default=list, validate=validate.Length(max=MAX_PARTICIPANTS_PER_REQUEST)
                    ),
                },
            ),
            "update_conversation": schema(
                "UpdateConversation",
                {
                    "title": fields.String(
                        allow_none=True, validate=[validate.Length(max=TITLE_MAX_CHARS), _no_control_chars]
                    ),
                    "description": fields.String(
                        allow_none=True, validate=[validate.Length(max=DESCRIPTION_MAX_CHARS), _no_control_chars]
                    ),
                },
            ),
            "add_participant": schema(
                "AddParticipant",
                {
                    "user_id": _user_id(required=True),
                    "role": fields.String(load_default="member", validate=validate.OneOf(ROLES[1:])),
                },
            ),
            "create_message": schema("CreateMessage", message_body, checked=True),
            "edit_message": schema("EditMessageBody", {"content": content}),
            "add_reaction": schema("AddReactionBody", {"emoji": emoji}),
            "update_presence": schema(
                "UpdatePresenceBody",
                {"status": fields.String(required=True, validate=validate.OneOf(PRESENCE_STATUSES))},
            ),
            "mark_read": schema("MarkReadBody", {"message_id": _identifier(load_default=None)}),
            # The form fields of a multipart upload other than the ``file`` part itself.
            "upload": schema("UploadForm", {"conversation_id": _identifier(load_default=None)}),
        }

    def _check_metadata(self, value: dict) -> None:
        problem = _metadata_problem(value)
        if problem:
            raise ValidationError(problem)
        try:
            size = len(orjson.dumps(value))
        except TypeError:
            raise ValidationError("Metadata must be plain JSON.") from None
        if size > self.max_metadata_bytes:
            raise ValidationError(f"Metadata is larger than {self.max_metadata_bytes} bytes.")

    @staticmethod
    def _check_message_body(data: dict) -> None:
        kind = data.get("message_type", "text")
        if kind in FILE_MESSAGE_TYPES:
            file_id = data.get("metadata", {}).get("file_id")
            if not isinstance(file_id, str) or not file_id:
                raise ValidationError({"metadata": [f"A {kind} message needs metadata.file_id (from upload/)."]})
        elif not data.get("content", "").strip():
            raise ValidationError({"content": ["Must not be empty."]})

    def parse_frame(self, raw: str | bytes) -> tuple[str, dict, Any]:
        """A client frame as ``(type, fields, request_id)``, or ``InvalidMessage``."""
        frame = _frame_object(raw)
        request_id = _request_id(frame.pop("request_id", None))
        kind = frame.pop("type", None)
        if not isinstance(kind, str):
            raise InvalidMessage("The frame needs a string 'type'", {"type": ["Missing or not a string."]}, request_id=request_id)
        message = self.client_messages.get(kind)
        if message is None:
            raise InvalidMessage(
                f"Unknown message type {kind[:64]!r}",
                {"type": [f"Must be one of: {', '.join(self.client_messages)}."]},
                request_id=request_id,
            )
        return kind, load(message.schema, frame, request_id=request_id), request_id

    def load_body(self, name: str, body: Any) -> dict:
        if not isinstance(body, dict):
            raise InvalidMessage("The body must be a JSON object")
        return load(self.rest_bodies[name], body)


def _frame_object(raw: str | bytes) -> dict:
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidMessage("The frame is not valid JSON") from None
    if not isinstance(frame, dict):
        raise InvalidMessage("The frame must be a JSON object")
    return frame


def _request_id(value: Any) -> Any:
    try:
        return _RequestId().deserialize(value) if value is not None else None
    except ValidationError as error:
        raise InvalidMessage("Invalid request_id", {"request_id": error.messages}) from None


def request_id_of(raw: str | bytes) -> Any:
    """The frame's ``request_id``, if it has a usable one: what the error about a frame that is
    otherwise not read (over the socket's rate) echoes."""
    try:
        return _request_id(_frame_object(raw).get("request_id"))
    except InvalidMessage:
        return None


def load(schema: Schema, data: dict, **extra: Any) -> dict:
    try:
        return schema.load(data)
    except ValidationError as error:
        raise InvalidMessage("Invalid fields", error.messages, **extra) from None


# --- Objects as they appear on the wire ---------------------------------------------


def message_object(doc: dict, reactions: list[dict] | None = None) -> dict:
    return {
        "id": doc["_id"],
        "conversation_id": doc["conversation_id"],
        "sender_id": doc["sender_id"],
        "content": doc["content"],
        "message_type": doc["message_type"],
        "metadata": doc.get("metadata") or {},
        "seq": doc["seq"],
        "created_at": isoformat(doc["created_at"]),
        "edited_at": isoformat(doc.get("edited_at")),
        "is_deleted": doc.get("is_deleted", False),
        "reply_to": doc.get("reply_to"),
        "client_msg_id": doc.get("client_msg_id"),
        "reactions": reactions or [],
    }


def reaction_object(doc: dict) -> dict:
    return {
        "id": doc["_id"],
        "message_id": doc["message_id"],
        "conversation_id": doc["conversation_id"],
        "user_id": doc["user_id"],
        "emoji": doc["emoji"],
        "created_at": isoformat(doc["created_at"]),
    }


def participant_object(doc: dict) -> dict:
    return {
        "user_id": doc["user_id"],
        "role": doc["role"],
        "joined_at": isoformat(doc["joined_at"]),
        "last_read_seq": doc.get("last_read_seq", 0),
        "last_seen_at": isoformat(doc.get("last_seen_at")),
    }


def conversation_object(doc: dict, participants: list[dict] | None = None, **extra: Any) -> dict:
    obj = {
        "id": doc["_id"],
        "type": doc["type"],
        "title": doc.get("title"),
        "description": doc.get("description"),
        "created_by": doc["created_by"],
        "created_at": isoformat(doc["created_at"]),
        "updated_at": isoformat(doc.get("updated_at")),
        "last_activity_at": isoformat(doc.get("last_activity_at")),
    }
    if participants is not None:
        obj["participants"] = [participant_object(p) for p in participants]
    obj.update(extra)
    return obj


def file_object(doc: dict, url: str) -> dict:
    """An uploaded file as ``upload/`` answers it; ``url`` downloads the bytes."""
    return {
        "id": doc["_id"],
        "url": url,
        "filename": doc["filename"],
        "content_type": doc["content_type"],
        "size": doc["size"],
        "conversation_id": doc.get("conversation_id"),
        "created_at": isoformat(doc.get("created_at")),
    }


def presence_object(user_id: str, status: str, current_conversation_id: str | None, last_seen) -> dict:
    return {
        "user_id": user_id,
        "status": status,
        "current_conversation_id": current_conversation_id,
        "last_seen": isoformat(last_seen),
    }


def read_receipt_fields(doc: dict) -> dict:
    return {
        "conversation_id": doc["conversation_id"],
        "user_id": doc["user_id"],
        "last_read_seq": doc.get("last_read_seq", 0),
        "last_read_message_id": doc.get("last_read_message_id"),
        "read_at": isoformat(doc.get("last_read_at")),
    }


# --- Server events ---------------------------------------------------------------------

SERVER_EVENTS = (
    "connection_established",
    "conversation_joined",
    "conversation_left",
    "new_message",
    "message_updated",
    "message_deleted",
    "reaction_added",
    "reaction_removed",
    "typing_indicator",
    "read_receipt",
    "presence_update",
    "presence_batch",
    "conversation_updated",
    "conversation_deleted",
    "resync_required",
    "error",
    "pong",
)


def event(kind: str, request_id: Any = None, **payload: Any) -> bytes:
    """One server event, encoded once; ``request_id`` is echoed when the client sent one."""
    assert kind in SERVER_EVENTS, kind
    body = {"type": kind, **payload}
    if request_id is not None:
        body["request_id"] = request_id
    return orjson.dumps(body)


def error_event(error: ChatError, request_id: Any = None) -> bytes:
    request_id = error.extra.get("request_id", request_id)
    payload = {"code": error.code, "message": error.message}
    if error.details is not None:
        payload["details"] = error.details
    return event("error", request_id, **payload)


def connection_established(user_id: str, tenant_id: str) -> bytes:
    return event(
        "connection_established",
        message="Connected to chat service",
        user_id=user_id,
        tenant_id=tenant_id,
        timestamp=isoformat(utcnow()),
    )
