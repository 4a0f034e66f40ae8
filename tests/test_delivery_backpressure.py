"""Backpressure: a reader that stops reading is cut off (``resync_required``, then close 4408)
with its outbound queue bounded, while a normal reader of the same conversation gets everything
and the server's memory stays flat. A dedicated server with OUTBOUND_BUFFER_BYTES=65536."""

from __future__ import annotations

import asyncio

import psutil
import pytest

from tests.support.client import User, unique
from tests.support.delivery import join, stream_until
from tests.support.rawws import RawWebSocket
from tests.support.server import ServerProcess

OUTBOUND_BUFFER_BYTES = 65536
EDITS = 1500
CHUNK = 50
CONTENT_CHARS = 3900  # ~4 KB frames: 6 MB to each reader, about twice what the kernel buffers hold
# Edits are sent until the slow reader is cut off; this many (~24 MB) and she never will be.
MAX_EDITS = 4 * EDITS
RSS_GROWTH_LIMIT_BYTES = 48 * 1024 * 1024


@pytest.fixture(scope="module")
def small_buffer_server():
    proc = ServerProcess(
        env={
            "OUTBOUND_BUFFER_BYTES": str(OUTBOUND_BUFFER_BYTES),
            "RATE_LIMIT_PER_SEC": "100000",
            "RATE_LIMIT_BURST": "100000",
            "LOG_LEVEL": "INFO",
            # A reader that stops reading stops answering pings too: on a slow machine the
            # test servers' 5 + 5 s heartbeat could close her before her buffer fills.
            "HEARTBEAT_INTERVAL_SECS": "300",
            "HEARTBEAT_TIMEOUT_SECS": "300",
        }
    ).start()
    yield proc
    proc.stop()


async def _burst(sock, kind: str, answer: str, contents: list[str], **fields) -> None:
    """Frames back to back, then their answers: the server writes to every reader at full speed."""
    tag = unique(kind)
    for n, content in enumerate(contents):
        sock.send_type(kind, content=content, request_id=f"{tag}-{n}", **fields)
    for n in range(len(contents)):
        event = await sock.next(request_id=f"{tag}-{n}")
        assert event["type"] == answer, event


def _cut_off(server, user: User) -> bool:
    """Whether the server has cut ``user`` off: only its log tells, she sees it when she reads."""
    return f"closing a slow reader (user {user.user_id})" in server.log(since=0)


def _start_draining(raw: RawWebSocket) -> asyncio.Future:
    """Read at once what the server still sends her: it waits only 5 s for her to read its close
    frame, then drops the connection with whatever it still held for her."""
    return asyncio.ensure_future(asyncio.to_thread(_drain_raw, raw))


def _join_raw(raw: RawWebSocket, conversation_id: str) -> None:
    assert raw.read_json()["type"] == "connection_established"
    raw.send_json({"type": "join_conversation", "conversation_id": conversation_id, "request_id": "j"})
    while raw.read_json()["type"] != "conversation_joined":
        pass


def _drain_raw(raw: RawWebSocket) -> list[dict]:
    """Everything the server still delivers, until its close frame or the connection's end."""
    frames = []
    raw.sock.settimeout(30)
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

    async def bob_reads(count: int) -> list[str]:
        return [(await b.next("message_updated"))["message"]["content"] for _ in range(count)]

    body = "x" * CONTENT_CHARS
    got: list[str] = []
    sent, drained = 0, None
    while sent < EDITS or drained is None:  # all the edits, and on until she is cut off
        assert sent < MAX_EDITS, f"carol was never cut off ({sent} edits)"
        contents = [f"{body} {n}" for n in range(sent, sent + CHUNK)]
        _, updates = await asyncio.gather(_burst(a, "edit_message", "message_updated", contents, message_id=target), bob_reads(CHUNK))
        got += updates
        sent += CHUNK
        peak = max(peak, process.memory_info().rss)
        if drained is None and _cut_off(server, carol):
            # What carol sends now comes after the server gave up on her: it is not acted upon.
            slow.send_json({"type": "send_message", "conversation_id": conv, "content": "too late", "request_id": "late"})
            drained = _start_draining(slow)
    assert got == [f"{body} {n}" for n in range(sent)], "the normal reader got every update, in order"

    frames = await drained
    slow.close()
    updates = [f for f in frames if f["type"] == "message_updated"]
    assert len(updates) < sent, "she was cut off before the end"
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

    body = "y" * CONTENT_CHARS
    await _burst(a, "send_message", "new_message", [f"{body} before"] * 20, conversation_id=conv)
    target = (await a.request("send_message", "new_message", conversation_id=conv, content="edit me"))["message"]["id"]
    sent, drained = 0, None
    while drained is None:  # enough updates to overflow her buffers
        assert sent < MAX_EDITS, f"carol was never cut off ({sent} edits)"
        await _burst(a, "edit_message", "message_updated", [body] * CHUNK, message_id=target)
        sent += CHUNK
        if _cut_off(server, carol):
            drained = _start_draining(slow)
    await _burst(a, "send_message", "new_message", [f"{body} after"] * 20, conversation_id=conv)

    frames = await drained
    slow.close()
    assert slow.close_code == 4408 and frames[-1]["type"] == "resync_required"
    seen = [f["seq"] for f in frames if "seq" in f]  # messages and edits: one stream
    assert seen and seen == list(range(1, len(seen) + 1)), "in order up to the cut"
    total = 20 + 1 + sent + 20
    assert len(seen) < total, "she missed the last ones"

    # Reconnect and resume from the last seq she saw: the rest, and nothing twice.
    c = await carol.socket()
    await join(c, conv, since_seq=seen[-1])
    rest = await stream_until(c, total)
    assert seen + [e["seq"] for e in rest] == list(range(1, total + 1))
    assert rest[-1]["message"]["content"] == f"{body} after"
    assert not [e for e in await c.quiet(0.2) if "seq" in e]
