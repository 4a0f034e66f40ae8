"""``conversations/{id}/participants/``: list and add; ``.../participants/{user_id}/``: remove or leave."""

from __future__ import annotations

from actors import protocol
from actors.conversation import ConversationActor
from web.rest.base import ApiHandler, authorize_conversation

DEFAULT_PAGE = 100
MAX_PAGE = 500


class ParticipantsHandler(ApiHandler):
    async def get(self, conversation_id: str) -> None:
        """In the order they joined, paged by ``limit`` and ``offset``."""
        limit = self.int_argument("limit", DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE)
        offset = self.int_argument("offset", 0)
        await authorize_conversation(self.ctx, self.principal, conversation_id)
        docs = await self.ctx.storage.participants.list(self.tenant_id, conversation_id, limit=limit + 1, skip=offset)
        self.respond_page(
            [protocol.participant_object(p) for p in docs[:limit]],
            self.page_url(limit=limit, offset=offset + limit) if len(docs) > limit else None,
            self.page_url(limit=limit, offset=max(0, offset - limit)) if offset else None,
        )

    async def post(self, conversation_id: str) -> None:
        body = self.load_body("add_participant")
        participant, added = await self.ctx.directory.call(
            self.tenant_id, conversation_id, ConversationActor.add_participant, self.principal, body["user_id"], body["role"]
        )
        self.respond(protocol.participant_object(participant), 201 if added else 200)


class ParticipantHandler(ApiHandler):
    async def delete(self, conversation_id: str, user_id: str) -> None:
        await self.ctx.directory.call(self.tenant_id, conversation_id, ConversationActor.remove_participant, self.principal, user_id)
        self.no_content()
