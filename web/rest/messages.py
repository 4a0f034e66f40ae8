"""``conversations/{id}/messages/``: history and send; ``.../messages/{id}/``: get, edit, delete;
``conversations/{id}/read/``: a read receipt.

Every write goes through the conversation actor, so it is numbered, stored and broadcast
to the joined WebSocket members exactly as the same write over a socket would be.

History paging (also in openapi.json and docs/rest-api.md): a page is at most ``limit``
messages, always in ascending ``seq`` within the page. Without cursors the page is the
newest one; ``before=S`` gives the newest messages with ``seq < S``; ``after=S`` gives the
oldest messages with ``seq > S`` (with ``before`` too, only those below it). ``next`` points
to the older neighbour page (``before=<first seq>``) and ``previous`` to the newer one
(``after=<last seq>``), each ``null`` when there is nothing on that side.
"""

from __future__ import annotations

from actors.conversation import ConversationActor
from actors.errors import NotFound
from actors.history import message_objects
from web.rest.base import ApiHandler, authorize_conversation

DEFAULT_PAGE = 50
MAX_PAGE = 100


class MessagesHandler(ApiHandler):
    async def get(self, conversation_id: str) -> None:
        limit = self.int_argument("limit", DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE)
        before = self.int_argument("before", None, minimum=1)
        after = self.int_argument("after", None, minimum=0)
        await authorize_conversation(self.ctx, self.principal, conversation_id)
        messages = self.ctx.storage.messages
        tenant_id = self.tenant_id
        forward = after is not None
        # One row past the page tells whether another page follows in the direction of travel,
        # so only the other side needs a (one-row) probe.
        docs = await messages.page(
            tenant_id, conversation_id, after_seq=after, before_seq=before, limit=limit + 1, newest_first=not forward
        )
        more_beyond = len(docs) > limit
        del docs[limit:]
        if not forward:
            docs.reverse()
        # The seqs this page reaches to; older and newer pages start past them.
        if docs:
            older_than, newer_than = docs[0]["seq"], docs[-1]["seq"]
        else:
            older_than = after + 1 if forward else None
            newer_than = before - 1 if before is not None else None

        async def exists(**seq_bound) -> bool:
            return bool(await messages.page(tenant_id, conversation_id, limit=1, newest_first=False, **seq_bound))

        if forward:
            older = await exists(before_seq=older_than)
            # Past ``before`` lie newer messages that this page's range left out.
            newer = more_beyond or (before is not None and await exists(after_seq=newer_than))
        else:
            older = more_beyond
            newer = before is not None and await exists(after_seq=newer_than)
        self.respond_page(
            await message_objects(self.ctx.storage, tenant_id, docs),
            self.page_url(limit=limit, before=older_than) if older else None,
            self.page_url(limit=limit, after=newer_than) if newer else None,
        )

    async def post(self, conversation_id: str) -> None:
        """201 with the stored message; 200 with the original when ``client_msg_id`` was seen before."""
        body = self.load_body("create_message")
        await authorize_conversation(self.ctx, self.principal, conversation_id)
        message, created = await self.ctx.directory.call(self.tenant_id, conversation_id, ConversationActor.send, self.principal, body)
        if not created:
            message = (await message_objects(self.ctx.storage, self.tenant_id, [await self._stored(message)]))[0]
        self.respond(message, 201 if created else 200)

    async def _stored(self, message: dict) -> dict:
        doc = await self.ctx.storage.messages.get(self.tenant_id, message["id"])
        if doc is None:
            raise NotFound("Message not found")
        return doc


class MessageHandler(ApiHandler):
    async def get(self, conversation_id: str, message_id: str) -> None:
        await authorize_conversation(self.ctx, self.principal, conversation_id)
        doc = await self.ctx.storage.messages.get(self.tenant_id, message_id)
        if doc is None or doc["conversation_id"] != conversation_id:
            raise NotFound("Message not found")
        self.respond((await message_objects(self.ctx.storage, self.tenant_id, [doc]))[0])

    async def put(self, conversation_id: str, message_id: str) -> None:
        """The sender edits the content; ``message_updated`` goes to the members."""
        body = self.load_body("edit_message")
        message = await self.ctx.directory.call(
            self.tenant_id, conversation_id, ConversationActor.edit, self.principal, message_id, body["content"]
        )
        self.respond(message)

    async def delete(self, conversation_id: str, message_id: str) -> None:
        """The sender, the owner or an admin deletes; the answer is the tombstone that stays in history."""
        message = await self.ctx.directory.call(self.tenant_id, conversation_id, ConversationActor.delete, self.principal, message_id)
        self.respond(message)


class ReadReceiptHandler(ApiHandler):
    async def post(self, conversation_id: str) -> None:
        """Move the caller's read pointer to ``message_id`` (default: the latest message)."""
        body = self.load_body("mark_read")
        receipt = await self.ctx.directory.call(
            self.tenant_id, conversation_id, ConversationActor.mark_read, self.principal, body["message_id"]
        )
        self.respond(receipt)
