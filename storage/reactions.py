"""Reactions: one row per (message, user, emoji), so adding twice is one reaction."""

from __future__ import annotations

from storage.clock import utcnow
from storage.errors import DuplicateKeyError
from storage.keys import derived_id
from storage.repository import Repository, index


class ReactionRepository(Repository):
    collection_name = "reactions"
    # A row's _id is derived from (tenant, message, user, emoji): the _id alone makes adding
    # twice one reaction, so the lookups below need only plain indexes (see storage/keys.py).
    indexes = (
        index("tenant_id", "message_id", "user_id", "emoji", name="reaction"),
        index("tenant_id", "conversation_id"),
    )

    async def add(
        self, tenant_id: str, conversation_id: str, message_id: str, user_id: str, emoji: str, *, at=None
    ) -> tuple[dict, bool]:
        """``(reaction, added)``; ``added`` is false when the same one already existed."""
        doc = {
            "_id": reaction_id(tenant_id, message_id, user_id, emoji),
            "tenant_id": tenant_id,
            "conversation_id": conversation_id,
            "message_id": message_id,
            "user_id": user_id,
            "emoji": emoji,
            "created_at": at or utcnow(),
        }
        try:
            await self.collection.insert_one(doc)
        except DuplicateKeyError:
            existing = await self.collection.find_one(
                self.scoped(tenant_id, message_id=message_id, user_id=user_id, emoji=emoji)
            )
            if existing is None:
                raise
            return existing, False
        return doc, True

    async def get(self, tenant_id: str, message_id: str, user_id: str, emoji: str) -> dict | None:
        return await self.collection.find_one(self.scoped(tenant_id, _id=reaction_id(tenant_id, message_id, user_id, emoji)))

    async def remove(self, tenant_id: str, message_id: str, user_id: str, emoji: str) -> bool:
        result = await self.collection.delete_one(
            self.scoped(tenant_id, message_id=message_id, user_id=user_id, emoji=emoji)
        )
        return result.deleted_count == 1

    async def of_messages(self, tenant_id: str, message_ids: list[str]) -> list[dict]:
        if not message_ids:
            return []
        return await self._find(self.scoped(tenant_id, message_id={"$in": message_ids}), sort=[("created_at", 1), ("_id", 1)])

    async def delete_message(self, tenant_id: str, message_id: str) -> None:
        await self.collection.delete_many(self.scoped(tenant_id, message_id=message_id))

    async def delete_conversation(self, tenant_id: str, conversation_id: str) -> None:
        await self.collection.delete_many(self.scoped(tenant_id, conversation_id=conversation_id))


def reaction_id(tenant_id: str, message_id: str, user_id: str, emoji: str) -> str:
    return derived_id(tenant_id, message_id, user_id, emoji)


def summarize(reactions: list[dict]) -> dict[str, list[dict]]:
    """Per message id, ``[{emoji, count, user_ids}]`` in order of first use."""
    by_message: dict[str, dict[str, list[str]]] = {}
    for reaction in reactions:
        emojis = by_message.setdefault(reaction["message_id"], {})
        emojis.setdefault(reaction["emoji"], []).append(reaction["user_id"])
    return {
        message_id: [{"emoji": emoji, "count": len(users), "user_ids": users} for emoji, users in emojis.items()]
        for message_id, emojis in by_message.items()
    }
