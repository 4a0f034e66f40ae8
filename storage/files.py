"""Uploaded files, kept in MongoDB in chunks so they survive a PaaS's ephemeral disk.

Both the file record and every chunk carry ``tenant_id``, and every query is scoped by it, but
one: the sweep of unattached files looks across tenants, then deletes tenant by tenant.
A file is ``attached`` once a stored message carries it; until then it expires (``delete_unattached``).
Records written before that flag existed have none and never expire.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import AsyncIterator

from storage.clock import new_id, utcnow
from storage.keys import derived_id
from storage.repository import Repository, index
from storage.upload_usage import Quotas, UploadUsage

logger = logging.getLogger(__name__)

CHUNK_BYTES = 255 * 1024
# Unattached files deleted per query; a sweep repeats until fewer are left.
SWEEP_BATCH = 500


class FileIntegrityError(RuntimeError):
    """A file record whose chunks do not add up to its size."""


class FileRepository(Repository):
    collection_name = "files"
    indexes = (
        index("tenant_id", "_id"),
        index("tenant_id", "created_at", name="tenant_uploads"),  # a tenant's usage, read once per process
        index("attached", "created_at", name="unattached"),  # the sweep
    )

    def __init__(self, db) -> None:
        super().__init__(db)
        self.chunks = db["file_chunks"]
        self.usage = UploadUsage(self.uploads_since)

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
        quotas: Quotas,
    ) -> dict:
        """Store the chunks first and the file record last, so a half-written file is never listed.

        ``QuotaExceeded`` before anything is written if the bytes do not fit the quotas. If storing
        fails part way, the chunks already written are removed (best effort).
        """
        reservation = await self.usage.reserve(tenant_id, owner_id, len(data), quotas)
        try:
            doc = await self._store(tenant_id, owner_id, filename, content_type, data, conversation_id)
        except BaseException:
            reservation.release()
            raise
        reservation.commit(doc["created_at"])
        return doc

    async def _store(self, tenant_id: str, owner_id: str, filename: str, content_type: str, data: bytes, conversation_id: str | None) -> dict:
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
            "attached": False,
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

    async def uploads_since(self, tenant_id: str, since: datetime.datetime) -> list[dict]:
        projection = {"owner_id": 1, "size": 1, "created_at": 1}
        return await self.collection.find(self.scoped(tenant_id, created_at={"$gte": since}), projection).to_list(None)

    async def mark_attached(self, tenant_id: str, file_ids: list[str]) -> set[str]:
        """Keep these files from expiring, before a message carrying them is stored; the ids of
        those that still exist (the sweep may have deleted one just before)."""
        result = await self.collection.update_many(self.scoped(tenant_id, _id={"$in": file_ids}), {"$set": {"attached": True}})
        if result.matched_count == len(file_ids):
            return set(file_ids)
        return set(await self.of_ids(tenant_id, file_ids))

    async def delete_unattached(self, uploaded_before: datetime.datetime) -> int:
        """Delete the files no message carries that were uploaded before then, with their chunks;
        how many. A file attached meanwhile is kept: each delete still requires ``attached: false``."""
        deleted = 0
        while True:
            expired = await self._find({"attached": False, "created_at": {"$lt": uploaded_before}}, limit=SWEEP_BATCH)
            by_tenant: dict[str, list[dict]] = {}
            for doc in expired:
                by_tenant.setdefault(doc["tenant_id"], []).append(doc)
            for tenant_id, docs in by_tenant.items():
                deleted += len(await self._delete(tenant_id, docs, attached=False))
            if len(expired) < SWEEP_BATCH:
                return deleted

    async def delete_conversation(self, tenant_id: str, conversation_id: str) -> None:
        """A deleted conversation's files: nobody could download them any more."""
        await self._delete(tenant_id, await self._find(self.scoped(tenant_id, conversation_id=conversation_id)))

    async def _delete(self, tenant_id: str, docs: list[dict], **condition) -> list[dict]:
        """Delete these records that still meet ``condition``, then their chunks; the ones this call
        deleted. One at a time, so that a file deleted meanwhile by someone else is not counted twice."""
        docs = [doc for doc in docs if (await self.collection.delete_one(self.scoped(tenant_id, _id=doc["_id"], **condition))).deleted_count]
        self.usage.forget(docs)
        if docs:
            await self.chunks.delete_many(self.scoped(tenant_id, file_id={"$in": [doc["_id"] for doc in docs]}))
        return docs

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
