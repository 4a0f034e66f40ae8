"""The conversation actor's part when nodes share conversations (docs/scale-out.md): publish
what it writes, follow what other nodes write, for the sockets joined on this node.

A mixin of ``ConversationActor``. Without a cluster (no ``REDIS_URL``) ``_fanout`` stays None
and none of this runs. With one, every node with a socket joined to the conversation has an
actor for it, subscribed to the conversation's channel while it has joined sockets; writes go
to the owner's actor (``actors.forwarding``), which publishes a frame after each stored
batch. Ordering, gaps and duplicates are the write queue's business (``receive``,
``catch_up``): this mixin turns frames into entries and entries into deliveries, and applies
the controls they carry (members added or gone, details, deletion) in stream order.
"""

from __future__ import annotations

import logging

from actors import protocol
from actors.fanout import ANSWER, HEAD_AFTER_SECS, STREAM, Entry, Fanout, decode_frame, frame_prefix
from actors.stats import STATS
from cluster import conversation_channel

logger = logging.getLogger(__name__)

MEMBERSHIP_EVENTS = ("participant_added", "participant_removed", "participant_left")


def membership_control(doc: dict, members: dict[str, str]) -> dict | None:
    """What a stored system message changes in the membership, for the readers on other nodes."""
    if doc.get("message_type") != "system":
        return None
    event, user_id = doc["metadata"].get("event"), doc["metadata"].get("user_id")
    if event == "participant_added":
        return {"member": [user_id, members.get(user_id, "member")]}
    if event in MEMBERSHIP_EVENTS:
        return {"left": user_id}
    return None


class FollowsOtherNodes:
    """Needs the actor's ``_directory``, ``_writes``, ``_subscribers``, ``_members``,
    ``_conversation``, ``_deliver``, ``leave``, ``_retire`` and the runtime's ``post``,
    ``call_later`` and ``run_io``."""

    _cluster = None
    _fanout: Fanout | None = None
    _channel: str | None = None
    _following = False
    _head_timer = None

    def _join_cluster(self) -> None:
        self._cluster = getattr(self._directory, "cluster", None)
        if self._cluster is not None:
            self._channel = conversation_channel(self.tenant_id, self.conversation_id)
            self._fanout = Fanout(self._cluster.bus, self._channel, self._cluster.node_id)
            self._own_frames = frame_prefix(self._cluster.node_id)

    # --- subscribing while sockets are joined here ---------------------------------------

    def _follow_while_joined(self) -> None:
        """Called whenever the joined sockets change: subscribed exactly while there are some."""
        if self._cluster is None or self._following == bool(self._subscribers):
            return
        self._following = not self._following
        if self._following:
            self._cluster.bus.subscribe(self._channel, self._frame_heard, lambda: self.post(self._writes.catch_up))
        else:
            self._cluster.bus.unsubscribe(self._channel)

    def _frame_heard(self, frame: bytes) -> None:
        """On the loop, outside the actor: frames this node published itself are dropped unread
        (the owner is subscribed too while sockets are joined here, for frames of a writer that
        has not yet seen that it lost the conversation)."""
        if not frame.startswith(self._own_frames):
            entries = decode_frame(frame)[1]
            self.post(lambda: self._writes.receive(entries))

    def deliver_answer(self, conn, seq: int | None, data: bytes) -> None:
        """The owner answered a write this node forwarded for ``conn``: it gets its own copy in
        stream order, right after the event it answers (which the frame sent to the others)."""
        if not self._following or seq is None:
            conn.send(data)
        else:
            self._writes.receive([Entry(ANSWER, seq, data, conn=conn)])

    def ownership_gained(self) -> None:
        """This node now owns the conversation: what it cached while others wrote may be old."""

        async def reload():
            members = await self._storage.participants.roles(self.tenant_id, self.conversation_id)
            conversation = await self._storage.conversations.get(self.tenant_id, self.conversation_id)
            return members, conversation

        def reloaded(result, error) -> None:
            if error is None and result[1] is not None:
                self._members, self._conversation = result
            self._writes.catch_up()

        self.run_io(reload(), reloaded)

    def redis_back(self) -> None:
        """Redis answers again: frames published while it was away were lost; say where we are."""
        if self._fanout is not None and self._fanout.lost:
            self._fanout.lost = False
            self._fanout.head(self._writes.last_seq)

    def _leave_cluster(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        if self._following:
            self._following = False
            self._cluster.bus.unsubscribe(self._channel)

    # --- publishing what this node writes ------------------------------------------------

    def _fan_out(self, entry: Entry) -> None:
        self._fanout.add(entry)
        if entry.kind == STREAM and self._head_timer is None:
            self._head_timer = self.call_later(HEAD_AFTER_SECS, self._publish_head)

    def _publish_head(self) -> None:
        self._head_timer = None
        if self._fanout.published_stream:
            self._fanout.head(self._writes.last_seq)

    # --- what the write queue hands on (``actors.write_queue.WriteListener``) ---------------

    def _remote_event(self, entry: Entry) -> None:
        control = entry.control or {}
        self._apply_control(control)
        self._deliver(entry.data, exclude_user=entry.exclude_user, skip_conn=entry.skip_conn)
        if control.get("deleted"):
            self._subscribers.clear()
            self._retire()

    def _remote_answer(self, entry: Entry) -> None:
        entry.conn.send(entry.data)

    def _caught_up_row(self, kind: str, fields: dict, row: dict, skip_conn: str | None) -> None:
        control = membership_control(row, self._members)
        if control is not None and "member" in control:
            self._reload_member(control["member"][0])
        self._apply_control(control or {})
        self._deliver(protocol.event(kind, **fields), skip_conn=skip_conn)

    def _conversation_read(self, conversation: dict | None) -> None:
        if conversation is not None:
            self._conversation = conversation

    def _resync(self, last_seq: int, reason: str) -> None:
        logger.warning("conversation %s: readers here resync at seq %d: %s", self.conversation_id, last_seq, reason)
        STATS.resyncs["stream"] += 1
        self._deliver(protocol.event("resync_required", conversation_id=self.conversation_id, last_seq=last_seq, reason=reason))

    def _apply_control(self, control: dict) -> None:
        left = control.get("left")
        if left is not None:
            self._members.pop(left, None)
            for conn in [c for c in self._subscribers.values() if c.principal.user_id == left]:
                self.leave(conn)
        if "member" in control:
            user_id, role = control["member"]
            self._members[user_id] = role
        if "conversation" in control:
            self._conversation = control["conversation"]

    def _reload_member(self, user_id: str) -> None:
        """A member added while this node missed the frame: its role is in the database."""

        def found(participant, error) -> None:
            if error is None and participant is not None:
                self._members[user_id] = participant["role"]

        self.run_io(self._storage.participants.get(self.tenant_id, self.conversation_id, user_id), found)
