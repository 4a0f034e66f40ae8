"""The schemas of openapi.json's components: answers written here, request bodies generated.

Answers are dicts built by actors/protocol.py, so their schemas are written out here and kept
true by validating every answer of the REST tests against them (tests/support/rest.py).
Request bodies are generated with apispec from ``Protocol.rest_bodies``, the marshmallow
schemas the server loads them with, so their fields, limits and patterns are the enforced ones.
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import fields, validate

from actors.protocol import VALIDATOR_PATTERNS, Protocol
from actors.stream_events import EVENT_KINDS
from config import Settings
from storage.conversations import CONVERSATION_TYPES
from storage.messages import MESSAGE_TYPES
from storage.participants import ROLES
from storage.presence import PRESENCE_STATUSES
from web.rest.files import ALLOWED_TYPES

JSON = "application/json"


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


STRING = {"type": "string"}
TIME = {"type": "string", "format": "date-time"}


def obj(properties: dict, required: list[str] | None = None, *, closed: bool = True, **extra: Any) -> dict:
    schema = {"type": "object", "properties": properties, "required": list(properties) if required is None else required}
    if closed:
        schema["additionalProperties"] = False
    schema.update(extra)
    return schema


def page_of(name: str) -> dict:
    return obj(
        {
            "results": {"type": "array", "items": ref(name)},
            "next": nullable({"type": "string", "description": "Path and query of the next page"}),
            "previous": nullable({"type": "string", "description": "Path and query of the previous page"}),
        }
    )


def answer_schemas() -> dict[str, dict]:
    return {
        "Error": obj(
            {
                "error": obj(
                    {
                        "code": {"type": "string", "description": "Stable machine-readable code, e.g. invalid_message, not_found"},
                        "message": STRING,
                        "details": {"description": "Field errors (`{field: [messages]}`) or null"},
                    }
                )
            }
        ),
        "ReactionSummary": obj(
            {"emoji": STRING, "count": {"type": "integer", "minimum": 1}, "user_ids": {"type": "array", "items": STRING}}
        ),
        "Message": obj(
            {
                "id": STRING,
                "conversation_id": STRING,
                "sender_id": STRING,
                "content": STRING,
                "message_type": {"enum": list(MESSAGE_TYPES)},
                "metadata": {"type": "object"},
                "seq": {"type": "integer", "minimum": 1},
                "created_at": TIME,
                "edited_at": nullable(TIME),
                "is_deleted": {"type": "boolean"},
                "reply_to": nullable(STRING),
                "client_msg_id": nullable(STRING),
                "reactions": {"type": "array", "items": ref("ReactionSummary")},
            }
        ),
        "Reaction": obj(
            {"id": STRING, "message_id": STRING, "conversation_id": STRING, "user_id": STRING, "emoji": STRING, "created_at": TIME}
        ),
        "Participant": obj(
            {
                "user_id": STRING,
                "role": {"enum": list(ROLES)},
                "joined_at": TIME,
                "last_read_seq": {"type": "integer", "minimum": 0},
                "last_seen_at": nullable(TIME),
            }
        ),
        "Conversation": obj(
            {
                "id": STRING,
                "type": {"enum": list(CONVERSATION_TYPES)},
                "title": nullable(STRING),
                "description": nullable(STRING),
                "created_by": STRING,
                "created_at": TIME,
                "updated_at": nullable(TIME),
                "last_activity_at": nullable(TIME),
                "participants": {"type": "array", "items": ref("Participant")},
                "unread_count": {"type": "integer", "minimum": 0, "description": "Others' messages after the caller's read pointer"},
                "last_message": nullable(ref("Message")),
                "my_role": nullable({"enum": list(ROLES)}),
            },
            ["id", "type", "title", "description", "created_by", "created_at", "updated_at", "last_activity_at"],
        ),
        "ReadReceipt": obj(
            {
                "conversation_id": STRING,
                "user_id": STRING,
                "last_read_seq": {"type": "integer", "minimum": 0},
                "last_read_message_id": nullable(STRING),
                "read_at": nullable(TIME),
            }
        ),
        "Presence": obj(
            {
                "user_id": STRING,
                "status": {"enum": list(PRESENCE_STATUSES)},
                "current_conversation_id": nullable(STRING),
                "last_seen": nullable(TIME),
            }
        ),
        "File": obj(
            {
                "id": STRING,
                "url": {"type": "string", "description": "Where to GET the bytes"},
                "filename": STRING,
                "content_type": {"enum": list(ALLOWED_TYPES)},
                "size": {"type": "integer", "minimum": 1},
                "conversation_id": nullable(STRING),
                "created_at": TIME,
            }
        ),
        "StreamEvent": obj(
            {
                "type": {"enum": ["new_message", *EVENT_KINDS]},
                "conversation_id": STRING,
                "seq": {"type": "integer", "minimum": 1, "description": "The event's place in the conversation's stream"},
                "message": ref("Message"),
                "message_id": STRING,
                "reaction": ref("Reaction"),
                "user_id": STRING,
                "emoji": STRING,
                "conversation": ref("Conversation"),
            },
            ["type", "conversation_id", "seq"],
            description="As the socket sends it: `message` (new_message, message_updated), `message_id` "
            "(message_deleted), `reaction` (reaction_added), `message_id`, `user_id`, `emoji` (reaction_removed), "
            "`conversation` (conversation_updated)",
        ),
        "ConversationPage": page_of("Conversation"),
        "ParticipantPage": page_of("Participant"),
        "MessagePage": page_of("Message"),
        "StreamEventPage": page_of("StreamEvent"),
        "ReactionPage": page_of("Reaction"),
        "PresencePage": page_of("Presence"),
    }


def body_component(name: str) -> str:
    """The component of the ``Protocol.rest_bodies`` entry ``name``: ``mark_read`` is ``MarkRead``."""
    return "".join(word.capitalize() for word in name.split("_"))


def _ecma(pattern: str) -> str:
    """A Python regex's ``\\A`` and ``\\Z`` anchors as JSON Schema (ECMA-262) writes them."""
    return pattern.replace(r"\A", "^").replace(r"\Z", "$")


