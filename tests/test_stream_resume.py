"""Every change a member sees is one ordered, resumable stream: edits, deletions, reactions,
membership and details take their own ``seq`` between the messages, and a resume with
``since_seq`` (or ``GET conversations/{id}/events/?since=``) replays exactly what a joined
socket saw live, in the same order, once."""

from __future__ import annotations

import asyncio

from tests.support.delivery import join, stream_until

STREAM_TYPES = {"new_message", "message_updated", "message_deleted", "reaction_added", "reaction_removed", "conversation_updated"}


async def test_a_resume_replays_every_event_missed_in_order_exactly_as_seen_live(users):
    alice, bob, carol = users("alice", "bob", "carol")
    conv = await alice.create_conversation("group", [bob], title="plans")
    a, watcher = await alice.socket(), await bob.socket()
    await join(a, conv)
    await join(watcher, conv)  # bob's other device stays joined throughout: what live looks like
    sent = [(await a.request("send_message", "new_message", conversation_id=conv, content=f"m{n}"))["message"] for n in (1, 2, 3)]
    away = await bob.socket()
    await join(away, conv, since_seq=0)
    last_seen = (await stream_until(away, 3))[-1]["seq"]
    away.close()

    # While bob is away: an edit, a delete, two reactions added and one removed, a participant
    # added, a details change and a new message. Typing and a read receipt are not stream events.
    edited = await a.request("edit_message", "message_updated", message_id=sent[0]["id"], content="m1 edited")
    deleted = await a.request("delete_message", "message_deleted", message_id=sent[1]["id"])
    thumbs = await a.request("add_reaction", "reaction_added", message_id=sent[2]["id"], emoji="👍")
    party = await a.request("add_reaction", "reaction_added", message_id=sent[2]["id"], emoji="🎉")
    unthumbs = await a.request("remove_reaction", "reaction_removed", message_id=sent[2]["id"], emoji="👍")
    a.send_type("start_typing", conversation_id=conv)
    status, _ = await alice.api.post(f"conversations/{conv}/participants/", {"user_id": carol.user_id})
    assert status == 201
    status, _ = await alice.api.put(f"conversations/{conv}/", {"description": "where we meet"})
    assert status == 200
    await a.request("mark_read", "read_receipt", conversation_id=conv)
    last = (await a.request("send_message", "new_message", conversation_id=conv, content="m4"))["message"]

    seqs = [e["seq"] for e in (edited, deleted, thumbs, party, unthumbs)]
    assert seqs == [4, 5, 6, 7, 8], "each change takes the next seq of the conversation's one sequence"
    assert last["seq"] == 11, "the participant's system message is 9, the details change 10"
    live = await stream_until(watcher, last["seq"])
    assert [e["seq"] for e in live] == list(range(1, 12)), "a joined socket sees every seq, in order"
    missed = [e for e in live if e["seq"] > last_seen]
    assert [e["type"] for e in missed] == [
        "message_updated",
        "message_deleted",
        "reaction_added",
        "reaction_added",
        "reaction_removed",
        "new_message",
        "conversation_updated",
        "new_message",
    ]
    assert all(e["conversation_id"] == conv for e in missed)
    assert missed[0]["message"]["content"] == "m1 edited" and missed[1]["message_id"] == sent[1]["id"]
    assert [missed[i]["reaction"]["emoji"] for i in (2, 3)] == ["👍", "🎉"] and missed[4]["emoji"] == "👍"
    assert missed[5]["message"]["metadata"] == {"by": alice.user_id, "event": "participant_added", "user_id": carol.user_id}
    assert missed[6]["conversation"]["description"] == "where we meet" and missed[7]["message"]["content"] == "m4"

    back = await bob.socket()
    joined = await join(back, conv, since_seq=last_seen)
    assert joined["last_seq"] == last["seq"]
    assert await stream_until(back, last["seq"]) == missed, "the replay is what live showed, in its order"
    assert not [e for e in await back.quiet(0.3) if e.get("type") in STREAM_TYPES], "nothing twice"

    again = await bob.socket()
    await join(again, conv, since_seq=last["seq"])
    assert not [e for e in await again.quiet(0.3) if e.get("type") in STREAM_TYPES], "a resume from the end replays nothing"

    # Over REST: the same events, in pages. (The conversation's last activity is written in the
    # background, so a read from the database may show a newer one than the event did.)
    status, page = await bob.api.get(f"conversations/{conv}/events/?since={last_seen}&limit=5")
    assert status == 200 and page["results"] == missed[:5] and page["next"]
    status, rest = await bob.api.get(bob.server.http_url + page["next"])
    assert status == 200 and rest["next"] is None
    assert without_last_activity(rest["results"]) == without_last_activity(missed[5:])
    status, page = await bob.api.get(f"conversations/{conv}/events/?since={last['seq']}")
    assert status == 200 and page == {"results": [], "next": None, "previous": None}

    # History by message keeps working: messages only, tombstone included, events left out.
    status, history = await bob.api.get(f"conversations/{conv}/messages/")
    assert [m["seq"] for m in history["results"]] == [1, 2, 3, 9, 11]
    assert history["results"][1]["is_deleted"] and history["results"][0]["content"] == "m1 edited"


