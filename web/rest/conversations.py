"""``conversations/`` and ``conversations/{id}/``: list, create, get, update, delete."""

from __future__ import annotations

from actors import protocol
from actors.conversation import ConversationActor
from actors.errors import InvalidMessage
from web.rest.base import ApiHandler, authorize_conversation

DEFAULT_PAGE = 20
MAX_PAGE = 100


async def conversation_summary(ctx, principal, conversation: dict, participant: dict | None) -> dict:
    """The caller's view: unread count (others' messages after their read pointer) and last message."""
    tenant_id, conversation_id = principal.tenant_id, conversation["_id"]
    last_read = participant.get("last_read_seq", 0) if participant else 0
    unread = await ctx.storage.messages.count_after(tenant_id, conversation_id, last_read, not_from=principal.user_id)
    last = await ctx.storage.messages.page(tenant_id, conversation_id, limit=1, newest_first=True)
    return protocol.conversation_object(
        conversation,
        unread_count=unread,
        last_message=protocol.message_object(last[0]) if last else None,
        my_role=participant["role"] if participant else None,
    )


class ConversationsHandler(ApiHandler):
    async def get(self) -> None:
        limit = self.int_argument("limit", DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE)
        offset = self.int_argument("offset", 0)
        storage = self.ctx.storage
        ids = await storage.participants.conversation_ids_for(self.tenant_id, self.principal.user_id)
        docs = await storage.conversations.list_by_ids(self.tenant_id, ids, limit=limit + 1, skip=offset)
        more = len(docs) > limit
        docs = docs[:limit]
        mine = await storage.participants.of_user(self.tenant_id, self.principal.user_id, [d["_id"] for d in docs])
        results = [await conversation_summary(self.ctx, self.principal, doc, mine.get(doc["_id"])) for doc in docs]
        self.respond(
            {
                "results": results,
                "next": self.page_url(limit=limit, offset=offset + limit) if more else None,
                "previous": self.page_url(limit=limit, offset=max(0, offset - limit)) if offset else None,
            }
        )

    async def post(self) -> None:
        body = self.load_body("create_conversation")
        me = self.principal.user_id
        others = list(dict.fromkeys(uid for uid in body["participant_ids"] if uid != me))
        storage = self.ctx.storage
        if body["type"] == "direct":
            if len(others) != 1:
                raise InvalidMessage(
                    "A direct conversation needs exactly one other participant",
                    {"participant_ids": ["Give exactly one user id other than yours."]},
                )
            conversation, created = await storage.conversations.create(
                self.tenant_id, type="direct", created_by=me, title=body["title"], description=body["description"], pair=(me, others[0])
            )
            roles = {me: "owner", others[0]: "member"} if created else {}
        else:
            conversation, created = await storage.conversations.create(
                self.tenant_id, type=body["type"], created_by=me, title=body["title"], description=body["description"]
            )
            roles = {me: "owner", **{uid: "member" for uid in others}}
        if roles:
            await storage.participants.add_new_conversation(self.tenant_id, conversation["_id"], roles)
        participants = await storage.participants.list(self.tenant_id, conversation["_id"])
        self.respond(protocol.conversation_object(conversation, participants), 201 if created else 200)


class ConversationHandler(ApiHandler):
    async def get(self, conversation_id: str) -> None:
        conversation, _ = await authorize_conversation(self.ctx, self.principal, conversation_id)
        participant = await self.ctx.storage.participants.get(self.tenant_id, conversation_id, self.principal.user_id)
        summary = await conversation_summary(self.ctx, self.principal, conversation, participant)
        summary["participants"] = [
            protocol.participant_object(p) for p in await self.ctx.storage.participants.list(self.tenant_id, conversation_id)
        ]
        self.respond(summary)

    async def put(self, conversation_id: str) -> None:
        changes = self.load_body("update_conversation")
        if not changes:
            raise InvalidMessage("Nothing to change", {"title": ["Give a title or a description."]})
        updated = await self.ctx.directory.call(self.tenant_id, conversation_id, ConversationActor.update_details, self.principal, changes)
        self.respond(protocol.conversation_object(updated))

    patch = put

    async def delete(self, conversation_id: str) -> None:
        await self.ctx.directory.call(self.tenant_id, conversation_id, ConversationActor.delete_conversation, self.principal)
        self.no_content()
