"""A conversation's ordered write queue: stream rows (messages and event rows) numbered and
stored in batches, one batch in flight, their outcomes handed back in ``seq`` order.

Owned by one ``ConversationActor`` and run on the loop thread like it: I/O goes through the
actor's ``run_io``, so every outcome is handled as one of the actor's messages. The queue
decides numbering, batching, refusals while the database is down and the re-read after a
write whose outcome is unknown; the actor decides what a stored row means (broadcast,
answers, activity) through ``WriteListener``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from actors.delivery import BatchOutcome, PendingWrite, storage_failure, store_batch
from actors.errors import ChatError, StorageUnavailable
from actors.runtime import LoopFuture, loop
from actors.stream_events import StreamEvents
from storage import Storage

logger = logging.getLogger(__name__)

MAX_BATCH = 200
# After the database failed a write (or the read after it), sends are refused at once for this
# long instead of each waiting out MONGODB_TIMEOUT_MS: a socket's frames are handled one at a
# time, so a backlog would take a timeout apiece and starve the socket's keepalive. The first
# send after that tries the database again.
STORAGE_RETRY_SECS = 1.0


class WriteListener(Protocol):
    """What the queue tells its owner; private names, so they stay off the owner's actor proxy."""

    def _message_stored(self, pending: PendingWrite, doc: dict) -> None:
        """A new message, stored with its seq: broadcast it and answer its sender."""

    def _event_stored(self, pending: PendingWrite, row: dict) -> None:
        """An event row, stored with its seq and its change applied (``pending.applied``)."""

    def _retry_answered(self, pending: PendingWrite, doc: dict) -> None:
        """A retried ``client_msg_id``: answer with the stored original, broadcast nothing."""

    def _found_after_failure(self, kind: str, fields: dict) -> None:
        """A row that reached the database although its write reported a failure, as it stands."""

    def _batch_stored(self, last_doc: dict) -> None:
        """A batch is in: ``last_doc`` is its newest message."""

    def _queue_drained(self) -> None:
        """Nothing queued or in flight any more."""


