"""The WebSocket protocol over real sockets: join, send, edit, delete, reactions, receipts, presence."""

from __future__ import annotations

import asyncio

from tests.support.client import DEFAULT_WAIT_SECS


async def test_join_send_and_everyone_joined_receives_in_order(users):
    alice, bob = users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    a, b = await alice.socket(), await bob.socket()
    joined = await a.request("join_conversation", "conversation_joined", conversation_id=conv)
    assert joined["last_seq"] == 0
    await b.request("join_conversation", "conversation_joined", conversation_id=conv)

    ack = await a.request("send_message", "new_message", conversation_id=conv, content="hello", message_type="text", client_msg_id="c-1")
    message = ack["message"]
    assert message["content"] == "hello" and message["seq"] == 1 and message["client_msg_id"] == "c-1"
    assert message["sender_id"] == alice.user_id and message["created_at"].endswith("Z")
    received = await b.next("new_message")
    assert received["message"] == message and "request_id" not in received

    for n in range(2, 6):
        a.send_type("send_message", conversation_id=conv, content=f"m{n}")
    seqs = [(await b.next("new_message"))["message"]["seq"] for _ in range(4)]
    assert seqs == [2, 3, 4, 5]


async def test_sender_socket_not_joined_still_gets_its_acknowledgement(users):
    alice, bob = users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    a = await alice.socket()
    ack = await a.request("send_message", "new_message", conversation_id=conv, content="from afar")
    assert ack["message"]["content"] == "from afar"


async def test_leave_stops_delivery(users):
    alice, bob = users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    a, b = await alice.socket(), await bob.socket()
    for s in (a, b):
        await s.request("join_conversation", "conversation_joined", conversation_id=conv)
    await b.request("leave_conversation", "conversation_left", conversation_id=conv)
    await a.request("send_message", "new_message", conversation_id=conv, content="after leave")
    assert not [e for e in await b.quiet(0.4) if e["type"] == "new_message"]
    error = await b.request("leave_conversation", "error", conversation_id=conv)
    assert error["code"] == "not_found"


async def test_edit_and_delete_rules(users):
    alice, bob, carol = users("alice", "bob", "carol")
    conv = await alice.create_conversation("group", [bob, carol])
    a, b, c = await alice.socket(), await bob.socket(), await carol.socket()
    for s in (a, b, c):
        await s.request("join_conversation", "conversation_joined", conversation_id=conv)
    sent = await b.request("send_message", "new_message", conversation_id=conv, content="original")
    message_id = sent["message"]["id"]

    denied = await c.request("edit_message", "error", message_id=message_id, content="hijack")
    assert denied["code"] == "forbidden"
    edited = await b.request("edit_message", "message_updated", message_id=message_id, content="edited")
    assert edited["message"]["content"] == "edited" and edited["message"]["edited_at"]
    assert (await a.next("message_updated"))["message"]["content"] == "edited"

    denied = await c.request("delete_message", "error", message_id=message_id)
    assert denied["code"] == "forbidden"
    # alice owns the conversation: owners and admins may delete others' messages
    deleted = await a.request("delete_message", "message_deleted", message_id=message_id)
    assert deleted == {**deleted, "message_id": message_id, "conversation_id": conv}
    await b.next("message_deleted", message_id=message_id)
    status, body = await alice.api.get(f"conversations/{conv}/messages/{message_id}/")
    if status == 200:  # the REST resource may not exist in every build of this test
        assert body["is_deleted"] and body["content"] == ""


