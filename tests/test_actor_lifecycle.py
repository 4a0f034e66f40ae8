"""Actors are spawned on demand and stopped when idle: threads and actors fall back after use."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.client import User, unique
from tests.support.server import ServerProcess

CONVERSATIONS = 1000
CONCURRENCY = 100
# A hundred flows in flight queue up at the server (a socket's frames are handled one at a time):
# on a loaded machine one step of a flow can wait far longer than the usual bound, a pong longer
# than the test servers' heartbeat allows, and the whole test longer than the per-test timeout.
STEP_WAIT_SECS = 120
TEST_TIMEOUT_SECS = 900


async def wait_for_health(server, predicate, timeout: float = 30.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        health = await asyncio.to_thread(server.health)
        if predicate(health):
            return health
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"health never matched: {health}")
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def embedded_server():
    """Its own server on the embedded DB: this is about actors and threads, not the database, and
    not rate limits either (one user makes 2,000 writes and 1,000 joins as fast as it can)."""
    proc = ServerProcess(
        env={
            "HEARTBEAT_INTERVAL_SECS": str(STEP_WAIT_SECS),
            "HEARTBEAT_TIMEOUT_SECS": str(STEP_WAIT_SECS),
            "RATE_LIMIT_PER_SEC": "1000000",
            "RATE_LIMIT_BURST": "1000000",
            "READ_ROWS_PER_SEC": "0",
        }
    ).start()
    yield proc
    proc.stop()


@pytest.mark.timeout(TEST_TIMEOUT_SECS)
async def test_thousand_conversations_used_once_then_actors_and_threads_fall_back(embedded_server):
    server = embedded_server
    tenant = unique("tenant")
    alice, bob = User(server, tenant, "alice"), User(server, tenant, "bob")
    before = await wait_for_health(server, lambda h: h["live_conversations"] == 0)

    # Frames of one socket are handled in order, so spread the flows over several sockets.
    sockets = [await alice.socket() for _ in range(20)]  # MAX_CONNECTIONS_PER_USER is 20
    semaphore = asyncio.Semaphore(CONCURRENCY)
    peak = {"live": 0}

    async def use_once(n: int) -> None:
        async with semaphore:
            conv = await alice.create_conversation("group", [bob], title=f"c{n}")
            sock = sockets[n % len(sockets)]
            await sock.request("join_conversation", "conversation_joined", conversation_id=conv, timeout=STEP_WAIT_SECS)
            await sock.request("send_message", "new_message", conversation_id=conv, content=f"hello {n}", timeout=STEP_WAIT_SECS)
            await sock.request("leave_conversation", "conversation_left", conversation_id=conv, timeout=STEP_WAIT_SECS)

    async def watch() -> None:
        while True:
            health = await asyncio.to_thread(server.health)
            peak["live"] = max(peak["live"], health["live_conversations"])
            await asyncio.sleep(0.05)

    watcher = asyncio.ensure_future(watch())
    await asyncio.gather(*(use_once(n) for n in range(CONVERSATIONS)))
    watcher.cancel()

    assert peak["live"] > CONCURRENCY / 2, peak  # they really were live at once
    after = await wait_for_health(server, lambda h: h["live_conversations"] == 0)
    # No thread per conversation: the count stays where it was (give the DB driver's pool room).
    assert after["threads"] <= before["threads"] + 8, (before, after)
    for sock in sockets:
        sock.close()
    await wait_for_health(server, lambda h: h["sockets"] == 0)
