"""REST conversations over real HTTP: list (unread count, last message), create, get, update, delete."""

from __future__ import annotations

import asyncio

from actors.protocol import MAX_PARTICIPANTS_PER_REQUEST
from tests.support.client import User, unique
from tests.support.rest import assert_error, rest_users, system_events  # noqa: F401  (fixture)


async def test_create_list_get_with_unread_count_and_last_message(rest_users):
    alice, bob = rest_users("alice", "bob")
    status, conv = await alice.api.post(
        "conversations/", {"type": "group", "title": "Team", "description": "d", "participant_ids": [bob.user_id, alice.user_id]}
    )
    assert status == 201, conv
    assert conv["type"] == "group" and conv["title"] == "Team" and conv["created_by"] == alice.user_id
    assert {p["user_id"]: p["role"] for p in conv["participants"]} == {alice.user_id: "owner", bob.user_id: "member"}

    for text in ("one", "two"):
        assert (await bob.api.post(f"conversations/{conv['id']}/messages/", {"content": text}))[0] == 201
    await alice.api.post(f"conversations/{conv['id']}/messages/", {"content": "mine"})

    status, page = await alice.api.get("conversations/")
    assert status == 200 and page["next"] is None and page["previous"] is None
    [listed] = [c for c in page["results"] if c["id"] == conv["id"]]
    assert listed["unread_count"] == 2, "others' messages after the read pointer; not my own"
    assert listed["last_message"]["content"] == "mine" and listed["my_role"] == "owner"
    status, page = await bob.api.get("conversations/")
    assert [c["unread_count"] for c in page["results"] if c["id"] == conv["id"]] == [1]

    assert (await alice.api.post(f"conversations/{conv['id']}/read/", {}))[0] == 200
    status, page = await alice.api.get("conversations/")
    assert [c["unread_count"] for c in page["results"] if c["id"] == conv["id"]] == [0]

    status, one = await bob.api.get(f"conversations/{conv['id']}/")
    assert status == 200 and one["my_role"] == "member" and len(one["participants"]) == 2
    assert one["last_message"]["content"] == "mine"


async def test_conversation_list_pages(rest_users):
    alice, bob = rest_users("alice", "bob")
    ids = [await alice.create_conversation("group", [bob], title=f"c{n}") for n in range(3)]
    status, first = await alice.api.get("conversations/?limit=2")
    assert status == 200 and len(first["results"]) == 2 and first["previous"] is None and first["next"]
    status, second = await alice.api.get(first["next"].replace("/api/notifications/chat/", ""))
    assert len(second["results"]) == 1 and second["next"] is None and second["previous"]
    assert {c["id"] for c in first["results"] + second["results"]} == set(ids)
    assert_error(await alice.api.get("conversations/?limit=0"), 400, "invalid_message")
    assert_error(await alice.api.get("conversations/?limit=101"), 400, "invalid_message")
    assert_error(await alice.api.get("conversations/?offset=-1"), 400, "invalid_message")


async def test_direct_is_unique_per_pair(rest_users):
    alice, bob, carol = rest_users("alice", "bob", "carol")
    status, first = await alice.api.post("conversations/", {"type": "direct", "participant_ids": [bob.user_id]})
    assert status == 201
    status, again = await bob.api.post("conversations/", {"type": "direct", "participant_ids": [alice.user_id]})
    assert status == 200 and again["id"] == first["id"]
    status, other = await alice.api.post("conversations/", {"type": "direct", "participant_ids": [carol.user_id]})
    assert status == 201 and other["id"] != first["id"]
    error = assert_error(await alice.api.post("conversations/", {"type": "direct", "participant_ids": [alice.user_id]}), 400)
    assert "participant_ids" in error["details"]
    assert_error(await alice.api.post("conversations/", {"type": "direct", "participant_ids": [bob.user_id, carol.user_id]}), 400)


async def test_direct_created_at_once_from_both_sides_is_one_conversation(rest_users):
    alice, bob = rest_users("alice", "bob")
    answers = await asyncio.gather(
        *(me.api.post("conversations/", {"type": "direct", "participant_ids": [other.user_id]}) for me, other in [(alice, bob), (bob, alice)] * 3)
    )
    assert sorted(status for status, _ in answers) == [200] * 5 + [201], answers
    assert len({conv["id"] for _, conv in answers}) == 1
    conv, owner_id = answers[0][1]["id"], answers[0][1]["created_by"]
    assert {p["user_id"] for p in (await alice.api.get(f"conversations/{conv}/"))[1]["participants"]} == {alice.user_id, bob.user_id}
    assert [c["id"] for c in (await bob.api.get("conversations/"))[1]["results"]] == [conv], "one conversation for the pair"

    [owner] = [user for user in (alice, bob) if user.user_id == owner_id]
    assert await owner.api.delete(f"conversations/{conv}/") == (204, None)
    status, fresh = await bob.api.post("conversations/", {"type": "direct", "participant_ids": [alice.user_id]})
    assert status == 201 and fresh["id"] != conv, "a deleted direct conversation frees its pair"


