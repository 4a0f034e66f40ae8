"""Backpressure: a reader that stops reading is cut off (``resync_required``, then close 4408)
with its outbound queue bounded, while a normal reader of the same conversation gets everything
and the server's memory stays flat. A dedicated server with OUTBOUND_BUFFER_BYTES=65536."""

from __future__ import annotations

import asyncio

import psutil
import pytest

from tests.support.client import User, unique
from tests.support.delivery import join
from tests.support.rawws import RawWebSocket
from tests.support.server import ServerProcess

OUTBOUND_BUFFER_BYTES = 65536
EDITS = 1500
CHUNK = 50
CONTENT_CHARS = 3900  # ~4 KB frames: 6 MB to each reader, about twice what the kernel buffers hold
RSS_GROWTH_LIMIT_BYTES = 48 * 1024 * 1024


@pytest.fixture(scope="module")
def small_buffer_server():
    proc = ServerProcess(
        env={
            "OUTBOUND_BUFFER_BYTES": str(OUTBOUND_BUFFER_BYTES),
            "RATE_LIMIT_PER_SEC": "100000",
            "RATE_LIMIT_BURST": "100000",
            "LOG_LEVEL": "INFO",
        }
    ).start()
    yield proc
    proc.stop()


def _join_raw(raw: RawWebSocket, conversation_id: str) -> None:
    assert raw.read_json()["type"] == "connection_established"
    raw.send_json({"type": "join_conversation", "conversation_id": conversation_id, "request_id": "j"})
    while raw.read_json()["type"] != "conversation_joined":
        pass


def _drain_raw(raw: RawWebSocket) -> list[dict]:
    """Everything the server still delivers, until its close frame or the connection's end."""
    frames = []
    raw.sock.settimeout(10)
    try:
        while True:
            frames.append(raw.read_json())
    except (EOFError, ConnectionError):
        pass
    return frames


async def test_slow_reader_is_cut_off_and_a_normal_reader_is_not(small_buffer_server):
    server = small_buffer_server
    tenant = unique("tenant")
    alice, bob, carol = (User(server, tenant, unique(n)) for n in ("alice", "bob", "carol"))
    conv = await alice.create_conversation("group", [bob, carol])

    # carol's client stops reading: a tiny receive window, and nobody reads after the join.
    slow = RawWebSocket.connect("127.0.0.1", server.port, f"/ws/chat/{tenant}/?token={carol.token}", rcvbuf=4096)
    await asyncio.to_thread(_join_raw, slow, conv)
    a, b = await alice.socket(), await bob.socket()
    await join(a, conv)
    await join(b, conv)
    target = (await a.request("send_message", "new_message", conversation_id=conv, content="edit me"))["message"]["id"]
    await b.next("new_message")

    process = psutil.Process(server.proc.pid)
    rss_before = peak = process.memory_info().rss

    async def bob_reads() -> list[str]:
        return [(await b.next("message_updated", timeout=10))["message"]["content"] for _ in range(EDITS)]

    reader = asyncio.ensure_future(bob_reads())
    body = "x" * CONTENT_CHARS
    for start in range(0, EDITS, CHUNK):
        for n in range(start, start + CHUNK):
            a.send_type("edit_message", message_id=target, content=f"{body} {n}", request_id=f"e-{n}")
        for n in range(start, start + CHUNK):
            await a.next("message_updated", request_id=f"e-{n}", timeout=10)
        peak = max(peak, process.memory_info().rss)
    got = await reader
    assert got == [f"{body} {n}" for n in range(EDITS)], "the normal reader got every update, in order"

    # What carol sends now comes after the server gave up on her: it is not acted upon.
    slow.send_json({"type": "send_message", "conversation_id": conv, "content": "too late", "request_id": "late"})
    frames = await asyncio.to_thread(_drain_raw, slow)
    slow.close()
    updates = [f for f in frames if f["type"] == "message_updated"]
    assert len(updates) < EDITS, "she was cut off before the end"
    assert slow.close_code == 4408, (slow.close_code, [f["type"] for f in frames[-3:]])
    assert frames[-1]["type"] == "resync_required", [f["type"] for f in frames[-3:]]
    assert frames[-1]["conversation_ids"] == [conv] and frames[-1]["reason"]
    assert not [f for f in frames if f.get("request_id") == "late"]
    assert not [e for e in await b.quiet(0.3) if e["type"] == "new_message"], "the late frame stored nothing"

    growth = max(peak, process.memory_info().rss) - rss_before
    assert growth < RSS_GROWTH_LIMIT_BYTES, f"RSS grew by {growth / 2**20:.1f} MiB"
    # The server is fine, and the cut-off left no stray errors in its log.
    assert (await b.request("ping", "pong"))["type"] == "pong"
    assert "exception was never retrieved" not in server.log()
    assert "closing a slow reader" in server.log()


async def test_cut_off_reader_resumes_with_since_seq(small_buffer_server):
    server = small_buffer_server
    tenant = unique("tenant")
    alice, carol = (User(server, tenant, unique(n)) for n in ("alice", "carol"))
    conv = await alice.create_conversation("group", [carol])
    slow = RawWebSocket.connect("127.0.0.1", server.port, f"/ws/chat/{tenant}/?token={carol.token}", rcvbuf=4096)
    await asyncio.to_thread(_join_raw, slow, conv)
    a = await alice.socket()

    async def burst(kind: str, count: int, **fields) -> None:
        tag = unique(kind)
        for n in range(count):
            a.send_type(kind, request_id=f"{tag}-{n}", **fields)
        for n in range(count):
            await a.next(request_id=f"{tag}-{n}", timeout=10)

    body = "y" * CONTENT_CHARS
    await burst("send_message", 20, conversation_id=conv, content=f"{body} before")
    target = (await a.request("send_message", "new_message", conversation_id=conv, content="edit me"))["message"]["id"]
    for _ in range(EDITS // CHUNK):  # enough updates to overflow her buffers
        await burst("edit_message", CHUNK, message_id=target, content=body)
    await burst("send_message", 20, conversation_id=conv, content=f"{body} after")

    frames = await asyncio.to_thread(_drain_raw, slow)
    slow.close()
    assert slow.close_code == 4408 and frames[-1]["type"] == "resync_required"
    seen = [f["message"]["seq"] for f in frames if f["type"] == "new_message"]
    assert seen and seen == list(range(1, len(seen) + 1)), "in order up to the cut"
    assert len(seen) < 41, "she missed the last ones"

    # Reconnect and resume from the last seq she saw: the rest, and nothing twice.
    c = await carol.socket()
    await join(c, conv, since_seq=seen[-1])
    rest = [(await c.next("new_message", timeout=10))["message"] for _ in range(41 - len(seen))]
    assert seen + [m["seq"] for m in rest] == list(range(1, 42))
    assert rest[-1]["content"] == f"{body} after"
    assert not [e for e in await c.quiet(0.2) if e["type"] == "new_message"]
