"""The tenant actor of a node in a cluster: the tenant's sockets on this node, presence in Redis.

Where ``actors.tenant.TenantActor`` decides presence from the sockets of its own process, this
one asks Redis (``cluster.presence``), which sees every node's sockets: a user is online while
any node holds a socket of theirs, the most sockets a user may open counts them all, and the
script that makes a transition tells exactly one node to announce it. An announcement is saved
for REST readers, pushed to this node's sockets and published on the tenant's channel, where
the tenant's actor on every other node pushes it to its own sockets (``PresenceAnnouncer``),
in batches as on one process (``actors.presence_push``).
Grace periods end in Redis too: a sweeper on each node announces the users it finds offline,
also those whose last socket was on a node that died.

While Redis is away a node lets sockets in by its own count and announces nothing; when Redis
answers again, the node makes Redis hold what it holds (``PresenceLedger.resync_node``), with
the statuses its users chose as stored (``chosen_statuses``): a restart loses Redis's copy.
"""

from __future__ import annotations

import logging
from typing import Any

from actors import protocol
from actors.answers import AnswersAfterIO
from actors.errors import TooManyConnections
from actors.idle import RetiresWhenIdle
from actors.presence_push import PendingChanges, push_changes
from actors.principal import Principal
from actors.runtime import LoopActor, LoopFuture
from actors.subscriber import Subscriber
from cluster import Cluster, codec
from cluster.link import LinkDown
from cluster.presence import tenant_channel
from config import Settings
from storage import Storage
from storage.clock import isoformat, parse_isoformat, utcnow
from storage.errors import StorageError

logger = logging.getLogger(__name__)


def presence_fields(user_id: str, state: dict) -> dict:
    """The wire presence object of a live state as Redis keeps it."""
    return {
        "user_id": user_id,
        "status": state.get("status", "offline"),
        "current_conversation_id": state.get("current_conversation_id"),
        "last_seen": state.get("last_seen"),
    }


async def chosen_statuses(storage: Storage, sockets: list[tuple[str, str, str]]) -> dict[tuple[str, str], str]:
    """The status each user of ``(tenant, user, socket)`` chose (away, busy), by ``(tenant,
    user)``, as stored: every announced change is saved, and the rows outlive a Redis restart.
    Users with none, or all of them when the database does not answer, are online."""
    users: dict[str, set[str]] = {}
    for tenant_id, user_id, _ in sockets:
        users.setdefault(tenant_id, set()).add(user_id)
    chosen = {}
    try:
        for tenant_id, user_ids in users.items():
            for row in await storage.presence.list(tenant_id, sorted(user_ids), limit=len(user_ids)):
                if row["status"] not in ("online", "offline"):
                    chosen[(tenant_id, row["user_id"])] = row["status"]
    except StorageError as error:
        logger.warning("chosen statuses not read: %s", error)
    return chosen


class PresenceAnnouncer:
    """Says a presence change once for the whole cluster: saved, pushed here, published."""

    def __init__(self, directory, storage: Storage, settings: Settings, cluster: Cluster) -> None:
        self._directory = directory
        self._storage = storage
        self._settings = settings
        self._cluster = cluster

    def announce(self, tenant_id: str, user_id: str, state: dict, sockets: int, skip_conn: str | None = None) -> dict:
        payload = presence_fields(user_id, state)
        wide = sockets <= self._settings.presence_fanout_max_sockets
        self._directory.presence_heard(tenant_id, user_id, payload, wide, skip_conn)
        message = {"n": self._cluster.node_id, "user": user_id, "presence": payload, "wide": wide, "skip": skip_conn}
        self._cluster.bus.publish(tenant_channel(tenant_id), codec.dumps(message))
        self._directory.save_in_background(
            self._storage.presence.save_many(
                tenant_id,
                {
                    user_id: {
                        "status": payload["status"],
                        "current_conversation_id": payload["current_conversation_id"],
                        "last_seen": parse_isoformat(payload["last_seen"]),
                    }
                },
            ),
            "presence",
        )
        return payload


