"""Presence changes written in batches for REST readers, and answered from memory until written.

The tenant actor records every change here and starts a save once per ``PRESENCE_BATCH_SECS``;
a save writes every change not written yet, one write in flight at a time. A write per change
made a reconnect of every user O(users squared) on the embedded database, where each update
scans the collection. Coming online only makes a row for a user without one (``Unsaved.replace``
False): while a user is connected readers get their presence from the tenant actor, and going
offline replaces the row, so a reconnect of every user writes nothing but new users' rows.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from actors.runtime import LoopFuture
from storage import Storage

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Unsaved:
    fields: dict
    replace: bool  # False: make the row if the user has none, else leave it


class PresenceSaves:
    def __init__(
        self,
        storage: Storage,
        tenant_id: str,
        run_io: Callable[[Awaitable[Any], Callable[[Any, BaseException | None], Any]], None],
        after_write: Callable[[], None],
    ) -> None:
        """``run_io`` is the actor's; ``after_write`` runs as its message once a write is done."""
        self._storage = storage
        self._tenant_id = tenant_id
        self._run_io = run_io
        self._after_write = after_write
        self._unsaved: dict[str, Unsaved] = {}  # user_id -> the change not written yet
        self.saving = False
        self._started = self._done = 0
        self._waiters: list[tuple[int, LoopFuture]] = []  # (the write that settles it, reply)

    def record(self, user_id: str, fields: dict, *, replace: bool) -> None:
        earlier = self._unsaved.get(user_id)
        self._unsaved[user_id] = Unsaved(fields, replace or (earlier is not None and earlier.replace))

    def fields_of(self, user_id: str) -> dict | None:
        unsaved = self._unsaved.get(user_id)
        return unsaved.fields if unsaved is not None else None

    def users(self) -> list[str]:
        return list(self._unsaved)

    def save(self) -> None:
        """Write every change not written yet, unless a write is under way (its end saves again
        for whoever waits in ``written``, and ``after_write`` decides for the rest)."""
        if self.saving or not self._unsaved:
            return
        self.saving = True
        self._started += 1
        batch = dict(self._unsaved)

        def saved(result: Any, error: BaseException | None) -> None:
            self.saving = False
            self._done += 1
            if error is not None:
                logger.warning("presence of %d users not saved: %s", len(batch), error)
            for user_id, unsaved in batch.items():
                if self._unsaved.get(user_id) is unsaved:
                    del self._unsaved[user_id]
            for waiter in [w for w in self._waiters if w[0] <= self._done or not self._unsaved]:
                self._waiters.remove(waiter)
                waiter[1].set(None)
            if self._waiters:
                self.save()
            self._after_write()

        self._run_io(self._write(batch), saved)

    def written(self) -> LoopFuture:
        """Answered once every change recorded so far is stored."""
        reply = LoopFuture()
        if not self._unsaved:
            reply.set(None)
            return reply
        self._waiters.append((self._started + 1, reply))
        self.save()
        return reply

    async def _write(self, batch: dict[str, Unsaved]) -> None:
        for replace in (True, False):
            rows = {user_id: unsaved.fields for user_id, unsaved in batch.items() if unsaved.replace is replace}
            if rows:
                await self._storage.presence.save_many(self._tenant_id, rows, replace=replace)
