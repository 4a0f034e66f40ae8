"""Frames between nodes (actors/fanout.py): what a writer encodes is what readers decode, events
byte for byte and controls with their datetimes; a node knows its own frames by their start."""

from __future__ import annotations

from actors.fanout import EPHEMERAL, HEAD, STREAM, Entry, decode_frame, encode_frame, frame_prefix
from storage.clock import utcnow


def test_a_frame_decodes_to_the_entries_encoded():
    conversation = {"_id": "c1", "title": "t", "created_at": utcnow()}
    entries = [
        Entry(STREAM, 7, b'{"type":"new_message","seq":7}', skip_conn="conn-1", control={"left": "bob"}),
        Entry(EPHEMERAL, None, '{"type":"typing_indicator","user_id":"é"}'.encode(), exclude_user="alice"),
        Entry(STREAM, 8, b'{"type":"conversation_updated"}\n', control={"conversation": conversation}),
        Entry(HEAD, 8),
    ]
    node_id, decoded = decode_frame(encode_frame("node-a", entries))
    assert node_id == "node-a"
    assert decoded == entries


def test_a_node_recognises_its_own_frames_by_their_first_bytes():
    frame = encode_frame("node-a", [Entry(HEAD, 1)])
    assert frame.startswith(frame_prefix("node-a"))
    assert not frame.startswith(frame_prefix("node-ab")) and not frame.startswith(frame_prefix("node"))
