"""The gateway contract: JWT checks and close codes, tenant isolation, the wrong path, redaction."""

from __future__ import annotations

import time

import jwt
import pytest
import tornado.websocket

from tests.support.client import Api, Socket, User, make_token, unique


async def closed_with(server, tenant_id, token, path="chat"):
    sock = await Socket.connect(server, tenant_id, token, path=path)
    return await sock.wait_closed()


async def test_missing_token_closes_4401(server, tenant):
    code, reason = await closed_with(server, tenant, None)
    assert code == 4401 and "token" in reason.lower()


@pytest.mark.parametrize(
    "make_bad",
    [
        lambda secret, tenant: "not-a-jwt",
        lambda secret, tenant: make_token("wrong-secret-0123456789abcdef0123", tenant, "u"),
        lambda secret, tenant: make_token(secret, tenant, "u", ttl_secs=-10),
        lambda secret, tenant: jwt.encode({"user_id": "u", "tenant_id": tenant}, secret, algorithm="HS256"),
        lambda secret, tenant: jwt.encode({"user_id": "u", "tenant_id": tenant, "exp": int(time.time()) + 60}, None, algorithm="none"),
        lambda secret, tenant: jwt.encode({"user_id": "u", "tenant_id": tenant, "exp": int(time.time()) + 60}, secret, algorithm="HS512"),
        lambda secret, tenant: jwt.encode({"tenant_id": tenant, "exp": int(time.time()) + 60}, secret, algorithm="HS256"),
        lambda secret, tenant: jwt.encode({"user_id": "u", "exp": int(time.time()) + 60}, secret, algorithm="HS256"),
        lambda secret, tenant: jwt.encode({"user_id": 5, "tenant_id": tenant, "exp": int(time.time()) + 60}, secret, algorithm="HS256"),
    ],
    ids=["garbage", "wrong-secret", "expired", "no-exp", "alg-none", "other-alg", "no-user", "no-tenant", "user-not-string"],
)
async def test_bad_tokens_close_4401(server, tenant, make_bad):
    code, _ = await closed_with(server, tenant, make_bad(server.jwt_secret, tenant))
    assert code == 4401


async def test_sub_claim_is_accepted_as_user_id(server, tenant):
    token = jwt.encode({"sub": "subject-user", "tenant_id": tenant, "exp": int(time.time()) + 60}, server.jwt_secret, algorithm="HS256")
    sock = await Socket.connect(server, tenant, token)
    established = await sock.next("connection_established")
    assert established["user_id"] == "subject-user" and established["tenant_id"] == tenant


async def test_token_of_another_tenant_closes_4403(server, tenant):
    token = make_token(server.jwt_secret, "some-other-tenant", "u")
    code, _ = await closed_with(server, tenant, token)
    assert code == 4403


async def test_wrong_notifications_path_names_the_right_one(server, tenant):
    code, reason = await closed_with(server, tenant, make_token(server.jwt_secret, tenant, "u"), path="notifications")
    assert code == 4404 and f"/ws/chat/{tenant}/" in reason


async def test_cross_origin_browser_refused_unless_allowed(server, tenant):
    url = f"{server.ws_url}/ws/chat/{tenant}/?token={make_token(server.jwt_secret, tenant, 'u')}"
    request = tornado.httpclient.HTTPRequest(url, headers={"Origin": "https://evil.example"})
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await tornado.websocket.websocket_connect(request)
    assert refused.value.code == 403


async def test_tenants_never_see_each_other(server):
    t1, t2 = unique("tenant"), unique("tenant")
    alice, bob = User(server, t1, "alice"), User(server, t1, "bob")
    eve = User(server, t2, "alice")  # same user id, other tenant
    conv = await alice.create_conversation("group", [bob])
    a, b, e = await alice.socket(), await bob.socket(), await eve.socket()
    for s in (a, b):
        await s.request("join_conversation", "conversation_joined", conversation_id=conv)
    # eve cannot join, post, type, read or react in t1's conversation
    for kind, fields in [("join_conversation", {}), ("send_message", {"content": "x"}), ("start_typing", {}), ("mark_read", {})]:
        assert (await e.request(kind, "error", conversation_id=conv, **fields))["code"] == "not_found"
    sent = await a.request("send_message", "new_message", conversation_id=conv, content="t1 only")
    for kind in ("add_reaction", "remove_reaction"):
        assert (await e.request(kind, "error", message_id=sent["message"]["id"], emoji="x"))["code"] == "not_found"
    assert (await e.request("edit_message", "error", message_id=sent["message"]["id"], content="x"))["code"] == "not_found"
    assert (await e.request("delete_message", "error", message_id=sent["message"]["id"]))["code"] == "not_found"
    b.send_type("start_typing", conversation_id=conv)
    await b.request("update_presence", "presence_update", status="busy")
    await a.next("presence_update", user_id="bob", status="busy")
    leaked = [ev for ev in await e.quiet(0.5) if ev["type"] not in ("error",) and ev.get("user_id") != "alice"]
    assert leaked == [], leaked
    # and REST shows eve nothing of t1
    status, body = await eve.api.get("conversations/")
    assert status == 200 and body["results"] == []
    status, _ = await eve.api.get(f"conversations/{conv}/participants/")
    assert status == 404


async def test_token_never_logged(server, tenant):
    user = User(server, tenant, "logcheck")
    sock = await user.socket()
    sock.close()
    await Socket.connect(server, tenant, "bad-token-SECRETVALUE")
    assert user.token not in server.log()
    assert "SECRETVALUE" not in server.log()


@pytest.mark.parametrize("bad", ["b\x1fc", "line\nforged", "spa ce", "x" * 129, "emoji-\U0001f600", ""])
async def test_user_and_tenant_ids_outside_the_safe_set_are_refused(server, tenant, bad):
    """Ids are letters, digits and ``._:@-``: nothing that forges a log line or collides in a key."""
    for claims in ({"user_id": bad, "tenant_id": tenant}, {"user_id": "u", "tenant_id": bad}):
        token = jwt.encode({**claims, "exp": int(time.time()) + 60}, server.jwt_secret, algorithm="HS256")
        code, reason = await closed_with(server, tenant, token)
        assert code == 4401 and "letters, digits" in reason, (claims, code, reason)
        status, body = await Api(server, token).get("conversations/")
        assert status == 401 and body["error"]["code"] == "unauthorized", (claims, status, body)


async def test_participant_ids_outside_the_safe_set_are_refused(server, tenant):
    alice = User(server, tenant, unique("alice"))
    status, body = await alice.api.post("conversations/", {"type": "group", "participant_ids": ["fine", "not\u202efine"]})
    assert status == 400 and "1" in body["error"]["details"]["participant_ids"], body
    status, page = await alice.api.get("conversations/")
    assert status == 200 and page["results"] == []
