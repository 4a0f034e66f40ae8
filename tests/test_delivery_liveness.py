"""Typing indicators and presence over time: expiry, clearing on disconnect and leave, and a
presence that does not flap across a quick reconnect. A dedicated server with timers long
enough to tell "cleared by the event" from "expired on its own"."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.client import User, unique
from tests.support.delivery import join
from tests.support.server import ServerProcess

TYPING_TTL_SECS = 1.2
PRESENCE_GRACE_SECS = 0.7
# "Promptly" means well before the timer that would have cleared it anyway.
PROMPT_SECS = 0.5


@pytest.fixture(scope="module")
def live_server():
    proc = ServerProcess(
        env={"TYPING_TTL_SECS": str(TYPING_TTL_SECS), "PRESENCE_GRACE_SECS": str(PRESENCE_GRACE_SECS)}
    ).start()
    yield proc
    proc.stop()


@pytest.fixture
def people(live_server):
    tenant = unique("tenant")

    def make(*names: str) -> list[User]:
        return [User(live_server, tenant, unique(name)) for name in names]

    return make


def now() -> float:
    return asyncio.get_running_loop().time()


async def _pair(people):
    alice, bob = people("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    a, b = await alice.socket(), await bob.socket()
    await join(a, conv)
    await join(b, conv)
    return alice, bob, conv, a, b


# --- typing ---------------------------------------------------------------------------------


async def test_stuck_typing_clears_itself_after_the_ttl(people):
    alice, bob, conv, a, b = await _pair(people)
    b.send_type("start_typing", conversation_id=conv)
    await a.next("typing_indicator", user_id=bob.user_id, is_typing=True)
    started = now()
    stopped = await a.next("typing_indicator", user_id=bob.user_id)
    elapsed = now() - started
    assert stopped["is_typing"] is False and stopped["conversation_id"] == conv
    assert TYPING_TTL_SECS - 0.3 <= elapsed <= TYPING_TTL_SECS + 1.0, elapsed


async def test_refreshing_typing_keeps_it_on_without_repeats(people):
    alice, bob, conv, a, b = await _pair(people)
    b.send_type("start_typing", conversation_id=conv)
    await a.next("typing_indicator", is_typing=True)
    for _ in range(3):  # refreshed at half the TTL, well before it expires: on for 1.5 times the TTL
        events = await a.quiet(TYPING_TTL_SECS * 0.5)
        assert not [e for e in events if e["type"] == "typing_indicator"], "a refresh announces nothing"
        b.send_type("start_typing", conversation_id=conv)
    started = now()
    await a.next("typing_indicator", is_typing=False)
    assert now() - started >= TYPING_TTL_SECS - 0.3


async def test_typing_clears_on_send_stop_leave_and_disconnect(people):
    alice, bob, conv, a, b = await _pair(people)
    # sending a message ends typing
    b.send_type("start_typing", conversation_id=conv)
    await a.next("typing_indicator", is_typing=True)
    started = now()
    b.send_type("send_message", conversation_id=conv, content="done typing")
    await a.next("typing_indicator", is_typing=False, timeout=PROMPT_SECS)
    # stop_typing
    b.send_type("start_typing", conversation_id=conv)
    await a.next("typing_indicator", is_typing=True)
    b.send_type("stop_typing", conversation_id=conv)
    await a.next("typing_indicator", is_typing=False, timeout=PROMPT_SECS)
    # leave_conversation
    b.send_type("start_typing", conversation_id=conv)
    await a.next("typing_indicator", is_typing=True)
    await b.request("leave_conversation", "conversation_left", conversation_id=conv)
    await a.next("typing_indicator", is_typing=False, timeout=PROMPT_SECS)
    # disconnect
    await join(b, conv)
    b.send_type("start_typing", conversation_id=conv)
    await a.next("typing_indicator", is_typing=True)
    b.close()
    await a.next("typing_indicator", is_typing=False, timeout=PROMPT_SECS)
    assert now() - started < 4 * PROMPT_SECS + 1


async def test_typing_from_a_socket_that_never_joined_clears_on_disconnect(people):
    alice, bob = people("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    a = await alice.socket()
    await join(a, conv)
    b = await bob.socket()  # typing is allowed without joining (e.g. a conversation list view)
    b.send_type("start_typing", conversation_id=conv)
    await a.next("typing_indicator", user_id=bob.user_id, is_typing=True)
    await b.request("ping", "pong")
    b.close()
    await a.next("typing_indicator", user_id=bob.user_id, is_typing=False, timeout=PROMPT_SECS)


async def test_typing_stays_while_another_socket_of_the_typist_is_joined(people):
    alice, bob, conv, a, b = await _pair(people)
    phone = await bob.socket()
    await join(phone, conv)
    b.send_type("start_typing", conversation_id=conv)
    await a.next("typing_indicator", is_typing=True)
    phone.close()  # the phone did not type: the laptop's indicator stays until it expires
    assert not [e for e in await a.quiet(PROMPT_SECS) if e["type"] == "typing_indicator"]
    b.close()
    await a.next("typing_indicator", is_typing=False, timeout=PROMPT_SECS)


# --- presence -------------------------------------------------------------------------------


def _presence_of(events: list[dict], user_id: str) -> list[dict]:
    return [e for e in events if e["type"] == "presence_update" and e["user_id"] == user_id]


async def test_quick_reconnect_does_not_flap_presence(people):
    alice, bob = people("alice", "bob")
    a = await alice.socket()
    b = await bob.socket()
    assert (await a.next("presence_update", user_id=bob.user_id))["status"] == "online"
    for _ in range(3):  # three quick reconnects in a row, as a flaky mobile link does
        b.close()
        b = await bob.socket()
    seen = _presence_of(await a.quiet(PRESENCE_GRACE_SECS + 0.6), bob.user_id)
    assert seen == [], f"no offline/online flap: {seen}"
    # and bob is still online as far as his own sockets can tell
    me = await b.request("update_presence", "presence_update", status="online")
    assert me["status"] == "online"


async def test_presence_merges_connections_and_goes_offline_after_grace(people):
    alice, bob = people("alice", "bob")
    a = await alice.socket()
    laptop = await bob.socket()
    await a.next("presence_update", user_id=bob.user_id, status="online")
    phone = await bob.socket()
    assert not _presence_of(await a.quiet(0.2), bob.user_id), "a second connection is not news"
    away = await phone.request("update_presence", "presence_update", status="away")
    assert away["status"] == "away"
    await a.next("presence_update", user_id=bob.user_id, status="away")

    laptop.close()
    assert not _presence_of(await a.quiet(PRESENCE_GRACE_SECS + 0.5), bob.user_id), "the phone keeps bob present"

    phone.close()
    closed_at = now()
    offline = await a.next("presence_update", user_id=bob.user_id)
    waited = now() - closed_at
    assert offline["status"] == "offline" and offline["last_seen"]
    assert PRESENCE_GRACE_SECS - 0.3 <= waited <= PRESENCE_GRACE_SECS + 1.5, waited

    # Coming back after the grace period is news again.
    await bob.socket()
    await a.next("presence_update", user_id=bob.user_id, status="online")