class OrderedWriteQueue:
    def __init__(
        self,
        storage: Storage,
        tenant_id: str,
        conversation_id: str,
        last_seq: int,
        run_io: Callable[[Awaitable[Any], Callable[[Any, BaseException | None], None]], None],
        listener: WriteListener,
        stream: StreamEvents,
    ) -> None:
        self._storage = storage
        self._tenant_id = tenant_id
        self._conversation_id = conversation_id
        self.last_seq = last_seq  # highest seq stored and handed to the listener
        self._run_io = run_io
        self._listener = listener
        self._stream = stream
        self._pending: list[PendingWrite] = []
        self._in_flight = False
        self._reconcile_needed = False
        self._storage_down_until = 0.0  # loop time; see STORAGE_RETRY_SECS
        self._settle_waiters: list[LoopFuture] = []

    @property
    def busy(self) -> bool:
        return bool(self._pending or self._in_flight)

    def storage_down(self) -> bool:
        return self._storage_down_until > 0.0 and loop().time() < self._storage_down_until

    def enqueue(self, pending: PendingWrite) -> None:
        self._pending.append(pending)
        self._store_next()

    def settled(self) -> LoopFuture:
        """Answered once nothing is queued or being stored (an orderly shutdown waits for it)."""
        waiter = LoopFuture()
        if self.busy:
            self._settle_waiters.append(waiter)
        else:
            waiter.set(True)
        return waiter

    def abandon(self) -> None:
        """The owner failed: refuse what is queued (nothing of it was stored) and release every
        waiter, so that a shutdown does not wait out its timeout for a queue that will not move."""
        pending, self._pending = self._pending, []
        for item in pending:
            if item.reply is not None:
                item.reply.set_exception((ChatError, ChatError(), None))
        self._release_waiters()

    # --- the loop of batches --------------------------------------------------------------

    def _store_next(self) -> None:
        if self._in_flight:
            return  # its outcome calls again
        down = self.storage_down()
        if down and self._pending:
            self._refuse_pending()
        # A re-read after an uncertain write waits for the next send once the database failed.
        if not (self._pending or (self._reconcile_needed and not down)):
            self._release_waiters()
            self._listener._queue_drained()
            return
        self._in_flight = True
        if self._reconcile_needed:
            self._run_io(self._read_beyond_last_seq(), self._caught_up)
            return
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        self._run_io(
            store_batch(self._storage, self._tenant_id, self._conversation_id, batch, self.last_seq + 1, self._stream),
            lambda outcome, error: self._stored(batch, outcome, error),
        )

    def _stored(self, batch: list[PendingWrite], outcome: BatchOutcome | None, error: BaseException | None) -> None:
        self._in_flight = False
        if error is not None:  # a bug in store_batch: refuse the batch, keep the actor
            logger.error("storing a batch failed", exc_info=(type(error), error, error.__traceback__))
            outcome = BatchOutcome(failed=[(pending, storage_failure(error)) for pending in batch], uncertain=True)
        for pending, doc in outcome.stored:
            self.last_seq = doc["seq"]
            if pending.is_event:
                self._listener._event_stored(pending, doc)
            else:
                self._listener._message_stored(pending, doc)
        for pending, doc in outcome.duplicates:
            self._listener._retry_answered(pending, doc)
        for pending, failure in outcome.failed:
            if pending.reply is not None:
                pending.reply.set_exception((type(failure), failure, None))
        if any(isinstance(failure, StorageUnavailable) for _, failure in outcome.failed):
            self._storage_failed()
        elif outcome.stored or outcome.duplicates:
            self._storage_down_until = 0.0
        if outcome.stored:
            self._listener._batch_stored(outcome.stored[-1][1])
        self._reconcile_needed = self._reconcile_needed or outcome.uncertain
        self._store_next()

    async def _read_beyond_last_seq(self) -> tuple[int, list[tuple[str, dict]]]:
        """After an uncertain write: the last seq stored and what reached the database beyond
        ours, as ``(event type, fields)``. An event row found there is applied now: its place in
        the stream was taken, so its change is made (applying is idempotent)."""
        rows = await self._storage.messages.page(
            self._tenant_id, self._conversation_id, after_seq=self.last_seq, limit=0, newest_first=False, events=True
        )
        for row in rows:
            if "event" in row:
                try:
                    await self._stream.apply(row)
                except ChatError:
                    pass  # a race lost: the row is shown as things stand
        conversation = None
        if any(row.get("event") == "conversation_updated" for row in rows):
            conversation = await self._storage.conversations.get(self._tenant_id, self._conversation_id)
        rendered = await self._stream.render(rows, conversation)
        return (rows[-1]["seq"] if rows else self.last_seq), rendered

    def _caught_up(self, found: tuple[int, list[tuple[str, dict]]] | None, error: BaseException | None) -> None:
        self._in_flight = False
        if error is not None:
            logger.warning("still cannot read %s after a failed write: %s", self._conversation_id, error)
            self._storage_failed()
            self._refuse_pending()
            self._store_next()
            return
        self._reconcile_needed = False
        last_seq, rendered = found
        for kind, fields in rendered:
            self._listener._found_after_failure(kind, fields)
        self.last_seq = last_seq
        self._store_next()

    def _storage_failed(self) -> None:
        self._storage_down_until = loop().time() + STORAGE_RETRY_SECS

    def _refuse_pending(self) -> None:
        """Answer everything queued with storage_unavailable (nothing of it was stored)."""
        pending, self._pending = self._pending, []
        for item in pending:
            if item.reply is not None:
                item.reply.set_exception((StorageUnavailable, StorageUnavailable(), None))
            else:
                logger.warning("system message not stored in %s: %s", self._conversation_id, item.doc["content"])

    def _release_waiters(self) -> None:
        waiters, self._settle_waiters = self._settle_waiters, []
        for waiter in waiters:
            waiter.set(True)
