"""The read budget: REST pages and since_seq replays are paid for by the rows they send, per user;
past it a clear 429 / rate_limited that names when to come back, and nobody else is slowed.
A dedicated server with a small budget: 200 rows a second, a burst of 400."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.client import User, unique
from tests.support.server import ServerProcess

ROWS_PER_SEC = 200
BURST = 400
MESSAGES = 100


@pytest.fixture(scope="module")
def budget_server():
    proc = ServerProcess(env={"READ_ROWS_PER_SEC": str(ROWS_PER_SEC), "READ_ROWS_BURST": str(BURST)}).start()
    yield proc
    proc.stop()


async def conversation_with_history(owner: User, others: list[User]) -> str:
    conv = await owner.create_conversation("group", others)
    for n in range(MESSAGES):
        status, body = await owner.api.post(f"conversations/{conv}/messages/", {"content": f"m{n}"})
        assert status == 201, body
    return conv


async def test_rest_pager_runs_out_and_others_read_on(budget_server):
    tenant = unique("tenant")
    reader, neighbour = User(budget_server, tenant, unique("reader")), User(budget_server, tenant, unique("neighbour"))
    conv = await conversation_with_history(reader, [neighbour])
    pages = 0
    while True:  # 100 rows a page: the burst of 400 lasts a few pages, however fast the machine
        status, body = await reader.api.get(f"conversations/{conv}/messages/?limit=100")
        if status == 429:
            break
        assert status == 200 and len(body["results"]) == MESSAGES, body
        pages += 1
        assert pages < 50, "the budget never ran out"
    assert body["error"]["code"] == "rate_limited" and body["error"]["details"]["retry_after"] > 0, body
    retry_after = int(reader.api.last_headers["Retry-After"])
    assert retry_after >= 1
    status, body = await neighbour.api.get(f"conversations/{conv}/messages/?limit=100")
    assert status == 200 and len(body["results"]) == MESSAGES, "another user's budget is their own"
    status, _ = await reader.api.post(f"conversations/{conv}/messages/", {"content": "writes have their own budget"})
    assert status == 201
    await asyncio.sleep(retry_after)  # the server said when: this is the wait under test
    status, body = await reader.api.get(f"conversations/{conv}/messages/?limit=1")
    assert status == 200, body


async def test_replays_are_paid_by_the_rows_they_send(budget_server):
    tenant = unique("tenant")
    reader, neighbour = User(budget_server, tenant, unique("reader")), User(budget_server, tenant, unique("neighbour"))
    conv = await conversation_with_history(reader, [neighbour])
    sock = await reader.socket()
    refused = None
    for attempt in range(50):
        answer = await sock.request("join_conversation", None, conversation_id=conv, since_seq=0)
        if answer["type"] == "error":
            refused = answer
            break
        assert answer["type"] == "conversation_joined", answer
        for seq in range(1, MESSAGES + 1):
            await sock.next("new_message")
        await sock.request("leave_conversation", "conversation_left", conversation_id=conv)
    assert refused is not None and refused["code"] == "rate_limited", "a 100-row replay costs 110 of a 400-row burst"
    assert attempt <= BURST // MESSAGES + 1, attempt
    assert not sock.closed, "a refused read leaves the socket open"
    other = await neighbour.socket()
    answer = await other.request("join_conversation", "conversation_joined", conversation_id=conv, since_seq=0)
    assert answer["last_seq"] >= MESSAGES
    sock.close()
    other.close()
