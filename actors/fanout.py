"""What a conversation's writer tells the other nodes: one frame per pass of its actor.

A frame is the writer's node id and its entries, in the order the writer delivered them to
its own sockets: stream events with their ``seq`` (and the socket that gets its own copy
instead, wherever it is), events outside the stream (typing, read receipts), and heads (the
writer's last ``seq``, published a while after a write so that a reader who missed the end of
a burst finds out). An entry may carry a control: a member added or gone, new details, the
conversation deleted; readers apply it in order with the events.

Encoding: a JSON header line, then the events' bytes back to back, so a reader hands each
event to its sockets as the writer encoded it, without parsing it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from actors.runtime import loop
from cluster import codec
from cluster.bus import Bus

STREAM, EPHEMERAL, HEAD, ANSWER = "s", "x", "h", "a"
# How long after a write its writer publishes its head, for readers that missed the last frame.
HEAD_AFTER_SECS = 2.0


@dataclasses.dataclass(slots=True)
class Entry:
    kind: str
    seq: int | None
    data: bytes = b""
    skip_conn: str | None = None  # the socket whose own copy (with its request_id) replaces this one
    exclude_user: str | None = None  # whose sockets do not get it (the typist)
    control: dict | None = None
    conn: Any = None  # ANSWER only, never sent: the local socket the data answers


def frame_prefix(node_id: str) -> bytes:
    """How every frame ``node_id`` publishes begins: a node drops its own by this alone."""
    return codec.dumps({"n": node_id})[:-1] + b","


def encode_frame(node_id: str, entries: list[Entry]) -> bytes:
    header = [[e.kind, e.seq, len(e.data), e.skip_conn, e.exclude_user, e.control] for e in entries]
    return codec.dumps({"n": node_id, "e": header}) + b"\n" + b"".join(e.data for e in entries)


def decode_frame(frame: bytes) -> tuple[str, list[Entry]]:
    """``(writer node id, entries)``."""
    end = frame.index(b"\n")
    header = codec.loads(frame[:end])
    entries, offset = [], end + 1
    for kind, seq, length, skip_conn, exclude_user, control in header["e"]:
        entries.append(Entry(kind, seq, frame[offset : offset + length], skip_conn, exclude_user, control))
        offset += length
    return header["n"], entries


class Fanout:
    """Collects what a writer delivers during one pass of the loop and publishes it as one frame."""

    def __init__(self, bus: Bus, channel: str, node_id: str) -> None:
        self._bus = bus
        self._channel = channel
        self._node_id = node_id
        self._entries: list[Entry] = []
        self.published_stream = False  # since the last head: a head is due
        self.lost = False  # a frame was not published (Redis away): publish the head when it is back

    def add(self, entry: Entry) -> None:
        if not self._entries:
            loop().call_soon(self.flush)
        self._entries.append(entry)

    def flush(self) -> None:
        entries, self._entries = self._entries, []
        if entries:
            self._publish(entries)

    def head(self, seq: int) -> None:
        self.flush()
        self.published_stream = False
        self._publish([Entry(HEAD, seq)])

    def _publish(self, entries: list[Entry]) -> None:
        if any(entry.kind == STREAM for entry in entries):
            self.published_stream = True
        if not self._bus.publish(self._channel, encode_frame(self._node_id, entries)):
            self.lost = True
