"""Presence as last known: status, current conversation and last seen, one row per user."""

from __future__ import annotations

from storage.errors import DuplicateKeyError
from storage.repository import Repository, index

PRESENCE_STATUSES = ("online", "away", "busy", "offline")


class PresenceRepository(Repository):
    collection_name = "presence"
    indexes = (index("tenant_id", "user_id", unique=True, name="unique_presence"),)

    async def save(self, tenant_id: str, user_id: str, fields: dict) -> None:
        update = {"$set": fields, "$setOnInsert": {"_id": f"{tenant_id}\x1f{user_id}"}}
        try:
            await self.collection.update_one(self.scoped(tenant_id, user_id=user_id), update, upsert=True)
        except DuplicateKeyError:
            # Two upserts of a new user raced and the other one inserted: now it is an update.
            await self.collection.update_one(self.scoped(tenant_id, user_id=user_id), update, upsert=True)

    async def get(self, tenant_id: str, user_id: str) -> dict | None:
        return await self.collection.find_one(self.scoped(tenant_id, user_id=user_id))

    async def list(self, tenant_id: str, user_ids: list[str] | None = None, *, limit: int = 1000, skip: int = 0) -> list[dict]:
        query = self.scoped(tenant_id)
        if user_ids is not None:
            query["user_id"] = {"$in": user_ids}
        return await self._find(query, sort=[("user_id", 1)], limit=limit, skip=skip)
