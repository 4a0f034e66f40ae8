"""Typing, presence, connection caps and rate limits across nodes: as on one process.

Presence is announced once for the whole cluster whichever node holds the sockets; typing is
kept by the conversation's owner; a user's sockets and writes count on every node together.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.cluster.conftest import conversation_owned_by
from tests.cluster.test_cluster_delivery import joined
from tests.support.client import Socket


async def test_typing_shows_on_other_nodes_and_clears_on_stop_send_and_close(nodes, people):
    alice, bob = people(nodes[0], "alice"), people(nodes[1], "bob")
    conversation_id = await alice.create_conversation(others=[bob])
    watchers = [await joined(people(node, "alice", alice.user_id), conversation_id) for node in nodes]
    typist = await joined(bob, conversation_id)
    typist.send_type("start_typing", conversation_id=conversation_id)
    for sock in watchers:
        await sock.next("typing_indicator", user_id=bob.user_id, is_typing=True)
    typist.send_type("stop_typing", conversation_id=conversation_id)
    for sock in watchers:
        await sock.next("typing_indicator", user_id=bob.user_id, is_typing=False)
    typist.send_type("start_typing", conversation_id=conversation_id)
    await typist.request("send_message", "new_message", conversation_id=conversation_id, content="done typing")
    for sock in watchers:
        await sock.next("typing_indicator", user_id=bob.user_id, is_typing=True)
        await sock.next("typing_indicator", user_id=bob.user_id, is_typing=False)
    typist.send_type("start_typing", conversation_id=conversation_id)
    for sock in watchers:
        await sock.next("typing_indicator", user_id=bob.user_id, is_typing=True)
    typist.close()
    for sock in watchers:
        await sock.next("typing_indicator", user_id=bob.user_id, is_typing=False)
    assert not [e for e in typist.events if e.get("type") == "typing_indicator"], "the typist is not told about itself"


def typing_of(sock, user_id: str) -> list[bool]:
    return [e["is_typing"] for e in sock.events if e.get("type") == "typing_indicator" and e["user_id"] == user_id]


@pytest.mark.parametrize("other", [1, 2, 0], ids=["on-another-node", "on-the-owner", "on-the-closing-node"])
async def test_a_closed_socket_stops_the_typing_only_when_its_user_has_no_socket_joined_on_any_node(nodes, people, other):
    """Node 2 owns the conversation; both typists close a socket on node 0. ``kept`` has another
    socket joined on node ``other``, ``stopped`` only a socket connected there."""
    carol = people(nodes[1], "carol")
    kept, stopped = people(nodes[0], "kept"), people(nodes[0], "stopped")
    conversation_id = await conversation_owned_by(nodes, 2, carol, [kept, stopped])
    watcher = await joined(carol, conversation_id)
    kept_typist, stopped_typist = await joined(kept, conversation_id), await joined(stopped, conversation_id)
    kept_joined = await joined(people(nodes[other], "kept", kept.user_id), conversation_id)
    await people(nodes[other], "stopped", stopped.user_id).socket()
    for typist, user in ((kept_typist, kept), (stopped_typist, stopped)):
        typist.send_type("start_typing", conversation_id=conversation_id)
        await watcher.next("typing_indicator", user_id=user.user_id, is_typing=True)

    await kept_typist.close_and_wait()
    await stopped_typist.close_and_wait()
    await watcher.next("typing_indicator", user_id=stopped.user_id, is_typing=False)
    assert typing_of(watcher, kept.user_id) == [True], "the owner decides on the first close before the second"

    await kept_joined.request("leave_conversation", "conversation_left", conversation_id=conversation_id)
    await watcher.next("typing_indicator", user_id=kept.user_id, is_typing=False)


async def test_presence_is_announced_once_whichever_nodes_hold_the_sockets(nodes, people):
    alice, bob = people(nodes[0], "alice"), people(nodes[1], "bob")
    watcher = await alice.socket()
    first = await bob.socket()
    await watcher.next_presence(bob.user_id, status="online")
    second = await people(nodes[2], "bob", bob.user_id).socket()
    first.close()
    third = await people(nodes[0], "bob", bob.user_id).socket()
    second.close()
    third.close()
    offline = await watcher.next_presence(bob.user_id, status="offline")
    assert offline["last_seen"]
    carol = people(nodes[2], "carol")
    await carol.socket()
    await watcher.next_presence(carol.user_id, status="online")
    await watcher.quiet(1.0)
    assert watcher.presence_of(bob.user_id) == ["online", "offline"], "no flap between nodes, offline once"


async def test_a_chosen_status_reaches_every_node_and_rest_reads_it_anywhere(nodes, people):
    alice, bob = people(nodes[0], "alice"), people(nodes[1], "bob")
    watchers = [await people(node, "carol", "carol-" + alice.user_id).socket() for node in nodes]
    sock = await bob.socket()
    answer = await sock.request("update_presence", "presence_update", status="away")
    assert answer["status"] == "away"
    for watcher in watchers:
        await watcher.next_presence(bob.user_id, status="away")
    for node in nodes:
        status, body = await people(node, "alice", alice.user_id).api.get(f"presence/?user_ids={bob.user_id}")
        assert status == 200 and body["results"][0]["status"] == "away", node.port
    assert [e.get("request_id") for e in sock.events if e.get("type") == "presence_update" and e["status"] == "away"] == [answer["request_id"]]


async def test_presence_heard_from_another_node_reaches_sockets_in_one_batch_per_interval(start_cluster, people):
    """Users connecting at once on one node reach sockets on both nodes as one ``presence_batch``
    per interval, as on one process (the interval is long so that the connects fall inside it
    on a loaded machine)."""
    _, group = start_cluster(2, {"PRESENCE_BATCH_SECS": "4"})
    eve = people(group[1], "eve")
    watcher = await eve.socket()
    await watcher.next("presence_update", user_id=eve.user_id, status="online")  # a quiet tenant's first change: at once
    alice, bob, carol = (people(group[0], name) for name in ("alice", "bob", "carol"))
    first = await alice.socket()  # the first change on node 0: at once there, in eve's interval on node 1
    await asyncio.gather(bob.socket(), carol.socket())

    for sock, batched in ((watcher, (alice, bob, carol)), (first, (bob, carol))):
        batch = await sock.next("presence_batch")
        expected = {user.user_id: ("online", None) for user in batched}
        assert {u["user_id"]: (u["status"], u["current_conversation_id"]) for u in batch["updates"]} == expected
        assert not [e for e in sock.events if e.get("type") == "presence_update" and e["user_id"] in expected]


async def connect_when_allowed(node, user) -> Socket:
    """A socket once the user's closed ones are counted out: a refused one is greeted, then
    closed with 4429, so a ping answered tells that it was let in."""
    for _ in range(100):
        sock = await Socket.connect(node, user.tenant_id, user.token)
        await sock.next("connection_established")
        try:
            await sock.request("ping", "pong")
            return sock
        except AssertionError:
            assert sock.conn.close_code == 4429
    raise AssertionError("never let in again")


async def test_the_connection_cap_and_the_write_rate_count_a_user_on_every_node(start_cluster, people):
    _, group = start_cluster(2, {"MAX_CONNECTIONS_PER_USER": "3", "RATE_LIMIT_PER_SEC": "0.05", "RATE_LIMIT_BURST": "4"})
    owner, bob = people(group[0], "owner"), people(group[0], "bob")
    conversation_id = await owner.create_conversation(others=[bob])
    sockets = [await people(node, "bob", bob.user_id).socket() for node in (group[0], group[1], group[1])]
    extra = await Socket.connect(group[0], bob.tenant_id, bob.token)
    assert (await extra.wait_closed())[0] == 4429, "a fourth socket, on any node, is one too many"
    sockets[0].close()
    sockets[0] = await connect_when_allowed(group[0], bob)

    answers = [await sock.request("send_message", None, conversation_id=conversation_id, content="x") for sock in sockets * 2]
    assert [a["type"] for a in answers].count("new_message") == 4, "one burst of 4 for the user, not 4 per node"
    assert {a["code"] for a in answers if a["type"] == "error"} == {"rate_limited"}
