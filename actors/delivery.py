"""The storage side of ordered delivery: deduplicate, number and insert one batch of stream
rows (messages and event rows), then apply the changes the event rows record, in order.

Runs as a coroutine started by a ``ConversationActor``; it touches no actor state.
Everything it decides comes back as a ``BatchOutcome`` that the actor applies as a
message, so seq numbers and broadcasts stay under the actor's single-threaded control.
"""

from __future__ import annotations

import dataclasses
import logging

from actors.errors import ChatError, InvalidMessage, NotFound, StorageUnavailable
from actors.stream_events import Applied, StreamEvents
from storage import Storage
from storage.clock import utcnow
from storage.errors import OrderedInsertStopped, StorageError
from storage.messages import FILE_MESSAGE_TYPES

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class PendingWrite:
    """A stream row waiting for its seq; ``reply`` is settled once it is stored (or refused)."""

    doc: dict
    reply: object | None
    origin: object | None
    request_id: object = None
    # An event row: what members are shown if its change cannot be made (the state before it;
    # when not given, what the row says), and, once stored, the change as made.
    unchanged: dict | None = None
    applied: Applied | None = None
    seq_races: int = 0  # times another writer stored the seq this row was numbered with first

    @property
    def is_event(self) -> bool:
        return "event" in self.doc


@dataclasses.dataclass
class BatchOutcome:
    stored: list[tuple[PendingWrite, dict]] = dataclasses.field(default_factory=list)
    duplicates: list[tuple[PendingWrite, dict]] = dataclasses.field(default_factory=list)
    failed: list[tuple[PendingWrite, ChatError]] = dataclasses.field(default_factory=list)
    # The write may have reached the database even though it reported an error; the
    # actor must re-read the last seq before numbering anything else.
    uncertain: bool = False
    # Not stored: another writer (another node) stored their seqs first. Read what it stored,
    # then number these again.
    seq_taken: list[PendingWrite] = dataclasses.field(default_factory=list)


async def store_batch(
    storage: Storage, tenant_id: str, conversation_id: str, batch: list[PendingWrite], next_seq: int, stream: StreamEvents
) -> BatchOutcome:
    outcome = BatchOutcome()
    try:
        known_replies = await _known_reply_targets(storage, tenant_id, conversation_id, batch)
        files = await _referenced_files(storage, tenant_id, batch)
        files = await _attach_files(storage, tenant_id, conversation_id, batch, known_replies, files)
    except StorageError as error:
        logger.warning("storage unavailable before insert in %s: %s", conversation_id, error)
        outcome.failed = [(pending, StorageUnavailable()) for pending in batch]
        return outcome

    to_insert: list[PendingWrite] = []
    first_in_batch: dict[str, PendingWrite] = {}
    followers: list[tuple[PendingWrite, PendingWrite]] = []
    for pending in batch:
        doc = pending.doc
        if pending.is_event:
            doc["created_at"] = utcnow()
            to_insert.append(pending)
        elif doc["_id"] in first_in_batch:  # the same client_msg_id twice in one batch
            followers.append((pending, first_in_batch[doc["_id"]]))
        elif doc["reply_to"] is not None and doc["reply_to"] not in known_replies:
            outcome.failed.append((pending, NotFound("reply_to is not a message of this conversation", {"reply_to": ["Not found."]})))
        elif (refused := _file_refusal(doc, conversation_id, files)) is not None:
            outcome.failed.append((pending, refused))
        else:
            first_in_batch[doc["_id"]] = pending
            doc["created_at"] = utcnow()
            to_insert.append(pending)

    await _insert_numbered(storage, tenant_id, to_insert, next_seq, outcome)
    for pending, doc in outcome.stored:
        if pending.is_event:
            pending.applied = await _apply(stream, pending)
    stored_ids = {id(pending) for pending, _ in outcome.stored}
    for pending, leader in followers:
        if id(leader) in stored_ids:
            outcome.duplicates.append((pending, leader.doc))
        else:
            match = next((doc for p, doc in outcome.duplicates if p is leader), None)
            if match is not None:
                outcome.duplicates.append((pending, match))
            else:
                outcome.failed.append((pending, StorageUnavailable()))
    return outcome


