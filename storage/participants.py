"""Participants: who is in a conversation, with which role, and how far they have read."""

from __future__ import annotations

from storage.clock import utcnow
from storage.errors import DuplicateKeyError
from storage.keys import derived_id
from storage.member_index import MemberIndex
from storage.repository import Repository, index

ROLES = ("owner", "admin", "member")


class ParticipantRepository(Repository):
    collection_name = "participants"
    # A row's _id is derived from (tenant, conversation, user): the _id alone keeps a user in a
    # conversation once, so the lookups below need only plain indexes (see storage/keys.py).
    indexes = (
        index("tenant_id", "conversation_id", "user_id", name="participant"),
        index("tenant_id", "user_id"),
    )

    def __init__(self, db, *, embedded: bool = False) -> None:
        super().__init__(db)
        self._index = MemberIndex() if embedded else None

    async def add(self, tenant_id: str, conversation_id: str, user_id: str, role: str) -> tuple[dict, bool]:
        """Add a participant; an existing one is returned unchanged. ``(doc, added)``."""
        doc = self._build(tenant_id, conversation_id, user_id, role, utcnow())
        try:
            await self.collection.insert_one(doc)
        except DuplicateKeyError:
            existing = await self.get(tenant_id, conversation_id, user_id)
            if existing is None:
                raise
            return existing, False
        if self._index is not None:
            self._index.added(tenant_id, conversation_id, {user_id: role})
        return doc, True

    async def add_new_conversation(self, tenant_id: str, conversation_id: str, roles: dict[str, str]) -> None:
        """The participants of a conversation just created (none there yet), in one write."""
        now = utcnow()
        await self.collection.insert_many(
            [self._build(tenant_id, conversation_id, user_id, role, now) for user_id, role in roles.items()]
        )
        if self._index is not None:
            self._index.added(tenant_id, conversation_id, roles)

    @staticmethod
    def _build(tenant_id: str, conversation_id: str, user_id: str, role: str, joined_at) -> dict:
        return {
            "_id": derived_id(tenant_id, conversation_id, user_id),
            "tenant_id": tenant_id,
            "conversation_id": conversation_id,
            "user_id": user_id,
            "role": role,
            "joined_at": joined_at,
            "last_read_seq": 0,
            "last_read_message_id": None,
            "last_read_at": None,
            "last_seen_at": None,
        }

    async def get(self, tenant_id: str, conversation_id: str, user_id: str) -> dict | None:
        return await self.collection.find_one(
            self.scoped(tenant_id, conversation_id=conversation_id, user_id=user_id)
        )

    async def list(self, tenant_id: str, conversation_id: str, *, limit: int = 0, skip: int = 0) -> list[dict]:
        """In the order they joined (those added together, by id); all of them unless ``limit`` is given."""
        return await self._find(
            self.scoped(tenant_id, conversation_id=conversation_id),
            sort=[("joined_at", 1), ("_id", 1)],
            limit=limit,
            skip=skip,
        )

    async def roles(self, tenant_id: str, conversation_id: str) -> dict[str, str]:
        """User id -> role, in the order they joined: what a conversation actor is built from."""
        if self._index is not None:
            return self._index.roles(tenant_id, conversation_id)
        cursor = self.collection.find(
            self.scoped(tenant_id, conversation_id=conversation_id), {"user_id": 1, "role": 1}
        ).sort([("joined_at", 1), ("_id", 1)])
        return {doc["user_id"]: doc["role"] for doc in await cursor.to_list(None)}

    async def conversation_ids_for(self, tenant_id: str, user_id: str) -> list[str]:
        docs = await self._find(self.scoped(tenant_id, user_id=user_id))
        return [doc["conversation_id"] for doc in docs]

    async def of_user(self, tenant_id: str, user_id: str, conversation_ids: list[str]) -> dict[str, dict]:
        docs = await self._find(self.scoped(tenant_id, user_id=user_id, conversation_id={"$in": conversation_ids}))
        return {doc["conversation_id"]: doc for doc in docs}

    async def remove(self, tenant_id: str, conversation_id: str, user_id: str) -> bool:
        result = await self.collection.delete_one(
            self.scoped(tenant_id, conversation_id=conversation_id, user_id=user_id)
        )
        if self._index is not None:
            self._index.removed(tenant_id, conversation_id, user_id)
        return result.deleted_count == 1

    async def remove_all(self, tenant_id: str, conversation_id: str) -> None:
        await self.collection.delete_many(self.scoped(tenant_id, conversation_id=conversation_id))
        if self._index is not None:
            self._index.removed_all(tenant_id, conversation_id)

    async def mark_read(
        self, tenant_id: str, conversation_id: str, user_id: str, seq: int, message_id: str | None
    ) -> dict | None:
        """Move the read pointer forward only; an older receipt never moves it back."""
        now = utcnow()
        scope = self.scoped(tenant_id, conversation_id=conversation_id, user_id=user_id)
        await self.collection.update_one(
            {**scope, "last_read_seq": {"$lt": seq}},
            {"$set": {"last_read_seq": seq, "last_read_message_id": message_id, "last_read_at": now}},
        )
        await self.collection.update_one(scope, {"$set": {"last_seen_at": now}})
        return await self.collection.find_one(scope)
