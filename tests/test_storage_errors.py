"""Storage reports failures in its own types (storage/errors.py), whatever the driver raised:
in-process, against the embedded database, a real MongoDB wire server, and one that is down."""

from __future__ import annotations

import pytest

from storage import open_storage
from storage.errors import OrderedInsertStopped, StorageError
from tests.support.client import unique
from tests.support.server import free_port

UNREACHABLE_TIMEOUT_MS = 300


def message(storage, n: int, client_msg_id: str | None = None) -> dict:
    doc = storage.messages.build("t", "c", "u", content=f"m{n}", message_type="text", metadata=None, client_msg_id=client_msg_id, reply_to=None)
    doc["seq"] = n
    return doc


async def test_an_ordered_insert_that_meets_a_stored_id_says_how_far_it_got(database_uri):
    storage = open_storage(database_uri, f"chat_{unique('errors').replace('-', '_')}", 5000)
    try:
        await storage.ensure_indexes()
        await storage.messages.insert_ordered([message(storage, 1, "retried")])
        with pytest.raises(OrderedInsertStopped) as stopped:
            await storage.messages.insert_ordered([message(storage, 2), message(storage, 3, "retried"), message(storage, 4)])
        assert stopped.value.inserted == 1 and stopped.value.duplicate
        assert [doc["seq"] for doc in await storage.messages.page("t", "c", limit=10, newest_first=False)] == [1, 2]
    finally:
        storage.close()


async def test_an_unreachable_database_is_a_storage_error():
    storage = open_storage(f"mongodb://127.0.0.1:{free_port()}", "chat", UNREACHABLE_TIMEOUT_MS)
    try:
        with pytest.raises(StorageError) as failed:
            await storage.conversations.get("t", "c")
        assert not type(failed.value).__module__.startswith("pymongo")
        with pytest.raises(StorageError):
            async for _ in storage.files.chunks_of("t", {"_id": "f", "chunk_count": 1, "size": 1}):
                pass
    finally:
        storage.close()
