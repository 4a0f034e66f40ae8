"""Faults: MongoDB stopped and started under a running chat server, and the chat server itself
restarted (SIGTERM), lose no acknowledged message. Real FerretDB; the chat server is our own
``ServerProcess`` so that the database can go away under it."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from tests.support.client import DEFAULT_WAIT_SECS, User, unique
from tests.support.delivery import join, messages_route, rest_history
from tests.support.server import ServerProcess

MONGODB_TIMEOUT_MS = 1000
SHUTDOWN_TIMEOUT_SECS = 5.0


def _db_name() -> str:
    return unique("chat_faults").replace("-", "_")


async def _send_until_stored(sock, conversation_id: str, content: str, client_msg_id: str, *, within_secs: float = DEFAULT_WAIT_SECS) -> dict:
    """What a client does after ``storage_unavailable``: retry with the same client_msg_id."""
    deadline = time.monotonic() + within_secs
    while True:
        answer = await sock.request("send_message", conversation_id=conversation_id, content=content, client_msg_id=client_msg_id)
        if answer["type"] == "new_message":
            return answer["message"]
        assert answer["type"] == "error" and answer["code"] == "storage_unavailable", answer
        assert time.monotonic() < deadline, "the chat server did not recover after the database came back"
        await asyncio.sleep(0.2)


async def _replay_all(user: User, conversation_id: str) -> list[dict]:
    sock = await user.socket()
    joined = await join(sock, conversation_id, since_seq=0)
    messages = [(await sock.next("new_message"))["message"] for _ in range(joined["last_seq"])]
    sock.close()
    return messages


def _assert_history(history: list[dict], acknowledged: dict[str, dict]) -> None:
    """Gap-free seq from 1, one message per client_msg_id, every acknowledged one present as acked."""
    assert [m["seq"] for m in history] == list(range(1, len(history) + 1)), [m["seq"] for m in history]
    keys = [m["client_msg_id"] for m in history]
    assert len(keys) == len(set(keys)), "a retry made a second message"
    by_key = {m["client_msg_id"]: m for m in history}
    for key, message in acknowledged.items():
        assert key in by_key, f"acknowledged message {key} (seq {message['seq']}) was lost"
        assert by_key[key]["id"] == message["id"] and by_key[key]["seq"] == message["seq"]


@pytest.fixture
def chat_on_ferretdb(ferretdb):
    ferretdb.start()  # a previous test may have left it stopped
    proc = ServerProcess(
        mongodb_uri=ferretdb.uri, db_name=_db_name(), env={"MONGODB_TIMEOUT_MS": str(MONGODB_TIMEOUT_MS)}
    ).start()
    yield proc
    proc.kill()
    ferretdb.start()


async def test_database_stopped_and_restarted_loses_no_acknowledged_message(chat_on_ferretdb, ferretdb):
    server = chat_on_ferretdb
    tenant = unique("tenant")
    alice, bob = (User(server, tenant, unique(n)) for n in ("alice", "bob"))
    conv = await alice.create_conversation("group", [bob])
    a, b = await alice.socket(), await bob.socket()
    await join(a, conv)
    await join(b, conv)
    acknowledged: dict[str, dict] = {}
    refused: list[str] = []

    for n in range(5):
        ack = await a.request("send_message", "new_message", conversation_id=conv, content=f"up {n}", client_msg_id=f"up-{n}")
        acknowledged[f"up-{n}"] = ack["message"]

    # Keep sending while the database goes down: each send is either stored (and acknowledged)
    # or refused with storage_unavailable, never acknowledged without being stored.
    stopping = asyncio.ensure_future(asyncio.to_thread(ferretdb.stop))
    n = sent_while_down = 0
    while sent_while_down < 2:
        down = stopping.done()
        key = f"during-{n}"
        answer = await a.request("send_message", conversation_id=conv, content=f"during {n}", client_msg_id=key)
        if answer["type"] == "new_message":
            assert not down, "a send with the database down was acknowledged"
            acknowledged[key] = answer["message"]
        else:
            assert answer["code"] == "storage_unavailable" and answer["message"], answer
            refused.append(key)
        n += 1
        sent_while_down += down
        await b.quiet(0.01)  # bob keeps reading, as a live client does (and answers pings);
        # it also paces alice below the test server's rate limit while FerretDB takes its time
    await stopping
    assert refused, "no send was refused while the database was down"

    # Down: other writes and a resume are refused the same way; sockets stay open and usable.
    edit = await a.request("edit_message", message_id=acknowledged["up-0"]["id"], content="edited")
    assert edit["type"] == "error" and edit["code"] == "storage_unavailable", edit
    resume = await b.request("join_conversation", conversation_id=conv, since_seq=0)
    assert resume["type"] == "error" and resume["code"] == "storage_unavailable", resume
    for sock in (a, b):
        assert (await sock.request("ping", "pong"))["type"] == "pong"
        assert not sock.closed
    status, body = await alice.api.get(f"conversations/{conv}/messages/")
    assert status == 503 and body["error"]["code"] == "storage_unavailable", (status, body)

    # Back up, with the same chat server process: sends work again (retries keep their ids).
    await asyncio.to_thread(ferretdb.start)
    for key in refused:
        acknowledged[key] = await _send_until_stored(a, conv, key.replace("-", " "), key)
    for n in range(3):
        ack = await a.request("send_message", "new_message", conversation_id=conv, content=f"after {n}", client_msg_id=f"after-{n}")
        acknowledged[f"after-{n}"] = ack["message"]
    assert server.proc.poll() is None

    history = await _replay_all(bob, conv)
    _assert_history(history, acknowledged)
    assert len(history) == len(acknowledged)
    if await messages_route(alice.api, conv):
        assert [(m["seq"], m["id"]) for m in await rest_history(alice.api, conv)] == [(m["seq"], m["id"]) for m in history]
    # What bob was sent live came in seq order, once each. (His failed resume left that socket
    # unsubscribed: a join that errs is not a join, and the client joins again.)
    live = [e["message"]["seq"] for e in b.events if e["type"] == "new_message"]
    assert live == sorted(set(live))


async def test_database_killed_mid_burst_loses_no_acknowledged_message(chat_on_ferretdb, ferretdb):
    """Several senders with batches in flight when the database dies (SIGKILL): some writes may
    have landed without their answer; the conversation re-reads before numbering more."""
    server = chat_on_ferretdb
    tenant = unique("tenant")
    senders = [User(server, tenant, unique(f"s{i}")) for i in range(3)]
    reader = User(server, tenant, unique("reader"))
    conv = await senders[0].create_conversation("group", [*senders[1:], reader])
    socks = [await s.socket() for s in senders]
    per_sender = 40

    async def burst(index: int) -> list[dict]:
        sock = socks[index]
        for n in range(per_sender):
            sock.send_type("send_message", conversation_id=conv, content=f"s{index} {n}", client_msg_id=f"s{index}-{n}", request_id=f"s{index}-{n}")
            if n == per_sender // 4 and index == 0:
                await asyncio.sleep(0.02)
                await asyncio.to_thread(ferretdb.kill)
        try:
            return [await sock.next(request_id=f"s{index}-{n}") for n in range(per_sender)]
        except AssertionError as error:
            raise AssertionError(f"{error}; closed={sock.closed} code={sock.conn.close_code}\n{server.log()}") from None

    answers = await asyncio.gather(*(burst(i) for i in range(3)))
    acknowledged = {}
    refused = []
    for index, sender_answers in enumerate(answers):
        for n, answer in enumerate(sender_answers):
            if answer["type"] == "new_message":
                acknowledged[f"s{index}-{n}"] = answer["message"]
            else:
                assert answer["code"] == "storage_unavailable", answer
                refused.append((index, n))
    assert refused, "the kill came too late to refuse anything"

    await asyncio.to_thread(ferretdb.start)
    for index, n in refused:
        acknowledged[f"s{index}-{n}"] = await _send_until_stored(socks[index], conv, f"s{index} {n}", f"s{index}-{n}")
    history = await _replay_all(reader, conv)
    _assert_history(history, acknowledged)
    assert len(history) == 3 * per_sender


async def test_process_restart_loses_nothing(mongodb_uri):
    if mongodb_uri is None:
        pytest.skip("no real MongoDB (FerretDB binary not built and MONGODB_URI unset)")
    db_name = _db_name()
    env = {"SHUTDOWN_TIMEOUT_SECS": str(SHUTDOWN_TIMEOUT_SECS)}
    first = ServerProcess(mongodb_uri=mongodb_uri, db_name=db_name, env=env).start()
    tenant = unique("tenant")
    try:
        alice, bob = (User(first, tenant, unique(n)) for n in ("alice", "bob"))
        conv = await alice.create_conversation("group", [bob])
        a, b = await alice.socket(), await bob.socket()
        await join(a, conv)
        await join(b, conv)
        acknowledged: dict[str, dict] = {}
        for n in range(20):
            ack = await a.request("send_message", "new_message", conversation_id=conv, content=f"m{n}", client_msg_id=f"k-{n}")
            acknowledged[f"k-{n}"] = ack["message"]
        # A burst still in flight when the PaaS sends SIGTERM.
        for n in range(20, 50):
            a.send_type("send_message", conversation_id=conv, content=f"m{n}", client_msg_id=f"k-{n}", request_id=f"r-{n}")
        await asyncio.sleep(0.01)
        started = time.monotonic()
        code = await asyncio.to_thread(first.stop)
        took = time.monotonic() - started
        assert code == 0, first.log()
        assert took < SHUTDOWN_TIMEOUT_SECS, f"shutdown took {took:.1f}s"
        for sock in (a, b):
            close_code, reason = await sock.wait_closed()
            assert close_code == 1001 and reason, (close_code, reason)
        for event in a.events:
            if event["type"] == "new_message" and str(event.get("request_id", "")).startswith("r-"):
                acknowledged[event["message"]["client_msg_id"]] = event["message"]
            elif event["type"] == "error":
                assert event["code"] == "shutting_down", event
        assert "Traceback" not in first.log(), first.log()
    finally:
        first.kill()

    second = ServerProcess(mongodb_uri=mongodb_uri, db_name=db_name, env=env).start()
    try:
        alice, bob = (User(second, tenant, u.user_id) for u in (alice, bob))
        history = await _replay_all(bob, conv)
        _assert_history(history, acknowledged)
        # The unacknowledged rest of the burst: retried after the restart, each stored once.
        a = await alice.socket()
        for n in range(50):
            message = await _send_until_stored(a, conv, f"m{n}", f"k-{n}")
            if f"k-{n}" in acknowledged:
                assert message["id"] == acknowledged[f"k-{n}"]["id"]
            acknowledged[f"k-{n}"] = message
        after = await a.request("send_message", "new_message", conversation_id=conv, content="after restart")
        assert after["message"]["seq"] == 51, "new sends continue the seq"
        history = await _replay_all(bob, conv)
        assert len(history) == 51
        _assert_history(history[:50], acknowledged)
    finally:
        second.stop()


@pytest.mark.slow
async def test_hung_database_times_out_and_recovers(chat_on_ferretdb, ferretdb):
    """A database that accepts connections and then stops answering (SIGSTOP) must not hang a
    conversation forever: sends fail after the socket timeout, and work again once it answers."""
    server = chat_on_ferretdb
    tenant = unique("tenant")
    alice, bob = (User(server, tenant, unique(n)) for n in ("alice", "bob"))
    conv = await alice.create_conversation("group", [bob])
    a = await alice.socket()
    first = await a.request("send_message", "new_message", conversation_id=conv, content="before", client_msg_id="h-0")
    os.kill(ferretdb.pid, signal.SIGSTOP)
    try:
        # No answer within 2 x MONGODB_TIMEOUT_MS (socketTimeoutMS) fails an operation; the driver
        # may retry it once. All of it well within the keepalive, so the socket stays open.
        answer = await a.next(request_id=_fire(a, conv, "h-1"), timeout=8)
        assert answer["type"] == "error" and answer["code"] == "storage_unavailable", answer
        assert not a.closed
    finally:
        os.kill(ferretdb.pid, signal.SIGCONT)
    stored = await _send_until_stored(a, conv, "h 1", "h-1")
    history = await _replay_all(bob, conv)
    _assert_history(history, {"h-0": first["message"], "h-1": stored})


def _fire(sock, conversation_id: str, client_msg_id: str) -> str:
    request_id = unique("req")
    sock.send_type("send_message", conversation_id=conversation_id, content=client_msg_id, client_msg_id=client_msg_id, request_id=request_id)
    return request_id
