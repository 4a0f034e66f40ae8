"""Delivery across nodes: one seq order for every reader on any node, resume and retries on any node.

Three nodes share one Redis and one database; each user's sockets go to the node the test
chooses, so every event here crosses from the node that stored it to the nodes that read it.
"""

from __future__ import annotations

import asyncio

from tests.cluster.conftest import owner_index
from tests.support.client import unique
from tests.support.metrics import scrape


async def joined(user, conversation_id: str, since_seq: int | None = None):
    sock = await user.socket()
    fields = {"conversation_id": conversation_id} if since_seq is None else {"conversation_id": conversation_id, "since_seq": since_seq}
    await sock.request("join_conversation", "conversation_joined", **fields)
    return sock


async def stream_of(sock, count: int) -> list[int]:
    """The seqs of the next ``count`` stream events the socket receives, in arrival order."""
    seqs = []
    while len(seqs) < count:
        event = await sock.next()
        if "seq" in event:
            seqs.append(event["seq"])
    return seqs


async def test_messages_sent_on_every_node_reach_every_node_in_one_order(nodes, people):
    alice, bob, carol = people(nodes[0], "alice"), people(nodes[1], "bob"), people(nodes[2], "carol")
    conversation_id = await alice.create_conversation(others=[bob, carol])
    readers = [await joined(user, conversation_id) for user in (alice, bob, carol)]
    writers = [await user.socket() for user in (alice, bob, carol)]

    async def send_all(sock, name: str) -> list[dict]:
        return [await sock.request("send_message", "new_message", conversation_id=conversation_id, content=f"{name}-{n}") for n in range(10)]

    acks = await asyncio.gather(*(send_all(sock, name) for sock, name in zip(writers, ("a", "b", "c"))))
    for sent in acks:
        assert [ack["message"]["content"] for ack in sent] == sorted((ack["message"]["content"] for ack in sent), key=lambda c: int(c.split("-")[1]))
    assert sorted(ack["seq"] for sent in acks for ack in sent) == list(range(1, 31))
    for reader in readers:
        assert await stream_of(reader, 30) == list(range(1, 31))
        assert not [e for e in await reader.quiet(0.3) if "seq" in e], "no duplicates"


async def test_the_sender_is_answered_once_with_its_request_id_wherever_the_owner_is(nodes, people):
    alice, bob = people(nodes[0], "alice"), people(nodes[1], "bob")
    conversation_id = await alice.create_conversation(others=[bob])
    owner = owner_index(nodes, alice.tenant_id, conversation_id)
    sender = people(nodes[(owner + 1) % 3], "x", alice.user_id)
    sock = await joined(sender, conversation_id)
    reader = await joined(bob, conversation_id)
    ack = await sock.request("send_message", "new_message", conversation_id=conversation_id, content="hi", client_msg_id="k1")
    assert ack["seq"] == 1 and ack["message"]["client_msg_id"] == "k1"
    assert (await reader.next("new_message"))["seq"] == 1
    await sock.request("send_message", "new_message", conversation_id=conversation_id, content="barrier")
    events = [e for e in sock.events if e.get("type") == "new_message"]
    assert [e["seq"] for e in events] == [1, 2], "its own copy, once, in order"


async def test_resume_with_since_seq_on_another_node(nodes, people):
    alice, bob = people(nodes[0], "alice"), people(nodes[1], "bob")
    conversation_id = await alice.create_conversation(others=[bob])
    writer = await alice.socket()
    for n in range(5):
        await writer.request("send_message", "new_message", conversation_id=conversation_id, content=f"m{n}")
    first = await joined(bob, conversation_id)
    first.close()
    for n in range(5, 8):
        await writer.request("send_message", "new_message", conversation_id=conversation_id, content=f"m{n}")
    elsewhere = people(nodes[2], "bob", bob.user_id)
    resumed = await joined(elsewhere, conversation_id, since_seq=5)
    await writer.request("send_message", "new_message", conversation_id=conversation_id, content="live")
    events = [await resumed.next("new_message") for _ in range(4)]
    assert [(e["seq"], e["message"]["content"]) for e in events] == [(6, "m5"), (7, "m6"), (8, "m7"), (9, "live")]


async def test_a_client_msg_id_retried_on_another_node_answers_the_original(nodes, people):
    alice, bob = people(nodes[0], "alice"), people(nodes[1], "bob")
    conversation_id = await alice.create_conversation(others=[bob])
    reader = await joined(bob, conversation_id)
    key = unique("cmid")
    first = await (await alice.socket()).request("send_message", "new_message", conversation_id=conversation_id, content="once", client_msg_id=key)
    for node in nodes[1:]:
        retry = await (await people(node, "alice", alice.user_id).socket()).request(
            "send_message", "new_message", conversation_id=conversation_id, content="again", client_msg_id=key
        )
        assert (retry["message"]["id"], retry["seq"], retry["message"]["content"]) == (first["message"]["id"], 1, "once")
    status, body = await people(nodes[2], "alice", alice.user_id).api.post(
        f"conversations/{conversation_id}/messages/", {"content": "rest", "client_msg_id": key}
    )
    assert status == 200 and body["id"] == first["message"]["id"]
    await (await alice.socket()).request("send_message", "new_message", conversation_id=conversation_id, content="barrier")
    assert await stream_of(reader, 2) == [1, 2], "the retries were not broadcast again"


