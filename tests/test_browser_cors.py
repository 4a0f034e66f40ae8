"""A real browser on another origin uses REST and the WebSocket together; an unlisted origin cannot read.

Chromium (Debian's, never a Playwright download) loads tests/support/cors_page.html from a
second loopback server, so the page's origin differs from the API's by port. One storage tier
only: this is about CORS, not the database.
"""

from __future__ import annotations

import http.server
import shutil
import threading
from pathlib import Path

import pytest

from tests.support.client import make_token, unique
from tests.support.server import ServerProcess

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install -e '.[test]')")

CHROMIUM = "/usr/bin/chromium"
PAGE = (Path(__file__).parent / "support" / "cors_page.html").read_bytes()
API = "/api/notifications/chat/"

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")


class PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def page_origins():
    """Two origins serving the page: ``(listed, unlisted)``."""
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), PageHandler) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tuple(f"http://127.0.0.1:{server.server_address[1]}" for server in servers)
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def api_server(page_origins):
    server = ServerProcess(env={"ALLOWED_ORIGINS": page_origins[0]}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def open_page(browser, origin: str):
    page = browser.new_page()
    page.goto(f"{origin}/")
    return page


def test_a_page_on_a_listed_origin_chats_over_rest_and_the_socket(browser, page_origins, api_server):
    tenant = unique("tenant")
    token = make_token(api_server.jwt_secret, tenant, unique("alice"))
    page = open_page(browser, page_origins[0])
    result = page.evaluate(
        "chatThroughTheApi",
        {"http": api_server.http_url + API, "ws": api_server.ws_url, "tenant": tenant, "token": token},
    )
    assert result == {
        "unauthorized": [401, "unauthorized"],
        "created": 201,
        "echoed": "over the socket",
        "posted": 201,
        "pushed": [True, "over REST"],
    }
    page.close()


def test_a_page_on_an_unlisted_origin_cannot_read_the_api(browser, page_origins, api_server):
    token = make_token(api_server.jwt_secret, unique("tenant"), unique("mallory"))
    page = open_page(browser, page_origins[1])
    with_token = page.evaluate(
        "([url, token]) => tryToRead(url, {headers: {Authorization: `Bearer ${token}`}})", [api_server.http_url + API + "conversations/", token]
    )
    simple = page.evaluate("tryToRead", api_server.http_url + API + "openapi.json")
    assert (with_token, simple) == ("TypeError", "TypeError"), "the preflight fails, and a simple request's answer stays unread"
    page.close()
