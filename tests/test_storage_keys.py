"""Rows whose _id is derived from their unique key (storage/keys.py), in-process on both tiers.

Ids that a separator would join alike stay apart, a duplicate key is refused by the _id
alone, and the embedded database keeps no unique index: mongomock scans the whole
collection for each one on every insert, on the server's event loop.
"""

from __future__ import annotations

from config import Settings
from storage import open_storage
from tests.support.client import unique


async def opened(uri: str | None):
    storage = open_storage(uri, f"chat_{unique('keys').replace('-', '_')}", Settings().mongodb_timeout_ms)
    await storage.ensure_indexes()
    return storage


async def test_ids_joined_alike_by_a_separator_stay_apart(database_uri):
    storage = await opened(database_uri)
    try:
        await storage.presence.save_many("a\x1fb", {"c": {"status": "busy"}})
        await storage.presence.save_many("a", {"b\x1fc": {"status": "away"}})
        await storage.presence.save_many("a\x1fb", {"c": {"status": "online"}})
        assert (await storage.presence.get("a\x1fb", "c"))["status"] == "online"
        assert (await storage.presence.get("a", "b\x1fc"))["status"] == "away"

        assert (await storage.participants.add("t", "x\x1fy", "z", "member"))[1]
        assert (await storage.participants.add("t", "x", "y\x1fz", "admin"))[1]
        assert [p["role"] for p in await storage.participants.list("t", "x")] == ["admin"]
        existing, added = await storage.participants.add("t", "x\x1fy", "z", "owner")
        assert not added and existing["role"] == "member", "a duplicate _id is refused like a unique index"
    finally:
        storage.close()


async def test_presence_rows_are_made_once_per_user_and_replaced_whole(database_uri):
    """Coming online makes a row only where there is none (an _id check, no scan); a chosen
    status or going offline replaces the row, several users in one write."""
    storage = await opened(database_uri)
    try:
        await storage.presence.save_many("t", {"ann": {"status": "busy", "current_conversation_id": "c1"}})
        online = {"status": "online", "current_conversation_id": None}
        await storage.presence.save_many("t", {"ann": online, "ben": online}, replace=False)
        assert [(row["user_id"], row["status"]) for row in await storage.presence.list("t")] == [("ann", "busy"), ("ben", "online")]
        await storage.presence.save_many("t", {"ann": {"status": "offline"}, "ben": {"status": "away"}})
        rows = await storage.presence.list("t")
        assert [(row["user_id"], row["status"]) for row in rows] == [("ann", "offline"), ("ben", "away")]
        assert "current_conversation_id" not in rows[0], "the whole row is replaced"

        many = {f"u{n:03d}": {"status": "online"} for n in range(150)}  # FerretDB 1.24 hangs on one update of ~100 upserts
        await storage.presence.save_many("t2", many, replace=False)
        await storage.presence.save_many("t2", {user_id: {"status": "offline"} for user_id in many})
        assert {row["status"] for row in await storage.presence.list("t2")} == {"offline"}
    finally:
        storage.close()


async def test_a_direct_pair_left_claimed_by_a_half_done_deletion_starts_anew(database_uri):
    storage = await opened(database_uri)
    try:
        first, created = await storage.conversations.create("t", type="direct", created_by="u", pair=("u", "v"))
        assert created
        again, created = await storage.conversations.create("t", type="direct", created_by="v", pair=("v", "u"))
        assert not created and again["_id"] == first["_id"]
        await storage.conversations.collection.delete_one({"tenant_id": "t", "_id": first["_id"]})  # claim left behind
        fresh, created = await storage.conversations.create("t", type="direct", created_by="v", pair=("v", "u"))
        assert created and fresh["_id"] != first["_id"]
        assert (await storage.conversations.create("t", type="direct", created_by="u", pair=("u", "v")))[0]["_id"] == fresh["_id"]
        assert await storage.conversations.delete("t", fresh["_id"])
        assert (await storage.conversations.create("t", type="direct", created_by="u", pair=("u", "v")))[1], "deleting frees the pair"
    finally:
        storage.close()


async def test_the_embedded_database_has_no_unique_index_but_the_ids():
    storage = await opened(None)
    try:
        db = storage.conversations.collection.database
        unique_indexes = {
            (name, index_name)
            for name in await db.list_collection_names()
            for index_name, spec in (await db[name].index_information()).items()
            if spec.get("unique") and index_name != "_id_"
        }
        assert unique_indexes == set()
        assert {"participants", "reactions", "presence", "file_chunks", "conversations"} <= set(await db.list_collection_names())
    finally:
        storage.close()
