"""``conversations/{id}/events/?since=S``: the conversation's stream after ``S``, for clients that
catch up over HTTP: the same events, in the same order and shapes, as a socket's
``join_conversation`` with ``since_seq`` replays (``actors.stream_events``)."""

from __future__ import annotations

from actors.stream_events import render
from web.rest.base import ApiHandler, authorize_conversation

DEFAULT_PAGE = 100
MAX_PAGE = 500


class EventsHandler(ApiHandler):
    async def get(self, conversation_id: str) -> None:
        limit = self.int_argument("limit", DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE)
        since = self.int_argument("since", 0, minimum=0)
        conversation, _ = await authorize_conversation(self.ctx, self.principal, conversation_id)
        rows = await self.ctx.storage.messages.page(
            self.tenant_id, conversation_id, after_seq=since, limit=limit + 1, newest_first=False, events=True
        )
        more = len(rows) > limit
        del rows[limit:]
        events = [{"type": kind, **fields} for kind, fields in await render(self.ctx.storage, self.tenant_id, rows, conversation)]
        self.respond_page(events, self.page_url(limit=limit, since=rows[-1]["seq"]) if more else None)
