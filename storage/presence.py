"""Presence as last known: status, current conversation and last seen, one row per user."""

from __future__ import annotations

from pymongo.errors import BulkWriteError

from storage.errors import DUPLICATE_KEY_CODE, DuplicateKeyError
from storage.keys import derived_id
from storage.repository import Repository, index

PRESENCE_STATUSES = ("online", "away", "busy", "offline")


class PresenceRepository(Repository):
    collection_name = "presence"
    # A row's _id is derived from (tenant, user), so the _id alone keeps one row per user.
    indexes = (index("tenant_id", "user_id", name="presence"),)

    def __init__(self, db, *, embedded: bool = False) -> None:
        super().__init__(db)
        # mongomock finds an update's row by scanning the collection (O(users) per row). On the
        # embedded database a batch of replacements is one delete (one scan) and one insert (an
        # O(1) _id check per row); a real MongoDB upserts each row through its _id index, one
        # command per row: FerretDB 1.24 stops answering an update command of about 100 upserts.
        self._replace_by_delete = embedded

    async def save_many(self, tenant_id: str, rows: dict[str, dict], *, replace: bool = True) -> None:
        """Store each user's presence ``fields`` (``rows``: user id -> fields) as their whole row;
        with ``replace=False`` only users without a row get one (an ``_id`` check, no scan)."""
        docs = [{"_id": derived_id(tenant_id, user_id), "tenant_id": tenant_id, "user_id": user_id, **fields} for user_id, fields in rows.items()]
        if not docs:
            return
        if not replace:
            await self._insert_missing(docs)
            return
        if self._replace_by_delete:
            await self.collection.delete_many(self.scoped(tenant_id, _id={"$in": [doc["_id"] for doc in docs]}))
            await self.collection.insert_many(docs, ordered=False)
            return
        for doc in docs:
            key = self.scoped(tenant_id, _id=doc["_id"])
            try:
                await self.collection.replace_one(key, doc, upsert=True)
            except DuplicateKeyError:
                # Another process upserted this user first: now it is a replace.
                await self.collection.replace_one(key, doc, upsert=True)

    async def _insert_missing(self, docs: list[dict]) -> None:
        try:
            await self.collection.insert_many(docs, ordered=False)
        except BulkWriteError as error:
            _raise_unless_duplicates(error)

    async def get(self, tenant_id: str, user_id: str) -> dict | None:
        return await self.collection.find_one(self.scoped(tenant_id, user_id=user_id))

    async def list(self, tenant_id: str, user_ids: list[str] | None = None, *, limit: int = 1000, skip: int = 0) -> list[dict]:
        query = self.scoped(tenant_id)
        if user_ids is not None:
            query["user_id"] = {"$in": user_ids}
        return await self._find(query, sort=[("user_id", 1)], limit=limit, skip=skip)


def _raise_unless_duplicates(error: BulkWriteError) -> None:
    if any(e.get("code") != DUPLICATE_KEY_CODE for e in (error.details or {}).get("writeErrors", ())):
        raise error
