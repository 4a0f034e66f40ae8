"""The ordered write queue (actors/write_queue.py), in-process on the embedded database.

Its I/O goes through a ``run_io`` the test holds: each started write waits until the test
finishes it, as the actor's inbox would hand its outcome back later. Failures are scripted
by standing in for ``store_batch``; the clock the queue reads is the test's own.
"""

from __future__ import annotations

import pytest

from actors import write_queue
from actors.delivery import BatchOutcome, PendingWrite, store_batch
from actors.errors import ChatError, StorageUnavailable
from actors.runtime import LoopFuture
from actors.stream_events import StreamEvents
from actors.write_queue import MAX_BATCH, STORAGE_RETRY_SECS, OrderedWriteQueue
from storage import open_storage
from storage.clock import utcnow
from storage.errors import StorageError
from tests.support.client import unique
from tests.support.loop import on_loop

TENANT, CONVERSATION = "t1", "c1"


class HeldIO:
    """A ``run_io`` whose I/O runs only when the test says, one started awaitable at a time."""

    def __init__(self) -> None:
        self.started: list = []

    def __call__(self, awaitable, then) -> None:
        self.started.append((awaitable, then))

    async def finish_next(self) -> None:
        awaitable, then = self.started.pop(0)
        try:
            result = await awaitable
        except Exception as error:
            then(None, error)
        else:
            then(result, None)


class Listener:
    """Records what the queue tells its owner, in order."""

    def __init__(self) -> None:
        self.heard: list[tuple] = []

    def _message_stored(self, pending, doc) -> None:
        self.heard.append(("stored", doc["content"], doc["seq"]))

    def _retry_answered(self, pending, doc) -> None:
        self.heard.append(("retry", doc["content"], doc["seq"]))

    def _event_stored(self, pending, row) -> None:
        self.heard.append(("event", row["event"], row["seq"]))

    def _found_after_failure(self, kind, fields) -> None:
        self.heard.append(("found", fields["message"]["content"], fields["seq"]))

    def _batch_stored(self, last_doc) -> None:
        self.heard.append(("batch", last_doc["seq"]))

    def _queue_drained(self) -> None:
        self.heard.append(("drained",))


