"""``/metrics`` on every server, in Prometheus's format: sockets, actors, deliveries, store
latency and refusals, counted as they happen."""

from __future__ import annotations

from tests.support.metrics import scrape


async def test_metrics_count_what_the_server_did(server, users):
    before = scrape(server)
    alice, bob = users("alice", "bob")
    conversation_id = await alice.create_conversation(others=[bob])
    reader = await bob.socket()
    await reader.request("join_conversation", "conversation_joined", conversation_id=conversation_id)
    await reader.request("send_message", "new_message", conversation_id=conversation_id, content="counted")
    refused = await reader.request("join_conversation", "error", conversation_id="no-such-conversation")
    assert refused["code"] == "not_found"
    after = scrape(server)
    assert after[("chat_sockets", ())] >= 1
    assert after[("chat_live_conversations", ())] >= 1
    assert after[("chat_deliveries_total", ())] >= before[("chat_deliveries_total", ())] + 4
    assert after[("chat_store_batch_seconds_count", ())] >= before[("chat_store_batch_seconds_count", ())] + 1
    assert after[("chat_refusals_total", (("code", "not_found"),))] >= 1
    assert ("chat_redis_up", ()) not in after, "one process: no cluster figures"