async def _insert_numbered(storage: Storage, tenant_id: str, to_insert: list[PendingWrite], next_seq: int, outcome: BatchOutcome) -> None:
    """Number and insert in order. A retried ``client_msg_id`` collides on its derived ``_id``:
    answer it with the stored original and renumber the rest, so no seq is skipped."""
    while to_insert:
        for offset, pending in enumerate(to_insert):
            pending.doc["seq"] = next_seq + offset
        try:
            await storage.messages.insert_ordered([pending.doc for pending in to_insert])
        except OrderedInsertStopped as error:
            inserted = error.inserted
            outcome.stored.extend((pending, pending.doc) for pending in to_insert[:inserted])
            next_seq += inserted
            rest = to_insert[inserted:]
            if not (error.duplicate and rest):
                logger.warning("insert stopped after %d of %d: %s", inserted, len(to_insert), error)
                _refuse(rest, outcome)
                return
            try:
                original = await _retried_original(storage, tenant_id, rest[0].doc)
            except StorageError as lookup_error:
                logger.warning("insert stopped on a duplicate, and looking it up failed: %s", lookup_error)
                _refuse(rest, outcome)
                return
            if original is None:  # not a retry: the seq was taken, by another node's write
                outcome.seq_taken = rest
                return
            outcome.duplicates.append((rest[0], original))
            to_insert = rest[1:]
        except StorageError as error:
            logger.warning("insert failed: %s", error)
            _refuse(to_insert, outcome)
            return
        else:
            outcome.stored.extend((pending, pending.doc) for pending in to_insert)
            return


async def _retried_original(storage: Storage, tenant_id: str, doc: dict) -> dict | None:
    """The stored original when ``doc`` repeats a ``client_msg_id``; None when its ``_id`` is new,
    so the key it collided on was its seq (event rows and messages without a ``client_msg_id``
    have fresh random ids)."""
    if doc.get("client_msg_id") is None:
        return None
    return await storage.messages.get(tenant_id, doc["_id"])


def storage_failure(error: BaseException) -> ChatError:
    """What a failed write means to its sender."""
    if isinstance(error, ChatError):
        return error
    if isinstance(error, StorageError):
        return StorageUnavailable()
    return ChatError()


async def _apply(stream: StreamEvents, pending: PendingWrite) -> Applied:
    """Apply a stored event row. If the database fails between the row and its change, members
    are still shown the row, with the state before it, so nobody sees a gap, and the requester
    gets ``storage_unavailable``: retrying makes the change."""
    row = pending.doc
    try:
        return await stream.apply(row)
    except (ChatError, StorageError) as error:
        if isinstance(error, StorageError):
            logger.warning("%s stored but not applied in %s: %s", row["event"], row["conversation_id"], error)
        unchanged = pending.unchanged if pending.unchanged is not None else stream.fields_from_row(row)
        return Applied(unchanged, refusal=storage_failure(error))


def _refuse(pendings: list[PendingWrite], outcome: BatchOutcome) -> None:
    """Not acknowledged; the write may still have landed, so the actor must re-read."""
    outcome.uncertain = True
    for pending in pendings:
        pending.doc["seq"] = pending.doc["created_at"] = None
        outcome.failed.append((pending, StorageUnavailable()))


async def _known_reply_targets(storage, tenant_id, conversation_id, batch) -> set[str]:
    targets = {pending.doc["reply_to"] for pending in batch if pending.doc.get("reply_to") is not None}
    if not targets:
        return set()
    return await storage.messages.existing_ids(tenant_id, conversation_id, list(targets))


async def _referenced_files(storage, tenant_id, batch) -> dict[str, dict]:
    ids = {pending.doc["metadata"].get("file_id") for pending in batch if pending.doc.get("message_type") in FILE_MESSAGE_TYPES}
    return await storage.files.of_ids(tenant_id, [i for i in ids if isinstance(i, str)])


async def _attach_files(storage, tenant_id, conversation_id, batch, known_replies, files) -> dict[str, dict]:
    """Mark the files that messages of this batch will carry as attached, before the messages are
    stored, so the sweep of unattached files cannot delete one in between. A file it deleted just
    before drops out of ``files``: its message is then refused as for a missing file."""
    wanted = {
        pending.doc["metadata"]["file_id"]
        for pending in batch
        if pending.doc.get("message_type") in FILE_MESSAGE_TYPES
        and (pending.doc["reply_to"] is None or pending.doc["reply_to"] in known_replies)
        and _file_refusal(pending.doc, conversation_id, files) is None
        and files[pending.doc["metadata"]["file_id"]].get("attached") is False
    }
    if not wanted:
        return files
    kept = await storage.files.mark_attached(tenant_id, list(wanted))
    return {file_id: file for file_id, file in files.items() if file_id in kept or file_id not in wanted}


def _file_refusal(doc: dict, conversation_id: str, files: dict[str, dict]) -> ChatError | None:
    """A file or image message must name a file of this tenant uploaded to this conversation
    (or to none, by the sender); an image message, an image."""
    if doc["message_type"] not in FILE_MESSAGE_TYPES:
        return None
    file = files.get(doc["metadata"].get("file_id"))
    if file is None or file.get("conversation_id") not in (None, conversation_id) or (
        file.get("conversation_id") is None and file["owner_id"] != doc["sender_id"]
    ):
        return NotFound("metadata.file_id is not a file uploaded to this conversation", {"metadata": {"file_id": ["Not found."]}})
    if doc["message_type"] == "image" and not file["content_type"].startswith("image/"):
        return InvalidMessage("An image message needs an image file", {"metadata": {"file_id": ["Not an image."]}})
    return None
