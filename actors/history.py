"""Stored messages as clients see them: with their reactions summed up, read in one query."""

from __future__ import annotations

from actors import protocol
from storage import Storage
from storage.reactions import summarize


async def message_objects(storage: Storage, tenant_id: str, docs: list[dict]) -> list[dict]:
    reactions = summarize(await storage.reactions.of_messages(tenant_id, [doc["_id"] for doc in docs])) if docs else {}
    return [protocol.message_object(doc, reactions.get(doc["_id"])) for doc in docs]
