"""Conversations: type, title, description and the direct-pair key that keeps a pair unique."""

from __future__ import annotations

from pymongo import DESCENDING, ReturnDocument

from storage.clock import new_id, utcnow
from storage.errors import DuplicateKeyError
from storage.repository import Repository, index

CONVERSATION_TYPES = ("direct", "group", "channel")


def direct_key(user_a: str, user_b: str) -> str:
    """Both orders of a pair map to one key, so the unique index sees one conversation."""
    return "direct:" + "\x1f".join(sorted((user_a, user_b)))


class ConversationRepository(Repository):
    collection_name = "conversations"
    # pair_key is the direct pair for a direct conversation and the id otherwise, so a
    # plain unique index works on every MongoDB (no partial index needed).
    indexes = (
        index("tenant_id", "pair_key", unique=True, name="unique_direct_pair"),
        index("tenant_id", "last_activity_at"),
    )

    async def create(
        self,
        tenant_id: str,
        *,
        type: str,
        created_by: str,
        title: str | None = None,
        description: str | None = None,
        pair: tuple[str, str] | None = None,
    ) -> tuple[dict, bool]:
        """Insert a conversation; for an existing direct pair return that one. ``(doc, created)``."""
        now = utcnow()
        conversation_id = new_id()
        doc = {
            "_id": conversation_id,
            "tenant_id": tenant_id,
            "type": type,
            "title": title,
            "description": description,
            "created_by": created_by,
            "created_at": now,
            "updated_at": now,
            "last_activity_at": now,
            "pair_key": direct_key(*pair) if pair else conversation_id,
        }
        try:
            await self.collection.insert_one(doc)
        except DuplicateKeyError:
            existing = await self.collection.find_one(self.scoped(tenant_id, pair_key=doc["pair_key"]))
            if existing is None:
                raise
            return existing, False
        return doc, True

    async def get(self, tenant_id: str, conversation_id: str) -> dict | None:
        return await self.collection.find_one(self.scoped(tenant_id, _id=conversation_id))

    async def list_by_ids(self, tenant_id: str, ids: list[str], *, limit: int, skip: int = 0) -> list[dict]:
        """Most recently active first."""
        return await self._find(
            self.scoped(tenant_id, _id={"$in": ids}),
            sort=[("last_activity_at", DESCENDING), ("_id", DESCENDING)],
            limit=limit,
            skip=skip,
        )

    async def update(self, tenant_id: str, conversation_id: str, changes: dict) -> dict | None:
        return await self.collection.find_one_and_update(
            self.scoped(tenant_id, _id=conversation_id),
            {"$set": {**changes, "updated_at": utcnow()}},
            return_document=ReturnDocument.AFTER,
        )

    async def touch(self, tenant_id: str, conversation_id: str, at) -> None:
        await self.collection.update_one(
            self.scoped(tenant_id, _id=conversation_id), {"$max": {"last_activity_at": at}}
        )

    async def delete(self, tenant_id: str, conversation_id: str) -> bool:
        result = await self.collection.delete_one(self.scoped(tenant_id, _id=conversation_id))
        return result.deleted_count == 1
