"""Presence as last known: status, current conversation and last seen, one row per user."""

from __future__ import annotations

from storage.errors import DuplicateKeyError
from storage.keys import derived_id
from storage.repository import Repository, index

PRESENCE_STATUSES = ("online", "away", "busy", "offline")


class PresenceRepository(Repository):
    collection_name = "presence"
    # A row's _id is derived from (tenant, user), so the _id alone keeps one row per user.
    indexes = (index("tenant_id", "user_id", name="presence"),)

    def __init__(self, db, *, embedded: bool = False) -> None:
        super().__init__(db)
        # mongomock finds an upsert's row by scanning the collection: connecting every user of
        # a 2,500-user tenant cost 22 s of saves. On the embedded database the first save is a
        # plain insert (its _id check is O(1)); a real MongoDB does one upsert through its _id index.
        self._insert_first = embedded

    async def save(self, tenant_id: str, user_id: str, fields: dict) -> None:
        key = self.scoped(tenant_id, _id=derived_id(tenant_id, user_id))
        if self._insert_first:
            try:
                await self.collection.insert_one({**key, "user_id": user_id, **fields})
                return
            except DuplicateKeyError:
                await self.collection.update_one(key, {"$set": fields})
                return
        update = {"$set": fields, "$setOnInsert": {"user_id": user_id}}
        try:
            await self.collection.update_one(key, update, upsert=True)
        except DuplicateKeyError:
            # Two upserts of a new user raced and the other one inserted: now it is an update.
            await self.collection.update_one(key, update, upsert=True)

    async def get(self, tenant_id: str, user_id: str) -> dict | None:
        return await self.collection.find_one(self.scoped(tenant_id, user_id=user_id))

    async def list(self, tenant_id: str, user_ids: list[str] | None = None, *, limit: int = 1000, skip: int = 0) -> list[dict]:
        query = self.scoped(tenant_id)
        if user_ids is not None:
            query["user_id"] = {"$in": user_ids}
        return await self._find(query, sort=[("user_id", 1)], limit=limit, skip=skip)
