"""Bad requests over real HTTP, on every path: missing or bad tokens, malformed JSON, wrong content
types, oversized bodies, unknown paths and methods, rate limits. Each gets its status and error
body, and nothing changes."""

from __future__ import annotations

import re
import time

import jwt

from config import load_settings
from tests.support.client import Api, User, make_token, unique
from tests.support.rest import API, assert_error, rest_users, valid_body  # noqa: F401  (fixture)
from tests.support.server import ServerProcess
from web.rest.openapi import build_spec

PUBLIC = {
    "/healthz",
    "/metrics",
    f"{API}/openapi.json",
    "/ws/chat/{tenant_id}/",
    "/ws/notifications/{tenant_id}/",
    "/sdk/chat.js",
    "/demo/",
    "/demo/demo.css",
    "/demo/demo.js",
}


def operations() -> list[tuple[str, str, dict]]:
    """Every authenticated REST operation as ``(method, path with placeholder ids, operation)``."""
    spec = build_spec(load_settings({}))
    found = []
    for template, item in spec["paths"].items():
        if template in PUBLIC:
            continue
        path = re.sub(r"\{[^}]+\}", "some-id", template).removeprefix(API + "/")
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                found.append((method.upper(), path, operation))
    return found


def bad_tokens(server, tenant: str) -> dict[str, str | None]:
    secret = server.jwt_secret
    now = int(time.time())
    return {
        "missing": None,
        "empty": "",
        "garbage": "not.a.jwt",
        "wrong secret": make_token("another-secret-0123456789abcdef0123456789", tenant, "u"),
        "expired": make_token(secret, tenant, "u", ttl_secs=-60),
        "no exp": jwt.encode({"user_id": "u", "tenant_id": tenant}, secret, algorithm="HS256"),
        "no tenant": jwt.encode({"user_id": "u", "exp": now + 60}, secret, algorithm="HS256"),
        "alg none": jwt.encode({"user_id": "u", "tenant_id": tenant, "exp": now + 60}, None, algorithm="none"),
        "other algorithm": jwt.encode({"user_id": "u", "tenant_id": tenant, "exp": now + 60}, secret, algorithm="HS512"),
        "user id not a string": jwt.encode({"user_id": 5, "tenant_id": tenant, "exp": now + 60}, secret, algorithm="HS256"),
    }


async def test_every_operation_needs_a_valid_token(server, tenant):
    tokens = bad_tokens(server, tenant)
    for method, path, _ in operations():
        for reason, token in tokens.items():
            error = assert_error(await Api(server, token).call(method, path, {} if method in ("POST", "PUT", "PATCH") else None), 401, "unauthorized")
            assert error["message"], (method, path, reason)
    api = Api(server, None)
    status, body = await api.get("conversations/", headers={"Authorization": f"Basic {make_token(server.jwt_secret, tenant, 'u')}"})
    assert status == 401 and body["error"]["code"] == "unauthorized", "only the Bearer scheme"


async def test_rejected_tokens_change_nothing(rest_users, server):
    [alice] = rest_users("alice")
    conv = await alice.create_conversation("group")
    expired = Api(server, make_token(server.jwt_secret, alice.tenant_id, alice.user_id, ttl_secs=-5))
    assert_error(await expired.post(f"conversations/{conv}/messages/", {"content": "sneak"}), 401)
    assert_error(await expired.put(f"conversations/{conv}/", {"title": "sneak"}), 401)
    assert_error(await expired.delete(f"conversations/{conv}/"), 401)
    status, page = await alice.api.get(f"conversations/{conv}/messages/")
    assert page["results"] == [] and (await alice.api.get(f"conversations/{conv}/"))[1]["title"] is None


