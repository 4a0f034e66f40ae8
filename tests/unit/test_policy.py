"""The authorization rule (actors/policy.py) in-process, against the table that
tests/test_authorization.py drives over both transports, plus what only shows here: the
effective role it answers, and who may remove whom.
"""

from __future__ import annotations

import pytest

from actors.errors import Forbidden, NotFound
from actors.policy import MODERATOR, Action, authorize, authorize_removal
from actors.principal import Principal
from tests.test_authorization import FORBIDDEN, NA, NOT_FOUND, OK, ROLES, TABLES

# Each action of the table as the policy is asked it: (action, own_message).
ASKED = {
    "read": (Action.READ, False),
    "post": (Action.POST, False),
    "type": (Action.TYPE, False),
    "react": (Action.REACT, False),
    "mark_read": (Action.MARK_READ, False),
    "edit_own": (Action.EDIT_MESSAGE, True),
    "edit_others": (Action.EDIT_MESSAGE, False),
    "delete_own": (Action.DELETE_MESSAGE, True),
    "delete_others": (Action.DELETE_MESSAGE, False),
    "add_participant": (Action.MANAGE_PARTICIPANTS, False),
    "remove_participant": (Action.MANAGE_PARTICIPANTS, False),
    "update_conversation": (Action.UPDATE_CONVERSATION, False),
    "delete_conversation": (Action.DELETE_CONVERSATION, False),
}


def caller(role: str) -> tuple[Principal, str | None]:
    """The principal in ``role`` and its role as a participant (None: not one)."""
    if role == "moderator":
        return Principal("t1", "mod", role="admin"), None
    return Principal("t1", role), None if role == "outsider" else role


def outcome(kind: str, action: str, role: str) -> str:
    principal, member_role = caller(role)
    asked, own = ASKED[action]
    try:
        acting_as = authorize(asked, principal, kind, member_role, own_message=own)
        if action == "remove_participant":  # tests/test_authorization.py removes a plain member
            authorize_removal(principal, acting_as, "member")
    except Forbidden:
        return FORBIDDEN
    except NotFound:
        return NOT_FOUND
    return OK


def test_the_policy_follows_every_cell_of_the_table():
    wrong = [
        f"{kind} {role} {action}: {got}, table says {expected}"
        for kind, table in TABLES.items()
        for action, row in table.items()
        for role, expected in zip(ROLES, row)
        if expected is not NA and (got := outcome(kind, action, role)) != expected
    ]
    assert set(ASKED) == set(TABLES["group"])
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    "tenant_role, member_role, acts_as",
    [
        (None, "member", "member"),
        (None, "owner", "owner"),
        ("admin", None, MODERATOR),
        ("admin", "member", "admin"),
        ("admin", "admin", "admin"),
        ("admin", "owner", "owner"),
    ],
)
def test_the_effective_role_is_answered(tenant_role, member_role, acts_as):
    assert authorize(Action.READ, Principal("t1", "u", role=tenant_role), "group", member_role) == acts_as


def test_a_tenant_admin_who_participates_speaks_in_a_channel():
    assert authorize(Action.POST, Principal("t1", "u", role="admin"), "channel", "member") == "admin"


@pytest.mark.parametrize(
    "tenant_role, actor_role, target_role, allowed",
    [
        (None, "owner", "admin", True),
        (None, "owner", "member", True),
        (None, "admin", "member", True),
        (None, "admin", "admin", False),
        (None, "owner", "owner", False),
        ("admin", MODERATOR, "admin", True),
        ("admin", MODERATOR, "owner", False),
    ],
)
def test_who_may_remove_whom(tenant_role, actor_role, target_role, allowed):
    principal = Principal("t1", "u", role=tenant_role)
    if allowed:
        authorize_removal(principal, actor_role, target_role)
    else:
        with pytest.raises(Forbidden):
            authorize_removal(principal, actor_role, target_role)
