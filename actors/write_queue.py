"""A conversation's ordered write queue: messages numbered and stored in batches, one batch in
flight, their outcomes handed back in ``seq`` order.

Owned by one ``ConversationActor`` and run on the loop thread like it: I/O goes through the
actor's ``run_io``, so every outcome is handled as one of the actor's messages. The queue
decides numbering, batching, refusals while the database is down and the re-read after a
write whose outcome is unknown; the actor decides what a stored message means (broadcast,
answers, activity) through ``WriteListener``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from actors.delivery import BatchOutcome, PendingSend, store_batch
from actors.errors import ChatError, StorageUnavailable
from actors.runtime import LoopFuture, loop
from storage import Storage
from storage.errors import StorageError

logger = logging.getLogger(__name__)

MAX_BATCH = 200
# After the database failed a write (or the read after it), sends are refused at once for this
# long instead of each waiting out MONGODB_TIMEOUT_MS: a socket's frames are handled one at a
# time, so a backlog would take a timeout apiece and starve the socket's keepalive. The first
# send after that tries the database again.
STORAGE_RETRY_SECS = 1.0


class WriteListener(Protocol):
    """What the queue tells its owner; private names, so they stay off the owner's actor proxy."""

    def _message_stored(self, pending: PendingSend, doc: dict) -> None:
        """A new message, stored with its seq: broadcast it and answer its sender."""

    def _retry_answered(self, pending: PendingSend, doc: dict) -> None:
        """A retried ``client_msg_id``: answer with the stored original, broadcast nothing."""

    def _found_after_failure(self, doc: dict) -> None:
        """A message that reached the database although its write reported a failure."""

    def _batch_stored(self, last_doc: dict) -> None:
        """A batch is in: ``last_doc`` is its newest message."""

    def _queue_drained(self) -> None:
        """Nothing queued or in flight any more."""


def storage_failure(error: BaseException) -> ChatError:
    """What a failed write means to its sender."""
    if isinstance(error, ChatError):
        return error
    if isinstance(error, StorageError):
        return StorageUnavailable()
    return ChatError()


class OrderedWriteQueue:
    def __init__(
        self,
        storage: Storage,
        tenant_id: str,
        conversation_id: str,
        last_seq: int,
        run_io: Callable[[Awaitable[Any], Callable[[Any, BaseException | None], None]], None],
        listener: WriteListener,
    ) -> None:
        self._storage = storage
        self._tenant_id = tenant_id
        self._conversation_id = conversation_id
        self.last_seq = last_seq  # highest seq stored and handed to the listener
        self._run_io = run_io
        self._listener = listener
        self._pending: list[PendingSend] = []
        self._in_flight = False
        self._reconcile_needed = False
        self._storage_down_until = 0.0  # loop time; see STORAGE_RETRY_SECS
        self._settle_waiters: list[LoopFuture] = []

    @property
    def busy(self) -> bool:
        return bool(self._pending or self._in_flight)

    def storage_down(self) -> bool:
        return self._storage_down_until > 0.0 and loop().time() < self._storage_down_until

    def enqueue(self, pending: PendingSend) -> None:
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
            store_batch(self._storage, self._tenant_id, self._conversation_id, batch, self.last_seq + 1),
            lambda outcome, error: self._stored(batch, outcome, error),
        )

    def _stored(self, batch: list[PendingSend], outcome: BatchOutcome | None, error: BaseException | None) -> None:
        self._in_flight = False
        if error is not None:  # a bug in store_batch: refuse the batch, keep the actor
            logger.error("storing a batch failed", exc_info=(type(error), error, error.__traceback__))
            outcome = BatchOutcome(failed=[(pending, storage_failure(error)) for pending in batch], uncertain=True)
        for pending, doc in outcome.stored:
            self.last_seq = doc["seq"]
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

    def _read_beyond_last_seq(self) -> Awaitable[list[dict]]:
        """After an uncertain write: what reached the database beyond our last seq."""
        return self._storage.messages.page(
            self._tenant_id, self._conversation_id, after_seq=self.last_seq, limit=0, newest_first=False
        )

    def _caught_up(self, docs: list[dict] | None, error: BaseException | None) -> None:
        self._in_flight = False
        if error is not None:
            logger.warning("still cannot read %s after a failed write: %s", self._conversation_id, error)
            self._storage_failed()
            self._refuse_pending()
            self._store_next()
            return
        self._reconcile_needed = False
        for doc in docs:
            self.last_seq = doc["seq"]
            self._listener._found_after_failure(doc)
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
