"""Who may do what in a conversation: the one authorization rule every socket and REST path asks.

The decision needs only the caller, the conversation's type and the caller's role in it (as
the conversation actor caches it, or as storage has it for a REST read), so both transports
ask the same function with the same facts. The table it implements is in
docs/architecture.md ("Who may do what"); tests/test_authorization.py drives every cell of it
over both transports.

Outsiders get ``NotFound``, never ``Forbidden``, so ids cannot be probed. A tenant
administrator who is not a participant moderates: reads, deletes any message, manages
participants, changes and deletes the conversation; but does not speak in it (post, type,
react, mark read, edit). One who is a participant also has at least admin rights in it.
"""

from __future__ import annotations

import enum

from actors.errors import Forbidden, NotFound
from actors.principal import Principal

MANAGER_ROLES = ("owner", "admin")
# The effective role of a tenant administrator who is not a participant.
MODERATOR = "moderator"


class Action(enum.Enum):
    READ = "read"  # join, history, participants, reactions, files, the conversation itself
    POST = "post"  # send a message, upload a file into the conversation
    TYPE = "type"
    REACT = "react"  # add or remove one's own reaction
    MARK_READ = "mark_read"
    EDIT_MESSAGE = "edit_message"
    DELETE_MESSAGE = "delete_message"
    MANAGE_PARTICIPANTS = "manage_participants"
    UPDATE_CONVERSATION = "update_conversation"
    DELETE_CONVERSATION = "delete_conversation"


# What a participant speaking in the conversation does; moderators may not.
_SPEAKING = frozenset({Action.POST, Action.TYPE, Action.REACT, Action.MARK_READ, Action.EDIT_MESSAGE})
_NEEDS_MANAGER = frozenset({Action.MANAGE_PARTICIPANTS, Action.UPDATE_CONVERSATION})
_REFUSALS = {
    Action.POST: "post",
    Action.TYPE: "type",
    Action.REACT: "react",
    Action.MARK_READ: "mark messages read",
    Action.EDIT_MESSAGE: "edit messages",
}


def effective_role(principal: Principal, member_role: str | None) -> str | None:
    """The role the caller acts with: a tenant administrator is at least an admin everywhere."""
    if principal.is_tenant_admin:
        if member_role is None:
            return MODERATOR
        return member_role if member_role in MANAGER_ROLES else "admin"
    return member_role


def authorize(
    action: Action,
    principal: Principal,
    conversation_type: str,
    member_role: str | None,
    *,
    own_message: bool = False,
) -> str:
    """The caller's effective role if ``action`` is allowed; ``NotFound`` or ``Forbidden`` if not.

    ``own_message`` says whether the message acted on (edit, delete) is the caller's."""
    role = effective_role(principal, member_role)
    if role is None:
        raise NotFound("Conversation not found")
    if action is Action.READ:
        return role
    if role == MODERATOR and action in _SPEAKING:
        raise Forbidden(f"Tenant admins moderate conversations they are not in; only participants {_REFUSALS[action]}")
    if action in (Action.POST, Action.TYPE) and conversation_type == "channel" and role not in MANAGER_ROLES:
        raise Forbidden("Only the owner and admins post in a channel")
    if action is Action.EDIT_MESSAGE and not own_message:
        raise Forbidden("Only the sender can edit a message")
    if action is Action.DELETE_MESSAGE and not own_message and role not in (*MANAGER_ROLES, MODERATOR):
        raise Forbidden("Only the sender, the owner or an admin can delete a message")
    if action in _NEEDS_MANAGER:
        if role not in (*MANAGER_ROLES, MODERATOR):
            raise Forbidden("Only the owner or an admin can change the conversation or its participants")
        if action is Action.MANAGE_PARTICIPANTS and conversation_type == "direct":
            raise Forbidden("A direct conversation has exactly two participants")
    if action is Action.DELETE_CONVERSATION and role != "owner" and not principal.is_tenant_admin:
        raise Forbidden("Only the owner can delete a conversation")
    return role


def authorize_removal(principal: Principal, actor_role: str, target_role: str) -> None:
    """Removing another participant: nobody removes the owner; only the owner or a tenant admin removes an admin."""
    if target_role == "owner" or (target_role == "admin" and actor_role != "owner" and not principal.is_tenant_admin):
        raise Forbidden("Only the owner can remove an admin; the owner cannot be removed")
