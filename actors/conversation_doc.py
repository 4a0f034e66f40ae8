"""Writes to a conversation's own document: one after another, and its last activity only
about every ``ACTIVITY_WRITE_SECS``.

Owned by a ``ConversationActor`` and run on the loop thread like it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

from config import Settings
from storage import Storage

# mongomock scans the whole collection for every update, so on the embedded database the
# conversation's last activity is written less often than ACTIVITY_WRITE_SECS asks.
EMBEDDED_ACTIVITY_WRITE_SECS = 30.0


class ConversationDocument:
    def __init__(self, storage: Storage, settings: Settings, tenant_id: str, conversation_id: str, actor) -> None:
        """``actor`` lends its ``call_later`` (timers) and ``write_in_background`` (logged writes)."""
        self._storage = storage
        self._settings = settings
        self._tenant_id = tenant_id
        self._conversation_id = conversation_id
        self._actor = actor
        self._activity_at = None  # newest stored message time not yet written
        self._activity_timer = None
        self._last_write: asyncio.Future | None = None

    def write(self, start: Callable[[], Awaitable[Any]]) -> asyncio.Future:
        """Start a write after the one before it has finished: concurrent updates of one document
        can lose one of them on some MongoDB-compatible servers (FerretDB)."""
        previous = self._last_write

        async def write():
            if previous is not None and not previous.done():
                await asyncio.wait([previous])
            return await start()

        self._last_write = task = asyncio.ensure_future(write())
        return task

    def note_activity(self, at) -> None:
        """Record the last activity for conversation lists about once per ACTIVITY_WRITE_SECS
        (and when the actor stops): a write per stored batch cost as much as storing the batch.
        The delay is jittered so that conversations started together do not all write at once."""
        first = self._activity_at is None
        self._activity_at = at
        if first:
            every = self._settings.activity_write_secs
            if self._settings.uses_embedded_database:
                every = max(every, EMBEDDED_ACTIVITY_WRITE_SECS)
            self._activity_timer = self._actor.call_later(every * random.uniform(0.5, 1.5), self.flush_activity)

    def flush_activity(self) -> None:
        """Write the last activity now, if any is waiting (the actor stops, or the timer fired)."""
        if self._activity_timer is not None:
            self._activity_timer.cancel()
        at, self._activity_at, self._activity_timer = self._activity_at, None, None
        if at is not None:
            touch = self._storage.conversations.touch
            self._actor.write_in_background(self.write(lambda: touch(self._tenant_id, self._conversation_id, at)), "last activity")
