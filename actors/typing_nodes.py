"""A user stops typing with their last socket joined to the conversation, counted on every node.

On one process a socket that closes or leaves makes its user stop typing in the conversation
unless another socket of theirs is still joined to it (``ConversationActor._unsubscribe``). In
a cluster the typing is kept by the conversation's owner while the user's sockets may be on any
node, so:

- a node whose last joined socket of the user goes (closed, left, removed) tells the owner,
  or is the owner (``_last_joined_gone``): one message, with nothing to answer;
- the owner, if the user is typing and has no socket joined on it, asks the other live nodes
  that hold sockets of the user (Redis presence knows which) whether one is joined there, and
  stops the typing only if none says yes. A node answers from its live actor and never starts
  one (none live: none joined); a node that does not answer in time counts as no.

The owner asks only while the user types, so a close costs the other nodes nothing otherwise.
"""

from __future__ import annotations


class StopsTypingAcrossNodes:
    """A mixin of ``ConversationActor``. Needs its ``_cluster``, ``_directory``, ``_typing``,
    ``_subscribers``, ``tenant_id``, ``conversation_id`` and the runtime's ``run_io``."""

    def _last_joined_gone(self, user_id: str) -> None:
        """No socket of the user is joined to the conversation on this node any more."""
        if self._cluster is None:
            self._typing.set(user_id, False)
            return
        owner = self._cluster.owner_elsewhere(self.tenant_id, self.conversation_id)
        if owner is None:
            self.unjoined_on(user_id, self._cluster.node_id)
        else:
            self._directory.tell_unjoined(owner, self.tenant_id, self.conversation_id, user_id)

    def unjoined_on(self, user_id: str, node_id: str) -> None:
        """On the owner: ``node_id`` has no socket of the user joined any more."""
        if user_id not in self._typing or self.has_joined(user_id):
            return

        def answered(joined_elsewhere: bool | None, error: BaseException | None) -> None:
            if not joined_elsewhere and not self.has_joined(user_id):
                self._typing.set(user_id, False)

        besides = {node_id, self._cluster.node_id}
        self.run_io(self._directory.joined_on_other_nodes(self.tenant_id, self.conversation_id, user_id, besides), answered)

    def has_joined(self, user_id: str) -> bool:
        """Whether a socket of the user is joined here (another node's owner asks it)."""
        return any(conn.principal.user_id == user_id for conn in self._subscribers.values())