class ClusterTenantActor(AnswersAfterIO, RetiresWhenIdle, LoopActor):
    def __init__(self, directory, storage: Storage, settings: Settings, tenant_id: str) -> None:
        super().__init__()
        self._directory = directory
        self._storage = storage
        self._settings = settings
        self.tenant_id = tenant_id
        self._cluster: Cluster = directory.cluster
        self._ledger = directory.cluster.presence
        self._announcer: PresenceAnnouncer = directory.presence_announcer
        self._connections: dict[str, dict[str, Subscriber]] = {}
        self._channel = tenant_channel(tenant_id)
        self._unpushed = PendingChanges()
        self._push_wide = True
        self._push_timer = None

    def on_start(self) -> None:
        self._cluster.bus.subscribe(self._channel, self._heard)
        self._maybe_idle()

    def on_stop(self) -> None:
        self._cancel_idle()
        if self._push_timer is not None:
            self._push_timer.cancel()
        self._cluster.bus.unsubscribe(self._channel)

    # --- connections ---------------------------------------------------------------------

    def connect(self, conn: Subscriber) -> LoopFuture:
        """Register a socket; ``TooManyConnections`` when its user has the most allowed, on all nodes."""
        user_id = conn.principal.user_id
        limit = self._settings.max_connections_per_user
        self._cancel_idle()

        async def register():
            try:
                return await self._ledger.connect(self.tenant_id, user_id, conn.conn_id, limit, isoformat(utcnow()))
            except LinkDown:
                return None

        def registered(result, error) -> dict:
            conns = self._connections.setdefault(user_id, {})
            if result is None:  # Redis is away: this node's own count decides, nothing is announced
                allowed, announce, state = len(conns) < limit, False, {"status": "online", "last_seen": isoformat(utcnow())}
            else:
                allowed, announce, state, sockets = result
            if not allowed:
                if not conns:
                    del self._connections[user_id]
                raise TooManyConnections()
            conns[conn.conn_id] = conn
            if announce:
                return self._announcer.announce(self.tenant_id, user_id, state, sockets)
            return presence_fields(user_id, state)

        return self._io(register(), registered)

    def disconnect(self, conn: Subscriber) -> None:
        user_id = conn.principal.user_id
        conns = self._connections.get(user_id)
        if not conns or conns.pop(conn.conn_id, None) is None:
            return
        if not conns:
            del self._connections[user_id]
        self._io(self._ledger.disconnect(self.tenant_id, user_id, conn.conn_id, isoformat(utcnow())), lambda *_: None)

    @staticmethod
    async def _quietly(call) -> Any:
        """A change Redis may miss while it is away."""
        try:
            return await call
        except LinkDown:
            return None

    # --- presence ------------------------------------------------------------------------

    def set_status(self, principal: Principal, status: str, origin: Subscriber | None = None, request_id: Any = None) -> LoopFuture:
        user_id = principal.user_id

        async def change():
            try:
                return await self._ledger.set_status(self.tenant_id, user_id, status, isoformat(utcnow()))
            except LinkDown:
                sockets = sum(len(conns) for conns in self._connections.values())
                return {"status": status, "last_seen": isoformat(utcnow())}, sockets

        def changed(result, error) -> dict:
            state, sockets = result
            skip = origin.conn_id if origin is not None else None
            payload = self._announcer.announce(self.tenant_id, user_id, state, sockets, skip)
            if origin is not None:
                origin.send(protocol.event("presence_update", request_id, **payload))
            return payload

        return self._io(change(), changed)

    def set_current_conversation(self, user_id: str, conversation_id: str) -> None:
        self._io(self._quietly(self._ledger.set_conversation(self.tenant_id, user_id, conversation_id)), lambda *_: None)

    def live_presence(self, user_ids: list[str]) -> LoopFuture:
        """Presence of those of ``user_ids`` with a live socket on any node, or in their grace period."""

        async def read():
            try:
                return await self._ledger.live(self.tenant_id, user_ids)
            except LinkDown:
                return {}

        return self._io(read(), lambda states, error: {user_id: presence_fields(user_id, state) for user_id, state in states.items()})

    # --- pushing announcements to this node's sockets ---------------------------------------

    def _heard(self, data: bytes) -> None:
        message = codec.loads(data)
        if message["n"] != self._cluster.node_id:
            self.post(lambda: self.push(message["user"], message["presence"], message["wide"], message["skip"]))

    def push(self, user_id: str, payload: dict, wide: bool, skip_conn: str | None) -> None:
        """Tell this node's sockets of the tenant, now or with the interval's batch (as
        ``TenantActor`` does); only the user's own learn where they are. ``wide``: everyone, as
        the announcing node counted the tenant's sockets; else only the user's own sockets."""
        self._unpushed.add(payload, skip_conn)
        self._push_wide = wide
        if self._push_timer is None:
            self._flush_pushes()

    def _flush_pushes(self) -> None:
        self._push_timer = None
        if not self._unpushed:
            return
        push_changes(self._unpushed.take(), self._connections, self._push_wide)
        if self._settings.presence_batch_secs:
            self._push_timer = self.call_later(self._settings.presence_batch_secs, self._flush_pushes)

    # --- lifetime --------------------------------------------------------------------------

    def _is_busy(self) -> bool:
        return bool(self._connections) or self._busy > 0

    def _retire(self) -> None:
        self._directory.forget_tenant(self.tenant_id, self.actor_ref)
        self._stop()
