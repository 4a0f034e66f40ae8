"""One actor per active conversation: joined sockets, messages, reactions, typing, receipts.

Its other parts live beside it: the ordered write queue (``write_queue``), typing timers
(``typing``; across nodes ``typing_nodes``), membership and details (``membership``), the
conversation document's writes (``conversation_doc``) and answering after I/O (``answers``).

All methods run on the loop thread, one message at a time (``actors.runtime``). Methods
that need the database start the I/O with ``run_io`` and answer through a ``LoopFuture``;
nothing here awaits. Messages, and the events that change them (``stream_events``), are
numbered in one ``seq`` sequence and stored in batches, one batch in flight at a time, and
broadcast strictly in ``seq`` order once stored.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from actors import protocol
from actors.answers import AnswersAfterIO
from actors.conversation_doc import ConversationDocument
from actors.conversation_state import ConversationState
from actors.delivery import PendingWrite
from actors.errors import Conflict, InvalidMessage, NotFound, StorageUnavailable
from actors.fanout import EPHEMERAL, STREAM, Entry
from actors.following import FollowsOtherNodes, membership_control
from actors.history import message_objects
from actors.idle import RetiresWhenIdle
from actors.membership import ManagesMembership
from actors.policy import Action, authorize
from actors.principal import Principal
from actors.runtime import LoopActor, LoopFuture, weakly
from actors.stats import STATS
from actors.stream_events import StreamEvents, stream_position
from actors.subscriber import Subscriber
from actors.typing import TypingState
from actors.typing_nodes import StopsTypingAcrossNodes
from actors.write_queue import OrderedWriteQueue
from config import Settings
from storage import Storage

logger = logging.getLogger(__name__)


class ConversationActor(ManagesMembership, FollowsOtherNodes, StopsTypingAcrossNodes, AnswersAfterIO, RetiresWhenIdle, LoopActor):
    def __init__(self, directory, storage: Storage, settings: Settings, state: ConversationState) -> None:
        super().__init__()
        self._directory = directory
        self._storage = storage
        self._settings = settings
        self._conversation = state.conversation
        self.tenant_id: str = state.conversation["tenant_id"]
        self.conversation_id: str = state.conversation["_id"]
        self._members = dict(state.members)
        self._subscribers: dict[str, Subscriber] = {}
        self._catching_up: dict[str, list[bytes]] = {}  # conn_id -> live events held during replay
        # The parts hold this actor weakly (``weakly``, a weak proxy): a retired actor is freed at once.
        owner = weakref.proxy(self)
        self._typing = TypingState(settings.typing_ttl_secs, weakly(self.call_later), weakly(self._announce_typing))
        self._document = ConversationDocument(storage, settings, self.tenant_id, self.conversation_id, owner)
        self._stream = StreamEvents(storage, self.tenant_id, self.conversation_id, self._document.write)
        self._join_cluster()
        self._writes = OrderedWriteQueue(
            storage,
            self.tenant_id,
            self.conversation_id,
            state.last_seq,
            weakly(self.run_io),
            owner,
            self._stream,
            replay_limit=settings.replay_limit if self._cluster is not None else 0,
        )

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant_id, self.conversation_id)

    def on_start(self) -> None:
        self._maybe_idle()

    def on_failure(self, exc_type, exc_value, traceback) -> None:
        """Hand live sockets to a fresh actor rebuilt from storage; the state here is suspect."""
        self._cancel_timers()
        self._leave_cluster()
        self._directory.restart_conversation(self.key, self.actor_ref, list(self._subscribers.values()))
        self._writes.abandon()

    def on_stop(self) -> None:
        self._cancel_timers()
        self._leave_cluster()
        self._document.flush_activity()

    # --- access ------------------------------------------------------------------------

    def _authorize(self, action: Action, principal: Principal, *, own_message: bool = False) -> str:
        """``actors.policy`` decides, from the membership this actor caches."""
        member_role = self._members.get(principal.user_id)
        return authorize(action, principal, self._conversation["type"], member_role, own_message=own_message)

    # --- sockets -------------------------------------------------------------------------

    def join(self, conn: Subscriber, since_seq: int | None, request_id: Any = None) -> LoopFuture:
        """Subscribe ``conn``; replay the stream after ``since_seq`` first (messages and events,
        as they stand now), with no gap or duplicate. Answers how many events it replayed (what
        the reader pays from its read budget)."""
        self._authorize(Action.READ, conn.principal)
        upto = self._writes.last_seq
        joined = protocol.event("conversation_joined", request_id, conversation_id=self.conversation_id, last_seq=upto)
        self._subscribers[conn.conn_id] = conn
        self._cancel_idle()
        self._follow_while_joined()
        if since_seq is None or since_seq >= upto:
            conn.send(joined)
            return self._answered(0)
        # Live events that arrive while the replay is read are held back, then flushed.
        self._catching_up[conn.conn_id] = []
        limit = self._settings.replay_limit

        async def read_replay():
            rows = await self._storage.messages.page(
                self.tenant_id,
                self.conversation_id,
                after_seq=since_seq,
                before_seq=upto + 1,
                limit=limit + 1,
                newest_first=False,
                events=True,
            )
            return None if len(rows) > limit else await self._stream.render(rows, self._conversation)

        def replay_failed(error: BaseException) -> None:
            self._catching_up.pop(conn.conn_id, None)
            self._subscribers.pop(conn.conn_id, None)
            self._follow_while_joined()

        def replay(result, error) -> int:
            held = self._catching_up.pop(conn.conn_id, None)
            if held is None or conn.conn_id not in self._subscribers:
                return 0
            conn.send(joined)
            replayed = 0
            if result is None:
                STATS.resyncs["replay_limit"] += 1
                conn.send(
                    protocol.event(
                        "resync_required",
                        conversation_id=self.conversation_id,
                        last_seq=upto,
                        reason=f"more than {limit} events missed; load history over REST up to last_seq",
                    )
                )
            else:
                for kind, fields in result:
                    conn.send(protocol.event(kind, **fields))
                replayed = len(result)
            for data in held:
                conn.send(data)
            return replayed

        return self._io(read_replay(), replay, on_error=replay_failed)

    def leave(self, conn: Subscriber, request_id: Any = None) -> None:
        self._unsubscribe(conn)
        conn.send(protocol.event("conversation_left", request_id, conversation_id=self.conversation_id))

    def drop(self, conn: Subscriber) -> None:
        """The socket closed: forget it and anything it was doing here."""
        self._unsubscribe(conn)

    def _unsubscribe(self, conn: Subscriber) -> None:
        self._subscribers.pop(conn.conn_id, None)
        self._catching_up.pop(conn.conn_id, None)
        self._follow_while_joined()
        if not self.has_joined(conn.principal.user_id):
            self._last_joined_gone(conn.principal.user_id)
        self._maybe_idle()

    def _publish(
        self, kind: str, origin: Subscriber | None = None, request_id: Any = None, *, control: dict | None = None, **payload: Any
    ) -> None:
        """Broadcast an event; the socket that asked gets its own copy, with its ``request_id``,
        whether or not it joined the conversation (a socket on another node gets it with the
        answer to its forwarded write: ``actors.forwarding``)."""
        data = protocol.event(kind, **payload)
        if origin is None:
            self._broadcast(data, seq=payload.get("seq"), control=control)
            return
        self._broadcast(data, skip_conn=origin.conn_id, seq=payload.get("seq"), control=control)
        origin.send(protocol.event(kind, request_id, **payload))

    def _broadcast(
        self,
        data: bytes,
        *,
        exclude_user: str | None = None,
        skip_conn: str | None = None,
        seq: int | None = None,
        control: dict | None = None,
    ) -> None:
        """Deliver an event this actor made (a stream event when it has a ``seq``) here, and
        publish it to the other nodes' readers."""
        self._deliver(data, exclude_user=exclude_user, skip_conn=skip_conn)
        if self._fanout is not None:
            self._fan_out(Entry(STREAM if seq is not None else EPHEMERAL, seq, data, skip_conn, exclude_user, control))

    def _deliver(self, data: bytes, *, exclude_user: str | None = None, skip_conn: str | None = None) -> None:
        """Write one encoded event to every socket joined here, in one pass."""
        for conn_id, conn in self._subscribers.items():
            if conn_id == skip_conn or (exclude_user is not None and conn.principal.user_id == exclude_user):
                continue
            held = self._catching_up.get(conn_id)
            if held is not None:
                held.append(data)
            else:
                conn.send(data)

    # --- messages ------------------------------------------------------------------------

    def send(self, principal: Principal, body: dict, origin: Subscriber | None = None, request_id: Any = None) -> LoopFuture:
        """Queue a message; the answer, ``(message object, created)``, comes once it is stored.

        ``created`` is false for a retried ``client_msg_id``: the original is returned and
        nothing is broadcast again."""
        self._authorize(Action.POST, principal)
        if self._writes.storage_down():
            raise StorageUnavailable()
        doc = self._storage.messages.build(
            self.tenant_id,
            self.conversation_id,
            principal.user_id,
            content=body["content"],
            message_type=body.get("message_type", "text"),
            metadata=body.get("metadata"),
            client_msg_id=body.get("client_msg_id"),
            reply_to=body.get("reply_to"),
        )
        reply = LoopFuture()
        self._enqueue(PendingWrite(doc, reply, origin, request_id))
        self._typing.set(principal.user_id, False)
        return reply

    def _post_system(self, principal: Principal, content: str, answer: Any, **metadata: Any) -> LoopFuture:
        """Store a system message; the returned future gives ``answer`` once it is stored (or
        refused: the change it records has happened either way), so a REST caller that reads
        the history right after its answer sees it."""
        doc = self._storage.messages.build(
            self.tenant_id,
            self.conversation_id,
            principal.user_id,
            content=content,
            message_type="system",
            metadata={"by": principal.user_id, **metadata},
        )
        stored = LoopFuture()
        self._enqueue(PendingWrite(doc, stored, None))
        answered = LoopFuture()
        stored.add_done_callback(lambda _: answered.set(answer))
        return answered

    def _record(
        self, principal: Principal, kind: str, origin: Subscriber | None, request_id: Any, unchanged: dict | None = None, **fields: Any
    ) -> LoopFuture:
        """Queue an event row (``actors.stream_events``); the answer is the change's, once its row
        is stored and the change made, in ``seq`` order with everything else of this stream."""
        reply = LoopFuture()
        row = self._stream.row(principal.user_id, kind, **fields)
        self._enqueue(PendingWrite(row, reply, origin, request_id, unchanged=unchanged))
        return reply

    def _enqueue(self, pending: PendingWrite) -> None:
        self._cancel_idle()
        self._writes.enqueue(pending)

    def settled(self) -> LoopFuture:
        """Answered once nothing is queued or being stored (used by an orderly shutdown)."""
        return self._writes.settled()

    # What the write queue tells this actor (``actors.write_queue.WriteListener``).

    def _message_stored(self, pending: PendingWrite, doc: dict) -> None:
        message = protocol.message_object(doc)
        control = membership_control(doc, self._members)
        self._publish("new_message", pending.origin, pending.request_id, control=control, message=message, **stream_position(doc))
        if pending.reply is not None:
            pending.reply.set((message, True))

    def _retry_answered(self, pending: PendingWrite, doc: dict) -> None:
        message = protocol.message_object(doc)
        if pending.origin is not None:
            pending.origin.send(protocol.event("new_message", pending.request_id, message=message, **stream_position(doc)))
        if pending.reply is not None:
            pending.reply.set((message, False))

    def _event_stored(self, pending: PendingWrite, row: dict) -> None:
        applied = pending.applied
        control = None
        if row["event"] == "conversation_updated" and applied.refusal is None:
            self._conversation = applied.answer
            control = {"conversation": applied.answer}
        fields = {**applied.fields, **stream_position(row)}
        if applied.refusal is not None:  # its requester is told why; everyone else sees the row
            self._broadcast(protocol.event(row["event"], **fields), seq=row["seq"])
            pending.reply.set_exception((type(applied.refusal), applied.refusal, None))
        else:
            self._publish(row["event"], pending.origin, pending.request_id, control=control, **fields)
            pending.reply.set(applied.answer)

    def _found_after_failure(self, kind: str, fields: dict) -> None:
        self._broadcast(protocol.event(kind, **fields), seq=fields["seq"])

    def _batch_stored(self, last_doc: dict) -> None:
        self._document.note_activity(last_doc["created_at"])

    def _queue_drained(self) -> None:
        self._maybe_idle()

    def edit(self, principal: Principal, message_id: str, content: str, origin: Subscriber | None = None, request_id: Any = None) -> LoopFuture:
        self._authorize(Action.READ, principal)  # a missing message is named before any refusal

        async def check():
            doc = await self._message_here(message_id)
            own = doc["message_type"] != "system" and doc["sender_id"] == principal.user_id
            self._authorize(Action.EDIT_MESSAGE, principal, own_message=own)
            if doc["is_deleted"]:
                raise Conflict("The message was deleted")
            if doc["message_type"] == "text" and not content.strip():
                raise InvalidMessage("Invalid fields", {"content": ["Must not be empty."]})
            return await self._with_reactions(doc)

        def record(message, error):
            unchanged = {"message": message}
            return self._record(principal, "message_updated", origin, request_id, unchanged, message_id=message_id, content=content)

        return self._io(check(), record)

    def delete(self, principal: Principal, message_id: str, origin: Subscriber | None = None, request_id: Any = None) -> LoopFuture:
        """Answers the tombstone; deleting a deleted message answers it again and records nothing."""
        self._authorize(Action.READ, principal)

        async def check():
            doc = await self._message_here(message_id)
            self._authorize(Action.DELETE_MESSAGE, principal, own_message=doc["sender_id"] == principal.user_id)
            return doc

        def record(doc, error):
            if doc["is_deleted"]:
                if origin is not None:
                    origin.send(protocol.event("message_deleted", request_id, message_id=message_id, conversation_id=self.conversation_id))
                return protocol.message_object(doc)
            return self._record(principal, "message_deleted", origin, request_id, message_id=message_id)

        return self._io(check(), record)

    async def _message_here(self, message_id: str) -> dict:
        doc = await self._storage.messages.get(self.tenant_id, message_id)
        if doc is None or doc["conversation_id"] != self.conversation_id:
            raise NotFound("Message not found")
        return doc

    async def _with_reactions(self, doc: dict) -> dict:
        return (await message_objects(self._storage, self.tenant_id, [doc]))[0]

    # --- reactions, typing, receipts -----------------------------------------------------

    def react(self, principal: Principal, message_id: str, emoji: str, origin: Subscriber | None = None, request_id: Any = None) -> LoopFuture:
        """Answers ``(reaction, added)``: adding one the user already has answers it, records nothing."""
        self._authorize(Action.READ, principal)

        async def check():
            doc = await self._message_here(message_id)
            self._authorize(Action.REACT, principal)
            if doc["is_deleted"]:
                raise Conflict("The message was deleted")
            return await self._storage.reactions.get(self.tenant_id, message_id, principal.user_id, emoji)

        def record(existing, error):
            if existing is not None:
                obj = protocol.reaction_object(existing)
                if origin is not None:
                    origin.send(protocol.event("reaction_added", request_id, reaction=obj))
                return obj, False
            return self._record(principal, "reaction_added", origin, request_id, message_id=message_id, user_id=principal.user_id, emoji=emoji)

        return self._io(check(), record)

    def unreact(self, principal: Principal, message_id: str, emoji: str, origin: Subscriber | None = None, request_id: Any = None) -> LoopFuture:
        self._authorize(Action.READ, principal)

        async def check():
            await self._message_here(message_id)
            self._authorize(Action.REACT, principal)
            return await self._storage.reactions.get(self.tenant_id, message_id, principal.user_id, emoji)

        def record(existing, error):
            if existing is None:
                raise NotFound("No such reaction")
            return self._record(principal, "reaction_removed", origin, request_id, message_id=message_id, user_id=principal.user_id, emoji=emoji)

        return self._io(check(), record)

    def typing(self, principal: Principal, is_typing: bool) -> None:
        # Stopping is always allowed to whoever may see the conversation: it only ever clears state.
        self._authorize(Action.TYPE if is_typing else Action.READ, principal)
        self._typing.set(principal.user_id, is_typing)

    def _announce_typing(self, user_id: str, is_typing: bool) -> None:
        self._broadcast(
            protocol.event("typing_indicator", conversation_id=self.conversation_id, user_id=user_id, is_typing=is_typing),
            exclude_user=user_id,
        )
        self._maybe_idle()

    def mark_read(self, principal: Principal, message_id: str | None, origin: Subscriber | None = None, request_id: Any = None) -> LoopFuture:
        self._authorize(Action.MARK_READ, principal)
        last_seq = self._writes.last_seq

        async def work():
            if message_id is None:
                seq = last_seq
                last = await self._storage.messages.page(
                    self.tenant_id, self.conversation_id, before_seq=seq + 1, limit=1, newest_first=True
                )
                target_id = last[0]["_id"] if last else None
            else:
                doc = await self._message_here(message_id)
                seq, target_id = doc["seq"], doc["_id"]
            return await self._storage.participants.mark_read(
                self.tenant_id, self.conversation_id, principal.user_id, seq, target_id
            )

        def marked(participant, error):
            if participant is None:
                raise NotFound("Conversation not found")
            receipt = protocol.read_receipt_fields(participant)
            self._publish("read_receipt", origin, request_id, **receipt)
            return receipt

        return self._io(work(), marked)

    # --- lifetime --------------------------------------------------------------------------

    def _is_busy(self) -> bool:
        return bool(self._subscribers or self._writes.busy or self._busy or self._typing)

    def _retire(self) -> None:
        self._directory.forget_conversation(self.key, self.actor_ref)
        self._stop()

    def _cancel_timers(self) -> None:
        self._cancel_idle()
        self._typing.clear()