def without_last_activity(events: list[dict]) -> list[dict]:
    return [
        {**e, "conversation": {k: v for k, v in e["conversation"].items() if k != "last_activity_at"}} if "conversation" in e else e
        for e in events
    ]


async def test_a_resume_shows_a_message_edited_then_deleted_as_it_stands_now(users):
    """No content of a deleted message survives in what a resume replays."""
    alice, bob = users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    a = await alice.socket()
    message = (await a.request("send_message", "new_message", conversation_id=conv, content="secret"))["message"]
    await a.request("edit_message", "message_updated", message_id=message["id"], content="still secret")
    await a.request("delete_message", "message_deleted", message_id=message["id"])
    b = await bob.socket()
    await join(b, conv, since_seq=0)
    replayed = await stream_until(b, 3)
    assert [e["type"] for e in replayed] == ["new_message", "message_updated", "message_deleted"]
    for shown in (replayed[0]["message"], replayed[1]["message"]):
        assert shown["is_deleted"] and shown["content"] == ""
    status, page = await bob.api.get(f"conversations/{conv}/events/")
    assert status == 200 and "secret" not in str(page)


async def test_concurrent_writers_keep_one_order_for_every_receiver(users):
    alice, bob, carol = users("alice", "bob", "carol")
    conv = await alice.create_conversation("group", [bob, carol])
    writers = [await u.socket() for u in (alice, bob, carol)]
    receivers = [await u.socket() for u in (alice, bob)]
    for sock in receivers:
        await join(sock, conv)
    seed = (await writers[0].request("send_message", "new_message", conversation_id=conv, content="seed"))["message"]

    async def write(sock, n: int) -> None:
        for i in range(n):
            ack = await sock.request("send_message", "new_message", conversation_id=conv, content=f"{i}")
            await sock.request("add_reaction", "reaction_added", message_id=seed["id"], emoji=f"e{i}")
            await sock.request("edit_message", "message_updated", message_id=ack["message"]["id"], content=f"{i}!")

    await asyncio.gather(*(write(sock, 8) for sock in writers))
    total = 1 + 3 * 8 * 3
    seen = [await stream_until(sock, total) for sock in receivers]
    assert [e["seq"] for e in seen[0]] == list(range(1, total + 1))
    assert seen[0] == seen[1], "every receiver sees one order"
    late = await carol.socket()
    await join(late, conv, since_seq=0)
    replayed = await stream_until(late, total)
    assert [(e["type"], e["seq"]) for e in replayed] == [(e["type"], e["seq"]) for e in seen[0]]