async def test_reactions_are_idempotent_and_removable(users):
    alice, bob = users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    a, b = await alice.socket(), await bob.socket()
    for s in (a, b):
        await s.request("join_conversation", "conversation_joined", conversation_id=conv)
    message_id = (await a.request("send_message", "new_message", conversation_id=conv, content="react to me"))["message"]["id"]
    await b.next("new_message")

    added = await b.request("add_reaction", "reaction_added", message_id=message_id, emoji="👍")
    assert added["reaction"]["emoji"] == "👍" and added["reaction"]["user_id"] == bob.user_id
    await a.next("reaction_added")
    again = await b.request("add_reaction", "reaction_added", message_id=message_id, emoji="👍")
    assert again["reaction"]["id"] == added["reaction"]["id"]
    assert not [e for e in await a.quiet(0.3) if e["type"] == "reaction_added"], "a repeated reaction is one event"

    removed = await b.request("remove_reaction", "reaction_removed", message_id=message_id, emoji="👍")
    assert removed["user_id"] == bob.user_id and removed["conversation_id"] == conv
    await a.next("reaction_removed")
    missing = await b.request("remove_reaction", "error", message_id=message_id, emoji="👍")
    assert missing["code"] == "not_found"


async def test_mark_read_sends_read_receipt(users):
    alice, bob = users("alice", "bob")
    conv = await alice.create_conversation("direct", [bob])
    a, b = await alice.socket(), await bob.socket()
    for s in (a, b):
        await s.request("join_conversation", "conversation_joined", conversation_id=conv)
    first = (await a.request("send_message", "new_message", conversation_id=conv, content="one"))["message"]
    await a.request("send_message", "new_message", conversation_id=conv, content="two")

    receipt = await b.request("mark_read", "read_receipt", conversation_id=conv, message_id=first["id"])
    assert receipt["last_read_seq"] == 1 and receipt["user_id"] == bob.user_id and receipt["read_at"]
    assert (await a.next("read_receipt"))["last_read_message_id"] == first["id"]
    receipt = await b.request("mark_read", "read_receipt", conversation_id=conv)
    assert receipt["last_read_seq"] == 2
    status, body = await bob.api.get("conversations/")
    assert status == 200
    assert [c["unread_count"] for c in body["results"] if c["id"] == conv] == [0]


async def test_typing_goes_to_others_and_expires_on_its_own(users):
    alice, bob = users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    a, b = await alice.socket(), await bob.socket()
    for s in (a, b):
        await s.request("join_conversation", "conversation_joined", conversation_id=conv)
    b.send_type("start_typing", conversation_id=conv)
    started = await a.next("typing_indicator")
    assert started == {"type": "typing_indicator", "conversation_id": conv, "user_id": bob.user_id, "is_typing": True}
    assert not [e for e in await b.quiet(0.2) if e["type"] == "typing_indicator"], "not echoed to the typist"
    # The test server's TYPING_TTL_SECS is 1: no refresh, so it clears itself.
    stopped = await a.next("typing_indicator")
    assert stopped["is_typing"] is False

    b.send_type("start_typing", conversation_id=conv)
    await a.next("typing_indicator", is_typing=True)
    b.send_type("stop_typing", conversation_id=conv)
    await a.next("typing_indicator", is_typing=False, timeout=0.9)

    b.send_type("start_typing", conversation_id=conv)
    await a.next("typing_indicator", is_typing=True)
    b.close()
    await a.next("typing_indicator", is_typing=False, timeout=0.9)


async def test_presence_updates_reach_the_tenant(users):
    alice, bob = users("alice", "bob")
    a = await alice.socket()
    b = await bob.socket()
    online = await a.next("presence_update", user_id=bob.user_id)
    assert online["status"] == "online"
    away = await b.request("update_presence", "presence_update", status="away")
    assert away["status"] == "away" and away["user_id"] == bob.user_id
    assert (await a.next("presence_update", user_id=bob.user_id))["status"] == "away"
    bad = await b.request("update_presence", "error", status="sleeping")
    assert bad["code"] == "invalid_message" and "status" in bad["details"]
    b.close()
    offline = await a.next("presence_update", user_id=bob.user_id, status="offline")
    assert offline["last_seen"]


async def test_ping_pong_and_request_id_echo(users):
    (alice,) = users("alice")
    a = await alice.socket()
    pong = await a.request("ping", "pong")
    assert pong["type"] == "pong"
    a.send_type("ping", request_id=7)
    assert (await a.next("pong"))["request_id"] == 7


