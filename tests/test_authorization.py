"""Every cell of the authorization table (docs/architecture.md, "Who may do what"), over REST and WebSocket.

The expected outcomes are written out here, not taken from ``actors.policy``, so the test
checks the rule against the documented table rather than against itself.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.support.client import Socket, User, unique

ROLES = ("owner", "admin", "member", "moderator", "outsider")
OK, FORBIDDEN, NOT_FOUND = "ok", "forbidden", "not_found"
NA = None  # the cell cannot occur (a moderator has no message of their own to edit)

# action: outcomes for (owner, admin, member, moderator, outsider) in a group.
GROUP = {
    "read": (OK, OK, OK, OK, NOT_FOUND),
    "post": (OK, OK, OK, FORBIDDEN, NOT_FOUND),
    "type": (OK, OK, OK, FORBIDDEN, NOT_FOUND),
    "react": (OK, OK, OK, FORBIDDEN, NOT_FOUND),
    "mark_read": (OK, OK, OK, FORBIDDEN, NOT_FOUND),
    "edit_own": (OK, OK, OK, NA, NA),
    "edit_others": (FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, NOT_FOUND),
    "delete_own": (OK, OK, OK, NA, NA),
    "delete_others": (OK, OK, FORBIDDEN, OK, NOT_FOUND),
    "add_participant": (OK, OK, FORBIDDEN, OK, NOT_FOUND),
    "remove_participant": (OK, OK, FORBIDDEN, OK, NOT_FOUND),
    "update_conversation": (OK, OK, FORBIDDEN, OK, NOT_FOUND),
    "delete_conversation": (OK, FORBIDDEN, FORBIDDEN, OK, NOT_FOUND),
}
CHANNEL = {
    **GROUP,
    "post": (OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND),
    "type": (OK, OK, FORBIDDEN, FORBIDDEN, NOT_FOUND),
    "edit_own": (OK, OK, NA, NA, NA),
    "delete_own": (OK, OK, NA, NA, NA),
}
# A direct conversation has an owner (who opened it) and one member, no admin; nobody is added or removed.
DIRECT = {
    **{action: (owner, NA, *rest) for action, (owner, _, *rest) in GROUP.items()},
    "add_participant": (FORBIDDEN, NA, FORBIDDEN, FORBIDDEN, NOT_FOUND),
    "remove_participant": (FORBIDDEN, NA, FORBIDDEN, FORBIDDEN, NOT_FOUND),
}
TABLES = {"group": GROUP, "channel": CHANNEL, "direct": DIRECT}
REST_ACTIONS = tuple(action for action in GROUP if action != "type")  # typing is a socket signal only
WS_ACTIONS = ("read", "post", "type", "react", "mark_read", "edit_own", "edit_others", "delete_own", "delete_others")


def outcome_of_status(status: int, body) -> str:
    if 200 <= status < 300:
        return OK
    assert status in (403, 404), (status, body)
    return FORBIDDEN if status == 403 else NOT_FOUND


class Cast:
    """One conversation of ``kind`` and a user in each role towards it."""

    def __init__(self, server, tenant: str, kind: str) -> None:
        self.server, self.tenant, self.kind = server, tenant, kind
        self.users = {
            "owner": User(server, tenant, unique("owner")),
            "admin": User(server, tenant, unique("admin")),
            "member": User(server, tenant, unique("member")),
            "moderator": User(server, tenant, unique("moderator"), role="admin"),
            "outsider": User(server, tenant, unique("outsider")),
        }
        if kind == "direct":
            del self.users["admin"]

    async def new_conversation(self) -> str:
        owner = self.users["owner"]
        conversation_id = await owner.create_conversation(self.kind, [self.users["member"]], title=None if self.kind == "direct" else "t")
        if self.kind != "direct":
            status, body = await owner.api.post(
                f"conversations/{conversation_id}/participants/", {"user_id": self.users["admin"].user_id, "role": "admin"}
            )
            assert status == 201 and body["role"] == "admin", (status, body)
        return conversation_id

    async def post_as(self, role: str, conversation_id: str) -> str:
        status, body = await self.users[role].api.post(f"conversations/{conversation_id}/messages/", {"content": f"by {role}"})
        assert status == 201, (status, body)
        return body["id"]

    def other_author(self, role: str) -> str:
        """Someone who can post and is not ``role``: whose message ``*_others`` acts on."""
        if role != "owner":
            return "owner"
        return "member" if self.kind == "direct" else "admin"

    async def removable(self, role: str, conversation_id: str) -> str:
        """The participant a ``remove_participant`` attempt by ``role`` targets."""
        if self.kind == "direct":
            return self.users["owner" if role == "member" else "member"].user_id
        extra = User(self.server, self.tenant, unique("extra"))
        status, body = await self.users["owner"].api.post(f"conversations/{conversation_id}/participants/", {"user_id": extra.user_id})
        assert status == 201, (status, body)
        return extra.user_id


def cells(kind: str, actions) -> list[tuple[str, str, str]]:
    table = TABLES[kind]
    return [(action, role, table[action][ROLES.index(role)]) for action in actions for role in ROLES if table[action][ROLES.index(role)] is not NA]


async def rest_attempt(cast: Cast, conversation_id: str, action: str, role: str) -> str:
    api = cast.users[role].api
    conv = f"conversations/{conversation_id}"
    if action == "read":
        outcomes = set()
        for path in (f"{conv}/", f"{conv}/messages/", f"{conv}/participants/"):
            outcomes.add(outcome_of_status(*await api.get(path)))
        message_id = await cast.post_as("owner", conversation_id)
        status, body = await api.get(f"messages/{message_id}/reactions/")
        # A message of a conversation the caller cannot see is itself not found.
        outcomes.add(outcome_of_status(status, body))
        assert len(outcomes) == 1, outcomes
        return outcomes.pop()
    if action == "post":
        return outcome_of_status(*await api.post(f"{conv}/messages/", {"content": "hi"}))
    if action == "react":
        message_id = await cast.post_as(cast.other_author(role), conversation_id)
        added = outcome_of_status(*await api.post(f"messages/{message_id}/reactions/", {"emoji": "👍"}))
        removed = outcome_of_status(*await api.call("DELETE", f"messages/{message_id}/reactions/{quote('👍')}/"))
        assert added == removed, (added, removed)
        return added
    if action == "mark_read":
        return outcome_of_status(*await api.post(f"{conv}/read/", {}))
    if action in ("edit_own", "delete_own", "edit_others", "delete_others"):
        author = role if action.endswith("_own") else cast.other_author(role)
        message_id = await cast.post_as(author, conversation_id)
        if action.startswith("edit"):
            return outcome_of_status(*await api.put(f"{conv}/messages/{message_id}/", {"content": "edited"}))
        return outcome_of_status(*await api.call("DELETE", f"{conv}/messages/{message_id}/"))
    if action == "add_participant":
        return outcome_of_status(*await api.post(f"{conv}/participants/", {"user_id": unique("added")}))
    if action == "remove_participant":
        target = await cast.removable(role, conversation_id)
        return outcome_of_status(*await api.call("DELETE", f"{conv}/participants/{target}/"))
    if action == "update_conversation":
        return outcome_of_status(*await api.call("PATCH", f"{conv}/", {"description": f"by {role}"}))
    if action == "delete_conversation":
        return outcome_of_status(*await api.call("DELETE", f"{conv}/"))
    raise AssertionError(action)


async def ws_attempt(cast: Cast, sock: Socket, conversation_id: str, action: str, role: str) -> str:
    """The outcome as the socket's own answer says it; a ``ping`` after a frame that answers
    nothing on success (typing) shows, by per-socket order, that no error came first."""
    request_id = unique("req")
    if action == "read":
        sock.send_type("join_conversation", conversation_id=conversation_id, request_id=request_id)
    elif action == "post":
        sock.send_type("send_message", conversation_id=conversation_id, content="hi", request_id=request_id)
    elif action == "type":
        sock.send_type("start_typing", conversation_id=conversation_id, request_id=request_id)
        sock.send_type("ping", request_id=request_id)
    elif action == "react":
        message_id = await cast.post_as(cast.other_author(role), conversation_id)
        sock.send_type("add_reaction", message_id=message_id, emoji="👍", request_id=request_id)
        added = await answer(sock, request_id)
        request_id = unique("req")
        sock.send_type("remove_reaction", message_id=message_id, emoji="👍", request_id=request_id)
        removed = await answer(sock, request_id)
        assert added == removed, (added, removed)
        return added
    elif action == "mark_read":
        sock.send_type("mark_read", conversation_id=conversation_id, request_id=request_id)
    elif action in ("edit_own", "delete_own", "edit_others", "delete_others"):
        author = role if action.endswith("_own") else cast.other_author(role)
        message_id = await cast.post_as(author, conversation_id)
        if action.startswith("edit"):
            sock.send_type("edit_message", message_id=message_id, content="edited", request_id=request_id)
        else:
            sock.send_type("delete_message", message_id=message_id, request_id=request_id)
    else:
        raise AssertionError(action)
    return await answer(sock, request_id)


async def answer(sock: Socket, request_id: str) -> str:
    event = await sock.next(None, request_id=request_id)
    if event["type"] != "error":
        return OK
    assert event["code"] in (FORBIDDEN, NOT_FOUND), event
    # A message in a conversation the caller cannot see is itself not found.
    return event["code"]


@pytest.mark.parametrize("kind", ["group", "channel", "direct"])
async def test_rest_follows_the_table(server, tenant, kind):
    cast = Cast(server, tenant, kind)
    shared = await cast.new_conversation()
    wrong = []
    for action, role, expected in cells(kind, REST_ACTIONS):
        conversation_id = await cast.new_conversation() if action == "delete_conversation" else shared
        got = await rest_attempt(cast, conversation_id, action, role)
        if got != expected:
            wrong.append(f"{kind} {role} {action}: {got}, table says {expected}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("kind", ["group", "channel", "direct"])
async def test_websocket_follows_the_table(server, tenant, kind):
    cast = Cast(server, tenant, kind)
    conversation_id = await cast.new_conversation()
    sockets = {role: await user.socket() for role, user in cast.users.items()}
    wrong = []
    try:
        for action, role, expected in cells(kind, WS_ACTIONS):
            got = await ws_attempt(cast, sockets[role], conversation_id, action, role)
            if got != expected:
                wrong.append(f"{kind} {role} {action}: {got}, table says {expected}")
    finally:
        for sock in sockets.values():
            sock.close()
    assert not wrong, "\n".join(wrong)


async def test_tenant_admin_cannot_post_into_a_direct_conversation_of_others(server, tenant):
    """The report that started the single policy: a tenant admin's message landed in a DM."""
    alice, bob = User(server, tenant, unique("alice")), User(server, tenant, unique("bob"))
    admin = User(server, tenant, unique("admin"), role="admin")
    conversation_id = await alice.create_conversation("direct", [bob])
    status, body = await admin.api.post(f"conversations/{conversation_id}/messages/", {"content": "not mine to say"})
    assert status == 403 and body["error"]["code"] == "forbidden", (status, body)
    sock = await admin.socket()
    try:
        sock.send_type("send_message", conversation_id=conversation_id, content="nor here", request_id="r1")
        error = await sock.next("error", request_id="r1")
        assert error["code"] == "forbidden"
    finally:
        sock.close()
    status, page = await alice.api.get(f"conversations/{conversation_id}/messages/")
    assert status == 200 and [m for m in page["results"] if m["message_type"] != "system"] == []
