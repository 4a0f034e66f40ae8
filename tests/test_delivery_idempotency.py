"""Retries with one ``client_msg_id`` make one message, broadcast once, whatever the path of the retry."""

from __future__ import annotations

import pytest

from tests.support.client import unique
from tests.support.delivery import join, messages_route, rest_history


async def test_five_retries_from_several_connections_make_one_message(users):
    alice, bob = users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    b = await bob.socket()
    await join(b, conv)
    first, second, third = await alice.socket(), await alice.socket(), await alice.socket()
    await join(first, conv)
    client_msg_id = unique("cmid")

    # Two retries fired back to back (they may share one storage batch) ...
    for n in range(2):
        first.send_type("send_message", conversation_id=conv, content="hello once", client_msg_id=client_msg_id, request_id=f"r{n}")
    answers = [await first.next("new_message", request_id=f"r{n}") for n in range(2)]
    # ... then three more, later, from other connections (one never joined).
    answers.append(await second.request("send_message", "new_message", conversation_id=conv, content="hello once", client_msg_id=client_msg_id))
    answers.append(await third.request("send_message", "new_message", conversation_id=conv, content="hello once", client_msg_id=client_msg_id))
    answers.append(await first.request("send_message", "new_message", conversation_id=conv, content="hello once", client_msg_id=client_msg_id))

    messages = [answer["message"] for answer in answers]
    assert all(m == messages[0] for m in messages), "every retry answers the one stored message"
    assert messages[0]["seq"] == 1 and messages[0]["client_msg_id"] == client_msg_id

    got = await bob_messages(b)
    assert [m["id"] for m in got] == [messages[0]["id"]], "broadcast once"
    # The joined sender socket got one answer per request of its own, and no extra broadcast.
    await first.quiet(0.2)
    assert [e.get("request_id") for e in first.events if e["type"] == "new_message"] == ["r0", "r1", answers[4]["request_id"]]

    # Nothing else was numbered: the next message is seq 2.
    nxt = await first.request("send_message", "new_message", conversation_id=conv, content="next")
    assert nxt["message"]["seq"] == 2


async def bob_messages(sock) -> list[dict]:
    """Every ``new_message`` the socket has had, once things are quiet."""
    await sock.next("new_message")
    await sock.quiet(0.4)
    return [e["message"] for e in sock.events if e["type"] == "new_message"]


async def test_client_msg_id_is_per_sender_and_per_conversation(users):
    alice, bob = users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    other = await alice.create_conversation("group", [bob], title="other")
    a, b = await alice.socket(), await bob.socket()
    mine = await a.request("send_message", "new_message", conversation_id=conv, content="a", client_msg_id="same")
    theirs = await b.request("send_message", "new_message", conversation_id=conv, content="b", client_msg_id="same")
    elsewhere = await a.request("send_message", "new_message", conversation_id=other, content="c", client_msg_id="same")
    assert mine["message"]["id"] != theirs["message"]["id"] != elsewhere["message"]["id"]
    assert (mine["message"]["seq"], theirs["message"]["seq"], elsewhere["message"]["seq"]) == (1, 2, 1)


async def test_retry_after_other_messages_returns_the_original(users):
    alice, bob = users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    a, b = await alice.socket(), await bob.socket()
    await join(b, conv)
    original = (await a.request("send_message", "new_message", conversation_id=conv, content="x", client_msg_id="k1"))["message"]
    for n in range(3):
        await b.request("send_message", "new_message", conversation_id=conv, content=f"reply {n}")
    retry = (await a.request("send_message", "new_message", conversation_id=conv, content="x", client_msg_id="k1"))["message"]
    assert retry == original
    await b.quiet(0.4)
    seen = [e["message"]["seq"] for e in b.events if e["type"] == "new_message"]
    assert seen == [1, 2, 3, 4], "bob saw each message once, the retry not at all"


async def test_rest_and_websocket_retries_make_one_message(users):
    alice, bob = users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    if not await messages_route(alice.api, conv):
        pytest.skip("REST conversations/{id}/messages/ is not in this build yet")
    b = await bob.socket()
    await join(b, conv)
    client_msg_id = unique("cmid")
    body = {"content": "over rest", "client_msg_id": client_msg_id}
    statuses, created = [], []
    for _ in range(3):
        status, message = await alice.api.post(f"conversations/{conv}/messages/", body)
        statuses.append(status)
        created.append(message)
    a = await alice.socket()
    for _ in range(2):
        ack = await a.request("send_message", "new_message", conversation_id=conv, content="over rest", client_msg_id=client_msg_id)
        created.append(ack["message"])

    assert statuses[0] == 201 and all(s in (200, 201) for s in statuses), statuses
    assert all(m["id"] == created[0]["id"] and m["seq"] == 1 for m in created), created
    got = await bob_messages(b)
    assert [m["id"] for m in got] == [created[0]["id"]], "a REST write is broadcast once, like a WebSocket one"
    history = await rest_history(alice.api, conv)
    assert [m["id"] for m in history] == [created[0]["id"]]
