"""The conversation actor's membership and details: participants added, removed or leaving,
title and description, deletion. A mixin of ``ConversationActor``, in a module of its own so
that each module holds one concern; it runs on the actor like every other method.
"""

from __future__ import annotations

from actors import protocol
from actors.errors import Forbidden, NotFound
from actors.policy import Action, authorize_removal
from actors.principal import Principal
from actors.runtime import LoopFuture


class ManagesMembership:
    """Needs the actor's ``_members``, ``_conversation``, ``_subscribers``, ``_storage``,
    ``_authorize``, ``_io``, ``_record``, ``_post_system``, ``_broadcast``, ``leave`` and ``_retire``."""

    def add_participant(self, principal: Principal, user_id: str, role: str) -> LoopFuture:
        self._authorize(Action.MANAGE_PARTICIPANTS, principal)

        def added(result, error):
            participant, is_new = result
            if not is_new:
                return participant, is_new
            self._members[user_id] = participant["role"]
            text = f"{principal.user_id} added {user_id}"
            return self._post_system(principal, text, (participant, is_new), event="participant_added", user_id=user_id)

        return self._io(self._storage.participants.add(self.tenant_id, self.conversation_id, user_id, role), added)

    def remove_participant(self, principal: Principal, user_id: str) -> LoopFuture:
        leaving = user_id == principal.user_id
        if leaving:
            if user_id not in self._members:
                raise NotFound("Conversation not found")
        else:
            actor_role = self._authorize(Action.MANAGE_PARTICIPANTS, principal)
            target_role = self._members.get(user_id)
            if target_role is None:
                raise NotFound("Participant not found")
            authorize_removal(principal, actor_role, target_role)
        if self._conversation["type"] == "direct":
            raise Forbidden("A direct conversation has exactly two participants")

        def removed(was_there, error):
            if not was_there:
                raise NotFound("Participant not found")
            self._members.pop(user_id, None)
            kind = "participant_left" if leaving else "participant_removed"
            text = f"{user_id} left" if leaving else f"{principal.user_id} removed {user_id}"
            for conn in [c for c in self._subscribers.values() if c.principal.user_id == user_id]:
                self.leave(conn)
            return self._post_system(principal, text, True, event=kind, user_id=user_id)

        return self._io(self._storage.participants.remove(self.tenant_id, self.conversation_id, user_id), removed)

    def update_details(self, principal: Principal, changes: dict) -> LoopFuture:
        """Answers the updated conversation once ``conversation_updated`` is stored and shown (and
        a title change's system message after it)."""
        self._authorize(Action.UPDATE_CONVERSATION, principal)
        old_title = self._conversation.get("title")
        unchanged = {"conversation": protocol.conversation_object(self._conversation)}
        updated = self._record(principal, "conversation_updated", None, None, unchanged, changes=changes)

        def titled(conversation: dict) -> dict | LoopFuture:
            title = conversation.get("title")
            if title == old_title:
                return conversation
            return self._post_system(principal, f"{principal.user_id} changed the title to {title!r}", conversation, event="title_changed", title=title)

        return updated.then(titled)

    def delete_conversation(self, principal: Principal) -> LoopFuture:
        self._authorize(Action.DELETE_CONVERSATION, principal)
        tenant_id, conversation_id = self.tenant_id, self.conversation_id

        async def work():
            await self._storage.conversations.delete(tenant_id, conversation_id)
            await self._storage.participants.remove_all(tenant_id, conversation_id)
            await self._storage.messages.delete_conversation(tenant_id, conversation_id)
            await self._storage.reactions.delete_conversation(tenant_id, conversation_id)
            await self._storage.files.delete_conversation(tenant_id, conversation_id)

        def deleted(result, error):
            self._broadcast(protocol.event("conversation_deleted", conversation_id=conversation_id), control={"deleted": True})
            self._subscribers.clear()
            self._retire()
            return True

        return self._io(work(), deleted)
