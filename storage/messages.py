"""A conversation's stream: its messages and the events that change them, numbered by one
per-conversation ``seq`` that a unique index keeps single.

A message row has no ``event`` field. An event row (``build_event``) records one change to the
stream (an edit, a deletion, a reaction, new details) with its own ``seq``: kept in the same
collection, under the same index, so that one sequence orders everything a member sees and a
resume reads it in one query. Readers of messages (history, unread counts, lookups by id) see
message rows only (``MESSAGES``).
"""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, ReturnDocument

from storage.clock import new_id, utcnow
from storage.keys import derived_id
from storage.repository import Repository, index

MESSAGE_TYPES = ("text", "emoji", "file", "image", "system")
# Matches message rows only: an event row always has a (non-null) ``event``.
MESSAGES = {"event": None}
FILE_MESSAGE_TYPES = ("file", "image")  # they carry metadata.file_id, a stored upload


class MessageRepository(Repository):
    collection_name = "messages"
    # A message sent with a client_msg_id gets an _id derived from it (client_message_id),
    # so the _id's own uniqueness makes retries idempotent: no extra index, no lookup before
    # the insert, and an O(1) check even in the embedded mongomock database.
    # Event rows name their message; message rows have no ``message_id`` and stay out of it.
    event_target_index = index("tenant_id", "message_id", name="event_target", sparse=True)
    indexes = (index("tenant_id", "conversation_id", "seq", unique=True, name="unique_seq"), event_target_index)

    def __init__(self, db, *, embedded: bool = False) -> None:
        super().__init__(db)
        if embedded:
            # mongomock enforces a unique index by scanning the whole collection on every
            # insert. The embedded database lives inside this one process, where the
            # conversation actor is provably the only writer of a seq, so the index would
            # guard against nothing; a real MongoDB keeps it (several processes may share it).
            self.indexes = (index("tenant_id", "conversation_id", "seq", name="seq"), self.event_target_index)

    @staticmethod
    def build(
        tenant_id: str,
        conversation_id: str,
        sender_id: str,
        *,
        content: str,
        message_type: str,
        metadata: dict | None = None,
        client_msg_id: str | None = None,
        reply_to: str | None = None,
    ) -> dict:
        """A new message document; ``seq`` and ``created_at`` are set when it is stored."""
        message_id = new_id() if client_msg_id is None else client_message_id(tenant_id, conversation_id, sender_id, client_msg_id)
        return {
            "_id": message_id,
            "tenant_id": tenant_id,
            "conversation_id": conversation_id,
            "sender_id": sender_id,
            "content": content,
            "message_type": message_type,
            "metadata": metadata or {},
            "seq": None,
            "created_at": None,
            "edited_at": None,
            "is_deleted": False,
            "reply_to": reply_to,
            "client_msg_id": client_msg_id,
        }

    @staticmethod
    def build_event(tenant_id: str, conversation_id: str, by: str, event: str, **fields: object) -> dict:
        """A new event row: ``fields`` say what it changes (``storage`` never reads them but
        to apply the change); ``seq`` and ``created_at`` are set when it is stored."""
        return {
            "_id": new_id(),
            "tenant_id": tenant_id,
            "conversation_id": conversation_id,
            "event": event,
            "by": by,
            **fields,
            "seq": None,
            "created_at": None,
        }

    async def insert_ordered(self, docs: list[dict]) -> None:
        """Insert in order; ``OrderedInsertStopped`` says how long a prefix was stored."""
        await self.collection.insert_many(docs, ordered=True)

    async def get(self, tenant_id: str, message_id: str) -> dict | None:
        return await self.collection.find_one(self.scoped(tenant_id, _id=message_id, **MESSAGES))

    async def of_ids(self, tenant_id: str, message_ids: list[str]) -> dict[str, dict]:
        docs = await self._find(self.scoped(tenant_id, _id={"$in": message_ids}, **MESSAGES))
        return {doc["_id"]: doc for doc in docs}

    async def existing_ids(self, tenant_id: str, conversation_id: str, message_ids: list[str]) -> set[str]:
        cursor = self.collection.find(self.scoped(tenant_id, conversation_id=conversation_id, _id={"$in": message_ids}, **MESSAGES), {"_id": 1})
        return {doc["_id"] for doc in await cursor.to_list(None)}

    async def last_seq(self, tenant_id: str, conversation_id: str) -> int:
        """The stream's last position: of a message or of an event."""
        docs = await self._find(
            self.scoped(tenant_id, conversation_id=conversation_id), sort=[("seq", DESCENDING)], limit=1
        )
        return docs[0]["seq"] if docs else 0

    async def page(
        self,
        tenant_id: str,
        conversation_id: str,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int,
        newest_first: bool,
        events: bool = False,
    ) -> list[dict]:
        """Messages with ``after_seq < seq < before_seq``, ``limit`` of them from one end; with
        ``events``, the event rows between them too (the stream as a resume reads it)."""
        seq_range = {}
        if after_seq is not None:
            seq_range["$gt"] = after_seq
        if before_seq is not None:
            seq_range["$lt"] = before_seq
        query = self.scoped(tenant_id, conversation_id=conversation_id, **({} if events else MESSAGES))
        if seq_range:
            query["seq"] = seq_range
        order = DESCENDING if newest_first else ASCENDING
        return await self._find(query, sort=[("seq", order)], limit=limit)

    async def count_after(self, tenant_id: str, conversation_id: str, seq: int, *, not_from: str) -> int:
        return await self.collection.count_documents(
            self.scoped(
                tenant_id,
                conversation_id=conversation_id,
                seq={"$gt": seq},
                sender_id={"$ne": not_from},
                is_deleted=False,
                **MESSAGES,
            )
        )

    async def edit(self, tenant_id: str, message_id: str, content: str) -> dict | None:
        return await self.collection.find_one_and_update(
            self.scoped(tenant_id, _id=message_id, is_deleted=False, **MESSAGES),
            {"$set": {"content": content, "edited_at": utcnow()}},
            return_document=ReturnDocument.AFTER,
        )

    async def tombstone(self, tenant_id: str, message_id: str) -> dict | None:
        """Keep the seq (no gap for readers) but drop the content and metadata."""
        return await self.collection.find_one_and_update(
            self.scoped(tenant_id, _id=message_id, **MESSAGES),
            {"$set": {"content": "", "metadata": {}, "is_deleted": True, "edited_at": utcnow()}},
            return_document=ReturnDocument.AFTER,
        )

    async def forget_edits(self, tenant_id: str, message_id: str) -> None:
        """A deleted message's content must not outlive it in the rows of its edits."""
        await self.collection.update_many(
            self.scoped(tenant_id, message_id=message_id, event="message_updated"), {"$set": {"content": ""}}
        )

    async def delete_conversation(self, tenant_id: str, conversation_id: str) -> None:
        await self.collection.delete_many(self.scoped(tenant_id, conversation_id=conversation_id))


def client_message_id(tenant_id: str, conversation_id: str, sender_id: str, client_msg_id: str) -> str:
    """The id of the message a sender's ``client_msg_id`` names: the same on every retry."""
    return derived_id(tenant_id, conversation_id, sender_id, client_msg_id)