async def test_channel_only_owner_and_admins_post(users):
    owner, member = users("owner", "member")
    conv = await owner.create_conversation("channel", [member], title="news")
    o, m = await owner.socket(), await member.socket()
    for s in (o, m):
        await s.request("join_conversation", "conversation_joined", conversation_id=conv)
    denied = await m.request("send_message", "error", conversation_id=conv, content="me too")
    assert denied["code"] == "forbidden"
    await o.request("send_message", "new_message", conversation_id=conv, content="announcement")
    got = await m.next("new_message")
    assert got["message"]["content"] == "announcement"
    # members still react and mark read in a channel
    await m.request("add_reaction", "reaction_added", message_id=got["message"]["id"], emoji="🎉")
    await m.request("mark_read", "read_receipt", conversation_id=conv)


async def test_only_participants_join(users):
    alice, bob, mallory = users("alice", "bob", "mallory")
    conv = await alice.create_conversation("group", [bob])
    m = await mallory.socket()
    for kind, fields in [
        ("join_conversation", {}),
        ("send_message", {"content": "hi"}),
        ("start_typing", {}),
        ("mark_read", {}),
    ]:
        error = await m.request(kind, "error", conversation_id=conv, **fields)
        assert error["code"] == "not_found", (kind, error)


async def test_system_messages_for_membership_changes(users):
    alice, bob, carol = users("alice", "bob", "carol")
    conv = await alice.create_conversation("group", [bob])
    b = await bob.socket()
    await b.request("join_conversation", "conversation_joined", conversation_id=conv)
    status, _ = await alice.api.post(f"conversations/{conv}/participants/", {"user_id": carol.user_id})
    assert status == 201
    system = await b.next("new_message")
    assert system["message"]["message_type"] == "system"
    assert system["message"]["metadata"]["event"] == "participant_added"
    assert system["message"]["metadata"]["user_id"] == carol.user_id


async def test_deleting_a_message_drops_its_reactions(users):
    alice, bob = users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    a = await alice.socket()
    message_id = (await a.request("send_message", "new_message", conversation_id=conv, content="soon gone"))["message"]["id"]
    await a.request("add_reaction", "reaction_added", message_id=message_id, emoji="👀")
    await a.request("delete_message", "message_deleted", message_id=message_id)
    status, body = await alice.api.get(f"conversations/{conv}/messages/{message_id}/")
    assert status == 200 and body["is_deleted"] and body["reactions"] == []


async def test_presence_keeps_the_last_joined_conversation(users):
    alice, bob = users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    a = await alice.socket()
    await a.request("join_conversation", "conversation_joined", conversation_id=conv)
    status, body = await bob.api.get(f"presence/?user_ids={alice.user_id}")
    assert status == 200 and body["results"][0]["current_conversation_id"] == conv
    a.close()
    deadline = asyncio.get_running_loop().time() + DEFAULT_WAIT_SECS
    while True:  # offline after the grace period, and the stored row keeps the conversation
        status, body = await bob.api.get(f"presence/?user_ids={alice.user_id}")
        if body["results"] and body["results"][0]["status"] == "offline":
            break
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.1)
    assert body["results"][0]["current_conversation_id"] == conv


async def test_membership_system_message_is_stored_before_the_rest_answer(users):
    alice, bob, carol = users("alice", "bob", "carol")
    conv = await alice.create_conversation("group", [bob])
    status, _ = await alice.api.post(f"conversations/{conv}/participants/", {"user_id": carol.user_id})
    assert status == 201
    status, body = await alice.api.get(f"conversations/{conv}/messages/")
    assert status == 200
    assert [m["metadata"].get("event") for m in body["results"]] == ["participant_added"]
    status, _ = await alice.api.put(f"conversations/{conv}/", {"title": "renamed"})
    assert status == 200
    status, body = await alice.api.get(f"conversations/{conv}/messages/")
    assert [m["metadata"].get("event") for m in body["results"]] == ["participant_added", "title_changed"]
