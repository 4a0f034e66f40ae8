"""CORS over real sockets: ALLOWED_ORIGINS opens REST (every path, errors included) and sockets alike.

Servers of their own: the origin list, a low rate limit (a 429 to read) and a small upload limit
(a 413) are settings. tests/test_browser_cors.py checks the same with a real browser.
"""

from __future__ import annotations

from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket

from tests.support.client import Api, Socket, User, make_token, unique
from tests.support.rest import multipart
from tests.support.server import ServerProcess

APP = "http://app.example:8080"
UNLISTED = "http://evil.example"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
# Every kind of REST path: handlers with and without auth, the upload stream, and the JSON 404.
PATHS = ("conversations/", "conversations/c1/messages/", "presence/me/", "upload/", "files/f1/", "openapi.json", "nothing-here/")
BURST = 5


@pytest.fixture(scope="module")
def listed():
    server = ServerProcess(
        env={
            "ALLOWED_ORIGINS": f"http://other.example, {APP}",
            "RATE_LIMIT_BURST": str(BURST),
            "RATE_LIMIT_PER_SEC": "0.01",
            "UPLOAD_MAX_BYTES": "1024",
        }
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def any_origin():
    server = ServerProcess(env={"ALLOWED_ORIGINS": "*"}).start()
    yield server
    server.stop()


async def call(api: Api, method: str, path: str, body: Any = None, *, origin: str | None, **kw) -> tuple[int, Any, Any]:
    headers = {**kw.pop("headers", {}), **({"Origin": origin} if origin else {})}
    status, answer = await api.call(method, path, body, headers=headers, **kw)
    return status, answer, api.last_headers


def cors_of(headers) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.get_all() if name.lower().startswith("access-control-")}


def listed_values(value: str) -> set[str]:
    return {part.strip().lower() for part in value.split(",")}


def assert_readable_by(origin: str, headers, context: Any) -> dict[str, str]:
    cors = cors_of(headers)
    assert cors.get("access-control-allow-origin") == origin, (context, cors)
    assert "retry-after" in listed_values(cors["access-control-expose-headers"]), (context, cors)
    assert "access-control-allow-credentials" not in cors, "bearer tokens, not cookies"
    assert "origin" in listed_values(headers.get("Vary", "")), (context, dict(headers))
    return cors


async def test_a_preflight_needs_no_token_and_allows_the_listed_origin(listed):
    for path in PATHS:
        status, body, headers = await call(Api(listed, None), "OPTIONS", path, origin=APP, headers=PREFLIGHT)
        assert (status, body) == (204, None), (path, status, body)
        cors = assert_readable_by(APP, headers, path)
        assert {"get", "post", "put", "patch", "delete"} <= listed_values(cors["access-control-allow-methods"]), cors
        assert {"authorization", "content-type"} <= listed_values(cors["access-control-allow-headers"]), cors
        assert int(cors["access-control-max-age"]) > 0, cors


async def test_answers_to_a_listed_origin_are_readable_errors_included(listed):
    alice = User(listed, unique("tenant"), unique("alice"))
    api, anonymous = alice.api, Api(listed, None)
    status, conversation, headers = await call(api, "POST", "conversations/", {"type": "group"}, origin=APP)
    assert status == 201, conversation
    assert_readable_by(APP, headers, "create")
    conv = conversation["id"]
    body, content_type = multipart(files=[("file", "a.txt", "text/plain", b"hello")])
    status, stored, headers = await call(api, "POST", "upload/", raw=body, headers={"Content-Type": content_type}, origin=APP)
    assert status == 201, stored
    assert_readable_by(APP, headers, "upload")
    too_large, content_type = multipart(files=[("file", "b.txt", "text/plain", b"x" * 2000)])
    cases = [
        (201, api, "POST", f"conversations/{conv}/messages/", {"content": "hi"}, {}),
        (200, api, "GET", f"conversations/{conv}/messages/", None, {}),
        (200, api, "GET", f"files/{stored['id']}/", None, {}),
        (200, anonymous, "GET", "openapi.json", None, {}),
        (401, anonymous, "GET", "conversations/", None, {}),
        (404, api, "GET", "nothing-here/", None, {}),
        (404, anonymous, "GET", "nothing-here/", None, {}),
        (404, api, "GET", "conversations/no-such-conversation/", None, {}),
        (405, api, "DELETE", "conversations/", None, {}),
        (413, api, "POST", "upload/", None, {"raw": too_large, "headers": {"Content-Type": content_type}}),
    ]
    for expected, caller, method, path, payload, kw in cases:
        status, answer, headers = await call(caller, method, path, payload, origin=APP, **kw)
        assert status == expected, (method, path, status, answer)
        assert_readable_by(APP, headers, f"{method} {path}")
    assert "content-disposition" in listed_values(cors_of(headers)["access-control-expose-headers"])


async def test_a_rate_limited_answer_shows_retry_after_to_the_origin(listed):
    carol = User(listed, unique("tenant"), unique("carol"))
    for _ in range(BURST):
        assert (await call(carol.api, "PUT", "presence/me/", {"status": "busy"}, origin=APP))[0] == 200
    status, body, headers = await call(carol.api, "PUT", "presence/me/", {"status": "away"}, origin=APP)
    assert status == 429, body
    assert_readable_by(APP, headers, "429")
    assert int(headers["Retry-After"]) >= 1


async def test_an_unlisted_origin_gets_no_cors_headers(listed):
    dave = User(listed, unique("tenant"), unique("dave"))
    for origin in (UNLISTED, None):  # a browser elsewhere, and a client that is no browser
        status, body, headers = await call(Api(listed, None), "OPTIONS", "conversations/", origin=origin, headers=PREFLIGHT)
        assert (status, body, cors_of(headers)) == (204, None, {}), (origin, dict(headers))
        for expected, caller in ((200, dave.api), (401, Api(listed, None))):
            status, body, headers = await call(caller, "GET", "conversations/", origin=origin)
            assert status == expected and cors_of(headers) == {}, (origin, status, dict(headers))
            assert headers["Vary"] == "Origin", "the answer depends on the Origin, so caches must keep them apart"


async def test_star_allows_every_origin_and_echoes_it(any_origin):
    origin = "http://anywhere.example:1234"
    status, _, headers = await call(Api(any_origin, None), "OPTIONS", "conversations/", origin=origin, headers=PREFLIGHT)
    assert status == 204
    assert_readable_by(origin, headers, "preflight")
    status, _, headers = await call(Api(any_origin, None), "GET", "conversations/", origin=origin)
    assert status == 401
    assert_readable_by(origin, headers, "401")
    erin = User(any_origin, unique("tenant"), unique("erin"))
    status, _, headers = await call(erin.api, "GET", "conversations/", origin=origin)
    assert status == 200
    assert_readable_by(origin, headers, "200")


async def test_sockets_follow_the_same_origin_list(listed):
    tenant = unique("tenant")
    url = f"{listed.ws_url}/ws/chat/{tenant}/?token={make_token(listed.jwt_secret, tenant, unique('frank'))}"
    socket = Socket(await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(url, headers={"Origin": APP})))
    await socket.next("connection_established")
    socket.close()
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(url, headers={"Origin": UNLISTED}))
    assert refused.value.code == 403
