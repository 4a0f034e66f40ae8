"""Presence changes pushed to a tenant's sockets in batches: at most one frame per socket per interval.

When a tenant's users reconnect at once (a deploy, a network blip), pushing every connect to
every socket costs one frame per socket per connect: O(sockets squared) frames, each its own
``send()``. The tenant actor collects changes for ``PRESENCE_BATCH_SECS`` instead, and each
socket gets one frame for the interval: ``presence_update`` (the seed's event) when it holds one
change, ``presence_batch {updates}`` when it holds several, with the latest state of each user.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from actors import protocol
from actors.subscriber import Subscriber


@dataclasses.dataclass
class Change:
    payload: dict  # a presence object, current_conversation_id included
    origin: str | None  # the socket that asked for it and already has it as its answer


class PendingChanges:
    """Changes not pushed yet, one per user: a later change replaces an earlier one."""

    def __init__(self) -> None:
        self._by_user: dict[str, Change] = {}

    def add(self, payload: dict, origin: str | None) -> None:
        """``origin``: the id of the socket that asked for the change, if any."""
        user_id = payload["user_id"]
        self._by_user.pop(user_id, None)  # in the order of their latest change
        self._by_user[user_id] = Change(payload, origin)

    def __bool__(self) -> bool:
        return bool(self._by_user)

    def take(self) -> dict[str, Change]:
        changes, self._by_user = self._by_user, {}
        return changes


def push(changes: dict[str, Change], audience: Mapping[str, Mapping[str, Subscriber]]) -> None:
    """Send every socket of ``audience`` (user -> conn_id -> socket) its one frame for ``changes``.

    Only a user's own sockets see their ``current_conversation_id``: to anyone else it could
    reveal a conversation they are not in. A lone change skips the socket that asked for it
    (its answer carried it); in a batch that socket sees its own change once more."""
    public = [{**change.payload, "current_conversation_id": None} for change in changes.values()]
    shared = _frame(public)
    for user_id, conns in audience.items():
        own = changes.get(user_id)
        data = shared
        if own is not None and own.payload["current_conversation_id"] is not None:
            data = _frame([change.payload if changed == user_id else seen for (changed, change), seen in zip(changes.items(), public)])
        skip = own.origin if own is not None and len(changes) == 1 else None
        for conn_id, conn in conns.items():
            if conn_id != skip:
                conn.send(data)


def push_changes(changes: dict[str, Change], connections: Mapping[str, Mapping[str, Subscriber]], wide: bool) -> None:
    """``push`` to every socket of the tenant when ``wide``; else each changed user's own sockets
    only (a tenant past ``PRESENCE_FANOUT_MAX_SOCKETS`` reads others' presence over REST)."""
    if wide:
        push(changes, connections)
        return
    for user_id, change in changes.items():
        push({user_id: change}, {user_id: connections.get(user_id, {})})


def _frame(updates: list[dict]) -> bytes:
    if len(updates) == 1:
        return protocol.event("presence_update", **updates[0])
    return protocol.event("presence_batch", updates=updates)
