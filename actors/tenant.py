"""One actor per tenant: the tenant's live connections and its users' presence.

Presence merges a user's connections: online while any is open, offline only after
``presence_grace_secs`` with none, so a reconnect does not flap it. Every change is
persisted (for REST readers) and announced to the tenant's connected users, up to
``presence_fanout_max_sockets`` of them: past that, even batched pushes would send every
socket every change (O(sockets squared) bytes when everyone reconnects), so a large tenant's
clients read presence over REST instead and only the user's own sockets are told.

Announcements go out in batches (``actors.presence_push``): the first change after a quiet
``presence_batch_secs`` at once, the changes that follow it together at the end of each
interval, until an interval passes with none. Saves follow the same rhythm
(``actors.presence_saves``); until a change is written, readers get it from here.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from typing import Any

from actors import protocol
from actors.errors import TooManyConnections
from actors.idle import RetiresWhenIdle
from actors.presence_push import PendingChanges, push_changes
from actors.presence_saves import PresenceSaves
from actors.principal import Principal
from actors.runtime import LoopActor, LoopFuture, weakly
from actors.subscriber import Subscriber
from config import Settings
from storage import Storage
from storage.clock import utcnow

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Presence:
    status: str = "offline"
    current_conversation_id: str | None = None
    last_seen: Any = None

    def as_fields(self) -> dict:
        """Not ``dataclasses.asdict``: its recursive deep copy was 2% of a reconnect storm."""
        return {"status": self.status, "current_conversation_id": self.current_conversation_id, "last_seen": self.last_seen}


class TenantActor(RetiresWhenIdle, LoopActor):
    def __init__(self, directory, storage: Storage, settings: Settings, tenant_id: str) -> None:
        super().__init__()
        self._directory = directory
        self._storage = storage
        self._settings = settings
        self.tenant_id = tenant_id
        self._connections: dict[str, dict[str, Subscriber]] = {}
        self._socket_count = 0
        self._presence: dict[str, Presence] = {}
        self._grace: dict[str, tuple[int, Any]] = {}  # user_id -> (token, timer)
        self._tokens = itertools.count()
        self._unpushed = PendingChanges()
        self._push_timer = None  # set while an interval runs: changes wait for its end
        self._saves = PresenceSaves(storage, tenant_id, weakly(self.run_io), weakly(self._after_write))  # no cycle: see weakly

    def on_start(self) -> None:
        self._maybe_idle()

    def on_stop(self) -> None:
        self._cancel_idle()
        for _, timer in self._grace.values():
            timer.cancel()
        if self._push_timer is not None:
            self._push_timer.cancel()
        self._saves.save()  # best effort: a shutdown may close the database first

    # --- connections ---------------------------------------------------------------------

    def connect(self, conn: Subscriber) -> dict:
        """Register a socket; the user is online from now (unless they chose another status)."""
        user_id = conn.principal.user_id
        conns = self._connections.setdefault(user_id, {})
        if len(conns) >= self._settings.max_connections_per_user:
            if not conns:
                del self._connections[user_id]
            raise TooManyConnections()
        conns[conn.conn_id] = conn
        self._socket_count += 1
        self._cancel_idle()
        grace = self._grace.pop(user_id, None)
        if grace is not None:
            grace[1].cancel()
        presence = self._presence.setdefault(user_id, Presence())
        presence.last_seen = utcnow()
        if presence.status == "offline":
            presence.status = "online"
            self._announce(user_id, replace=False)  # see actors.presence_saves
        return self._presence_object(user_id)

    def disconnect(self, conn: Subscriber) -> None:
        user_id = conn.principal.user_id
        conns = self._connections.get(user_id)
        if not conns or conns.pop(conn.conn_id, None) is None:
            return
        self._socket_count -= 1
        if conns:
            return
        del self._connections[user_id]
        self._presence[user_id].last_seen = utcnow()
        token = next(self._tokens)
        timer = self.call_later(self._settings.presence_grace_secs, lambda: self._grace_over(user_id, token))
        self._grace[user_id] = (token, timer)

    def _grace_over(self, user_id: str, token: int) -> None:
        grace = self._grace.get(user_id)
        if grace is None or grace[0] != token or user_id in self._connections:
            return
        del self._grace[user_id]
        presence = self._presence.pop(user_id, Presence())
        presence.status = "offline"
        presence.last_seen = utcnow()
        self._announce(user_id, presence)
        self._maybe_idle()

    # --- presence ------------------------------------------------------------------------

    def set_status(self, principal: Principal, status: str, origin: Subscriber | None = None, request_id: Any = None) -> dict:
        """A user's chosen status; with no open socket it is stored and announced all the same."""
        user_id = principal.user_id
        presence = self._presence.get(user_id)
        if presence is None or user_id not in self._connections:
            presence = Presence(status=status, last_seen=utcnow())
        presence.status = status
        presence.last_seen = utcnow()
        self._announce(user_id, presence, origin, request_id)
        return protocol.presence_object(user_id, **presence.as_fields())

    def set_current_conversation(self, user_id: str, conversation_id: str) -> None:
        """Kept in memory: readers of a live user's presence get it from here (``live_presence``),
        and the stored row gets it with the user's next status change or going offline."""
        presence = self._presence.get(user_id)
        if presence is not None:
            presence.current_conversation_id = conversation_id

    def live_presence(self, user_ids: list[str] | None = None) -> dict[str, dict]:
        """Presence of users with a live socket or in their grace period, and changes not saved yet."""
        wanted = [*self._presence, *self._saves.users()] if user_ids is None else user_ids
        found = {user_id: self._fields_of(user_id) for user_id in wanted}
        return {user_id: protocol.presence_object(user_id, **fields) for user_id, fields in found.items() if fields is not None}

    def written(self) -> LoopFuture:
        """Answered once every change made so far is stored, so that a listing of stored rows has
        them all (a user's first change makes their row)."""
        return self._saves.written()

    def _fields_of(self, user_id: str) -> dict | None:
        presence = self._presence.get(user_id)
        return presence.as_fields() if presence is not None else self._saves.fields_of(user_id)

    def _presence_object(self, user_id: str) -> dict:
        return protocol.presence_object(user_id, **self._presence[user_id].as_fields())

    def _announce(
        self, user_id: str, presence: Presence | None = None, origin: Subscriber | None = None, request_id: Any = None, *, replace: bool = True
    ) -> None:
        """Persist a change and push it to the tenant (now, or with the interval's batch); the
        asking socket gets its answer, with its ``request_id``, at once. ``replace=False``: the
        stored row is made if the user has none, else left as it is (``actors.presence_saves``)."""
        fields = (presence or self._presence[user_id]).as_fields()
        self._saves.record(user_id, fields, replace=replace)
        payload = protocol.presence_object(user_id, **fields)
        if origin is not None:
            origin.send(protocol.event("presence_update", request_id, **payload))
        self._unpushed.add(payload, origin.conn_id if origin is not None else None)
        if self._push_timer is None:
            self._flush_changes()

    def _flush_changes(self) -> None:
        """Push and save what the interval collected and start the next one; with nothing to
        push, the tenant is quiet and its next change goes out at once."""
        self._push_timer = None
        self._saves.save()
        if not self._unpushed:
            self._maybe_idle()
            return
        wide = self._socket_count <= self._settings.presence_fanout_max_sockets
        push_changes(self._unpushed.take(), self._connections, wide)
        if self._settings.presence_batch_secs:
            self._push_timer = self.call_later(self._settings.presence_batch_secs, self._flush_changes)

    def _after_write(self) -> None:
        if self._push_timer is None:  # quiet: no interval's end will save what came meanwhile
            self._saves.save()
        self._maybe_idle()

    # --- lifetime --------------------------------------------------------------------------

    def _is_busy(self) -> bool:
        return bool(self._connections or self._grace) or self._push_timer is not None or self._saves.saving

    def _retire(self) -> None:
        self._directory.forget_tenant(self.tenant_id, self.actor_ref)
        self._stop()
