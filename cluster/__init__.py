"""Nodes cooperating over Redis: the only package that talks to Redis (``tests/test_layers.py``).

MongoDB stays the one durable store; Redis carries what is live and shared: which nodes are
up (``nodes``), messages between them (``bus``, ``calls``), presence and rate-limit buckets.
Nothing here knows about actors: ``actors/`` builds on these parts (docs/scale-out.md).
"""

from __future__ import annotations

import dataclasses
import logging

from cluster.bus import Bus
from cluster.calls import Calls
from cluster.link import RedisLink
from cluster.nodes import NODES_CHANNEL, NodeRegistry
from cluster.presence import PresenceLedger
from config import Settings
from storage.clock import new_id

logger = logging.getLogger(__name__)


def conversation_channel(tenant_id: str, conversation_id: str) -> str:
    return f"chat:conv:{tenant_id}:{conversation_id}"


def conversation_key(tenant_id: str, conversation_id: str) -> str:
    """What ownership is decided on."""
    return f"{tenant_id}\n{conversation_id}"


@dataclasses.dataclass
class Cluster:
    node_id: str
    link: RedisLink
    bus: Bus
    nodes: NodeRegistry
    calls: Calls
    presence: PresenceLedger
    # How long a node waits for another to answer a forwarded write: longer than the owner may
    # take to store it (two tries of twice MONGODB_TIMEOUT_MS each, at worst), plus the hops.
    call_timeout_secs: float

    @classmethod
    def open(cls, settings: Settings) -> Cluster:
        node_id = new_id()
        link = RedisLink(settings.redis_url)
        bus = Bus(settings.redis_url, link)
        nodes = NodeRegistry(link, node_id, settings.node_heartbeat_secs, settings.node_ttl_secs)
        calls = Calls(bus, node_id)
        presence = PresenceLedger(link, node_id, settings.presence_grace_secs)
        nodes.on_change(lambda gone, joined: calls.nodes_gone(gone))
        bus.on_down(calls.nodes_gone)
        nodes.on_expired(presence.sweep_nodes)
        bus.subscribe(NODES_CHANNEL, lambda data: nodes.beat_soon())
        return cls(node_id, link, bus, nodes, calls, presence, 4 * settings.mongodb_timeout_ms / 1000 + 2.0)

    def start(self) -> None:
        logger.info("node %s joining over Redis", self.node_id)
        self.link.start()
        self.bus.start()
        self.nodes.start()

    async def leave(self) -> None:
        """Hand this node's conversations to the others (an orderly stop)."""
        await self.nodes.leave()

    async def close(self) -> None:
        self.presence.stop()
        await self.bus.stop()
        await self.link.stop()

    def owner_elsewhere(self, tenant_id: str, conversation_id: str) -> str | None:
        """The node that owns the conversation when it is another one this node can reach."""
        if not self.bus.connected:
            return None
        owner = self.nodes.owner(conversation_key(tenant_id, conversation_id))
        return owner if owner != self.node_id else None
