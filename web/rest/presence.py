"""``presence/``: the tenant's users; ``presence/me/``: the caller's own, read and set.

Live presence (the tenant actor: users with an open socket or in their grace period)
wins over stored presence (the last status set or seen, kept for REST readers). A user
named in ``?user_ids=`` who has never been seen is listed as offline.
"""

from __future__ import annotations

from actors import protocol
from actors.errors import InvalidMessage
from actors.principal import ID_MAX_CHARS, SAFE_ID_CHARS, is_safe_id
from actors.tenant import TenantActor
from storage.presence import PRESENCE_STATUSES
from web.rest.base import ApiHandler

DEFAULT_PAGE = 100
MAX_PAGE = 500
MAX_USER_IDS = 100


def _stored_object(doc: dict) -> dict:
    status = doc.get("status")
    return protocol.presence_object(
        doc["user_id"],
        status if status in PRESENCE_STATUSES else "offline",
        doc.get("current_conversation_id"),
        doc.get("last_seen"),
    )


class _PresenceReader(ApiHandler):
    async def presence_of(self, user_ids: list[str]) -> list[dict]:
        """Presence for exactly ``user_ids``, in that order.

        The tenant actor is asked first: it answers for changes it has not written yet, so a
        change it no longer answers for is already in the database when that is read."""
        live = await self.ctx.directory.call_tenant(self.tenant_id, TenantActor.live_presence, user_ids)
        stored = {doc["user_id"]: doc for doc in await self.ctx.storage.presence.list(self.tenant_id, user_ids)}
        presences = [
            live.get(user_id)
            or (_stored_object(stored[user_id]) if user_id in stored else protocol.presence_object(user_id, "offline", None, None))
            for user_id in user_ids
        ]
        await self._hide_conversations_not_shared(presences)
        return presences

    async def _hide_conversations_not_shared(self, presences: list[dict]) -> None:
        """Where someone is reveals a conversation: only its participants may see it."""
        me = self.principal.user_id
        elsewhere = {p["current_conversation_id"] for p in presences if p["current_conversation_id"] and p["user_id"] != me}
        if not elsewhere:
            return
        shared = await self.ctx.storage.participants.of_user(self.tenant_id, me, sorted(elsewhere))
        for presence in presences:
            if presence["user_id"] != me and presence["current_conversation_id"] not in shared:
                presence["current_conversation_id"] = None


class PresenceHandler(_PresenceReader):
    async def get(self) -> None:
        """``?user_ids=a,b`` for those users (at most 100); otherwise every known user, by user id, paged."""
        raw = self.get_query_argument("user_ids", None)
        if raw is not None:
            user_ids = list(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
            if not user_ids or len(user_ids) > MAX_USER_IDS or not all(map(is_safe_id, user_ids)):
                raise InvalidMessage(
                    "Invalid query parameter 'user_ids'",
                    {"user_ids": [f"Give 1 to {MAX_USER_IDS} comma-separated user ids, each 1 to {ID_MAX_CHARS} of {SAFE_ID_CHARS}."]},
                )
            self.respond_page(await self.presence_of(user_ids))
            return
        limit = self.int_argument("limit", DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE)
        offset = self.int_argument("offset", 0)
        await self.ctx.directory.call_tenant(self.tenant_id, TenantActor.written)
        docs = await self.ctx.storage.presence.list(self.tenant_id, limit=limit + 1, skip=offset)
        user_ids = [doc["user_id"] for doc in docs[:limit]]
        self.respond_page(
            await self.presence_of(user_ids) if user_ids else [],
            self.page_url(limit=limit, offset=offset + limit) if len(docs) > limit else None,
            self.page_url(limit=limit, offset=max(0, offset - limit)) if offset else None,
        )


class MyPresenceHandler(_PresenceReader):
    async def get(self) -> None:
        self.respond((await self.presence_of([self.principal.user_id]))[0])

    async def put(self) -> None:
        """Set the caller's status; ``presence_update`` goes to the tenant's connected users."""
        body = self.load_body("update_presence")
        # The actor answers reads of a change until it has written it: a GET right after this reads it.
        self.respond(await self.ctx.directory.call_tenant(self.tenant_id, TenantActor.set_status, self.principal, body["status"]))
