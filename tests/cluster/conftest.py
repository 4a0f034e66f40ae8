"""Fixtures for several server processes cooperating over Redis, on one real MongoDB wire server.

Every node gets the same ``REDIS_URL`` and ``MONGODB_URI`` (and database); clients connect to
the node a test chooses. The shared cluster of three serves the tests that leave it as they
found it; tests that kill a node or Redis start their own (``start_cluster``).
"""

from __future__ import annotations

import time

import pytest

from cluster import conversation_key
from cluster.nodes import rendezvous
from tests.support.client import User, unique
from tests.support.redis import RedisServer, redis_available
from tests.support.server import ServerProcess

NODE_WAIT_SECS = 30.0


def start_nodes(redis_url: str, mongodb_uri: str, count: int, env: dict | None = None) -> list[ServerProcess]:
    db_name = f"chat_cluster_{unique('db').replace('-', '_')}"
    nodes = [
        ServerProcess(env={"REDIS_URL": redis_url, **(env or {})}, mongodb_uri=mongodb_uri, db_name=db_name).start()
        for _ in range(count)
    ]
    wait_for_live_nodes(nodes, count)
    return nodes


def wait_for_live_nodes(nodes: list[ServerProcess], count: int) -> None:
    """Until Redis answers every node and each sees ``count`` live nodes (its own included)."""
    deadline = time.monotonic() + NODE_WAIT_SECS
    while time.monotonic() < deadline:
        seen = [node.health()["node"] for node in nodes]
        if all(s["redis"] and len(s["live_nodes"]) == count for s in seen):
            return
        time.sleep(0.1)
    raise AssertionError(f"nodes did not all see {count} live nodes: {[node.health()['node'] for node in nodes]}")


def node_ids(nodes: list[ServerProcess]) -> list[str]:
    return [node.health()["node"]["id"] for node in nodes]


def owner_index(nodes: list[ServerProcess], tenant_id: str, conversation_id: str) -> int:
    """Which of ``nodes`` owns the conversation, as the nodes compute it."""
    ids = node_ids(nodes)
    return ids.index(rendezvous(ids, conversation_key(tenant_id, conversation_id)))


async def conversation_owned_by(nodes: list[ServerProcess], index: int, creator: User, others: list[User]) -> str:
    """A new conversation of ``creator`` with ``others`` that node ``index`` owns (ids are random:
    create until one hashes there)."""
    while True:
        conversation_id = await creator.create_conversation(others=others)
        if owner_index(nodes, creator.tenant_id, conversation_id) == index:
            return conversation_id


@pytest.fixture(scope="session")
def redis_server():
    if not redis_available():
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cluster_mongodb_uri(mongodb_uri):
    if mongodb_uri is None:
        pytest.skip("nodes share a real MongoDB: no MONGODB_URI and no FerretDB built (.ci/build-ferretdb.sh)")
    return mongodb_uri


@pytest.fixture(scope="session")
def nodes(redis_server, cluster_mongodb_uri):
    """Three nodes, for tests that leave them (and Redis) as they found them."""
    started = start_nodes(redis_server.url, cluster_mongodb_uri, 3)
    yield started
    for node in started:
        node.stop()


@pytest.fixture
def start_cluster(cluster_mongodb_uri):
    """``start_cluster(count, env)``: a Redis and ``count`` nodes of the test's own, stopped after it."""
    started: list = []

    def start(count: int, env: dict | None = None) -> tuple[RedisServer, list[ServerProcess]]:
        redis = RedisServer().start()
        started.append(redis)
        group = start_nodes(redis.url, cluster_mongodb_uri, count, env)
        started.extend(group)
        return redis, group

    yield start
    for process in reversed(started):
        if isinstance(process, ServerProcess):
            process.kill()
        else:
            process.stop()


@pytest.fixture
def people(tenant):
    """``people(node, "alice")``: a user of the test's tenant whose sockets and REST calls go to ``node``."""

    def make(node: ServerProcess, name: str, user_id: str | None = None) -> User:
        return User(node, tenant, user_id or unique(name))

    return make
