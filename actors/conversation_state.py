"""What a conversation actor is (re)built from."""

from __future__ import annotations

import dataclasses

from storage import Storage


@dataclasses.dataclass
class ConversationState:
    """The stored conversation, its members (user id -> role) and its stream's last seq."""

    conversation: dict
    members: dict[str, str]
    last_seq: int


async def load_state(storage: Storage, tenant_id: str, conversation_id: str) -> ConversationState | None:
    conversation = await storage.conversations.get(tenant_id, conversation_id)
    if conversation is None:
        return None
    members = await storage.participants.roles(tenant_id, conversation_id)
    last_seq = await storage.messages.last_seq(tenant_id, conversation_id)
    return ConversationState(conversation, members, last_seq)
