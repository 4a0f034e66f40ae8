"""Presence shared by every node: who has sockets where, each user's status, and grace periods.

Each change is one Lua script, so it is atomic, and each answers whether it made a transition
that must be announced (a user came online, set a status, went offline): exactly one node
gets that answer and announces it. The keys, per tenant and user:

- ``chat:p:users:{tenant}``: user -> their live state (JSON: status, current conversation,
  last seen), while they have a socket or are in their grace period;
- ``chat:p:conns:{tenant}:{user}``: socket -> node; ``chat:p:sockets:{tenant}``: every
  socket of the tenant (its size decides whether presence is pushed tenant-wide);
- ``chat:p:node:{node}``: ``"tenant user socket"`` for each socket a node holds, so that the
  sockets of a node that died can be dropped (``sweep_nodes``);
- ``chat:p:grace``: ``"tenant user"`` scored by when their grace period ends (Redis time).

Any node's sweeper ends grace periods that are over; the one whose script removes an entry
announces the user offline. Scripts build key names inside (one Redis, not Redis Cluster).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from cluster.link import LinkDown, RedisLink
from storage.clock import isoformat, utcnow

logger = logging.getLogger(__name__)

GRACE_KEY = "chat:p:grace"

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# ARGV: tenant, user, socket, node, max sockets per user, now (ISO). Answers {0} when the user
# has the most sockets allowed; else {1, announce (0/1), state, sockets in the tenant}.
CONNECT = """
local tenant, user, conn, node = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local conns = 'chat:p:conns:' .. tenant .. ':' .. user
if redis.call('HLEN', conns) >= tonumber(ARGV[5]) then return {0} end
redis.call('HSET', conns, conn, node)
redis.call('SADD', 'chat:p:node:' .. node, tenant .. ' ' .. user .. ' ' .. conn)
redis.call('SADD', 'chat:p:sockets:' .. tenant, conn)
redis.call('ZREM', 'chat:p:grace', tenant .. ' ' .. user)
local users = 'chat:p:users:' .. tenant
local raw = redis.call('HGET', users, user)
local state = raw and cjson.decode(raw) or {}
local announce = 0
if state.status == nil or state.status == 'offline' then
  state.status = 'online'
  announce = 1
end
state.last_seen = ARGV[6]
raw = cjson.encode(state)
redis.call('HSET', users, user, raw)
return {1, announce, raw, redis.call('SCARD', 'chat:p:sockets:' .. tenant)}
"""

# ARGV: tenant, user, socket, grace in ms, now (ISO). Answers 1 when it was the user's last
# socket: their grace period has started.
DISCONNECT = (
    _NOW_MS
    + """
local tenant, user, conn = ARGV[1], ARGV[2], ARGV[3]
local conns = 'chat:p:conns:' .. tenant .. ':' .. user
local node = redis.call('HGET', conns, conn)
if not node then return 0 end
redis.call('HDEL', conns, conn)
redis.call('SREM', 'chat:p:node:' .. node, tenant .. ' ' .. user .. ' ' .. conn)
redis.call('SREM', 'chat:p:sockets:' .. tenant, conn)
if redis.call('HLEN', conns) > 0 then return 0 end
redis.call('ZADD', 'chat:p:grace', now + tonumber(ARGV[4]), tenant .. ' ' .. user)
local users = 'chat:p:users:' .. tenant
local raw = redis.call('HGET', users, user)
if raw then
  local state = cjson.decode(raw)
  state.last_seen = ARGV[5]
  redis.call('HSET', users, user, cjson.encode(state))
end
return 1
"""
)

# ARGV: now (ISO), at most how many. Ends the grace periods that are over: answers
# {tenant, user, state, sockets in the tenant} for each user who goes offline.
GRACE_OVER = (
    _NOW_MS
    + """
local out = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', 'chat:p:grace', '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))) do
  redis.call('ZREM', 'chat:p:grace', member)
  local tenant, user = string.match(member, '^(%S+) (%S+)$')
  if redis.call('HLEN', 'chat:p:conns:' .. tenant .. ':' .. user) == 0 then
    local users = 'chat:p:users:' .. tenant
    local raw = redis.call('HGET', users, user)
    local state = raw and cjson.decode(raw) or {}
    redis.call('HDEL', users, user)
    state.status = 'offline'
    state.last_seen = ARGV[1]
    table.insert(out, {tenant, user, cjson.encode(state), redis.call('SCARD', 'chat:p:sockets:' .. tenant)})
  end
