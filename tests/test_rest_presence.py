"""REST presence over real HTTP: the tenant's users (live over stored), and one's own, read and set."""

from __future__ import annotations

from tests.support.client import User, unique
from tests.support.rest import assert_error, rest_users  # noqa: F401  (fixture)


async def test_me_starts_offline_and_can_be_set(rest_users):
    [alice] = rest_users("alice")
    status, me = await alice.api.get("presence/me/")
    assert status == 200 and me == {"user_id": alice.user_id, "status": "offline", "current_conversation_id": None, "last_seen": None}
    for status_name in ("busy", "away", "online", "offline"):
        status, me = await alice.api.put("presence/me/", {"status": status_name})
        assert status == 200 and me["status"] == status_name and me["last_seen"]
        assert (await alice.api.get("presence/me/"))[1]["status"] == status_name

    for bad in ({}, {"status": "sleeping"}, {"status": 1}, {"status": "away", "mood": "ok"}):
        assert_error(await alice.api.put("presence/me/", bad), 400, "invalid_message")
    assert (await alice.api.get("presence/me/"))[1]["status"] == "offline", "nothing changed"


async def test_tenant_presence_merges_live_and_stored(rest_users):
    alice, bob, carol = rest_users("alice", "bob", "carol")
    conv = await alice.create_conversation("group", [bob])
    await carol.api.put("presence/me/", {"status": "busy"})  # stored, no socket
    sock = await bob.socket()
    await sock.request("join_conversation", "conversation_joined", conversation_id=conv)

    ids = f"{bob.user_id},{carol.user_id},{alice.user_id},never-seen"
    status, page = await alice.api.get(f"presence/?user_ids={ids}")
    assert status == 200 and page["next"] is None and page["previous"] is None
    by_user = {p["user_id"]: p for p in page["results"]}
    assert [p["user_id"] for p in page["results"]] == ids.split(","), "in the order asked"
    assert by_user[bob.user_id]["status"] == "online" and by_user[bob.user_id]["last_seen"]
    assert by_user[carol.user_id]["status"] == "busy"
    assert by_user[alice.user_id]["status"] == "offline" and by_user["never-seen"]["last_seen"] is None

    status, page = await alice.api.get("presence/")
    known = {p["user_id"]: p["status"] for p in page["results"]}
    assert known == {bob.user_id: "online", carol.user_id: "busy"}, "every user with presence in this tenant"
    status, first = await alice.api.get("presence/?limit=1")
    assert len(first["results"]) == 1 and first["next"] and first["previous"] is None

    status, me = await bob.api.get("presence/me/")
    assert me["status"] == "online" and me["current_conversation_id"] == conv
    sock.close()

    assert_error(await alice.api.get("presence/?user_ids=" + ",".join(f"u{n}" for n in range(101))), 400, "invalid_message")
    assert_error(await alice.api.get("presence/?user_ids=,"), 400, "invalid_message")
    assert_error(await alice.api.get("presence/?user_ids=" + "x" * 129), 400, "invalid_message")
    assert_error(await alice.api.get("presence/?limit=0"), 400, "invalid_message")


async def test_same_user_id_in_two_tenants_has_two_presences(server):
    """A presence row is keyed by (tenant, user): the embedded database's insert-first save and
    MongoDB's upsert must both keep them apart."""
    user_id = unique("shared")
    here, there = (User(server, unique("tenant"), user_id) for _ in range(2))
    assert (await here.api.put("presence/me/", {"status": "busy"}))[0] == 200
    assert (await there.api.put("presence/me/", {"status": "away"}))[0] == 200
    assert (await here.api.put("presence/me/", {"status": "online"}))[0] == 200
    assert (await here.api.get("presence/me/"))[1]["status"] == "online"
    assert (await there.api.get("presence/me/"))[1]["status"] == "away"
    status, page = await there.api.get("presence/")
    assert [(p["user_id"], p["status"]) for p in page["results"]] == [(user_id, "away")]


async def test_where_someone_is_shows_only_to_that_conversations_participants(users):
    """A DM's id in presence would tell the whole tenant who talks to whom."""
    alice, bob, eve = users("alice", "bob", "eve")
    dm = await alice.create_conversation("direct", [bob])
    watcher = await eve.socket()
    a = await alice.socket()
    await a.request("join_conversation", "conversation_joined", conversation_id=dm)
    await a.request("update_presence", "presence_update", status="away")  # a push after the join
    seen_by_eve = await watcher.next("presence_update", user_id=alice.user_id, status="away")
    assert seen_by_eve["current_conversation_id"] is None
    for viewer, expected in ((bob, dm), (eve, None), (alice, dm)):
        status, page = await viewer.api.get(f"presence/?user_ids={alice.user_id}")
        assert status == 200 and page["results"][0]["current_conversation_id"] == expected, viewer.user_id
        status, page = await viewer.api.get("presence/")
        mine = [p for p in page["results"] if p["user_id"] == alice.user_id]
        assert mine and mine[0]["current_conversation_id"] == expected, viewer.user_id
    assert (await alice.api.get("presence/me/"))[1]["current_conversation_id"] == dm
    a.close()
    watcher.close()
