"""A conversation's ordered write queue: stream rows (messages and event rows) numbered and
stored in batches, one batch in flight, their outcomes handed back in ``seq`` order.

Owned by one ``ConversationActor`` and run on the loop thread like it: I/O goes through the
actor's ``run_io``, so every outcome is handled as one of the actor's messages. The queue
decides numbering, batching, refusals while the database is down and the re-read after a
write whose outcome is unknown; the actor decides what a stored row means (broadcast,
answers, activity) through ``WriteListener``.

When nodes share conversations (docs/scale-out.md) the queue is also where what other nodes
wrote joins the stream: their frames (``receive``) are handed on strictly after ``last_seq``,
one ``seq`` after the other, never while a batch of this node's is in flight. A gap, or a
head beyond ``last_seq``, is filled by reading the rows beyond ``last_seq`` from the database;
so is a batch whose ``seq`` another writer took first (the unique index refused it), after
which the batch is numbered again.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from actors.delivery import BatchOutcome, PendingWrite, storage_failure, store_batch
from actors.errors import ChatError, StorageUnavailable
from actors.fanout import ANSWER, EPHEMERAL, STREAM, Entry
from actors.runtime import LoopFuture, loop
from actors.stats import STATS
from actors.stream_events import StreamEvents
from storage import Storage

logger = logging.getLogger(__name__)

MAX_BATCH = 200
# After the database failed a write (or the read after it), sends are refused at once for this
# long instead of each waiting out MONGODB_TIMEOUT_MS: a socket's frames are handled one at a
# time, so a backlog would take a timeout apiece and starve the socket's keepalive. The first
# send after that tries the database again.
STORAGE_RETRY_SECS = 1.0
# A write whose seq other writers took this many times running is refused (storage_unavailable).
MAX_SEQ_RACES = 5


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

    def _remote_event(self, entry: Entry) -> None:
        """An event another node published, next in order (or outside the stream)."""

    def _remote_answer(self, entry: Entry) -> None:
        """A write this node forwarded is answered: its socket gets its own copy now."""

    def _caught_up_row(self, kind: str, fields: dict, row: dict, skip_conn: str | None) -> None:
        """A row another writer stored, read back from the database, next in order."""

    def _conversation_read(self, conversation: dict | None) -> None:
        """The conversation document as a read beyond ``last_seq`` found it."""

    def _resync(self, last_seq: int, reason: str) -> None:
        """Too much to fill (or a gap the database cannot explain): the stream goes on from ``last_seq``."""


@dataclasses.dataclass
class ReadBeyond:
    """What a read beyond ``last_seq`` found."""

    last_seq: int
    rendered: list[tuple[str, dict]]
    rows: dict[int, dict]  # by seq
    conversation: dict | None = None  # read when a row changed the details
    too_many: bool = False


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
        *,
        replay_limit: int = 0,
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
        self._replay_limit = replay_limit  # a read beyond last_seq finding more resyncs instead (0: no limit)
        self._maybe_stored: set[str] = set()  # ids of rows an uncertain write may have stored
        self._remote: collections.deque[Entry] = collections.deque()  # from other nodes, in arrival order
        self._gap = False  # the rows beyond last_seq must be read before anything else moves
        self._read_found_nothing = False
        self._skips: dict[int, str] = {}  # seq -> socket answered on its own, skipped when the row is read

    @property
    def busy(self) -> bool:
        return bool(self._pending or self._in_flight)

    def storage_down(self) -> bool:
        return self._storage_down_until > 0.0 and loop().time() < self._storage_down_until

    def enqueue(self, pending: PendingWrite) -> None:
        self._pending.append(pending)
        self._store_next()

    def receive(self, entries: list[Entry]) -> None:
        """Frames of other nodes (and answers to this node's forwarded writes), in arrival order."""
        self._remote.extend(entries)
        self._read_found_nothing = False
        self._store_next()

    def catch_up(self) -> None:
        """Read what reached the database beyond ``last_seq`` (this node may have missed frames)."""
        self._gap = True
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
        if self._remote:
            self._hand_on_remote()
        down = self.storage_down()
        if down and self._pending:
            self._refuse_pending()
        # A re-read after an uncertain write waits for the next send once the database failed.
        read_needed = (self._reconcile_needed or self._gap) and not down
        if not (self._pending or read_needed):
            self._release_waiters()
            self._listener._queue_drained()
            return
        self._in_flight = True
        if read_needed:
            STATS.gap_reads += self._gap
            self._run_io(self._read_beyond_last_seq(), self._caught_up)
            return
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        started = loop().time()

        def stored(outcome: BatchOutcome | None, error: BaseException | None) -> None:
            STATS.stored(loop().time() - started)
            self._stored(batch, outcome, error)

        self._run_io(store_batch(self._storage, self._tenant_id, self._conversation_id, batch, self.last_seq + 1, self._stream), stored)

    def _stored(self, batch: list[PendingWrite], outcome: BatchOutcome | None, error: BaseException | None) -> None:
        self._in_flight = False
        if error is not None:  # a bug in store_batch: refuse the batch, keep the actor
            logger.error("storing a batch failed", exc_info=(type(error), error, error.__traceback__))
            outcome = BatchOutcome(failed=[(pending, storage_failure(error)) for pending in batch], uncertain=True)
        for pending, doc in outcome.stored:
            self.last_seq = doc["seq"]
            self._read_found_nothing = False
            if pending.is_event:
                self._listener._event_stored(pending, doc)
            else:
                self._listener._message_stored(pending, doc)
        for pending, doc in outcome.duplicates:
            self._listener._retry_answered(pending, doc)
        for pending, failure in outcome.failed:
            if pending.reply is not None:
                pending.reply.set_exception((type(failure), failure, None))
        self._number_again(outcome.seq_taken)
        if any(isinstance(failure, StorageUnavailable) for _, failure in outcome.failed):
            self._storage_failed()
        elif outcome.stored or outcome.duplicates:
            self._storage_down_until = 0.0
        if outcome.stored:
            self._listener._batch_stored(outcome.stored[-1][1])
        if outcome.uncertain:
            self._reconcile_needed = True
            self._maybe_stored.update(pending.doc["_id"] for pending, _ in outcome.failed)
        self._store_next()

    def _number_again(self, taken: list[PendingWrite]) -> None:
        """Another writer stored these seqs first (none of these rows was stored): read what it
        stored, then number these again, ahead of everything queued after them."""
        if not taken:
            return
        retry = []
        for pending in taken:
            pending.seq_races += 1
            if pending.seq_races <= MAX_SEQ_RACES:
                retry.append(pending)
            elif pending.reply is not None:
                pending.reply.set_exception((StorageUnavailable, StorageUnavailable(), None))
        self._pending = retry + self._pending
        self._gap = True

    # --- what other nodes wrote ----------------------------------------------------------------

    def _hand_on_remote(self) -> None:
        """Hand on what other nodes published, while it follows ``last_seq`` without a gap."""
        remote = self._remote
        while remote:
            entry = remote[0]
            if entry.kind == EPHEMERAL:
                remote.popleft()
                self._listener._remote_event(entry)
                continue
            if entry.seq is None or entry.seq <= self.last_seq:
                remote.popleft()  # a stream event: a duplicate; a head: nothing new
                if entry.kind == ANSWER:
                    self._listener._remote_answer(entry)
                continue
            if entry.kind == STREAM and entry.seq == self.last_seq + 1:
                remote.popleft()
                self.last_seq = entry.seq
                self._read_found_nothing = False
                self._listener._remote_event(entry)
                continue
            # A gap before this event, or a head or an answer beyond what was handed on.
            reaches = entry.seq - 1 if entry.kind == STREAM else entry.seq
            if self._read_found_nothing:  # the database has nothing beyond last_seq: it cannot be filled
                self._listener._resync(reaches, "events were lost between nodes; load history over REST up to last_seq")
                self.last_seq = reaches
                self._read_found_nothing = False
                continue
            if entry.kind == ANSWER:
                self._skips[entry.seq] = entry.conn.conn_id
            self._gap = True
            return

    async def _read_beyond_last_seq(self) -> ReadBeyond:
        """What reached the database beyond ``last_seq``, as ``(event type, fields)``: after an
        uncertain write, rows of ours it may have stored; with other writers, theirs. An event
        row of ours found there is applied now: its place in the stream was taken, so its change
        is made (applying is idempotent). Other writers apply their own."""
        limit = self._replay_limit
        rows = await self._storage.messages.page(
            self._tenant_id, self._conversation_id, after_seq=self.last_seq, limit=limit + 1 if limit else 0, newest_first=False, events=True
        )
        if limit and len(rows) > limit:
            head = await self._storage.messages.last_seq(self._tenant_id, self._conversation_id)
            return ReadBeyond(head, [], {}, too_many=True)
        for row in rows:
            if "event" in row and row["_id"] in self._maybe_stored:
                try:
                    await self._stream.apply(row)
                except ChatError:
                    pass  # a race lost: the row is shown as things stand
        conversation = None
        if any(row.get("event") == "conversation_updated" for row in rows):
            conversation = await self._storage.conversations.get(self._tenant_id, self._conversation_id)
        rendered = await self._stream.render(rows, conversation)
        return ReadBeyond(rows[-1]["seq"] if rows else self.last_seq, rendered, {row["seq"]: row for row in rows}, conversation)

    def _caught_up(self, found: ReadBeyond | None, error: BaseException | None) -> None:
        self._in_flight = False
        if error is not None:
            logger.warning("cannot read %s beyond seq %d: %s", self._conversation_id, self.last_seq, error)
            self._storage_failed()
            self._refuse_pending()
            self._store_next()
            return
        self._reconcile_needed = self._gap = False
        if found.too_many:
            self._listener._resync(found.last_seq, f"more than {self._replay_limit} events missed; load history over REST up to last_seq")
        elif any(row.get("event") == "conversation_updated" for row in found.rows.values()):
            self._listener._conversation_read(found.conversation)
        for kind, fields in found.rendered:
            row = found.rows[fields["seq"]]
            if row["_id"] in self._maybe_stored:
                self._listener._found_after_failure(kind, fields)
            else:
                self._listener._caught_up_row(kind, fields, row, self._skips.pop(fields["seq"], None))
        self._maybe_stored.clear()
        self._read_found_nothing = not found.rows and not found.too_many
        self.last_seq = max(self.last_seq, found.last_seq)
        self._skips = {seq: conn for seq, conn in self._skips.items() if seq > self.last_seq}
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
