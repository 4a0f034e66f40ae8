"""Uploaded files, kept in MongoDB in chunks so they survive a PaaS's ephemeral disk.

Both the file record and every chunk carry ``tenant_id``, and every query is scoped by it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from storage.clock import new_id, utcnow
from storage.keys import derived_id
from storage.repository import Repository, index

logger = logging.getLogger(__name__)

CHUNK_BYTES = 255 * 1024


class FileIntegrityError(RuntimeError):
    """A file record whose chunks do not add up to its size."""


class FileRepository(Repository):
    collection_name = "files"
    indexes = (index("tenant_id", "_id"),)

    def __init__(self, db) -> None:
        super().__init__(db)
        self.chunks = db["file_chunks"]

    async def ensure_indexes(self) -> None:
        await super().ensure_indexes()
        # A chunk's _id is derived from (file, n): the _id alone keeps one chunk per place.
        await self.chunks.create_indexes([index("tenant_id", "file_id", "n", name="tenant_chunk")])

    async def save(
        self,
        tenant_id: str,
        *,
        owner_id: str,
        filename: str,
        content_type: str,
        data: bytes,
        conversation_id: str | None,
    ) -> dict:
        """Store the chunks first and the file record last, so a half-written file is never listed.

        If storing fails part way, the chunks already written are removed (best effort).
        """
        file_id = new_id()
        chunks = [
            {"_id": derived_id(file_id, n), "tenant_id": tenant_id, "file_id": file_id, "n": n, "data": data[offset : offset + CHUNK_BYTES]}
            for n, offset in enumerate(range(0, len(data), CHUNK_BYTES))
        ]
        doc = {
            "_id": file_id,
            "tenant_id": tenant_id,
            "owner_id": owner_id,
            "conversation_id": conversation_id,
            "filename": filename,
            "content_type": content_type,
            "size": len(data),
            "chunk_count": len(chunks),
            "created_at": utcnow(),
        }
        try:
            if chunks:
                await self.chunks.insert_many(chunks, ordered=True)
            await self.collection.insert_one(doc)
        except BaseException:
            try:
                await self.chunks.delete_many({"tenant_id": tenant_id, "file_id": file_id})
            except Exception as error:  # the database is gone; orphaned chunks are never served
                logger.warning("could not remove the chunks of a failed upload %s: %s", file_id, error)
            raise
        return doc

    async def get(self, tenant_id: str, file_id: str) -> dict | None:
        return await self.collection.find_one(self.scoped(tenant_id, _id=file_id))

    async def of_ids(self, tenant_id: str, file_ids: list[str]) -> dict[str, dict]:
        """File records by id (those of this tenant that exist)."""
        if not file_ids:
            return {}
        return {doc["_id"]: doc for doc in await self._find(self.scoped(tenant_id, _id={"$in": file_ids}))}

    async def delete_conversation(self, tenant_id: str, conversation_id: str) -> None:
        """A deleted conversation's files: nobody could download them any more."""
        ids = [doc["_id"] for doc in await self._find(self.scoped(tenant_id, conversation_id=conversation_id))]
        if ids:
            await self.collection.delete_many(self.scoped(tenant_id, _id={"$in": ids}))
            await self.chunks.delete_many(self.scoped(tenant_id, file_id={"$in": ids}))

    async def chunks_of(self, tenant_id: str, file_doc: dict) -> AsyncIterator[bytes]:
        """The file's bytes a chunk at a time, fetched one by one, so a slow download holds one
        chunk, not the file; ``FileIntegrityError`` as soon as they stop adding up."""
        cursor = self.chunks.find(self.scoped(tenant_id, file_id=file_doc["_id"])).sort("n", 1).batch_size(1)
        expected_n, size = 0, 0
        async for chunk in cursor:
            if chunk["n"] != expected_n:
                raise FileIntegrityError(f"file {file_doc['_id']}: chunk {expected_n} is missing")
            data = bytes(chunk["data"])
            size += len(data)
            expected_n += 1
            yield data
        if expected_n != file_doc["chunk_count"] or size != file_doc["size"]:
            raise FileIntegrityError(f"file {file_doc['_id']} has {expected_n} chunks, {size} bytes")
