"""What every repository shares: its collection, the tenant scope of every filter, and
driver errors turned into ``storage.errors`` ones."""

from __future__ import annotations

import functools
import inspect
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.errors import PyMongoError

from storage.errors import translated


def _translating(method):
    """``method`` raising ``StorageError`` where the driver raised its own errors."""
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def generator(*args, **kwargs):
            try:
                async for item in method(*args, **kwargs):
                    yield item
            except PyMongoError as error:
                raise translated(error) from error

        return generator

    @functools.wraps(method)
    async def coroutine(*args, **kwargs):
        try:
            return await method(*args, **kwargs)
        except PyMongoError as error:
            raise translated(error) from error

    return coroutine


class Repository:
    collection_name: str
    indexes: tuple[IndexModel, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _translate_public_methods(cls)

    def __init__(self, db) -> None:
        self.collection = db[self.collection_name]

    async def ensure_indexes(self) -> None:
        if self.indexes:
            await self.collection.create_indexes(list(self.indexes))

    @staticmethod
    def scoped(tenant_id: str, **criteria: Any) -> dict[str, Any]:
        """A filter that always carries the tenant, last: the embedded database scans every row
        and checks a filter's fields in order, stopping at the first that fails; the tenant
        rarely fails (the busy tenant holds most rows), a conversation or user id does."""
        return {**criteria, "tenant_id": tenant_id}

    async def _find(self, query: dict, *, sort=None, limit: int = 0, skip: int = 0) -> list[dict]:
        cursor = self.collection.find(query)
        if sort:
            cursor = cursor.sort(sort)
        if skip:
            cursor = cursor.skip(skip)
        if limit:
            cursor = cursor.limit(limit)
        return await cursor.to_list(None)


def _translate_public_methods(cls: type) -> None:
    """Every public async method of a repository reports failures as ``StorageError``."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and (inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member)):
            setattr(cls, name, _translating(member))


_translate_public_methods(Repository)


def index(*fields: str, unique: bool = False, sparse: bool = False, name: str | None = None) -> IndexModel:
    return IndexModel([(field, ASCENDING) for field in fields], unique=unique, sparse=sparse, name=name)
