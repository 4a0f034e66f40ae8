"""What a conversation actor is built from, loaded for many conversations at once.

After a deploy every client rejoins at once and hundreds of conversation actors start within
milliseconds. Loads asked for in one turn of the loop share their queries: one for the
conversations and one for all their participants (``$in`` over the conversation ids). The
embedded database answers every query by scanning its whole collection, so this turns one
scan of every participant row per conversation into one per turn; on MongoDB it is one round
trip instead of hundreds. The last ``seq`` stays one indexed query per conversation: a grouped
maximum would read every message of every conversation in the batch.
"""

from __future__ import annotations

import asyncio
import dataclasses

from actors.runtime import loop
from storage import Storage

BATCH_MAX = 50  # conversations per query: bounds one query's size with channels of many members


@dataclasses.dataclass
class ConversationState:
    """The stored conversation, its members (user id -> role) and its stream's last seq."""

    conversation: dict
    members: dict[str, str]
    last_seq: int


async def load_states(storage: Storage, tenant_id: str, conversation_ids: list[str]) -> dict[str, ConversationState]:
    """The states of those of ``conversation_ids`` that exist."""
    conversations = await storage.conversations.of_ids(tenant_id, conversation_ids)
    found = [conversation_id for conversation_id in conversation_ids if conversation_id in conversations]
    if not found:
        return {}
    members = await storage.participants.roles_of(tenant_id, found)
    last_seqs = await asyncio.gather(*(storage.messages.last_seq(tenant_id, conversation_id) for conversation_id in found))
    return {
        conversation_id: ConversationState(
            conversations[conversation_id],
            members[conversation_id],
            last_seq,
        )
        for conversation_id, last_seq in zip(found, last_seqs)
    }


class StateLoader:
    """Collects the loads asked for during one turn of the loop and answers them from shared queries.

    Runs on the loop thread. A load's future ends with the state, ``None`` when the conversation
    does not exist, or the error of the queries it shared."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._asked: dict[str, dict[str, asyncio.Future]] = {}  # tenant_id -> conversation_id -> future
        self._flush_scheduled = False

    def load(self, tenant_id: str, conversation_id: str) -> asyncio.Future:
        waiting = self._asked.setdefault(tenant_id, {})
        future = waiting.get(conversation_id)
        if future is None:
            future = waiting[conversation_id] = loop().create_future()
            if not self._flush_scheduled:
                self._flush_scheduled = True
                loop().call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        asked, self._asked = self._asked, {}
        for tenant_id, waiting in asked.items():
            ids = list(waiting)
            for start in range(0, len(ids), BATCH_MAX):
                batch = {conversation_id: waiting[conversation_id] for conversation_id in ids[start : start + BATCH_MAX]}
                asyncio.ensure_future(self._answer(tenant_id, batch))

    async def _answer(self, tenant_id: str, waiting: dict[str, asyncio.Future]) -> None:
        try:
            states = await load_states(self._storage, tenant_id, list(waiting))
        except Exception as error:
            for future in waiting.values():
                future.set_exception(error)
            return
        for conversation_id, future in waiting.items():
            future.set_result(states.get(conversation_id))
