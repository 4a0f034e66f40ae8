"""The write queue's part when nodes share conversations: frames of other nodes handed on in
``seq`` order, gaps and heads filled from the database, answers in their place, and a batch
whose ``seq`` another writer took numbered again. Frame loss cannot be caused on purpose over
real sockets, so it is caused here: the "other writer" stores rows straight into the database
and the test decides which frames arrive.
"""

from __future__ import annotations

from actors.fanout import ANSWER, EPHEMERAL, HEAD, STREAM, Entry
from actors.write_queue import OrderedWriteQueue
from storage.clock import utcnow
from tests.support.loop import on_loop
from tests.unit.test_write_queue import CONVERSATION, TENANT, Harness, Listener


class RemoteListener(Listener):
    def _remote_event(self, entry) -> None:
        self.heard.append(("remote", entry.kind, entry.seq))

    def _remote_answer(self, entry) -> None:
        self.heard.append(("answer", entry.seq))

    def _caught_up_row(self, kind, fields, row, skip_conn) -> None:
        self.heard.append(("read", fields["seq"], skip_conn))

    def _conversation_read(self, conversation) -> None:
        self.heard.append(("conversation",))

    def _resync(self, last_seq, reason) -> None:
        self.heard.append(("resync", last_seq))


class Conn:
    conn_id = "conn-1"


class RemoteHarness(Harness):
    def __init__(self, monkeypatch, replay_limit: int = 0) -> None:
        super().__init__(monkeypatch)
        self.listener = RemoteListener()
        self.queue = OrderedWriteQueue(
            self.storage, TENANT, CONVERSATION, 0, self.io, self.listener, self.stream, replay_limit=replay_limit
        )

    async def other_writer_stores(self, *seqs: int) -> None:
        """Rows another node stored, whose frames this node may or may not get."""
        docs = []
        for seq in seqs:
            doc = self.storage.messages.build(TENANT, CONVERSATION, "bob", content=f"bob-{seq}", message_type="text")
            doc["seq"], doc["created_at"] = seq, utcnow()
            docs.append(doc)
        await self.storage.messages.insert_ordered(docs)

    def heard(self, *kinds: str) -> list[tuple]:
        return [event for event in self.listener.heard if event[0] in kinds]


def stream(*seqs: int) -> list[Entry]:
    return [Entry(STREAM, seq, f"event {seq}".encode()) for seq in seqs]


@on_loop
async def test_frames_in_order_are_handed_on_and_duplicates_dropped(monkeypatch):
    h = RemoteHarness(monkeypatch)
    h.queue.receive(stream(1, 2))
    h.queue.receive(stream(2, 3) + [Entry(EPHEMERAL, None, b"typing")])
    assert h.heard("remote") == [("remote", STREAM, 1), ("remote", STREAM, 2), ("remote", STREAM, 3), ("remote", EPHEMERAL, None)]
    assert h.queue.last_seq == 3 and not h.io.started, "nothing to read"


@on_loop
async def test_a_gap_is_read_from_the_database_before_what_follows_it(monkeypatch):
    h = RemoteHarness(monkeypatch)
    await h.other_writer_stores(1, 2, 3, 4)
    h.queue.receive(stream(3) + [Entry(EPHEMERAL, None, b"typing")] + stream(4))
    assert not h.heard("remote") and len(h.io.started) == 1, "seq 3 and what came after it wait for the read"
    await h.finish_all()
    assert h.heard("read", "remote") == [
        ("read", 1, None),
        ("read", 2, None),
        ("read", 3, None),
        ("read", 4, None),
        ("remote", EPHEMERAL, None),
    ], "what the read found is handed on once; the frames of it are duplicates"
    assert h.queue.last_seq == 4


@on_loop
async def test_a_head_beyond_last_seq_is_read_and_one_the_database_cannot_explain_resyncs(monkeypatch):
    h = RemoteHarness(monkeypatch)
    await h.other_writer_stores(1, 2)
    h.queue.receive([Entry(HEAD, 2)])
    await h.finish_all()
    assert h.heard("read") == [("read", 1, None), ("read", 2, None)]
    h.queue.receive([Entry(HEAD, 5)])
    await h.finish_all()
    assert h.listener.heard[-2:] == [("resync", 5), ("drained",)], "nothing beyond 2 is stored: readers are told"
    assert h.queue.last_seq == 5


@on_loop
async def test_an_answer_waits_for_its_seq_and_its_socket_is_skipped_when_the_row_is_read(monkeypatch):
    h = RemoteHarness(monkeypatch)
    h.queue.receive(stream(1) + [Entry(ANSWER, 1, b"own copy", conn=Conn())])
    assert h.heard("remote", "answer") == [("remote", STREAM, 1), ("answer", 1)]
    await h.other_writer_stores(2, 3)
    h.queue.receive([Entry(ANSWER, 3, b"own copy", conn=Conn())])
    await h.finish_all()
    assert h.heard("read", "answer")[-3:] == [("read", 2, None), ("read", 3, "conn-1"), ("answer", 3)]


@on_loop
async def test_a_seq_another_writer_took_is_read_and_the_batch_numbered_again(monkeypatch):
    h = RemoteHarness(monkeypatch)
    await h.storage.messages.collection.create_index([("tenant_id", 1), ("conversation_id", 1), ("seq", 1)], unique=True)
    await h.other_writer_stores(1, 2)
    mine = h.send("mine")
    await h.finish_all()
    assert h.heard("read", "stored") == [("read", 1, None), ("read", 2, None), ("stored", "mine", 3)]
    assert h.store.next_seqs == [1, 3]
    assert not mine.done(), "the owner answers it (_message_stored)"
    assert [seq for _, seq in await h.stored_seqs()] == [1, 2, 3]


@on_loop
async def test_too_much_to_read_resyncs_at_the_database_head(monkeypatch):
    h = RemoteHarness(monkeypatch, replay_limit=3)
    await h.other_writer_stores(1, 2, 3, 4, 5)
    h.queue.receive(stream(6))
    await h.other_writer_stores(6)
    await h.finish_all()
    assert h.heard("resync", "read", "remote") == [("resync", 6)]
    assert h.queue.last_seq == 6
