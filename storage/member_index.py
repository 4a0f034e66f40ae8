"""Who is in each conversation, kept in memory beside the embedded database.

The embedded database answers every query by scanning its whole collection, so reading one
conversation's members read every participant row of every conversation: in a reconnect storm
of 10,000 users, half of the server's CPU went to building conversation actors that way. The
embedded database lives and dies with this process and is written only through its
``ParticipantRepository``, so that repository keeps this index as it writes, complete from the
first row, the way MongoDB keeps its own indexes.
"""

from __future__ import annotations


class MemberIndex:
    def __init__(self) -> None:
        self._roles: dict[tuple[str, str], dict[str, str]] = {}  # (tenant, conversation) -> user -> role

    def roles(self, tenant_id: str, conversation_id: str) -> dict[str, str]:
        """User id -> role, in the order they joined."""
        return dict(self._roles.get((tenant_id, conversation_id), {}))

    def added(self, tenant_id: str, conversation_id: str, roles: dict[str, str]) -> None:
        self._roles.setdefault((tenant_id, conversation_id), {}).update(roles)

    def removed(self, tenant_id: str, conversation_id: str, user_id: str) -> None:
        members = self._roles.get((tenant_id, conversation_id))
        if members is not None:
            members.pop(user_id, None)
            if not members:
                del self._roles[(tenant_id, conversation_id)]

    def removed_all(self, tenant_id: str, conversation_id: str) -> None:
        self._roles.pop((tenant_id, conversation_id), None)
