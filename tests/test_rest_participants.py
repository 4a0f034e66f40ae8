"""REST participants over real HTTP: list, add (who may), remove and leave (who may)."""

from __future__ import annotations

from tests.support.rest import assert_error, rest_users, system_events  # noqa: F401  (fixture)


async def members(user, conv) -> dict[str, str]:
    status, page = await user.api.get(f"conversations/{conv}/participants/")
    assert status == 200, page
    return {p["user_id"]: p["role"] for p in page["results"]}


async def test_list_and_add_in_a_group(rest_users):
    alice, bob, carol, dave = rest_users("alice", "bob", "carol", "dave")
    conv = await alice.create_conversation("group", [bob])
    status, page = await bob.api.get(f"conversations/{conv}/participants/")
    assert status == 200 and page["next"] is None and page["previous"] is None
    assert {p["user_id"] for p in page["results"]} == {alice.user_id, bob.user_id}

    status, added = await alice.api.post(f"conversations/{conv}/participants/", {"user_id": carol.user_id})
    assert status == 201 and added["role"] == "member" and added["last_read_seq"] == 0
    status, again = await alice.api.post(f"conversations/{conv}/participants/", {"user_id": carol.user_id, "role": "admin"})
    assert status == 200 and again["role"] == "member", "already there: unchanged"
    # a plain member of a group may not add either
    assert_error(await bob.api.post(f"conversations/{conv}/participants/", {"user_id": dave.user_id}), 403, "forbidden")
    assert_error(await dave.api.get(f"conversations/{conv}/participants/"), 404, "not_found")
    assert_error(await dave.api.post(f"conversations/{conv}/participants/", {"user_id": dave.user_id}), 404, "not_found")
    assert await members(alice, conv) == {alice.user_id: "owner", bob.user_id: "member", carol.user_id: "member"}

    assert await system_events(carol, conv, 1) == ["participant_added"]

    status, page = await alice.api.get(f"conversations/{conv}/participants/?limit=2")
    assert len(page["results"]) == 2 and page["next"]
    status, rest = await alice.api.get(page["next"].replace("/api/notifications/chat/", ""))
    assert [p["user_id"] for p in rest["results"]] == [carol.user_id], "in the order they joined"
    assert rest["next"] is None and rest["previous"]


async def test_channel_only_owner_and_admins_add(rest_users):
    alice, bob, carol, dave = rest_users("alice", "bob", "carol", "dave")
    conv = await alice.create_conversation("channel", [bob])
    error = assert_error(await bob.api.post(f"conversations/{conv}/participants/", {"user_id": carol.user_id}), 403, "forbidden")
    assert "owner" in error["message"]
    assert carol.user_id not in await members(alice, conv), "nothing changed"

    assert (await alice.api.post(f"conversations/{conv}/participants/", {"user_id": carol.user_id, "role": "admin"}))[0] == 201
    status, added = await carol.api.post(f"conversations/{conv}/participants/", {"user_id": dave.user_id})
    assert status == 201, "a channel admin adds"
    [boss] = rest_users("boss", role="admin")
    [erin] = rest_users("erin")
    assert (await boss.api.post(f"conversations/{conv}/participants/", {"user_id": erin.user_id}))[0] == 201, "tenant admin"


async def test_direct_never_changes_membership(rest_users):
    alice, bob, carol = rest_users("alice", "bob", "carol")
    conv = await alice.create_conversation("direct", [bob])
    assert_error(await alice.api.post(f"conversations/{conv}/participants/", {"user_id": carol.user_id}), 403, "forbidden")
    assert_error(await bob.api.delete(f"conversations/{conv}/participants/{bob.user_id}/"), 403, "forbidden")
    assert set(await members(alice, conv)) == {alice.user_id, bob.user_id}


async def test_remove_and_leave_rules(rest_users):
    alice, bob, carol, dave, erin = rest_users("alice", "bob", "carol", "dave", "erin")
    conv = await alice.create_conversation("group", [bob, carol])
    await alice.api.post(f"conversations/{conv}/participants/", {"user_id": dave.user_id, "role": "admin"})
    await alice.api.post(f"conversations/{conv}/participants/", {"user_id": erin.user_id, "role": "admin"})
    path = f"conversations/{conv}/participants/"

    assert_error(await bob.api.delete(f"{path}{carol.user_id}/"), 403, "forbidden")  # member removes member
    assert_error(await dave.api.delete(f"{path}{erin.user_id}/"), 403, "forbidden")  # admin removes admin
    assert_error(await dave.api.delete(f"{path}{alice.user_id}/"), 403, "forbidden")  # nobody removes the owner
    assert_error(await dave.api.delete(f"{path}nobody-here/"), 404, "not_found")
    assert len(await members(alice, conv)) == 5, "nothing changed"

    assert await dave.api.delete(f"{path}{carol.user_id}/") == (204, None)  # admin removes member
    assert await alice.api.delete(f"{path}{erin.user_id}/") == (204, None)  # owner removes admin
    assert await bob.api.delete(f"{path}{bob.user_id}/") == (204, None)  # leave
    assert await members(alice, conv) == {alice.user_id: "owner", dave.user_id: "admin"}
    for gone in (bob, carol, erin):
        assert_error(await gone.api.get(f"conversations/{conv}/"), 404, "not_found")
        assert_error(await gone.api.delete(f"{path}{gone.user_id}/"), 404, "not_found")

    events = await system_events(alice, conv, 5)
    assert events == ["participant_added"] * 2 + ["participant_removed", "participant_removed", "participant_left"]


async def test_add_bad_input(rest_users):
    alice, bob = rest_users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    path = f"conversations/{conv}/participants/"
    for bad in ({}, {"user_id": ""}, {"user_id": 7}, {"user_id": "x", "role": "owner"}, {"user_id": "x", "extra": True}, {"user_id": "x" * 129}):
        error = assert_error(await alice.api.post(path, bad), 400, "invalid_message")
        assert isinstance(error["details"], dict) and error["details"], error
    assert_error(await alice.api.post(path, raw=b'{"user_id": "x"', headers={}), 400, "invalid_message")
    assert_error(await alice.api.post(path, raw=b"user_id=x", headers={"Content-Type": "application/x-www-form-urlencoded"}), 415)
    assert_error(await alice.api.post("conversations/nope/participants/", {"user_id": "x"}), 404, "not_found")
    assert_error(await alice.api.get(f"{path}?limit=501"), 400, "invalid_message")
    assert set(await members(alice, conv)) == {alice.user_id, bob.user_id}
