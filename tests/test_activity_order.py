"""Conversation lists order by last activity, which a conversation writes when it goes idle at the latest."""

from __future__ import annotations

import asyncio

from tests.support.client import DEFAULT_WAIT_SECS


async def test_list_order_follows_activity_once_written(server, users):
    alice, bob = users("alice", "bob")
    older = await alice.create_conversation("group", [bob], title="older")
    newer = await alice.create_conversation("group", [bob], title="newer")
    a = await alice.socket()
    await a.request("send_message", "new_message", conversation_id=older, content="bump")
    a.close()
    deadline = asyncio.get_running_loop().time() + DEFAULT_WAIT_SECS
    while True:  # the test server retires idle actors after 0.5 s, which writes the activity
        status, body = await alice.api.get("conversations/")
        assert status == 200
        order = [c["id"] for c in body["results"] if c["id"] in (older, newer)]
        if order == [older, newer]:
            break
        assert asyncio.get_running_loop().time() < deadline, order
        await asyncio.sleep(0.2)
    first = next(c for c in body["results"] if c["id"] == older)
    assert first["last_message"]["content"] == "bump"
