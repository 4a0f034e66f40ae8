"""REST writes reach the WebSocket members exactly as the same writes over a socket would."""

from __future__ import annotations

from urllib.parse import quote

from tests.support.rest import rest_users  # noqa: F401  (fixture)


async def test_every_rest_write_is_broadcast_to_joined_sockets(rest_users):
    alice, bob, carol = rest_users("alice", "bob", "carol")
    conv = await alice.create_conversation("group", [bob])
    b, a = await bob.socket(), await alice.socket()
    for sock in (a, b):
        await sock.request("join_conversation", "conversation_joined", conversation_id=conv)

    status, message = await alice.api.post(f"conversations/{conv}/messages/", {"content": "over REST", "client_msg_id": "r-1"})
    assert status == 201
    for sock in (b, a):  # the sender's own sockets too, as for a WebSocket send
        event = await sock.next("new_message")
        assert event["message"] == message and "request_id" not in event
    assert (await alice.api.post(f"conversations/{conv}/messages/", {"content": "retry", "client_msg_id": "r-1"}))[0] == 200
    assert not [e for e in await b.quiet(0.3) if e["type"] == "new_message"], "a retry is not broadcast again"

    status, edited = await alice.api.put(f"conversations/{conv}/messages/{message['id']}/", {"content": "edited over REST"})
    assert (await b.next("message_updated"))["message"] == edited

    status, reaction = await bob.api.post(f"messages/{message['id']}/reactions/", {"emoji": "🎉"})
    assert (await b.next("reaction_added"))["reaction"] == reaction
    assert (await a.next("reaction_added"))["reaction"] == reaction
    await bob.api.delete(f"messages/{message['id']}/reactions/{quote('🎉')}/")
    removed = await a.next("reaction_removed")
    assert removed == {**removed, "message_id": message["id"], "conversation_id": conv, "user_id": bob.user_id, "emoji": "🎉"}

    status, receipt = await bob.api.post(f"conversations/{conv}/read/", {"message_id": message["id"]})
    event = await a.next("read_receipt")
    assert {k: v for k, v in event.items() if k != "type"} == receipt

    status, presence = await bob.api.put("presence/me/", {"status": "away"})
    event = await a.next("presence_update", user_id=bob.user_id, status="away")
    # Tenant-wide presence pushes never say where someone is (docs/architecture.md, Presence).
    assert {k: v for k, v in event.items() if k != "type"} == {**presence, "current_conversation_id": None}

    await alice.api.post(f"conversations/{conv}/participants/", {"user_id": carol.user_id})
    added = await b.next("new_message")
    assert added["message"]["message_type"] == "system" and added["message"]["metadata"]["event"] == "participant_added"
    await alice.api.put(f"conversations/{conv}/", {"title": "renamed"})
    assert (await b.next("conversation_updated"))["conversation"]["title"] == "renamed"

    status, tombstone = await alice.api.delete(f"conversations/{conv}/messages/{message['id']}/")
    deleted = await b.next("message_deleted")
    assert deleted["message_id"] == message["id"] and deleted["conversation_id"] == conv

    # and a later joiner replaying history sees the REST writes as they stand now
    c = await carol.socket()
    await c.request("join_conversation", "conversation_joined", conversation_id=conv, since_seq=0)
    replayed = await c.next("new_message")
    assert replayed["message"]["id"] == message["id"] and replayed["message"]["is_deleted"]
    for sock in (a, b, c):
        sock.close()
