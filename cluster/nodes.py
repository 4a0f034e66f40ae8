"""Which nodes are alive, and which of them owns a conversation.

Every node adds itself to one Redis sorted set with its expiry time as the score every
``NODE_HEARTBEAT_SECS``; a node silent for ``NODE_TTL_SECS`` is dropped by the next heartbeat
of any node. Times are Redis's own (``TIME``), so the nodes' clocks never have to agree.

Ownership is a rendezvous hash of the key over the live nodes: each key goes to the node with
the highest hash of (node, key), so a node joining or leaving moves only the keys it wins or
held. It is advice: nothing breaks when two nodes disagree for a moment, because a
conversation's writes are fenced by the database (docs/scale-out.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable

from cluster.link import LinkDown, RedisLink

logger = logging.getLogger(__name__)

NODES_KEY = "chat:nodes"
NODES_CHANNEL = "chat:nodes"

# KEYS[1] the set; ARGV: node id, ttl in ms, "1" to leave. Answers (live nodes, nodes just expired).
HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) end
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
end
return {redis.call('ZRANGE', KEYS[1], 0, -1), expired}
"""


def rendezvous(nodes: list[str], key: str) -> str:
    """The node with the highest hash of (node, key)."""
    return max(nodes, key=lambda node: hashlib.blake2b(f"{node}\n{key}".encode(), digest_size=8).digest())


class NodeRegistry:
    def __init__(self, link: RedisLink, node_id: str, heartbeat_secs: float, ttl_secs: float) -> None:
        self._link = link
        self.node_id = node_id
        self._heartbeat_secs = heartbeat_secs
        self._ttl_ms = int(ttl_secs * 1000)
        self.live: tuple[str, ...] = ()
        self._confirmed_at = float("-inf")  # loop time of the last heartbeat Redis answered
        self._listeners: list[Callable[[set[str], set[str]], None]] = []
        self._expired_listeners: list[Callable[[list[str]], None]] = []
        self._task: asyncio.Task | None = None
        self._beat_now = asyncio.Event()

    def on_change(self, listener: Callable[[set[str], set[str]], None]) -> None:
        """``listener(gone, joined)`` whenever the live set changes."""
        self._listeners.append(listener)

    def on_expired(self, listener: Callable[[list[str]], None]) -> None:
        """``listener(nodes)`` when this node's heartbeat dropped nodes that fell silent."""
        self._expired_listeners.append(listener)

    @property
    def healthy(self) -> bool:
        """Whether this node's view is current: its last heartbeat was answered within the TTL."""
        loop = asyncio.get_running_loop()
        return self._link.up and loop.time() - self._confirmed_at < self._ttl_ms / 1000

    def owner(self, key: str) -> str | None:
        """The node that owns ``key``; None when this node cannot tell (then it acts alone)."""
        if not self.live or not self.healthy:
            return None
        return rendezvous(list(self.live), key)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def beat_soon(self) -> None:
        """Heartbeat now rather than at the next tick (another node joined or left)."""
        self._beat_now.set()

    async def leave(self) -> None:
        """Leave the set at once, so that the others take over without waiting out the TTL."""
        if self._task is not None:
            self._task.cancel()
        try:
            await self._link.call("EVAL", HEARTBEAT, 1, NODES_KEY, self.node_id, self._ttl_ms, "1")
            await self._link.call("PUBLISH", NODES_CHANNEL, self.node_id)
        except (LinkDown, OSError) as error:
            logger.warning("could not leave the node set: %s", error)

    async def _run(self) -> None:
        while True:
            await self._beat()
            try:
                await asyncio.wait_for(self._beat_now.wait(), self._heartbeat_secs)
            except asyncio.TimeoutError:
                pass
            self._beat_now.clear()

    async def _beat(self) -> None:
        first = not self.live
        try:
            live, expired = await self._link.call("EVAL", HEARTBEAT, 1, NODES_KEY, self.node_id, self._ttl_ms, "0")
        except LinkDown:
            return
        except Exception as error:
            logger.warning("heartbeat failed: %s", error)
            return
        self._confirmed_at = asyncio.get_running_loop().time()
        live = tuple(sorted(node.decode() for node in live))
        if first:
            self._link.send_and_forget("PUBLISH", NODES_CHANNEL, self.node_id)
        if expired:
            nodes = [node.decode() for node in expired]
            logger.warning("nodes fell silent: %s", ", ".join(nodes))
            for listener in self._expired_listeners:
                listener(nodes)
        if live != self.live:
            gone, joined = set(self.live) - set(live), set(live) - set(self.live)
            self.live = live
            for listener in self._listeners:
                listener(gone, joined)
