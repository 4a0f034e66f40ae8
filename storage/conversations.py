"""Conversations: type, title, description, and the claim that keeps a direct pair to one."""

from __future__ import annotations

from pymongo import DESCENDING, ReturnDocument

from storage.clock import new_id, utcnow
from storage.errors import DuplicateKeyError
from storage.keys import derived_id
from storage.repository import Repository, index

CONVERSATION_TYPES = ("direct", "group", "channel")


def direct_pair_id(tenant_id: str, user_a: str, user_b: str) -> str:
    """Both orders of a pair map to one claim."""
    return derived_id(tenant_id, *sorted((user_a, user_b)))


class ConversationRepository(Repository):
    """A direct conversation is unique per pair through a row in ``direct_pairs`` whose _id is
    derived from the pair (see storage/keys.py) and which names the conversation holding it.

    The conversation keeps a random id: an id derived from the pair would come back when the
    pair talks again after deleting their conversation, and clients that remember the old
    one's seq would skip the new one's first messages.
    """

    collection_name = "conversations"
    indexes = (index("tenant_id", "last_activity_at"),)

    def __init__(self, db) -> None:
        super().__init__(db)
        self.direct_pairs = db["direct_pairs"]

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
        doc = {
            "_id": new_id(),
            "tenant_id": tenant_id,
            "type": type,
            "title": title,
            "description": description,
            "created_by": created_by,
            "created_at": now,
            "updated_at": now,
            "last_activity_at": now,
        }
        if pair:
            doc["pair_id"] = direct_pair_id(tenant_id, *pair)
            existing = await self._pair_holder(tenant_id, doc["pair_id"])
            if existing is not None:
                return existing, False
        await self.collection.insert_one(doc)
        while pair:
            try:
                await self.direct_pairs.insert_one(self.scoped(tenant_id, _id=doc["pair_id"], conversation_id=doc["_id"]))
                break
            except DuplicateKeyError:
                existing = await self._pair_holder(tenant_id, doc["pair_id"])
            if existing is not None:
                await self.collection.delete_one(self.scoped(tenant_id, _id=doc["_id"]))
                return existing, False
        return doc, True

    async def _pair_holder(self, tenant_id: str, pair_id: str) -> dict | None:
        """The conversation that holds the pair's claim, if any.

        A claim is only made for a conversation already stored, so a claim naming a missing
        one was left by a deletion that stopped half way: it is removed here, and the caller
        claims again. Whoever claims next wins by the insert's _id check (atomic on every
        MongoDB), never by rewriting a claim in place."""
        claim = await self.direct_pairs.find_one(self.scoped(tenant_id, _id=pair_id))
        if claim is None:
            return None
        existing = await self.get(tenant_id, claim["conversation_id"])
        if existing is None:
            await self.direct_pairs.delete_one(self.scoped(tenant_id, _id=pair_id, conversation_id=claim["conversation_id"]))
        return existing

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
        """Delete the conversation, then its pair's claim: the pair may start a new one."""
        doc = await self.collection.find_one_and_delete(self.scoped(tenant_id, _id=conversation_id))
        if doc is None:
            return False
        if "pair_id" in doc:
            await self.direct_pairs.delete_one(self.scoped(tenant_id, _id=doc["pair_id"], conversation_id=conversation_id))
        return True
