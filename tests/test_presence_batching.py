"""Presence reaches a tenant in batches, one frame per socket per PRESENCE_BATCH_SECS, over real sockets.

The interval here is long (BATCH_SECS), so that the steps a test takes after the first change
fall inside the interval that change opened, even on a loaded machine.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.client import User, unique
from tests.support.server import ServerProcess

BATCH_SECS = 2.5


@pytest.fixture(scope="module")
def batching_server():
    proc = ServerProcess({"PRESENCE_BATCH_SECS": str(BATCH_SECS)}).start()
    yield proc
    proc.stop()


def people(server, *names: str) -> list[User]:
    tenant = unique("tenant")
    return [User(server, tenant, unique(name)) for name in names]


def statuses(batch: dict) -> dict[str, tuple[str, str | None]]:
    return {u["user_id"]: (u["status"], u["current_conversation_id"]) for u in batch["updates"]}


async def test_connects_within_an_interval_arrive_as_one_batch_and_a_lone_change_as_an_update(batching_server):
    eve, alice, bob, carol, dave = people(batching_server, "eve", "alice", "bob", "carol", "dave")
    watcher = await eve.socket()
    mine = await watcher.next()  # the first change of a quiet tenant goes out at once
    assert (mine["type"], mine["user_id"], mine["status"]) == ("presence_update", eve.user_id, "online")
    await asyncio.gather(alice.socket(), bob.socket(), carol.socket())

    batch = await watcher.next()
    assert batch["type"] == "presence_batch", batch
    assert statuses(batch) == {user.user_id: ("online", None) for user in (alice, bob, carol)}

    await dave.socket()  # alone in the next interval: the seed's event
    lone = await watcher.next()
    assert (lone["type"], lone["user_id"], lone["status"]) == ("presence_update", dave.user_id, "online")
    assert set(lone) == {"type", "user_id", "status", "current_conversation_id", "last_seen"}


async def test_a_batch_shows_where_a_user_is_only_to_their_own_sockets(batching_server):
    eve, alice, bob = people(batching_server, "eve", "alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    watcher = await eve.socket()
    await watcher.next("presence_update", user_id=eve.user_id)
    laptop, phone, b = await asyncio.gather(alice.socket(), alice.socket(), bob.socket())
    await laptop.request("join_conversation", "conversation_joined", conversation_id=conv)
    answer = await laptop.request("update_presence", "presence_update", status="away")
    assert answer["current_conversation_id"] == conv, "the asking socket is answered at once"

    expected = {alice.user_id: ("away", None), bob.user_id: ("online", None)}
    for sock in (watcher, b):
        assert statuses(await sock.next("presence_batch")) == expected
    for sock in (phone, laptop):  # the asking socket gets the batch too, its own change in it again
        assert statuses(await sock.next("presence_batch")) == {**expected, alice.user_id: ("away", conv)}


async def test_only_a_users_latest_state_in_an_interval_is_pushed(batching_server):
    eve, alice, bob = people(batching_server, "eve", "alice", "bob")
    phone = await alice.socket()
    watcher = await eve.socket()
    await watcher.next("presence_update", user_id=eve.user_id)  # alone in the interval alice's connect opened
    await phone.request("update_presence", "presence_update", status="busy")
    await phone.request("update_presence", "presence_update", status="online")
    await bob.socket()
    batch = await watcher.next("presence_batch")
    assert statuses(batch) == {alice.user_id: ("online", None), bob.user_id: ("online", None)}
    assert not [e for e in watcher.events if e.get("status") == "busy"]
