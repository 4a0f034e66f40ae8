"""Resume after a disconnect: ``join_conversation`` with ``since_seq`` replays what was missed,
in order, then live events with no gap and no duplicate at the seam; too much missed gets
``resync_required``. Catch-up of edits, deletions, reactions and read pointers."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.client import User, unique
from tests.support.delivery import acks, join, next_messages, send_many
from tests.support.server import ServerProcess


async def test_missed_messages_replayed_in_order_then_live_without_gap_or_duplicate(users):
    alice, bob = users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    a, b = await alice.socket(), await bob.socket()
    await join(a, conv)
    await join(b, conv)
    first = (await a.request("send_message", "new_message", conversation_id=conv, content="before"))["message"]
    assert (await b.next("new_message"))["message"]["seq"] == first["seq"] == 1
    b.close()

    # 50 messages while bob is away, all acknowledged (so all stored).
    answers = await acks(a, send_many(a, conv, [f"missed {n}" for n in range(50)]))
    assert [e["type"] for e in answers] == ["new_message"] * 50
    assert [e["message"]["seq"] for e in answers] == list(range(2, 52))

    # Bob resumes while alice keeps sending: the seam must be exact.
    async def keep_sending() -> list[int]:
        seqs = []
        for n in range(30):
            ack = await a.request("send_message", "new_message", conversation_id=conv, content=f"live {n}")
            seqs.append(ack["message"]["seq"])
        return seqs

    sender = asyncio.ensure_future(keep_sending())
    await asyncio.sleep(0)  # let the first live send go out before the join
    b2 = await bob.socket()
    joined = await join(b2, conv, since_seq=1)
    live_seqs = await sender
    assert live_seqs == list(range(52, 82))
    assert 51 <= joined["last_seq"] <= 81

    got = await next_messages(b2, 80)
    assert [m["seq"] for m in got] == list(range(2, 82)), "exactly the missed ones, then the live ones"
    assert [m["content"] for m in got[:50]] == [f"missed {n}" for n in range(50)]
    assert [m["content"] for m in got[50:]] == [f"live {n}" for n in range(30)]
    assert got[:50] == [e["message"] for e in answers], "a replayed message is the stored message"
    assert not [e for e in await b2.quiet(0.3) if e["type"] == "new_message"], "no duplicate after the seam"


async def test_since_seq_at_or_past_the_end_replays_nothing(users):
    alice, bob = users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    a = await alice.socket()
    await acks(a, send_many(a, conv, ["one", "two", "three"]))
    b = await bob.socket()
    for since in (3, 99):
        joined = await join(b, conv, since_seq=since)
        assert joined["last_seq"] == 3
        assert not [e for e in await b.quiet(0.2) if e["type"] == "new_message"]
    # The last join stays live.
    await a.request("send_message", "new_message", conversation_id=conv, content="four")
    assert (await b.next("new_message"))["message"]["seq"] == 4


async def test_replay_shows_edits_deletions_reactions_as_they_stand_now(users):
    alice, bob = users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    a = await alice.socket()
    await join(a, conv)
    sent = [e["message"] for e in await acks(a, send_many(a, conv, ["m1", "m2", "m3", "m4"]))]
    # Bob was last here at seq 1; meanwhile alice edits, deletes, reacts and reads.
    await a.request("edit_message", "message_updated", message_id=sent[1]["id"], content="m2 edited")
    await a.request("delete_message", "message_deleted", message_id=sent[2]["id"])
    await a.request("add_reaction", "reaction_added", message_id=sent[3]["id"], emoji="👍")
    await a.request("add_reaction", "reaction_added", message_id=sent[3]["id"], emoji="🎉")
    await a.request("mark_read", "read_receipt", conversation_id=conv, message_id=sent[3]["id"])

    b = await bob.socket()
    await join(b, conv, since_seq=1)
    replayed = await next_messages(b, 3)
    assert [m["seq"] for m in replayed] == [2, 3, 4]
    assert replayed[0]["content"] == "m2 edited" and replayed[0]["edited_at"]
    assert replayed[1]["is_deleted"] and replayed[1]["content"] == "" and replayed[1]["seq"] == 3
    # (Two reactions made within one millisecond have no defined order between them.)
    assert sorted(replayed[2]["reactions"], key=lambda r: r["emoji"]) == sorted(
        [{"emoji": "👍", "count": 1, "user_ids": [alice.user_id]}, {"emoji": "🎉", "count": 1, "user_ids": [alice.user_id]}],
        key=lambda r: r["emoji"],
    )
    # Read pointers are caught up over REST.
    status, body = await bob.api.get(f"conversations/{conv}/participants/")
    assert status == 200
    pointers = {p["user_id"]: p["last_read_seq"] for p in body["results"]}
    assert pointers == {alice.user_id: 4, bob.user_id: 0}


async def test_two_sockets_of_one_user_resume_independently(users):
    alice, bob = users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    a = await alice.socket()
    await acks(a, send_many(a, conv, [f"m{n}" for n in range(10)]))
    phone, laptop = await bob.socket(), await bob.socket()
    await join(phone, conv, since_seq=7)
    await join(laptop, conv, since_seq=2)
    assert [m["seq"] for m in await next_messages(phone, 3)] == [8, 9, 10]
    assert [m["seq"] for m in await next_messages(laptop, 8)] == list(range(3, 11))


@pytest.fixture(scope="module")
def small_replay_server():
    proc = ServerProcess(env={"REPLAY_LIMIT": "10"}).start()
    yield proc
    proc.stop()


async def test_replay_beyond_the_limit_answers_resync_required(small_replay_server):
    tenant = unique("tenant")
    alice, bob = (User(small_replay_server, tenant, unique(n)) for n in ("alice", "bob"))
    conv = await alice.create_conversation("group", [bob])
    a = await alice.socket()
    await acks(a, send_many(a, conv, [f"m{n}" for n in range(15)]))

    # Exactly REPLAY_LIMIT missed: replayed.
    b = await bob.socket()
    joined = await join(b, conv, since_seq=5)
    assert joined["last_seq"] == 15
    assert [m["seq"] for m in await next_messages(b, 10)] == list(range(6, 16))
    b.close()

    # One more than the limit: no replay, but resync_required with the latest seq.
    b2 = await bob.socket()
    joined = await join(b2, conv, since_seq=4)
    resync = await b2.next("resync_required")
    assert resync["conversation_id"] == conv and resync["last_seq"] == 15 and resync["reason"]
    assert b2.events.index(joined) < b2.events.index(resync)
    assert not [e for e in b2.events if e["type"] == "new_message"], "no partial replay"
    # The socket is joined all the same and gets live messages after last_seq.
    await a.request("send_message", "new_message", conversation_id=conv, content="live")
    assert (await b2.next("new_message"))["message"]["seq"] == 16