async def test_a_full_size_conversation_is_written_at_once_and_others_are_answered(rest_users, server):
    [alice] = rest_users("alice")
    members = [unique("member") for _ in range(MAX_PARTICIPANTS_PER_REQUEST)]
    elsewhere = User(server, unique("tenant"), unique("other"))
    create = asyncio.ensure_future(alice.api.post("conversations/", {"type": "group", "participant_ids": members}))
    status, me = await elsewhere.api.get("presence/me/")
    assert status == 200 and me["user_id"] == elsewhere.user_id, "another tenant is answered meanwhile"
    status, conv = await create
    assert status == 201 and len(conv["participants"]) == MAX_PARTICIPANTS_PER_REQUEST + 1

    path = f"conversations/{conv['id']}/participants/"
    status, page = await alice.api.get(f"{path}?limit=500")
    status, rest = await alice.api.get(page["next"].replace("/api/notifications/chat/", ""))
    listed = [p["user_id"] for p in page["results"] + rest["results"]]
    assert sorted(listed) == sorted([alice.user_id, *members]) and rest["next"] is None
    assert (await alice.api.post(path, {"user_id": members[0]}))[0] == 200, "already there"
    assert (await alice.api.post(path, {"user_id": unique("late")}))[0] == 201


async def test_update_rules_owner_admin_member_outsider(rest_users):
    alice, bob, carol, dave = rest_users("alice", "bob", "carol", "dave")
    [boss] = rest_users("boss", role="admin")
    conv = await alice.create_conversation("group", [bob], title="before")
    assert (await alice.api.post(f"conversations/{conv}/participants/", {"user_id": carol.user_id, "role": "admin"}))[0] == 201
    path = f"conversations/{conv}/"

    assert_error(await bob.api.put(path, {"title": "member try"}), 403, "forbidden")
    assert_error(await dave.api.put(path, {"title": "outsider try"}), 404, "not_found")
    assert (await alice.api.get(path))[1]["title"] == "before", "nothing changed"

    status, updated = await alice.api.put(path, {"title": "by owner", "description": "new"})
    assert status == 200 and updated["title"] == "by owner" and updated["description"] == "new"
    status, updated = await carol.api.put(path, {"title": "by admin"})
    assert status == 200 and updated["title"] == "by admin" and updated["description"] == "new"
    status, updated = await carol.api.call("PATCH", path, {"description": None})
    assert status == 200 and updated["description"] is None and updated["title"] == "by admin"
    status, updated = await boss.api.put(path, {"title": "by tenant admin"})
    assert status == 200 and updated["title"] == "by tenant admin"

    assert await system_events(alice, conv, 4) == ["participant_added"] + ["title_changed"] * 3
    status, history = await alice.api.get(f"conversations/{conv}/messages/")
    titles = [m["metadata"].get("title") for m in history["results"] if m["metadata"].get("event") == "title_changed"]
    assert titles == ["by owner", "by admin", "by tenant admin"]

    assert_error(await alice.api.put(path, {}), 400, "invalid_message")
    assert_error(await alice.api.put(path, {"title": "x" * 201}), 400, "invalid_message")
    assert_error(await alice.api.put(path, {"title": 5}), 400, "invalid_message")
    assert_error(await alice.api.put(path, {"topic": "unknown field"}), 400, "invalid_message")
    assert (await alice.api.get(path))[1]["title"] == "by tenant admin"


async def test_delete_rules(rest_users):
    alice, bob, carol = rest_users("alice", "bob", "carol")
    [boss] = rest_users("boss", role="admin")
    conv = await alice.create_conversation("group", [bob])
    assert (await alice.api.post(f"conversations/{conv}/participants/", {"user_id": carol.user_id, "role": "admin"}))[0] == 201
    await bob.api.post(f"conversations/{conv}/messages/", {"content": "keep me?"})

    assert_error(await bob.api.delete(f"conversations/{conv}/"), 403, "forbidden")
    assert_error(await carol.api.delete(f"conversations/{conv}/"), 403, "forbidden")
    assert (await bob.api.get(f"conversations/{conv}/messages/"))[1]["results"], "still there"

    assert await alice.api.delete(f"conversations/{conv}/") == (204, None)
    for user in (alice, bob):
        assert_error(await user.api.get(f"conversations/{conv}/"), 404, "not_found")
        assert_error(await user.api.get(f"conversations/{conv}/messages/"), 404, "not_found")
    assert conv not in [c["id"] for c in (await bob.api.get("conversations/"))[1]["results"]]
    assert_error(await alice.api.delete(f"conversations/{conv}/"), 404, "not_found")

    other = await alice.create_conversation("group", [bob])
    assert (await boss.api.delete(f"conversations/{other}/"))[0] == 204, "a tenant admin may delete any conversation"


async def test_create_bad_input(rest_users):
    [alice] = rest_users("alice")
    assert_error(await alice.api.post("conversations/", {"type": "party"}), 400, "invalid_message")
    assert_error(await alice.api.post("conversations/", {}), 400, "invalid_message")
    assert_error(await alice.api.post("conversations/", {"type": "group", "participant_ids": "bob"}), 400)
    assert_error(await alice.api.post("conversations/", {"type": "group", "participant_ids": [""]}), 400)
    assert_error(await alice.api.post("conversations/", {"type": "group", "extra": 1}), 400)
    assert_error(await alice.api.post("conversations/", {"type": "group", "participant_ids": ["u"] * 501}), 400)
    assert_error(await alice.api.post("conversations/", {"type": "group", "title": "a\x00b"}), 400)
    status, page = await alice.api.get("conversations/")
    assert status == 200 and page["results"] == [], "no bad request created anything"
