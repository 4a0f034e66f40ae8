"""What every answer says about the server: no version banner, honest storage durability, and
client addresses taken from proxy headers only when told to trust them."""

from __future__ import annotations

import urllib.error
import urllib.request

from tests.support.client import make_token
from tests.support.rawws import RawWebSocket
from tests.support.server import ServerProcess

SPOOFED_IP = "203.0.113.66"


def answer_headers(url: str, headers: dict | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.headers


def test_healthz_says_whether_storage_survives_a_restart(server):
    storage = server.health()["storage"]
    if "MONGODB_URI" in server.env:
        assert storage == {"kind": "mongodb", "durable": True}
    else:
        assert storage == {"kind": "embedded", "durable": False}


def test_no_answer_names_the_server_software(server, tenant):
    for path in ("/healthz", "/api/notifications/chat/conversations/", "/api/notifications/chat/nowhere", "/nowhere"):
        status, headers = answer_headers(server.http_url + path)
        assert status in (200, 401, 404) and "Server" not in headers, (path, status, dict(headers))
    token = make_token(server.jwt_secret, tenant, "u")
    raw = RawWebSocket.connect("127.0.0.1", server.port, f"/ws/chat/{tenant}/?token={token}", timeout=30)
    try:
        assert b"\r\nserver:" not in raw.handshake.lower()
    finally:
        raw.close()


def test_proxy_headers_name_the_client_only_when_trusted():
    for trusted in (False, True):
        server = ServerProcess(env={"TRUST_PROXY_HEADERS": "1" if trusted else "0"}).start()
        try:
            start = server.log_size()
            status, _ = answer_headers(f"{server.http_url}/api/notifications/chat/nowhere", {"X-Real-IP": SPOOFED_IP})
            assert status == 404
            server.stop()
            log = server.log(since=start)
            assert "404 GET /api/notifications/chat/nowhere" in log, log
            assert (SPOOFED_IP in log) is trusted and ("(127.0.0.1)" in log) is not trusted, log
        finally:
            server.kill()