class Clock:
    """Stands in for the loop as the queue sees it: only its ``time()``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now


class Scripted:
    """``store_batch`` that runs the scripted failures first, then stores for real."""

    def __init__(self, *failures) -> None:
        self.failures = list(failures)
        self.next_seqs: list[int] = []

    def __call__(self, storage, tenant_id, conversation_id, batch, next_seq, stream):
        self.next_seqs.append(next_seq)
        if self.failures:
            return self.failures.pop(0)(storage, batch, next_seq, stream)
        return store_batch(storage, tenant_id, conversation_id, batch, next_seq, stream)


async def refused_before_insert(storage, batch, next_seq, stream) -> BatchOutcome:
    return BatchOutcome(failed=[(pending, StorageUnavailable()) for pending in batch])


async def stored_but_reported_failed(storage, batch, next_seq, stream) -> BatchOutcome:
    """The write lands, but the answer is lost: the queue cannot know what was stored."""
    await store_batch(storage, TENANT, CONVERSATION, batch, next_seq, stream)
    return BatchOutcome(failed=[(pending, StorageUnavailable()) for pending in batch], uncertain=True)


async def row_stored_change_not_made(storage, batch, next_seq, stream) -> BatchOutcome:
    """The rows land and the answer is lost before any change is made."""
    for offset, pending in enumerate(batch):
        pending.doc["seq"], pending.doc["created_at"] = next_seq + offset, utcnow()
    await storage.messages.insert_ordered([pending.doc for pending in batch])
    return BatchOutcome(failed=[(pending, StorageUnavailable()) for pending in batch], uncertain=True)


async def stored_then_crashed(storage, batch, next_seq, stream) -> BatchOutcome:
    await store_batch(storage, TENANT, CONVERSATION, batch, next_seq, stream)
    raise RuntimeError("a bug after the insert")


class Harness:
    def __init__(self, monkeypatch, *failures) -> None:
        self.storage = open_storage(None, f"unit_{unique('wq').replace('-', '_')}", 5000)
        self.io = HeldIO()
        self.listener = Listener()
        self.clock = Clock()
        self.store = Scripted(*failures)
        monkeypatch.setattr(write_queue, "loop", lambda: self.clock)
        monkeypatch.setattr(write_queue, "store_batch", self.store)
        self.stream = StreamEvents(self.storage, TENANT, CONVERSATION, lambda start: start())
        self.queue = OrderedWriteQueue(self.storage, TENANT, CONVERSATION, 0, self.io, self.listener, self.stream)

    def send(self, content: str, client_msg_id: str | None = None) -> LoopFuture:
        doc = self.storage.messages.build(
            TENANT, CONVERSATION, "alice", content=content, message_type="text", client_msg_id=client_msg_id
        )
        reply = LoopFuture()
        self.queue.enqueue(PendingWrite(doc, reply, None))
        return reply

    def edit(self, message_id: str, content: str) -> tuple[PendingWrite, LoopFuture]:
        row = self.stream.row("alice", "message_updated", message_id=message_id, content=content)
        reply = LoopFuture()
        pending = PendingWrite(row, reply, None, unchanged={"message": "as before"})
        self.queue.enqueue(pending)
        return pending, reply

    async def first_message_id(self) -> str:
        (doc,) = await self.storage.messages.page(TENANT, CONVERSATION, limit=1, newest_first=False)
        return doc["_id"]

    async def finish_all(self) -> None:
        while self.io.started:
            await self.io.finish_next()

    async def stored_seqs(self) -> list[tuple[str, int]]:
        docs = await self.storage.messages.page(TENANT, CONVERSATION, limit=0, newest_first=False)
        return [(doc["content"], doc["seq"]) for doc in docs]


def refusal(reply: LoopFuture) -> type[BaseException]:
    with pytest.raises(ChatError) as refused:
        reply.result()
    return type(refused.value)


@on_loop
async def test_messages_are_numbered_in_order_one_batch_in_flight(monkeypatch):
    h = Harness(monkeypatch)
    h.send("a")
    h.send("b")
    h.send("c")
    assert len(h.io.started) == 1, "the first send is stored at once; the others wait for it"
    await h.finish_all()
    assert h.listener.heard == [
        ("stored", "a", 1),
        ("batch", 1),
        ("stored", "b", 2),
        ("stored", "c", 3),
        ("batch", 3),
        ("drained",),
    ]
    assert h.queue.last_seq == 3 and not h.queue.busy
    assert await h.stored_seqs() == [("a", 1), ("b", 2), ("c", 3)]


@on_loop
async def test_a_batch_holds_at_most_max_batch_messages(monkeypatch):
    h = Harness(monkeypatch)
    for n in range(MAX_BATCH + 6):
        h.send(f"m{n}")
    await h.finish_all()
    batches = [event[1] for event in h.listener.heard if event[0] == "batch"]
    assert batches == [1, 1 + MAX_BATCH, MAX_BATCH + 6]
    assert h.store.next_seqs == [1, 2, 2 + MAX_BATCH]


@on_loop
async def test_a_retried_client_msg_id_is_answered_with_the_original_and_skips_no_seq(monkeypatch):
    h = Harness(monkeypatch)
    h.send("first", client_msg_id="k1")
    await h.finish_all()
    retry = h.send("first again", client_msg_id="k1")
    h.send("second")
    await h.finish_all()
    assert ("retry", "first", 1) in h.listener.heard
    assert ("stored", "second", 2) in h.listener.heard
    assert not retry.done(), "the owner answers a retry (_retry_answered), not the queue"
    assert await h.stored_seqs() == [("first", 1), ("second", 2)]


@on_loop
async def test_a_failed_write_refuses_its_batch_and_further_sends_for_a_while(monkeypatch):
    h = Harness(monkeypatch, refused_before_insert)
    failed = h.send("lost")
    await h.finish_all()
    assert refusal(failed) is StorageUnavailable
    assert h.queue.storage_down()

    failed_at = h.clock.now
    h.clock.now = failed_at + STORAGE_RETRY_SECS - 0.001
    during = h.send("too soon")
    assert refusal(during) is StorageUnavailable and not h.io.started, "refused without trying the database"

    h.clock.now = failed_at + STORAGE_RETRY_SECS
    assert not h.queue.storage_down()
    h.send("retried")
    await h.finish_all()
    assert await h.stored_seqs() == [("retried", 1)], "nothing refused took a seq"


@on_loop
async def test_an_uncertain_write_is_read_back_before_anything_else_is_numbered(monkeypatch):
    h = Harness(monkeypatch, stored_but_reported_failed)
    unsure = h.send("landed")
    await h.finish_all()
    assert refusal(unsure) is StorageUnavailable
    assert h.queue.last_seq == 0 and not h.io.started, "the re-read waits for the next send once the database failed"

    h.clock.now += STORAGE_RETRY_SECS
    h.send("next")
    await h.io.finish_next()
    assert h.listener.heard[-1] == ("found", "landed", 1), "the re-read comes first"
    await h.finish_all()
    assert h.store.next_seqs == [1, 2]
    assert ("stored", "next", 2) in h.listener.heard
    assert await h.stored_seqs() == [("landed", 1), ("next", 2)]


@on_loop
async def test_a_crash_in_store_batch_refuses_the_batch_and_reads_back_at_once(monkeypatch):
    h = Harness(monkeypatch, stored_then_crashed)
    crashed = h.send("landed")
    waiting = h.send("waiting")
    await h.io.finish_next()
    assert refusal(crashed) is ChatError
    assert not h.queue.storage_down(), "a bug is not an outage"
    await h.io.finish_next()
    assert h.listener.heard[-1] == ("found", "landed", 1)
    await h.finish_all()
    assert ("stored", "waiting", 2) in h.listener.heard and not waiting.done()


@on_loop
async def test_settled_answers_once_the_queue_is_drained(monkeypatch):
    h = Harness(monkeypatch)
    assert h.queue.settled().done(), "an idle queue is settled at once"
    h.send("a")
    h.send("b")
    settled = h.queue.settled()
    await h.io.finish_next()
    assert not settled.done(), "one message is still queued"
    await h.finish_all()
    assert settled.done()


@on_loop
async def test_abandon_refuses_what_is_queued_and_releases_settle_waiters(monkeypatch):
    h = Harness(monkeypatch)
    in_flight = h.send("a")
    queued = [h.send("b"), h.send("c")]
    settled = h.queue.settled()
    h.queue.abandon()
    assert [refusal(reply) for reply in queued] == [ChatError, ChatError]
    assert settled.done()
    assert not in_flight.done()
    await h.finish_all()
    assert h.listener.heard[0] == ("stored", "a", 1), "the write under way is still handed to its owner when it ends"


@on_loop
async def test_an_event_row_takes_the_next_seq_and_its_change_is_made_before_it_is_heard(monkeypatch):
    h = Harness(monkeypatch)
    h.send("typo")
    await h.finish_all()
    pending, reply = h.edit(await h.first_message_id(), "fixed")
    h.send("after")
    await h.finish_all()
    assert [e for e in h.listener.heard if e[0] in ("stored", "event")] == [
        ("stored", "typo", 1),
        ("event", "message_updated", 2),
        ("stored", "after", 3),
    ]
    assert pending.applied.refusal is None and pending.applied.fields["message"]["content"] == "fixed"
    assert await h.stored_seqs() == [("fixed", 1), ("after", 3)], "history holds messages only, as edited"


@on_loop
async def test_a_change_the_database_fails_after_its_row_is_shown_unchanged_and_refused(monkeypatch):
    h = Harness(monkeypatch)
    h.send("typo")
    await h.finish_all()

    async def unreachable(*args, **kwargs):
        raise StorageError("connection reset")

    monkeypatch.setattr(h.storage.messages, "edit", unreachable)
    pending, reply = h.edit(await h.first_message_id(), "fixed")
    await h.finish_all()
    assert h.listener.heard[-3] == ("event", "message_updated", 2), "the row keeps its seq: no reader sees a gap"
    assert pending.applied.fields == {"message": "as before"} and isinstance(pending.applied.refusal, StorageUnavailable)
    assert await h.stored_seqs() == [("typo", 1)]


@on_loop
async def test_an_event_row_found_after_an_unknown_outcome_has_its_change_made(monkeypatch):
    h = Harness(monkeypatch)
    h.send("typo")
    await h.finish_all()
    h.store.failures.append(row_stored_change_not_made)
    _, unsure = h.edit(await h.first_message_id(), "fixed")
    await h.finish_all()
    assert refusal(unsure) is StorageUnavailable
    h.clock.now += STORAGE_RETRY_SECS
    h.send("next")
    await h.finish_all()
    assert ("found", "fixed", 2) in h.listener.heard and ("stored", "next", 3) in h.listener.heard
    assert await h.stored_seqs() == [("fixed", 1), ("next", 3)], "the row took its place, so its change was made"
