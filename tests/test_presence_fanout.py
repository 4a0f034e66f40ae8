"""Past PRESENCE_FANOUT_MAX_SOCKETS a tenant gets no tenant-wide presence pushes (no quadratic storm)."""

from __future__ import annotations

import pytest

from tests.support.client import User, unique
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def small_fanout_server():
    proc = ServerProcess({"PRESENCE_FANOUT_MAX_SOCKETS": "2"}).start()
    yield proc
    proc.stop()


async def test_large_tenant_presence_is_not_pushed_to_everyone(small_fanout_server):
    tenant = unique("tenant")
    alice, bob, carol = (User(small_fanout_server, tenant, name) for name in ("alice", "bob", "carol"))
    a = await alice.socket()
    await bob.socket()
    await a.next("presence_update", user_id="bob", status="online")  # 2 sockets: still pushed
    c = await carol.socket()  # 3 sockets: over the limit
    mine = await c.request("update_presence", "presence_update", status="busy")
    assert mine["status"] == "busy"
    assert not [e for e in await a.quiet(0.4) if e["type"] == "presence_update" and e["user_id"] == "carol"]
    status, body = await alice.api.get("presence/?user_ids=carol")
    if status == 200:  # REST presence is how a large tenant reads it
        assert [p["status"] for p in body["results"]] == ["busy"]
