"""The SDK at /sdk/chat.js and the demo at /demo/: JavaScript a page on any origin may import,
cacheable and revalidated by ETag; the demo only while DEMO_ENABLED is on."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.support.server import ROOT, ServerProcess

SDK = (ROOT / "clients" / "js" / "chat.js").read_bytes()


def fetch(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_the_sdk_is_javascript_any_origin_may_import_and_browsers_may_cache(server):
    status, headers, body = fetch(f"{server.http_url}/sdk/chat.js", {"Origin": "http://app.example"})
    assert (status, body) == (200, SDK)
    assert headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "max-age=" in headers["Cache-Control"] and "no-store" not in headers["Cache-Control"]
    assert "Server" not in headers
    etag = headers["ETag"]
    status, headers, body = fetch(f"{server.http_url}/sdk/chat.js", {"If-None-Match": etag})
    assert (status, body, headers["ETag"]) == (304, b"", etag)


def test_the_demo_is_a_page_with_its_files(server):
    status, headers, page = fetch(f"{server.http_url}/demo/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert fetch(f"{server.http_url}/demo")[2] == page
    assert "Access-Control-Allow-Origin" not in headers, "only the SDK is for other origins"
    for asset, content_type in (("/demo/demo.js", "text/javascript"), ("/demo/demo.css", "text/css")):
        assert asset.encode() in page
        status, headers, _ = fetch(server.http_url + asset)
        assert status == 200 and headers["Content-Type"].startswith(content_type), asset


def test_demo_enabled_0_turns_the_demo_off_and_keeps_the_sdk():
    server = ServerProcess(env={"DEMO_ENABLED": "0"}).start()
    try:
        for path in ("/demo/", "/demo/demo.js"):
            status, _, body = fetch(server.http_url + path)
            assert (status, json.loads(body)["error"]["code"]) == (404, "not_found"), path
        assert fetch(f"{server.http_url}/sdk/chat.js")[0] == 200
        spec = json.loads(fetch(f"{server.http_url}/api/notifications/chat/openapi.json")[2])
        assert "/sdk/chat.js" in spec["paths"] and not [path for path in spec["paths"] if path.startswith("/demo")]
    finally:
        server.stop()
