"""The conversation actor (actors/conversation.py) on the loop-hosted runtime, in-process:
sockets are fake subscribers that keep what they are sent, storage is the embedded database.
"""

from __future__ import annotations

import asyncio
import gc
import weakref

import orjson
import pytest

from actors.conversation import ConversationActor
from actors.conversation_state import load_state
from actors.errors import NotFound
from actors.principal import Principal
from config import Settings
from storage import open_storage
from tests.support.client import unique
from tests.support.loop import on_loop

TENANT = "t1"
ALICE, BOB, CAROL = (Principal(TENANT, name) for name in ("alice", "bob", "carol"))
OUTSIDER = Principal(TENANT, "mallory")
SETTINGS = Settings(typing_ttl_secs=0.05)
WAIT_SECS = 30.0


class FakeSocket:
    """A subscriber (actors/subscriber.py) that keeps every event it is sent, decoded."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.conn_id = unique("conn")
        self._events: asyncio.Queue = asyncio.Queue()

    def send(self, data: bytes) -> None:
        self._events.put_nowait(orjson.loads(data))

    async def next(self) -> dict:
        return await asyncio.wait_for(self._events.get(), WAIT_SECS)

    def unread(self) -> list[dict]:
        events = []
        while not self._events.empty():
            events.append(self._events.get_nowait())
        return events


class StubDirectory:
    """What the actor tells its directory: that it retired (or must be restarted)."""

    def __init__(self) -> None:
        self.forgotten = asyncio.Event()

    def forget_conversation(self, key, actor_ref) -> None:
        self.forgotten.set()

    def restart_conversation(self, key, actor_ref, subscribers) -> None:
        raise AssertionError(f"the actor failed; it would be restarted with {len(subscribers)} sockets")


async def start_conversation(settings: Settings = SETTINGS):
    """A group of alice (owner), bob and carol, and its actor; returns (proxy, storage, directory)."""
    storage = open_storage(None, f"unit_{unique('conv').replace('-', '_')}", settings.mongodb_timeout_ms)
    conversation, _ = await storage.conversations.create(TENANT, type="group", created_by="alice", title="unit")
    roles = {"alice": "owner", "bob": "member", "carol": "member"}
    await storage.participants.add_new_conversation(TENANT, conversation["_id"], roles)
    directory = StubDirectory()
    state = await load_state(storage, TENANT, conversation["_id"])
    return ConversationActor.start(directory, storage, settings, state).proxy(), storage, directory


async def joined(actor, principal: Principal, since_seq: int | None = None) -> FakeSocket:
    sock = FakeSocket(principal)
    await actor.join(sock, since_seq, "join")
    assert (await sock.next())["type"] == "conversation_joined"
    return sock


@on_loop
async def test_messages_reach_joined_sockets_in_seq_order():
    actor, _, _ = await start_conversation()
    alice, bob = await joined(actor, ALICE), await joined(actor, BOB)
    carol = FakeSocket(CAROL)  # a participant whose socket did not join

    answers = await asyncio.gather(*(actor.send(ALICE, {"content": f"m{n}"}, alice, f"r{n}") for n in range(5)))

    assert [(message["seq"], created) for message, created in answers] == [(n + 1, True) for n in range(5)]
    to_bob = [await bob.next() for _ in range(5)]
    assert [(e["type"], e["message"]["seq"], e["message"]["content"], "request_id" in e) for e in to_bob] == [
        ("new_message", n + 1, f"m{n}", False) for n in range(5)
    ]
    to_alice = [await alice.next() for _ in range(5)]
    assert [(e["message"]["seq"], e["request_id"]) for e in to_alice] == [(n + 1, f"r{n}") for n in range(5)], (
        "the sender's own copy carries its request_id"
    )
    assert carol.unread() == []


@on_loop
async def test_a_rest_send_is_broadcast_to_every_joined_socket():
    actor, _, _ = await start_conversation()
    alice, bob = await joined(actor, ALICE), await joined(actor, BOB)
    message, created = await actor.send(BOB, {"content": "over REST"})
    assert created and message["seq"] == 1
    for sock in (alice, bob):
        event = await sock.next()
        assert event == {"type": "new_message", "message": message, "conversation_id": message["conversation_id"], "seq": 1}


@on_loop
async def test_typing_goes_to_the_others_only_and_expires():
    actor, _, _ = await start_conversation()
    alice, bob = await joined(actor, ALICE), await joined(actor, BOB)
    await actor.typing(ALICE, True)
    started = await bob.next()
    assert (started["type"], started["user_id"], started["is_typing"]) == ("typing_indicator", "alice", True)
    expired = await bob.next()
    assert (expired["type"], expired["user_id"], expired["is_typing"]) == ("typing_indicator", "alice", False), (
        f"it expires on its own after TYPING_TTL_SECS ({SETTINGS.typing_ttl_secs} s here)"
    )
    assert alice.unread() == [], "the typist is not told about itself"


@on_loop
async def test_an_outsider_is_refused_as_if_the_conversation_did_not_exist():
    actor, storage, _ = await start_conversation()
    bob = await joined(actor, BOB)
    with pytest.raises(NotFound):
        await actor.join(FakeSocket(OUTSIDER), None)
    with pytest.raises(NotFound):
        await actor.send(OUTSIDER, {"content": "let me in"})
    message, _ = await actor.send(ALICE, {"content": "members only"})
    assert message["seq"] == 1, "the refused send took no seq"
    assert (await bob.next())["message"] == message


@on_loop
async def test_a_join_with_since_seq_replays_what_was_missed_before_live_events():
    actor, _, _ = await start_conversation()
    for n in range(3):
        await actor.send(ALICE, {"content": f"old{n}"})
    bob = FakeSocket(BOB)
    replayed = actor.join(bob, 1, "join")
    live = actor.send(ALICE, {"content": "live"})
    assert await replayed == 2
    await live
    events = [await bob.next() for _ in range(4)]
    assert [e["type"] for e in events] == ["conversation_joined", "new_message", "new_message", "new_message"]
    assert events[0]["last_seq"] == 3 and events[0]["request_id"] == "join"
    assert [e["message"]["seq"] for e in events[1:]] == [2, 3, 4]


@on_loop
async def test_an_actor_with_nothing_to_do_retires_and_tells_its_directory():
    actor, _, directory = await start_conversation(Settings(actor_idle_secs=0.05))
    bob = await joined(actor, BOB)
    await actor.leave(bob)
    assert (await bob.next())["type"] == "conversation_left"
    await asyncio.wait_for(directory.forgotten.wait(), WAIT_SECS)


@on_loop
async def test_a_retired_actor_is_freed_without_waiting_for_the_garbage_collector():
    """Its parts must not hold it in a cycle: full collections are rare in this server
    (web/gc_tuning.py), and every retired actor would add to memory until one ran."""
    proxy, _, directory = await start_conversation(Settings(actor_idle_secs=0.05))
    bob = await joined(proxy, BOB)
    await proxy.send(ALICE, {"content": "hi"})  # the write queue and its outcome have run
    proxy.typing(BOB, True)
    await proxy.leave(bob)
    freed = weakref.ref(proxy.actor_ref._actor_weakref())
    del proxy  # a proxy holds its actor; the directory lets go of its proxy as the actor retires
    gc.disable()
    try:
        await asyncio.wait_for(directory.forgotten.wait(), WAIT_SECS)
        for _ in range(100):  # the loop lets go of the callbacks that ran its last messages
            if freed() is None:
                break
            await asyncio.sleep(0.01)
        assert freed() is None, [type(r).__name__ for r in gc.get_referrers(freed())]
    finally:
        gc.enable()
