"""``messages/{message_id}/reactions/``: list and add; ``.../reactions/{emoji}/``: remove one's own.

The emoji in the path is URL-encoded (``%F0%9F%91%8D`` for a thumbs up); Tornado decodes it.
A message the caller cannot see answers 404 "Message not found", whether it is in another
tenant, in a conversation the caller is not in, or nowhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actors import protocol
from actors.conversation import ConversationActor
from actors.errors import NotFound
from web.rest.base import ApiHandler, authorize_conversation


class _MessageScoped(ApiHandler):
    async def conversation_of(self, message_id: str) -> str:
        """The message's conversation, if the caller may see it; ``NotFound`` otherwise."""
        doc = await self.ctx.storage.messages.get(self.tenant_id, message_id)
        if doc is None:
            raise NotFound("Message not found")
        try:
            await authorize_conversation(self.ctx, self.principal, doc["conversation_id"])
        except NotFound:
            raise NotFound("Message not found") from None
        return doc["conversation_id"]

    async def call(self, message_id: str, method: Callable[..., Any], *args: Any) -> Any:
        conversation_id = await self.conversation_of(message_id)
        try:
            return await self.ctx.directory.call(self.tenant_id, conversation_id, method, self.principal, message_id, *args)
        except NotFound as error:
            if error.message == "Conversation not found":  # the caller just left it
                raise NotFound("Message not found") from None
            raise


class ReactionsHandler(_MessageScoped):
    async def get(self, message_id: str) -> None:
        """Every reaction to the message, oldest first (one per user and emoji, so no paging)."""
        await self.conversation_of(message_id)
        reactions = await self.ctx.storage.reactions.of_messages(self.tenant_id, [message_id])
        self.respond_page([protocol.reaction_object(r) for r in reactions])

    async def post(self, message_id: str) -> None:
        """201 with a new reaction; 200 with the existing one when the caller already reacted so."""
        body = self.load_body("add_reaction")
        reaction, added = await self.call(message_id, ConversationActor.react, body["emoji"])
        self.respond(reaction, 201 if added else 200)


class ReactionHandler(_MessageScoped):
    async def delete(self, message_id: str, emoji: str) -> None:
        """Remove the caller's own reaction; 404 when there is none."""
        emoji = self.ctx.protocol.load_body("add_reaction", {"emoji": emoji})["emoji"]
        await self.call(message_id, ConversationActor.unreact, emoji)
        self.no_content()