def _patterns(converter, field: fields.Field, **kwargs: Any) -> dict:
    """Every regex a field is checked with: Regexp validators and the function validators in
    ``VALIDATOR_PATTERNS``. A property has one ``pattern``; any further one goes in ``allOf``."""
    found = [_ecma(v.regex.pattern) for v in field.validators if isinstance(v, validate.Regexp)]
    found += [VALIDATOR_PATTERNS[v] for v in field.validators if v in VALIDATOR_PATTERNS]
    if not found:
        return {}
    first, *more = found
    return {"pattern": first, **({"allOf": [{"pattern": p} for p in more]} if more else {})}


def body_schemas(settings: Settings) -> dict[str, dict]:
    """A component per request body, generated from the schema the server loads it with, plus
    what a marshmallow schema cannot state: prose, a check made in the handler, the file part."""
    plugin = MarshmallowPlugin()
    APISpec("request bodies", "1", "3.1.0", plugins=[plugin])  # gives the plugin its converter
    plugin.converter.add_attribute_function(_patterns)
    schemas = {
        body_component(name): plugin.converter.schema2jsonschema(schema) for name, schema in Protocol(settings).rest_bodies.items()
    }
    message = schemas["CreateMessage"]["properties"]
    message["content"]["description"] = "Not blank for text and emoji messages"
    message["metadata"]["description"] = (
        f"Plain JSON, at most {settings.max_metadata_bytes} bytes encoded; `file_id` (from upload/) for file and image messages"
    )
    schemas["UpdateConversation"]["minProperties"] = 1  # the handler refuses an empty change
    upload = schemas["Upload"]  # the form fields; the file itself is a part of its own
    upload["properties"] = {"file": {"type": "string", "contentMediaType": "application/octet-stream"}, **upload["properties"]}
    upload["required"] = ["file"]
    return schemas
