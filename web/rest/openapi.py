"""``openapi.json``: an OpenAPI 3.1 description of every route the application serves.

Built from this deployment's settings (so the limits it states are the ones enforced).
Paths are written here; component schemas come from web/rest/openapi_schemas.py, request
bodies generated from the ``Protocol.rest_bodies`` entry each operation names
(``x-body-schema``). Kept true by tests/test_rest_openapi.py: every route and method in
web/app.py is described here and nothing else is, and sample bodies get the same verdict
from the description and the server; real answers are validated against the response schemas.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from config import Settings
from web.assets import CONTENT_TYPES, demo_files
from web.rest import conversations, events, files, messages, participants, presence
from web.rest.base import API_PREFIX, ApiHandler
from web.rest.openapi_schemas import JSON, STRING, answer_schemas, body_component, body_schemas, ref

_ERROR_TEXT = {
    400: "Invalid input: malformed JSON, wrong types, unknown fields or limits; `details` maps fields to messages",
    401: "Missing, malformed, badly signed or expired token",
    403: "A participant without the right (role, sender, conversation type)",
    404: "No such object for the caller: missing, in another tenant, or in a conversation the caller is not in",
    409: "The object is in a state that refuses the change (a deleted message)",
    413: "The body or file is larger than allowed; nothing stored",
    415: "The body's content type is not accepted",
    429: "Over the rate limit (writes, `rate_limited`), the read budget (reads, `rate_limited`), or for upload/ "
    "an upload quota (`upload_quota_exceeded`); see `Retry-After` (seconds)",
}


def errors(*codes: int) -> dict:
    return {str(code): {"$ref": f"#/components/responses/E{code}"} for code in codes}


def ok(status: int, description: str, schema: dict | None = None, content_type: str = JSON) -> dict:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = {content_type: {"schema": schema}}
    return {str(status): response}


def body(name: str) -> dict:
    return {"x-body-schema": name, "requestBody": {"required": True, "content": {JSON: {"schema": ref(body_component(name))}}}}


def path_param(name: str, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": STRING, "description": description}


def query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def limit_param(default: int, maximum: int) -> dict:
    return query("limit", {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}, f"Page size (at most {maximum})")


OFFSET = query("offset", {"type": "integer", "minimum": 0, "default": 0}, "How many to skip")
CONVERSATION_ID = path_param("conversation_id", "A conversation id")
MESSAGE_ID = path_param("message_id", "A message id")

MESSAGE_PAGING = """\
History is paged by `seq`. Within a page, messages are always in **ascending** `seq`.
Without `before`/`after` the page is the newest one. `before=S` gives the newest `limit`
messages with `seq < S`; `after=S` gives the oldest `limit` messages with `seq > S`
(combined with `before`, only those below it too). `next` points to the older neighbour
page (`before=<first seq of this page>`), `previous` to the newer one
(`after=<last seq of this page>`); either is `null` when nothing is on that side.
So: newest page first, follow `next` to go back in time; to catch up after `seq` S,
ask `after=S` and follow `previous` until it is `null`. Deleted messages stay in
history as tombstones (`is_deleted: true`, `content: ""`)."""

EVENT_PAGING = """\
Every change a member sees in a conversation is an event of its stream, numbered by one `seq`
sequence: new messages (system messages for membership and title changes among them), edits,
deletions, reactions added and removed, and details changes. This answers the events with
`seq > since`, oldest first, in the shapes the socket sends them (`type`, `conversation_id`,
`seq` and the event's fields), each as it stands now: an edited or deleted message shows its
current content or tombstone. `next` asks for the page after this one (`since=<last seq>`);
it is `null` on the last page. Keep the largest `seq` seen and ask again with it. Typing,
presence and read receipts are not stream events."""

UPLOAD_RULES = """\
`multipart/form-data` with one part `file` (with a filename) and optionally the field
`conversation_id` (the caller must be a participant). Any other field is refused (400).
At most `{max_bytes}` bytes of file (413, and nothing stored). A body past the limit plus
64 KiB of framing is read and dropped before the 413, on a connection that stays open, up
to 16 MiB more; a body declared larger still is refused before it is read, a chunked one
once it passes that bound, and the connection closes.
Upload quotas: at most `{user_quota}` bytes per user and `{tenant_quota}` per tenant in any 24
hours (0: no limit), counting the files still stored. Past one: 429 `upload_quota_exceeded`,
nothing stored, with `Retry-After` and `details` `{{quota: "user"|"tenant", quota_bytes,
used_bytes, retry_after}}`; a file larger than a whole quota is 413. A file that no stored
message carries is deleted `{ttl}` seconds after its upload (0: never). The content type is
decided by the bytes, not the header: it must be one of {allowed}. A declared part type
other than `application/octet-stream` must agree with the bytes. Otherwise 415.
Download access: the participants of `conversation_id`; without one, the uploader and
tenant admins. A `file` or `image` message carries the id in `metadata.file_id`; the file
must be one uploaded to that conversation (or without one, by the sender), and for
`image` an image."""


def static_file(summary: str, content_type: str) -> dict:
    return {
        "get": {
            "summary": summary,
            "security": [],
            "responses": ok(200, "The file (cacheable; with an `ETag`)", STRING, content_type.split(";")[0])
            | ok(304, "Not modified (`If-None-Match` matched the `ETag`)"),
        }
    }


def asset_paths(settings: Settings) -> dict:
    """The browser SDK, and the demo app unless ``DEMO_ENABLED=0`` (web/assets.py)."""
    paths = {"/sdk/chat.js": static_file("The browser SDK, an ES module (docs/sdk.md); any origin may import it", CONTENT_TYPES[".js"])}
    if settings.demo_enabled:
        paths["/demo/"] = static_file("The demo app: paste a token, or open /demo/#tenant=..&token=..", CONTENT_TYPES[".html"])
        for name in demo_files():
            paths[f"/demo/{name}"] = static_file("A file of the demo app", CONTENT_TYPES[PurePath(name).suffix])
    return paths


def build_spec(settings: Settings) -> dict:
    """The whole description, with this deployment's limits."""
    components = {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        "responses": {
            f"E{code}": {
                "description": text,
                "content": {JSON: {"schema": ref("Error")}},
                **({"headers": {"Retry-After": {"schema": {"type": "integer"}}}} if code == 429 else {}),
            }
            for code, text in _ERROR_TEXT.items()
        },
        "schemas": {**answer_schemas(), **body_schemas(settings)},
    }

    conversation_ops = {
        "get": {
            "summary": "The conversation, the caller's unread count and last message, and its participants",
            "responses": {**ok(200, "The conversation", ref("Conversation")), **errors(401, 404, 429)},
        },
        "put": {
            "summary": "Change title and/or description (owner or admin)",
            **body("update_conversation"),
            "responses": {**ok(200, "The updated conversation", ref("Conversation")), **errors(400, 401, 403, 404, 413, 415, 429)},
        },
        "delete": {
            "summary": "Delete the conversation with its messages (owner, or a tenant admin)",
            "responses": {**ok(204, "Deleted"), **errors(401, 403, 404, 429)},
        },
    }
    conversation_ops["patch"] = {**conversation_ops["put"], "summary": "Same as PUT (a partial update)"}

    api = API_PREFIX
    paths = {
        "/healthz": {
            "get": {
                "summary": "Liveness and live figures",
                "security": [],
                "responses": ok(200, "Serving", {"type": "object"}) | ok(503, "Stopping", {"type": "object"}),
            }
        },
        "/metrics": {
            "get": {
                "summary": "This node's figures in Prometheus's text format (docs/scale-out.md)",
                "security": [],
                "responses": {"200": {"description": "The metrics", "content": {"text/plain": {"schema": STRING}}}},
            }
        },
        "/ws/chat/{tenant_id}/": {
            "parameters": [path_param("tenant_id", "Must equal the token's tenant_id (else close 4403)")],
            "get": {
                "summary": "The chat WebSocket (`?token=JWT`); the wire protocol is in docs/wire-protocol.md",
                "security": [],
                "parameters": [{"name": "token", "in": "query", "required": True, "schema": STRING}],
                "responses": ok(101, "Switching protocols; a bad token closes with 4401"),
            },
        },
        "/ws/notifications/{tenant_id}/": {
            "parameters": [path_param("tenant_id", "A tenant id")],
            "get": {
                "summary": "The known wrong path: the socket is closed (4404) with a reason naming /ws/chat/{tenant_id}/",
                "security": [],
                "responses": ok(101, "Switching protocols, then closed"),
            },
        },
        f"{api}/openapi.json": {
            "get": {"summary": "This description", "security": [], "responses": ok(200, "OpenAPI 3.1", {"type": "object"})}
        },
        f"{api}/conversations/": {
            "get": {
                "summary": "The caller's conversations, most recently active first, each with unread_count and last_message",
                "parameters": [limit_param(conversations.DEFAULT_PAGE, conversations.MAX_PAGE), OFFSET],
                "responses": {**ok(200, "A page", ref("ConversationPage")), **errors(400, 401, 429)},
            },
            "post": {
                "summary": "Create a conversation; the caller is its owner",
                "description": "A `direct` conversation needs exactly one other participant and is unique per pair: "
                "creating it again answers 200 with the existing one.",
                **body("create_conversation"),
                "responses": {
                    **ok(201, "Created", ref("Conversation")),
                    **ok(200, "The existing direct conversation of this pair", ref("Conversation")),
                    **errors(400, 401, 413, 415, 429),
                },
            },
        },
        f"{api}/conversations/{{conversation_id}}/": {"parameters": [CONVERSATION_ID], **conversation_ops},
        f"{api}/conversations/{{conversation_id}}/participants/": {
            "parameters": [CONVERSATION_ID],
            "get": {
                "summary": "Participants in the order they joined",
                "parameters": [limit_param(participants.DEFAULT_PAGE, participants.MAX_PAGE), OFFSET],
                "responses": {**ok(200, "A page", ref("ParticipantPage")), **errors(400, 401, 404, 429)},
            },
            "post": {
                "summary": "Add a participant to a group or channel (owner or admin); a system message is posted",
                **body("add_participant"),
                "responses": {
                    **ok(201, "Added", ref("Participant")),
                    **ok(200, "Already a participant (unchanged)", ref("Participant")),
                    **errors(400, 401, 403, 404, 413, 415, 429),
                },
            },
        },
        f"{api}/conversations/{{conversation_id}}/participants/{{user_id}}/": {
            "parameters": [CONVERSATION_ID, path_param("user_id", "The participant")],
            "delete": {
                "summary": "Leave (your own user_id) or remove someone (owner or admin; only the owner removes admins; "
                "nobody removes the owner; not in direct conversations)",
                "responses": {**ok(204, "Removed"), **errors(401, 403, 404, 429)},
            },
        },
        f"{api}/conversations/{{conversation_id}}/messages/": {
            "parameters": [CONVERSATION_ID],
            "get": {
                "summary": "Message history, paged by seq",
                "description": MESSAGE_PAGING,
                "parameters": [
                    limit_param(messages.DEFAULT_PAGE, messages.MAX_PAGE),
                    query("before", {"type": "integer", "minimum": 1}, "Only messages with a smaller seq (newest of them)"),
                    query("after", {"type": "integer", "minimum": 0}, "Only messages with a larger seq (oldest of them)"),
                ],
                "responses": {**ok(200, "A page", ref("MessagePage")), **errors(400, 401, 404, 429)},
            },
            "post": {
                "summary": "Send a message; it is broadcast to the joined sockets as new_message",
                "description": "In a channel only the owner and admins post. `client_msg_id` makes retries safe: "
                "a retry answers 200 with the original message and stores nothing.",
                **body("create_message"),
                "responses": {
                    **ok(201, "Stored and broadcast", ref("Message")),
                    **ok(200, "A retry of a client_msg_id already stored: the original", ref("Message")),
                    **errors(400, 401, 403, 404, 413, 415, 429),
                },
            },
        },
        f"{api}/conversations/{{conversation_id}}/messages/{{message_id}}/": {
            "parameters": [CONVERSATION_ID, MESSAGE_ID],
            "get": {"summary": "One message", "responses": {**ok(200, "The message", ref("Message")), **errors(401, 404, 429)}},
            "put": {
                "summary": "Edit the content (the sender only); broadcast as message_updated",
                **body("edit_message"),
                "responses": {**ok(200, "The edited message", ref("Message")), **errors(400, 401, 403, 404, 409, 413, 415, 429)},
            },
            "delete": {
                "summary": "Delete (the sender, the owner or an admin); broadcast as message_deleted",
                "description": "The message stays in history as a tombstone: `content` empty, `metadata` empty, "
                "`is_deleted` true, same `seq`. Deleting it again answers the tombstone again.",
                "responses": {**ok(200, "The tombstone", ref("Message")), **errors(401, 403, 404, 429)},
            },
        },
        f"{api}/conversations/{{conversation_id}}/events/": {
            "parameters": [CONVERSATION_ID],
            "get": {
                "summary": "The conversation's stream after `since`: catch up over HTTP",
                "description": EVENT_PAGING,
                "parameters": [
                    limit_param(events.DEFAULT_PAGE, events.MAX_PAGE),
                    query("since", {"type": "integer", "minimum": 0, "default": 0}, "The largest seq the client has seen"),
                ],
                "responses": {**ok(200, "A page of events, oldest first", ref("StreamEventPage")), **errors(400, 401, 404, 429)},
            },
        },
        f"{api}/conversations/{{conversation_id}}/read/": {
            "parameters": [CONVERSATION_ID],
            "post": {
                "summary": "Mark read up to message_id (default: the latest); broadcast as read_receipt",
                "description": "The read pointer only moves forward; an older message_id answers the current pointer.",
                **body("mark_read"),
                "responses": {**ok(200, "The read receipt", ref("ReadReceipt")), **errors(400, 401, 404, 413, 415, 429)},
            },
        },
        f"{api}/messages/{{message_id}}/reactions/": {
            "parameters": [MESSAGE_ID],
            "get": {
                "summary": "Every reaction to the message, oldest first",
                "responses": {**ok(200, "All of them (next and previous are null)", ref("ReactionPage")), **errors(401, 404, 429)},
            },
            "post": {
                "summary": "React; broadcast as reaction_added",
                **body("add_reaction"),
                "responses": {
                    **ok(201, "Added", ref("Reaction")),
                    **ok(200, "The caller had already reacted with this emoji", ref("Reaction")),
                    **errors(400, 401, 404, 409, 413, 415, 429),
                },
            },
        },
        f"{api}/messages/{{message_id}}/reactions/{{emoji}}/": {
            "parameters": [MESSAGE_ID, path_param("emoji", "The emoji, URL-encoded (%F0%9F%91%8D)")],
            "delete": {
                "summary": "Remove the caller's own reaction; broadcast as reaction_removed",
                "responses": {**ok(204, "Removed"), **errors(400, 401, 404, 429)},
            },
        },
        f"{api}/presence/": {
            "get": {
                "summary": "Presence of the tenant's users: live (open sockets) over stored (last set or seen)",
                "description": "With `user_ids`, exactly those users in that order (never-seen users as offline, "
                "no paging); otherwise every user with stored presence, by user id, paged by limit and offset.",
                "parameters": [
                    query("user_ids", STRING, f"Comma-separated user ids (at most {presence.MAX_USER_IDS})"),
                    limit_param(presence.DEFAULT_PAGE, presence.MAX_PAGE),
                    OFFSET,
                ],
                "responses": {**ok(200, "A page", ref("PresencePage")), **errors(400, 401, 429)},
            }
        },
        f"{api}/presence/me/": {
            "get": {"summary": "The caller's presence", "responses": {**ok(200, "Presence", ref("Presence")), **errors(401, 429)}},
            "put": {
                "summary": "Set the caller's status; pushed to the tenant's sockets (presence_update or presence_batch)",
                **body("update_presence"),
                "responses": {**ok(200, "The new presence", ref("Presence")), **errors(400, 401, 413, 415, 429)},
            },
        },
        f"{api}/upload/": {
            "post": {
                "summary": "Upload a file (stored in MongoDB)",
                "description": UPLOAD_RULES.format(
                    max_bytes=settings.upload_max_bytes,
                    user_quota=settings.upload_quota_bytes,
                    tenant_quota=settings.tenant_upload_quota_bytes,
                    ttl=f"{settings.unattached_file_ttl_secs:g}",
                    allowed=", ".join(f"`{t}`" for t in files.ALLOWED_TYPES),
                ),
                "x-body-schema": "upload",
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": ref("Upload")}}},
                "responses": {**ok(201, "Stored", ref("File")), **errors(400, 401, 404, 413, 415, 429)},
            }
        },
        f"{api}/files/{{file_id}}/": {
            "parameters": [path_param("file_id", "From upload/")],
            "get": {
                "summary": "The uploaded bytes, as uploaded, with the checked content type",
                "responses": {
                    "200": {
                        "description": "The file (Content-Disposition carries the filename)",
                        "content": {"*/*": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}},
                    },
                    **errors(401, 404, 429),
                },
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Chat REST API",
            "version": "1",
            "description": "Multi-tenant chat. Every path except openapi.json, /healthz, /metrics, the WebSocket "
            "upgrades and the static files (/sdk/chat.js, /demo/) needs `Authorization: Bearer <JWT>` (claims user_id, tenant_id, exp; role `admin` is a "
            "tenant-wide administrator). Objects of another tenant, or of a conversation the caller is not in, "
            "answer 404. Lists answer `{results, next, previous}`. JSON bodies need `Content-Type: "
            f"application/json` and at most {settings.max_frame_bytes} bytes. Every write is broadcast to the "
            "conversation's joined WebSocket members exactly as the same write over the socket would be.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths | asset_paths(settings),
        "components": components,
    }


class OpenApiHandler(ApiHandler):
    """Served without auth: a client needs the description before it has a token."""

    def prepare(self) -> None:
        pass

    def get(self) -> None:
        self.respond(build_spec(self.ctx.settings))
