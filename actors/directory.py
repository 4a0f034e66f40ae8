"""Finds or spawns the actor for a key; the only place that maps keys to actor refs.

pykka's registry lookups are linear scans under a lock, so we keep our own dicts.
Everything here runs on the loop thread. A conversation actor is built from storage
(concurrent requests for one key share the one load), retired by itself when idle,
and rebuilt from storage after a failure with its live sockets handed over.

With a cluster (``REDIS_URL``), a call that changes a conversation goes to the node that
owns it (``actors.forwarding``) unless that is this node, or no other node can be reached.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from pykka import ActorDeadError

from actors.conversation import ConversationActor
from actors.conversation_state import load_state
from actors.errors import NotFound, StorageUnavailable
from actors.forwarding import FORWARDED, ask_live, forward, serve_forwarded, tell_live
from actors.runtime import loop
from actors.tenant import TenantActor
from actors.tenant_cluster import ClusterTenantActor, PresenceAnnouncer
from cluster import Cluster, conversation_key
from cluster.link import LinkDown
from cluster.nodes import rendezvous
from config import Settings
from storage import Storage
from storage.errors import StorageError

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class Directory:
    def __init__(self, storage: Storage, settings: Settings, cluster: Cluster | None = None) -> None:
        self._storage = storage
        self._settings = settings
        self._conversations: dict[tuple[str, str], Any] = {}
        self._loading: dict[tuple[str, str], asyncio.Future] = {}
        self._tenants: dict[str, Any] = {}
        self.cluster = cluster
        if cluster is not None:
            cluster.calls.serve(lambda body: serve_forwarded(self, body))
            cluster.nodes.on_change(self._nodes_changed)
            cluster.link.on_up(self._redis_back)
            self.presence_announcer = PresenceAnnouncer(self, storage, settings, cluster)
            sweep_every = min(1.0, max(0.05, settings.presence_grace_secs / 4))
            cluster.presence.start_sweeper(self.presence_announcer.announce, sweep_every)

    # --- conversations -----------------------------------------------------------------

    async def conversation(self, tenant_id: str, conversation_id: str):
        """The proxy of a live conversation actor, spawned from storage if needed; ``NotFound`` otherwise."""
        key = (tenant_id, conversation_id)
        proxy = self._conversations.get(key)
        if proxy is not None:
            return proxy
        loading = self._loading.get(key)
        if loading is None:
            loading = loop().create_future()
            self._loading[key] = loading
            try:
                state = await load_state(self._storage, tenant_id, conversation_id)
            except StorageError as error:
                logger.warning("cannot load conversation %s: %s", conversation_id, error)
                loading.set_exception(StorageUnavailable())
            else:
                if state is None:
                    loading.set_exception(NotFound("Conversation not found"))
                elif key in self._conversations:  # spawned meanwhile by a restart
                    loading.set_result(self._conversations[key])
                else:
                    proxy = ConversationActor.start(self, self._storage, self._settings, state).proxy()
                    self._conversations[key] = proxy
                    loading.set_result(proxy)
            finally:
                del self._loading[key]
            loading.exception()  # mark retrieved: waiters may be none
        return await loading

    async def call(
        self,
        tenant_id: str,
        conversation_id: str,
        method: Callable[Concatenate[ConversationActor, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Any:
        """Call ``method`` (``ConversationActor.send``, ...) on the conversation's actor and await its
        answer; retry once if the actor just retired. Methods are named by reference, never by string,
        so a reader (or a type checker) can follow a call to its definition."""
        if self.cluster is not None and method.__name__ in FORWARDED:
            assert not kwargs, "forwarded calls take positional arguments"
            owner = self.cluster.owner_elsewhere(tenant_id, conversation_id)
            if owner is not None:
                return await forward(self, owner, tenant_id, conversation_id, method, args)
        return await self.call_here(tenant_id, conversation_id, method, *args, **kwargs)

    async def call_here(
        self,
        tenant_id: str,
        conversation_id: str,
        method: Callable[Concatenate[ConversationActor, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Any:
        """``call`` on this node's actor, whoever owns the conversation."""
        for attempt in (1, 2):
            proxy = await self.conversation(tenant_id, conversation_id)
            try:
                return await getattr(proxy, method.__name__)(*args, **kwargs)
            except ActorDeadError:
                self._conversations.pop((tenant_id, conversation_id), None)
                if attempt == 2:
                    raise

    def tell(
        self, tenant_id: str, conversation_id: str, method: Callable[Concatenate[ConversationActor, P], R], *args: P.args
    ) -> None:
        """Fire-and-forget to a live conversation actor; nothing happens if it is not live."""
        proxy = self._conversations.get((tenant_id, conversation_id))
        if proxy is not None:
            try:
                getattr(proxy, method.__name__).defer(*args)
            except ActorDeadError:
                pass

    async def call_if_live(
        self, tenant_id: str, conversation_id: str, method: Callable[Concatenate[ConversationActor, P], R], *args: P.args
    ) -> Any:
        """``method``'s answer from the live conversation actor; None when there is none."""
        proxy = self._conversations.get((tenant_id, conversation_id))
        if proxy is None:
            return None
        try:
            return await getattr(proxy, method.__name__)(*args)
        except ActorDeadError:
            return None

    def socket_closed(self, tenant_id: str, conversation_id: str, conn) -> None:
        """A socket joined to (or typing in) the conversation closed: the actor here forgets it.
        With no actor live here, no socket of the user is joined here: the owner is told, as the
        actor would have told it (``actors.typing_nodes``)."""
        proxy = self._conversations.get((tenant_id, conversation_id))
        if proxy is not None:
            try:
                proxy.drop.defer(conn)
                return
            except ActorDeadError:
                pass
        owner = self.cluster.owner_elsewhere(tenant_id, conversation_id) if self.cluster is not None else None
        if owner is not None:
            self.tell_unjoined(owner, tenant_id, conversation_id, conn.principal.user_id)

    def tell_unjoined(self, owner: str, tenant_id: str, conversation_id: str, user_id: str) -> None:
        """Tell the conversation's owner that this node has no socket of the user joined to it."""
        tell_live(self.cluster, owner, tenant_id, conversation_id, ConversationActor.unjoined_on, (user_id, self.cluster.node_id))

    async def joined_on_other_nodes(self, tenant_id: str, conversation_id: str, user_id: str, besides: set[str]) -> bool:
        """Whether a live node, other than ``besides``, has a socket of the user joined to the
        conversation; a node that does not answer in time counts as no."""
        try:
            nodes = await self.cluster.presence.nodes_of(tenant_id, user_id)
        except LinkDown:
            return False
        asked = [node for node in nodes - besides if node in self.cluster.nodes.live]
        questions = (ask_live(self.cluster, node, tenant_id, conversation_id, ConversationActor.has_joined, (user_id,)) for node in asked)
        return any(await asyncio.gather(*questions))

    def deliver_answer(self, tenant_id: str, conversation_id: str, conn, seq: int | None, data: bytes) -> None:
        """A socket's own copy of an event another node stored for it: in order with the events
        its conversation's actor here hands on, or at once when there is none."""
        if conn is None:
            return
        proxy = self._conversations.get((tenant_id, conversation_id))
        if proxy is None:
            conn.send(data)
            return
        try:
            proxy.deliver_answer.defer(conn, seq, data)
        except ActorDeadError:
            conn.send(data)

    def _nodes_changed(self, gone: set[str], joined: set[str]) -> None:
        """Actors of conversations this node has just come to own may hold what they cached
        while another node wrote: they reload it."""
        node_id = self.cluster.node_id
        now = list(self.cluster.nodes.live)
        before = [node for node in now if node not in joined] + list(gone)
        if node_id not in now:
            return
        for (tenant_id, conversation_id), proxy in list(self._conversations.items()):
            key = conversation_key(tenant_id, conversation_id)
            if rendezvous(now, key) == node_id and (not before or rendezvous(before, key) != node_id):
                try:
                    proxy.ownership_gained.defer()
                except ActorDeadError:
                    pass

    def _redis_back(self) -> None:
        for proxy in list(self._conversations.values()):
            try:
                proxy.redis_back.defer()
            except ActorDeadError:
                pass

    def forget_conversation(self, key: tuple[str, str], ref) -> None:
        proxy = self._conversations.get(key)
        if proxy is not None and proxy.actor_ref is ref:
            del self._conversations[key]

    def restart_conversation(self, key: tuple[str, str], ref, subscribers: list) -> None:
        """Rebuild a failed actor from storage and rejoin its sockets (no replay: nothing was lost)."""
        self.forget_conversation(key, ref)
        logger.error("conversation actor %s failed; rebuilding it from storage", key[1])

        async def rebuild() -> None:
            try:
                proxy = await self.conversation(*key)
                for conn in subscribers:
                    await proxy.join(conn, None)
            except Exception:
                logger.exception("could not rebuild conversation %s", key[1])

        asyncio.ensure_future(rebuild())

    def live_conversations(self) -> int:
        return len(self._conversations)

    # --- tenants -------------------------------------------------------------------------

    def _tenant(self, tenant_id: str):
        proxy = self._tenants.get(tenant_id)
        if proxy is None or not proxy.actor_ref.is_alive():
            kind = TenantActor if self.cluster is None else ClusterTenantActor
            proxy = kind.start(self, self._storage, self._settings, tenant_id).proxy()
            self._tenants[tenant_id] = proxy
        return proxy

    async def call_tenant(self, tenant_id: str, method: Callable[Concatenate[TenantActor, P], R], *args: P.args) -> Any:
        """Call ``method`` (``TenantActor.connect``, ...) on the tenant's actor, spawned if needed."""
        for attempt in (1, 2):
            proxy = self._tenant(tenant_id)
            try:
                return await getattr(proxy, method.__name__)(*args)
            except ActorDeadError:
                self._tenants.pop(tenant_id, None)
                if attempt == 2:
                    raise

    def tell_tenant(self, tenant_id: str, method: Callable[Concatenate[TenantActor, P], R], *args: P.args) -> None:
        """Fire-and-forget to the tenant's actor, spawned if needed."""
        getattr(self._tenant(tenant_id), method.__name__).defer(*args)

    def presence_heard(self, tenant_id: str, user_id: str, payload: dict, wide: bool, skip_conn: str | None) -> None:
        """A presence change for the tenant's sockets on this node, if it has any."""
        proxy = self._tenants.get(tenant_id)
        if proxy is not None:
            try:
                proxy.push.defer(user_id, payload, wide, skip_conn)
            except ActorDeadError:
                pass

    @staticmethod
    def save_in_background(awaitable, what: str) -> None:
        async def save() -> None:
            try:
                await awaitable
            except StorageError as error:
                logger.warning("%s not saved: %s", what, error)

        asyncio.ensure_future(save())

    def forget_tenant(self, tenant_id: str, ref) -> None:
        proxy = self._tenants.get(tenant_id)
        if proxy is not None and proxy.actor_ref is ref:
            del self._tenants[tenant_id]

    def live_tenants(self) -> int:
        return len(self._tenants)

    async def settle(self) -> None:
        """Wait until no conversation has messages queued or being stored."""
        proxies = list(self._conversations.values())
        for proxy in proxies:
            try:
                await proxy.settled()
            except ActorDeadError:
                pass

    def stop_all(self) -> None:
        for proxy in [*self._conversations.values(), *self._tenants.values()]:
            proxy.actor_ref.stop(block=False)
        self._conversations.clear()
        self._tenants.clear()