end
return out
"""
)

# ARGV: grace in ms, then node ids that fell silent. Drops their sockets; users left with none
# start their grace period.
SWEEP_NODES = (
    _NOW_MS
    + """
for i = 2, #ARGV do
  local key = 'chat:p:node:' .. ARGV[i]
  for _, member in ipairs(redis.call('SMEMBERS', key)) do
    local tenant, user, conn = string.match(member, '^(%S+) (%S+) (%S+)$')
    local conns = 'chat:p:conns:' .. tenant .. ':' .. user
    redis.call('HDEL', conns, conn)
    redis.call('SREM', 'chat:p:sockets:' .. tenant, conn)
    if redis.call('HLEN', conns) == 0 then
      redis.call('ZADD', 'chat:p:grace', now + tonumber(ARGV[1]), tenant .. ' ' .. user)
    end
  end
  redis.call('DEL', key)
end
return 1
"""
)

# ARGV: tenant, user, status, now (ISO). Answers {state, sockets in the tenant}; the state is
# kept only while the user has a socket or a grace period.
SET_STATUS = """
local tenant, user = ARGV[1], ARGV[2]
local users = 'chat:p:users:' .. tenant
local raw = redis.call('HGET', users, user)
local connected = redis.call('HLEN', 'chat:p:conns:' .. tenant .. ':' .. user) > 0
local state = (raw and connected) and cjson.decode(raw) or {}
state.status = ARGV[3]
state.last_seen = ARGV[4]
raw = cjson.encode(state)
if connected then redis.call('HSET', users, user, raw) end
return {raw, redis.call('SCARD', 'chat:p:sockets:' .. tenant)}
"""

# ARGV: tenant, user, conversation id.
SET_CONVERSATION = """
local users = 'chat:p:users:' .. ARGV[1]
local raw = redis.call('HGET', users, ARGV[2])
if not raw then return 0 end
local state = cjson.decode(raw)
state.current_conversation_id = ARGV[3]
redis.call('HSET', users, ARGV[2], cjson.encode(state))
return 1
"""

# ARGV: node, grace in ms, now (ISO), how many quadruples, then (tenant, user, socket, status)
# quadruples: exactly the sockets the node holds, each with its user's status should Redis have
# lost it, then (tenant, user) pairs: users whose socket here closed while Redis was away. After
# Redis was away (or lost its data in a restart): sockets the node no longer holds are dropped,
# the others put back (a user whose state was lost gets the status given), and every user left
# with no socket anywhere starts their grace period.
RESYNC_NODE = (
    _NOW_MS
    + """
local node = ARGV[1]
local key = 'chat:p:node:' .. node
local pairs_from = 5 + 4 * tonumber(ARGV[4])
local held = {}
for i = 5, pairs_from - 1, 4 do held[ARGV[i] .. ' ' .. ARGV[i + 1] .. ' ' .. ARGV[i + 2]] = true end
for _, member in ipairs(redis.call('SMEMBERS', key)) do
  if not held[member] then
    local tenant, user, conn = string.match(member, '^(%S+) (%S+) (%S+)$')
    local conns = 'chat:p:conns:' .. tenant .. ':' .. user
    redis.call('HDEL', conns, conn)
    redis.call('SREM', 'chat:p:sockets:' .. tenant, conn)
    redis.call('SREM', key, member)
    if redis.call('HLEN', conns) == 0 then
      redis.call('ZADD', 'chat:p:grace', now + tonumber(ARGV[2]), tenant .. ' ' .. user)
    end
  end
end
for i = 5, pairs_from - 1, 4 do
  local tenant, user, conn = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  redis.call('HSET', 'chat:p:conns:' .. tenant .. ':' .. user, conn, node)
  redis.call('SADD', key, tenant .. ' ' .. user .. ' ' .. conn)
  redis.call('SADD', 'chat:p:sockets:' .. tenant, conn)
  redis.call('ZREM', 'chat:p:grace', tenant .. ' ' .. user)
  redis.call('HSETNX', 'chat:p:users:' .. tenant, user, cjson.encode({status = ARGV[i + 3], last_seen = ARGV[3]}))
end
for i = pairs_from, #ARGV, 2 do
  if redis.call('HLEN', 'chat:p:conns:' .. ARGV[i] .. ':' .. ARGV[i + 1]) == 0 then
    redis.call('ZADD', 'chat:p:grace', 'NX', now + tonumber(ARGV[2]), ARGV[i] .. ' ' .. ARGV[i + 1])
  end
