"""Uploaded files, kept in MongoDB in chunks so they survive a PaaS's ephemeral disk."""

from __future__ import annotations

from storage.clock import new_id, utcnow
from storage.repository import Repository, index

CHUNK_BYTES = 255 * 1024


class FileRepository(Repository):
    collection_name = "files"
    indexes = (index("tenant_id", "_id"),)

    def __init__(self, db) -> None:
        super().__init__(db)
        self.chunks = db["file_chunks"]

    async def ensure_indexes(self) -> None:
        await super().ensure_indexes()
        await self.chunks.create_indexes([index("file_id", "n", unique=True, name="unique_chunk")])

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
        """Store the chunks first and the file record last, so a half-written file is never listed."""
        file_id = new_id()
        chunks = [
            {"_id": f"{file_id}:{n}", "file_id": file_id, "n": n, "data": data[offset : offset + CHUNK_BYTES]}
            for n, offset in enumerate(range(0, len(data), CHUNK_BYTES))
        ]
        if chunks:
            await self.chunks.insert_many(chunks, ordered=True)
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
        await self.collection.insert_one(doc)
        return doc

    async def get(self, tenant_id: str, file_id: str) -> dict | None:
        return await self.collection.find_one(self.scoped(tenant_id, _id=file_id))

    async def read(self, file_doc: dict) -> bytes:
        chunks = await self.chunks.find({"file_id": file_doc["_id"]}).sort("n", 1).to_list(None)
        return b"".join(bytes(chunk["data"]) for chunk in chunks)
