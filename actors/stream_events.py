"""A conversation's stream events besides new messages: how each is recorded, applied and shown.

An edit, a deletion, a reaction added or removed, and new details are each stored as an event
row (``storage.messages.build_event``) that takes the conversation's next ``seq``, like a
message. The row is stored first; the change it records is applied right after, in ``seq``
order (the conversation's write queue runs one batch at a time), and only then is the event
broadcast. So the unique ``seq`` index decides every change's place before it happens, and
what a member sees live is what a resume later replays, in the same order.

A resume (and ``GET conversations/{id}/events/``) shows every row as it stands now: a message
or an edited message with its current content and reactions, a deleted one as its tombstone,
a details change with the current details. Reactions are shown from their row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from actors import protocol
from actors.errors import ChatError, Conflict, NotFound
from actors.history import message_objects
from storage import Storage
from storage.reactions import reaction_id, summarize

# Every kind of event row, as its event is named on the wire.
EVENT_KINDS = ("message_updated", "message_deleted", "reaction_added", "reaction_removed", "conversation_updated")


@dataclasses.dataclass
class Applied:
    """An event row's change, done: what members are shown and what the requester is answered."""

    fields: dict
    answer: Any = None
    # The change did not happen after all (a race the requester lost: the message was deleted
    # meanwhile, the reaction was already gone). Its row keeps its seq and is broadcast as it
    # stands, so that no reader sees a gap; the requester gets this error.
    refusal: ChatError | None = None


class StreamEvents:
    """Applies and renders event rows for one conversation. ``write_document`` serializes writes
    of the conversation's own document (``actors.conversation_doc``)."""

    def __init__(self, storage: Storage, tenant_id: str, conversation_id: str, write_document: Callable) -> None:
        self._storage = storage
        self._tenant_id = tenant_id
        self._conversation_id = conversation_id
        self._write_document = write_document

    def row(self, by: str, kind: str, **fields: Any) -> dict:
        assert kind in EVENT_KINDS, kind
        return self._storage.messages.build_event(self._tenant_id, self._conversation_id, by, kind, **fields)

    async def apply(self, row: dict) -> Applied:
        """Make the change ``row`` records (once its seq is stored). Applying a row twice (a write
        retried after an unknown outcome) changes nothing more."""
        messages, reactions = self._storage.messages, self._storage.reactions
        tenant_id, kind = self._tenant_id, row["event"]
        if kind == "message_updated":
            doc = await messages.edit(tenant_id, row["message_id"], row["content"])
            refusal = None
            if doc is None:
                doc, refusal = await messages.get(tenant_id, row["message_id"]), Conflict("The message was deleted")
            (message,) = await message_objects(self._storage, tenant_id, [doc])
            return Applied({"message": message}, message, refusal)
        if kind == "message_deleted":
            doc = await messages.tombstone(tenant_id, row["message_id"])
            await reactions.delete_message(tenant_id, row["message_id"])
            await messages.forget_edits(tenant_id, row["message_id"])
            return Applied(_row_fields(tenant_id, row), protocol.message_object(doc))
        if kind == "reaction_added":
            reaction, is_new = await reactions.add(
                tenant_id, self._conversation_id, row["message_id"], row["user_id"], row["emoji"], at=row["created_at"]
            )
            obj = protocol.reaction_object(reaction)
            return Applied({"reaction": obj}, (obj, is_new))
        if kind == "reaction_removed":
            removed = await reactions.remove(tenant_id, row["message_id"], row["user_id"], row["emoji"])
            return Applied(_row_fields(tenant_id, row), True, None if removed else NotFound("No such reaction"))
        update = self._storage.conversations.update
        conversation = await self._write_document(lambda: update(tenant_id, self._conversation_id, row["changes"]))
        if conversation is None:
            raise NotFound("Conversation not found")
        return Applied({"conversation": protocol.conversation_object(conversation)}, conversation)

    async def render(self, rows: list[dict], conversation: dict | None) -> list[tuple[str, dict]]:
        return await render(self._storage, self._tenant_id, rows, conversation)

    def fields_from_row(self, row: dict) -> dict:
        """The event's fields as far as its row alone says (message_deleted, reactions)."""
        return _row_fields(self._tenant_id, row)


def stream_position(row: dict) -> dict:
    """What every stream event carries besides its own fields: where it stands in the stream."""
    return {"conversation_id": row["conversation_id"], "seq": row["seq"]}


async def render(storage: Storage, tenant_id: str, rows: list[dict], conversation: dict | None) -> list[tuple[str, dict]]:
    """``(event type, fields)`` for each stream row (messages too) as it stands now, in order;
    ``conversation`` is the conversation's current document (``None``: it is gone)."""
    current = {row["_id"]: row for row in rows if "event" not in row}
    edited = {row["message_id"] for row in rows if row.get("event") == "message_updated"} - current.keys()
    if edited:
        current.update(await storage.messages.of_ids(tenant_id, list(edited)))
    summed = summarize(await storage.reactions.of_messages(tenant_id, list(current))) if current else {}
    rendered = []
    for row in rows:
        kind = row.get("event")
        if kind is None:
            fields = {"message": protocol.message_object(row, summed.get(row["_id"]))}
        elif kind == "message_updated":
            doc = current.get(row["message_id"])
            if doc is None:  # the message went with its conversation; the row is about to go too
                continue
            fields = {"message": protocol.message_object(doc, summed.get(doc["_id"]))}
        elif kind == "conversation_updated":
            if conversation is None:  # deleted meanwhile: its rows go with it
                continue
            fields = {"conversation": protocol.conversation_object(conversation)}
        else:
            fields = _row_fields(tenant_id, row)
        rendered.append((kind or "new_message", {**fields, **stream_position(row)}))
    return rendered


def _row_fields(tenant_id: str, row: dict) -> dict:
    """The fields of an event its row alone describes."""
    kind, message_id = row["event"], row["message_id"]
    if kind == "message_deleted":
        return {"message_id": message_id, "conversation_id": row["conversation_id"]}
    if kind == "reaction_removed":
        return {"message_id": message_id, "conversation_id": row["conversation_id"], "user_id": row["user_id"], "emoji": row["emoji"]}
    assert kind == "reaction_added", kind
    reaction = {
        "_id": reaction_id(tenant_id, message_id, row["user_id"], row["emoji"]),
        **{key: row[key] for key in ("conversation_id", "message_id", "user_id", "emoji", "created_at")},
    }
    return {"reaction": protocol.reaction_object(reaction)}
