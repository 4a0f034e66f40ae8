"""What every repository shares: its collection, and the tenant scope of every filter."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel


class Repository:
    collection_name: str
    indexes: tuple[IndexModel, ...] = ()

    def __init__(self, db) -> None:
        self.collection = db[self.collection_name]

    async def ensure_indexes(self) -> None:
        if self.indexes:
            await self.collection.create_indexes(list(self.indexes))

    @staticmethod
    def scoped(tenant_id: str, **criteria: Any) -> dict[str, Any]:
        """A filter that always carries the tenant."""
        return {"tenant_id": tenant_id, **criteria}

    async def _find(self, query: dict, *, sort=None, limit: int = 0, skip: int = 0) -> list[dict]:
        cursor = self.collection.find(query)
        if sort:
            cursor = cursor.sort(sort)
        if skip:
            cursor = cursor.skip(skip)
        if limit:
            cursor = cursor.limit(limit)
        return await cursor.to_list(None)


def index(*fields: str, unique: bool = False, name: str | None = None) -> IndexModel:
    return IndexModel([(field, ASCENDING) for field in fields], unique=unique, name=name)
