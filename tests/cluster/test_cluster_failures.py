"""Failures lose nothing acknowledged: a node killed outright, Redis restarted under load.

Each test has a Redis and nodes of its own. Writers retry with their ``client_msg_id`` what
was not acknowledged, as clients are told to; readers must end with every acknowledged
message, in one order, once.
"""

from __future__ import annotations

import time

from tests.cluster.conftest import conversation_owned_by, wait_for_live_nodes
from tests.cluster.test_cluster_delivery import joined
from tests.support.client import unique
from tests.support.metrics import scrape

TAKEOVER_SECS = 10.0


async def send_until_acknowledged(sock, conversation_id: str, content: str) -> dict:
    """What a client does: retry the same client_msg_id until the message is acknowledged."""
    key = unique("cmid")
    while True:
        answer = await sock.request("send_message", None, conversation_id=conversation_id, content=content, client_msg_id=key)
        if answer["type"] == "new_message":
            return answer
        assert answer["code"] == "storage_unavailable", answer


async def messages_until(sock, last_seq: int) -> list[tuple[int, str]]:
    """(seq, content) of every new_message the socket gets, until ``last_seq``."""
    seen = []
    while not seen or seen[-1][0] < last_seq:
        event = await sock.next("new_message")
        seen.append((event["seq"], event["message"]["content"]))
    return seen


async def test_a_killed_node_hands_its_conversations_over_within_ten_seconds(start_cluster, people):
    _, group = start_cluster(2)
    alice, bob = people(group[0], "alice"), people(group[0], "bob")
    conversation_id = await conversation_owned_by(group, 1, alice, [bob])
    reader = await joined(bob, conversation_id)
    on_victim = await joined(people(group[1], "bob", bob.user_id), conversation_id)
    writer = await alice.socket()
    carol = people(group[1], "carol")
    await carol.socket()
    await writer.next_presence(carol.user_id, status="online")
    acknowledged = [await send_until_acknowledged(writer, conversation_id, f"before-{n}") for n in range(5)]
    assert (await on_victim.next("new_message", seq=5))["seq"] == 5

    group[1].kill()
    killed_at = time.monotonic()
    acknowledged.append(await send_until_acknowledged(writer, conversation_id, "after-0"))
    takeover = time.monotonic() - killed_at
    assert takeover < TAKEOVER_SECS, f"the conversation was served again only after {takeover:.1f}s"
    acknowledged += [await send_until_acknowledged(writer, conversation_id, f"after-{n}") for n in range(1, 4)]

    sent = [(ack["seq"], ack["message"]["content"]) for ack in acknowledged]
    assert [seq for seq, _ in sent] == list(range(1, 10))
    assert await messages_until(reader, 9) == sent
    resumed = await joined(people(group[0], "bob", bob.user_id), conversation_id, since_seq=5)
    assert await messages_until(resumed, 9) == sent[5:], "a client of the dead node resumes on another"
    await writer.next_presence(carol.user_id, status="offline")  # her only socket died with its node


async def test_a_redis_restart_loses_nothing_and_each_node_goes_on_alone_meanwhile(start_cluster, people):
    redis, group = start_cluster(2, {"LOG_LEVEL": "INFO"})
    alice, bob = people(group[0], "alice"), people(group[1], "bob")
    conversation_id = await alice.create_conversation(others=[bob])
    readers = [await joined(alice, conversation_id), await joined(bob, conversation_id)]
    writers = [await people(group[0], "alice", alice.user_id).socket(), await people(group[1], "bob", bob.user_id).socket()]
    carol = people(group[1], "carol")
    leaving = await carol.socket()
    await readers[0].next_presence(carol.user_id, status="online")
    await writers[1].request("update_presence", "presence_update", status="away")
    await readers[0].next_presence(bob.user_id, status="away")
    acknowledged = [await send_until_acknowledged(w, conversation_id, f"up-{i}") for i, w in enumerate(writers)]

    redis.stop()
    leaving.close()  # her only socket, closed while Redis is away
    during = [await send_until_acknowledged(w, conversation_id, f"away-{i}-{n}") for n in range(3) for i, w in enumerate(writers)]
    for reader, writer in zip(readers, writers):
        mine = [ack["seq"] for ack in during if ack["message"]["content"].startswith(f"away-{writers.index(writer)}")]
        for seq in mine:
            await reader.next("new_message", seq=seq)  # delivered by its own node while Redis is away
    acknowledged += during

    gap_reads = sum(scrape(node)[("chat_gap_reads_total", ())] for node in group)
    redis.start()
    wait_for_live_nodes(group, 2)
    acknowledged += [await send_until_acknowledged(w, conversation_id, f"back-{i}") for i, w in enumerate(writers)]

    expected = sorted((ack["seq"], ack["message"]["content"]) for ack in acknowledged)
    assert [seq for seq, _ in expected] == list(range(1, len(expected) + 1)), "one seq per message, no gaps"
    for reader in readers:
        seen = sorted(
            {(e["seq"], e["message"]["content"]) for e in reader.events if e.get("type") == "new_message"}
            | set(await messages_until(reader, len(expected)))
        )
        assert seen == expected
        seqs = [e["seq"] for e in reader.events if e.get("type") == "new_message"]
        assert seqs == sorted(set(seqs)), "in order, nothing twice"

    assert sum(scrape(node)[("chat_gap_reads_total", ())] for node in group) > gap_reads, "what was missed was read"
    await readers[0].next_presence(carol.user_id, status="offline")  # her node told Redis when it was back
    for node in group:
        status, body = await people(node, "alice", alice.user_id).api.get(f"presence/?user_ids={bob.user_id}")
        assert status == 200 and body["results"][0]["status"] == "away", "bob's node put his chosen status back"
    writers[1].close()
    readers[1].close()
    offline = await readers[0].next_presence(bob.user_id, status="offline")
    assert offline["user_id"] == bob.user_id, "Redis lost bob's sockets in the restart; his node told it again"
    assert readers[0].presence_of(bob.user_id) == ["online", "away", "offline"], "nothing announced for bob by the restart"


async def test_a_node_stopped_in_order_hands_over_at_once(start_cluster, people):
    _, group = start_cluster(2)
    alice, bob = people(group[0], "alice"), people(group[0], "bob")
    conversation_id = await conversation_owned_by(group, 1, alice, [bob])
    reader = await joined(bob, conversation_id)
    writer = await alice.socket()
    await writer.request("send_message", "new_message", conversation_id=conversation_id, content="before")
    on_leaving = await people(group[1], "bob", bob.user_id).socket()
    assert group[1].stop() == 0
    assert (await on_leaving.wait_closed())[0] == 1001
    answer = await writer.request("send_message", None, conversation_id=conversation_id, content="after")
    assert answer["type"] == "new_message" and answer["seq"] == 2, "served by the node left, at the first try"
    assert [seq for seq, _ in await messages_until(reader, 2)] == [1, 2]