async def test_edits_reactions_and_rest_writes_cross_nodes_in_the_stream(nodes, people):
    alice, bob = people(nodes[0], "alice"), people(nodes[1], "bob")
    conversation_id = await alice.create_conversation(others=[bob])
    reader = await joined(people(nodes[2], "bob", bob.user_id), conversation_id)
    status, message = await bob.api.post(f"conversations/{conversation_id}/messages/", {"content": "over REST"})
    assert status == 201
    sock = await alice.socket()
    await sock.request("add_reaction", "reaction_added", message_id=message["id"], emoji="👍")
    status, _ = await bob.api.put(f"conversations/{conversation_id}/messages/{message['id']}/", {"content": "edited"})
    assert status == 200
    status, _ = await alice.api.put(f"conversations/{conversation_id}/", {"title": "renamed"})
    assert status == 200
    kinds = []
    while len(kinds) < 5:
        event = await reader.next()
        if "seq" in event:
            kinds.append((event["seq"], event["type"]))
    assert kinds == [(1, "new_message"), (2, "reaction_added"), (3, "message_updated"), (4, "conversation_updated"), (5, "new_message")]


async def joined_on_every_node(nodes, people):
    """Alice's conversation with Bob, and a socket of Bob's joined to it on every node."""
    alice, bob = people(nodes[0], "alice"), people(nodes[1], "bob")
    conversation_id = await alice.create_conversation(others=[bob])
    return alice, bob, conversation_id, [await joined(people(node, "bob", bob.user_id), conversation_id) for node in nodes]


async def test_a_removed_participant_stops_receiving_on_every_node(nodes, people):
    alice, bob, conversation_id, bob_sockets = await joined_on_every_node(nodes, people)
    status, _ = await alice.api.delete(f"conversations/{conversation_id}/participants/{bob.user_id}/")
    assert status == 204
    for sock in bob_sockets:
        await sock.next("conversation_left", conversation_id=conversation_id)
    writer = await alice.socket()
    await writer.request("send_message", "new_message", conversation_id=conversation_id, content="after")
    watcher = await joined(people(nodes[2], "alice", alice.user_id), conversation_id)
    await writer.request("send_message", "new_message", conversation_id=conversation_id, content="barrier")
    await watcher.next("new_message")
    for sock in bob_sockets:
        assert not [e for e in await sock.quiet(0.3) if e.get("type") == "new_message"]
    rejoin = await bob_sockets[2].request("join_conversation", conversation_id=conversation_id)
    assert rejoin["type"] == "error" and rejoin["code"] == "not_found"


async def test_each_node_reports_its_part_in_metrics(nodes, people):
    alice, bob = people(nodes[0], "alice"), people(nodes[1], "bob")
    conversation_id = await alice.create_conversation(others=[bob])
    owner = owner_index(nodes, alice.tenant_id, conversation_id)
    sender, reader_node = nodes[(owner + 1) % 3], nodes[(owner + 2) % 3]
    before = [scrape(node) for node in nodes]
    reader = await joined(people(reader_node, "bob", bob.user_id), conversation_id)
    await (await people(sender, "alice", alice.user_id).socket()).request("send_message", "new_message", conversation_id=conversation_id, content="m")
    await reader.next("new_message")
    after = [scrape(node) for node in nodes]

    def grew(index: int, name: str) -> float:
        return after[index][(name, ())] - before[index][(name, ())]

    assert grew(nodes.index(sender), "chat_forwarded_writes_total") >= 1
    assert grew(owner, "chat_bus_published_total") >= 2, "a frame and an answer"
    assert grew(nodes.index(reader_node), "chat_bus_received_total") >= 1
    for sample in after:
        assert sample[("chat_redis_up", ())] == 1 and sample[("chat_live_nodes", ())] == 3


async def test_a_conversation_deleted_on_one_node_is_gone_on_every_node(nodes, people):
    alice, _, conversation_id, readers = await joined_on_every_node(nodes, people)
    status, _ = await alice.api.delete(f"conversations/{conversation_id}/")
    assert status == 204
    for reader in readers:
        await reader.next("conversation_deleted", conversation_id=conversation_id)
        again = await reader.request("join_conversation", conversation_id=conversation_id)
        assert again["type"] == "error" and again["code"] == "not_found"
