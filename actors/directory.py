"""Finds or spawns the actor for a key; the only place that maps keys to actor refs.

pykka's registry lookups are linear scans under a lock, so we keep our own dicts.
Everything here runs on the loop thread. A conversation actor is built from storage
(concurrent requests for one key share the one load), retired by itself when idle,
and rebuilt from storage after a failure with its live sockets handed over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from pykka import ActorDeadError

from actors.conversation import ConversationActor, load_state
from actors.errors import NotFound, StorageUnavailable
from actors.runtime import loop
from actors.tenant import TenantActor
from config import Settings
from storage import Storage
from storage.errors import StorageError

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class Directory:
    def __init__(self, storage: Storage, settings: Settings) -> None:
        self._storage = storage
        self._settings = settings
        self._conversations: dict[tuple[str, str], Any] = {}
        self._loading: dict[tuple[str, str], asyncio.Future] = {}
        self._tenants: dict[str, Any] = {}

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
            proxy = TenantActor.start(self, self._storage, self._settings, tenant_id).proxy()
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
