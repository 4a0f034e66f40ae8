"""A real browser on another origin uses REST and the WebSocket together; an unlisted origin cannot read.

Chromium (Debian's, never a Playwright download) loads tests/support/cors_page.html from a
second loopback server, so the page's origin differs from the API's by port. One storage tier
only: this is about CORS, not the database.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.browser import browser, needs_chromium, serve_page  # noqa: F401  (fixture)
from tests.support.client import make_token, unique
from tests.support.server import ServerProcess

PAGE = (Path(__file__).parent / "support" / "cors_page.html").read_bytes()
API = "/api/notifications/chat/"

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def page_origins():
    """Two origins serving the page: ``(listed, unlisted)``."""
    with serve_page(PAGE, count=2) as origins:
        yield origins


@pytest.fixture(scope="module")
def api_server(page_origins):
    server = ServerProcess(env={"ALLOWED_ORIGINS": page_origins[0]}).start()
    yield server
    server.stop()


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