async def test_json_bodies_malformed_wrong_type_or_too_large(rest_users):
    alice, bob = rest_users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    message = (await alice.api.post(f"conversations/{conv}/messages/", {"content": "x"}))[1]
    ids = {"conversation_id": conv, "message_id": message["id"], "user_id": bob.user_id, "emoji": "x"}
    spec = build_spec(load_settings({}))
    checked = 0
    for template, item in spec["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {}) if isinstance(operation, dict) else {}
            if "application/json" not in content:
                continue
            path = re.sub(r"\{([^}]+)\}", lambda m: ids[m.group(1)], template).removeprefix(API + "/")
            call = alice.api.call
            for raw, headers, status in (
                (b"{", {}, 400),
                (b'{"a": }', {}, 400),
                (b"[1, 2]", {}, 400),
                (b"null", {}, 400),
                (b"\xff\xfe", {}, 400),
                (b"{}", {"Content-Type": "text/plain"}, 415),
                (b"{}", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
                (b"{}", {"Content-Type": ""}, 415),
                (b'{"pad": "' + b"x" * 70_000 + b'"}', {}, 413),
            ):
                assert_error(await call(method.upper(), path, raw=raw, headers=headers), status)
            checked += 1
    assert checked == 9, "every JSON body endpoint was tried"
    status, page = await alice.api.get(f"conversations/{conv}/messages/")
    assert [m["content"] for m in page["results"]] == ["x"] and (await alice.api.get(f"conversations/{conv}/"))[1]["title"] is None
    assert (await alice.api.get("presence/me/"))[1]["status"] == "offline"


async def test_unknown_paths_and_methods(rest_users, server):
    [alice] = rest_users("alice")
    conv = await alice.create_conversation("group")
    api = Api(server, alice.token)  # unchecked: these answers are not operations of the spec
    for path in ("nothing-here/", "conversations/a/b/c/", "messages/", f"conversations/{conv}/messages/x/y/"):
        assert_error(await api.get(path), 404, "not_found")
    assert_error(await Api(server, None).get("nothing-here/"), 404, "not_found")
    for method, path in (
        ("PATCH", f"conversations/{conv}/messages/"),
        ("DELETE", "conversations/"),
        ("PUT", "upload/"),
        ("POST", "presence/"),
        ("PUT", f"conversations/{conv}/participants/"),
    ):
        assert_error(await api.call(method, path, {}), 405, "method_not_allowed")


async def test_ids_that_do_not_exist(rest_users):
    [alice] = rest_users("alice")
    spec = build_spec(load_settings({}))
    candidates = {"content": "x", "user_id": "x", "emoji": "x", "title": "x", "status": "away"}
    for method, path, operation in operations():
        if "some-id" in path:
            answer = await alice.api.call(method, path, valid_body(spec, operation, candidates))
            assert_error(answer, 404, "not_found")


def test_rest_writes_are_rate_limited_with_retry_after():
    server = ServerProcess(env={"RATE_LIMIT_PER_SEC": "0.2", "RATE_LIMIT_BURST": "3"}).start()
    try:
        import asyncio

        async def scenario():
            tenant = unique("tenant")
            alice = User(server, tenant, unique("alice"))
            conv = await alice.create_conversation("group")  # write 1
            for n in range(2):  # writes 2 and 3
                assert (await alice.api.post(f"conversations/{conv}/messages/", {"content": f"m{n}"}))[0] == 201
            status, body = await alice.api.post(f"conversations/{conv}/messages/", {"content": "one too many"})
            assert status == 429 and body["error"]["code"] == "rate_limited" and body["error"]["details"]["retry_after"] > 0
            assert int(alice.api.last_headers["Retry-After"]) >= 1
            assert_error(await alice.api.put("presence/me/", {"status": "busy"}), 429, "rate_limited")
            status, page = await alice.api.get(f"conversations/{conv}/messages/")  # reads are not limited
            assert status == 200 and [m["content"] for m in page["results"]] == ["m0", "m1"], "the refused write stored nothing"
            bob = User(server, tenant, unique("bob"))
            assert (await bob.api.put("presence/me/", {"status": "busy"}))[0] == 200, "limits are per user"

        asyncio.run(scenario())
    finally:
        server.stop()