end
return 1
"""
)


def tenant_channel(tenant_id: str) -> str:
    return f"chat:tenant:{tenant_id}"


class PresenceLedger:
    """The scripts above as calls; each raises ``LinkDown`` while Redis is away."""

    def __init__(self, link: RedisLink, node_id: str, grace_secs: float) -> None:
        self._link = link
        self._node_id = node_id
        self._grace_ms = int(grace_secs * 1000)
        self._sweeper: asyncio.Task | None = None
        self._unsaid: set[tuple[str, str]] = set()  # (tenant, user) whose socket closed while Redis was away

    async def connect(self, tenant_id: str, user_id: str, conn_id: str, max_sockets: int, now: str) -> tuple[bool, bool, dict, int]:
        """``(allowed, announce, state, sockets in the tenant)``."""
        reply = await self._link.call("EVAL", CONNECT, 0, tenant_id, user_id, conn_id, self._node_id, max_sockets, now)
        if not reply[0]:
            return False, False, {}, 0
        return True, bool(reply[1]), json.loads(reply[2]), int(reply[3])

    async def disconnect(self, tenant_id: str, user_id: str, conn_id: str, now: str) -> bool:
        """Whether the user's grace period started. While Redis is away the closing is kept, to be
        said with the next ``resync_node``: the user may have no socket left anywhere."""
        try:
            return bool(await self._link.call("EVAL", DISCONNECT, 0, tenant_id, user_id, conn_id, self._grace_ms, now))
        except LinkDown:
            self._unsaid.add((tenant_id, user_id))
            return False

    async def set_status(self, tenant_id: str, user_id: str, status: str, now: str) -> tuple[dict, int]:
        raw, sockets = await self._link.call("EVAL", SET_STATUS, 0, tenant_id, user_id, status, now)
        return json.loads(raw), int(sockets)

    async def set_conversation(self, tenant_id: str, user_id: str, conversation_id: str) -> None:
        await self._link.call("EVAL", SET_CONVERSATION, 0, tenant_id, user_id, conversation_id)

    async def live(self, tenant_id: str, user_ids: list[str]) -> dict[str, dict]:
        """The live state of those of ``user_ids`` who have one."""
        if not user_ids:
            return {}
        raws = await self._link.call("HMGET", f"chat:p:users:{tenant_id}", *user_ids)
        return {user_id: json.loads(raw) for user_id, raw in zip(user_ids, raws) if raw is not None}

    async def nodes_of(self, tenant_id: str, user_id: str) -> set[str]:
        """The nodes that hold sockets of the user."""
        return {node.decode() for node in await self._link.call("HVALS", f"chat:p:conns:{tenant_id}:{user_id}")}

    async def resync_node(self, sockets: list[tuple[str, str, str]], chosen: dict[tuple[str, str], str]) -> None:
        """Make Redis hold exactly ``(tenant, user, socket)`` for this node, and start the grace
        periods of users whose socket here closed while it was away (``RESYNC_NODE``). A user
        whose state Redis lost is put back with their ``chosen`` status (by ``(tenant, user)``),
        else online."""
        unsaid = list(self._unsaid)
        held = [part for tenant_id, user_id, conn_id in sockets for part in (tenant_id, user_id, conn_id, chosen.get((tenant_id, user_id), "online"))]
        args = held + [part for pair in unsaid for part in pair]
        await self._link.call("EVAL", RESYNC_NODE, 0, self._node_id, self._grace_ms, isoformat(utcnow()), len(sockets), *args)
        self._unsaid.difference_update(unsaid)

    def sweep_nodes(self, node_ids: list[str]) -> None:
        """Drop the sockets of nodes that fell silent (their users start their grace period)."""
        self._link.send_and_forget("EVAL", SWEEP_NODES, 0, self._grace_ms, *node_ids)

    def start_sweeper(self, went_offline: Callable[[str, str, dict, int], None], every_secs: float) -> None:
        """Every ``every_secs``, end the grace periods that are over: ``went_offline(tenant,
        user, state, sockets in the tenant)`` for each user this node found first."""

        async def sweep() -> None:
            while True:
                await asyncio.sleep(every_secs)
                try:
                    ended = await self._link.call("EVAL", GRACE_OVER, 0, isoformat(utcnow()), 100)
                except LinkDown:
                    continue
                except Exception as error:
                    logger.warning("ending grace periods failed: %s", error)
                    continue
                for tenant_id, user_id, raw, sockets in ended:
                    went_offline(tenant_id.decode(), user_id.decode(), json.loads(raw), int(sockets))

        self._sweeper = asyncio.ensure_future(sweep())

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
