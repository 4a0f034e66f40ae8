"""The SDK and the demo in a real browser (Debian's Chromium through Playwright).

The SDK is imported from the chat server by pages of another origin, as a frontend would: two
of them chat; across a restart of a server on FerretDB one resumes by itself, receiving what was
sent meanwhile once each, and its send made while the server was down is stored once; a token
the restarted server no longer accepts (its JWT_SECRET rotated) stops it for good. The demo,
served by the chat server, loads without errors and two users chat through it.
"""

from __future__ import annotations

import pytest
import requests

from tests.support.browser import browser, needs_chromium, serve_page  # noqa: F401  (fixture)
from tests.support.client import make_token, unique
from tests.support.fuzz import backends
from tests.support.server import ServerProcess

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install -e '.[test]')")

pytestmark = needs_chromium

WAIT_MS = 30000
APP_PAGE = b"<!doctype html><meta charset=utf-8><link rel=icon href='data:,'><title>A frontend on its own origin</title>"

# Loads the SDK from the chat server and connects; every event lands in window.events. Tokens come
# from window.token through getToken, held back while window.gate.open is false.
START_CLIENT = """async ({sdk, baseUrl, tenantId, token, conversationId}) => {
  const { ChatClient } = await import(sdk);
  window.token = token;
  window.events = [];
  window.gate = { open: true, waiting: 0, release: () => {} };
  window.chat = new ChatClient({
    baseUrl, tenantId, token,
    reconnect: { baseDelayMs: 100, maxDelayMs: 1000 },
    getToken: async () => {
      while (!gate.open) {
        gate.waiting += 1;
        await new Promise((resolve) => (gate.release = resolve));
        gate.waiting -= 1;
      }
      return window.token;
    },
  });
  for (const type of ["state", "auth_error", "resync", "new_message", "reaction_added", "typing_indicator", "read_receipt", "error"]) {
    chat.on(type, (event) => events.push({ type, ...event }));
  }
  await chat.connect();
  await chat.join(conversationId);
  return chat.userId;
}"""


@pytest.fixture(scope="module")
def app_origin():
    with serve_page(APP_PAGE) as (origin,):
        yield origin


@pytest.fixture(scope="module", params=backends())
def chat_server(request, mongodb_uri, app_origin):
    uri = mongodb_uri if request.param == "mongodb" else None
    db_name = f"chat_{unique('browser').replace('-', '_')}" if uri else None
    server = ServerProcess(env={"ALLOWED_ORIGINS": app_origin}, mongodb_uri=uri, db_name=db_name).start()
    yield server
    server.stop()


class Rest:
    """One user's REST calls, from the test's side."""

    def __init__(self, server: ServerProcess, tenant: str, name: str) -> None:
        self.server, self.user_id = server, unique(name)
        self.token = make_token(server.jwt_secret, tenant, self.user_id)

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        response = requests.request(
            method,
            f"{self.server.http_url}/api/notifications/chat/{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        assert response.status_code in (200, 201), (response.status_code, response.text)
        return response.json()

    def group_with(self, *others: Rest) -> str:
        return self.call("POST", "conversations/", {"type": "group", "participant_ids": [o.user_id for o in others]})["id"]

    def contents(self, conversation_id: str) -> list[str]:
        return [m["content"] for m in self.call("GET", f"conversations/{conversation_id}/messages/?limit=100")["results"]]


def watched_page(browser, errors: list):
    """A new page whose uncaught errors and console errors land in ``errors``."""
    page = browser.new_page()
    page.on("pageerror", lambda error: errors.append(error))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    return page


def open_client(browser, origin: str, server: ServerProcess, tenant: str, user: Rest, conversation_id: str, errors: list):
    page = watched_page(browser, errors)
    page.goto(origin)
    page.evaluate(
        START_CLIENT,
        {"sdk": f"{server.http_url}/sdk/chat.js", "baseUrl": server.http_url, "tenantId": tenant, "token": user.token, "conversationId": conversation_id},
    )
    return page


def wait_for(page, predicate: str, arg=None) -> None:
    page.wait_for_function(predicate, arg=arg, timeout=WAIT_MS)


def messages_seen(page) -> list[list]:
    return page.evaluate("() => events.filter((e) => e.type === 'new_message').map((e) => [e.message.seq, e.message.content])")


def test_two_browser_clients_chat(browser, app_origin, chat_server):
    tenant = unique("tenant")
    alice, bob = Rest(chat_server, tenant, "alice"), Rest(chat_server, tenant, "bob")
    conversation = alice.group_with(bob)
    errors = []
    pages = [open_client(browser, app_origin, chat_server, tenant, user, conversation, errors) for user in (alice, bob)]
    alice_page, bob_page = pages

    sent = alice_page.evaluate("(id) => chat.send(id, 'hello from the browser')", conversation)
    wait_for(bob_page, "(id) => events.some((e) => e.type === 'new_message' && e.message.id === id)", sent["id"])
    bob_page.evaluate("(id) => { chat.startTyping(id) }", conversation)
    wait_for(alice_page, "() => events.some((e) => e.type === 'typing_indicator' && e.is_typing)")
    bob_page.evaluate("(id) => chat.react(id, '🎉')", sent["id"])
    bob_page.evaluate("(id) => chat.markRead(id)", conversation)
    wait_for(alice_page, "() => events.some((e) => e.type === 'read_receipt')")
    reply = bob_page.evaluate("(id) => chat.send(id, 'hi alice')", conversation)
    wait_for(alice_page, "(id) => events.some((e) => e.type === 'new_message' && e.message.id === id)", reply["id"])

    assert messages_seen(alice_page) == messages_seen(bob_page) == [[sent["seq"], "hello from the browser"], [reply["seq"], "hi alice"]]
    history = alice_page.evaluate("(id) => chat.api('GET', `conversations/${id}/messages/`)", conversation)
    assert [m["content"] for m in history["results"]] == ["hello from the browser", "hi alice"], "REST from the page's origin"
    reaction = alice_page.evaluate("() => events.find((e) => e.type === 'reaction_added').reaction")
    assert (reaction["emoji"], reaction["user_id"]) == ("🎉", bob.user_id)
    assert errors == []
    for page in pages:
        page.close()


def test_a_client_resumes_by_itself_across_a_server_restart(browser, app_origin, mongodb_uri):
    if mongodb_uri is None:
        pytest.skip("no real MongoDB (FerretDB binary not built and MONGODB_URI unset): the embedded database does not survive a restart")
    server = ServerProcess(env={"ALLOWED_ORIGINS": app_origin}, mongodb_uri=mongodb_uri, db_name=f"chat_{unique('restart').replace('-', '_')}").start()
    try:
        tenant = unique("tenant")
        alice, bob = Rest(server, tenant, "alice"), Rest(server, tenant, "bob")
        conversation = bob.group_with(alice)
        errors = []
        page = open_client(browser, app_origin, server, tenant, alice, conversation, errors)
        bob.call("POST", f"conversations/{conversation}/messages/", {"content": "before", "client_msg_id": "b-0"})
        wait_for(page, "() => events.some((e) => e.type === 'new_message')")

        assert server.stop() == 0
        # Down: the client keeps trying (and failing) to reconnect, and a send waits for it.
        wait_for(page, "() => events.filter((e) => e.state === 'waiting').length >= 3")
        page.evaluate("(id) => { window.whileDown = chat.send(id, 'while down') }", conversation)
        # Held back before its next attempt, so that what Bob sends next is missed, not live.
        page.evaluate("() => { gate.open = false }")
        wait_for(page, "() => gate.waiting === 1")
        server.start()
        for n in (1, 2, 3):
            bob.call("POST", f"conversations/{conversation}/messages/", {"content": f"meanwhile {n}", "client_msg_id": f"b-{n}"})
        page.evaluate("() => { gate.open = true; gate.release() }")
        stored = page.evaluate("() => whileDown")
        bob.call("POST", f"conversations/{conversation}/messages/", {"content": "after", "client_msg_id": "b-4"})
        wait_for(page, "() => events.some((e) => e.type === 'new_message' && e.message.content === 'after')")

        expected = ["before", "meanwhile 1", "meanwhile 2", "meanwhile 3", "while down", "after"]
        seen = messages_seen(page)
        assert [content for _, content in seen] == expected
        assert [seq for seq, _ in seen] == list(range(seen[0][0], seen[0][0] + len(expected))), seen
        assert stored["content"] == "while down" and stored["seq"] == seen[4][0]
        assert bob.contents(conversation) == expected

        # The next server takes no token signed with the old secret: the client stops for good.
        assert server.stop() == 0
        server.env["JWT_SECRET"] = "rotated-" + server.jwt_secret
        server.start()
        wait_for(page, "() => events.some((e) => e.type === 'auth_error')")
        refusal = page.evaluate("() => events.find((e) => e.type === 'auth_error')")
        assert refusal["code"] == 4401 and page.evaluate("() => chat.state") == "closed"
        attempts = page.evaluate("() => events.filter((e) => e.state === 'connecting').length")
        page.wait_for_timeout(2500)  # a window longer than the longest wait between attempts (1 s)
        assert page.evaluate("() => events.filter((e) => e.state === 'connecting').length") == attempts
        refused_attempts = [e for e in errors if str(e).startswith("WebSocket connection to")]  # Chromium logs each
        assert errors == refused_attempts
        page.close()
    finally:
        server.kill()


def test_the_demo_loads_and_two_users_chat_in_it(browser, chat_server):
    expect = sync_api.expect
    tenant = unique("tenant")
    alice, bob = Rest(chat_server, tenant, "alice"), Rest(chat_server, tenant, "bob")
    pages, errors = [], []
    for user in (alice, bob):
        page = watched_page(browser, errors)
        page.goto(f"{chat_server.http_url}/demo/#tenant={tenant}&token={user.token}")
        expect(page.locator("#connection")).to_have_text("connected", timeout=WAIT_MS)
        pages.append(page)
    alice_page, bob_page = pages

    alice_page.fill("#create [name=title]", "Demo chat")
    alice_page.fill("#create [name=participants]", bob.user_id)
    alice_page.click("#create button")
    expect(alice_page.locator("#title")).to_have_text("Demo chat", timeout=WAIT_MS)
    alice_page.fill("#composer [name=content]", "<b>hello</b> from the demo")
    alice_page.press("#composer [name=content]", "Enter")
    expect(alice_page.locator("#messages .content")).to_have_text(["<b>hello</b> from the demo"], timeout=WAIT_MS)

    bob_page.click("#refresh")
    bob_page.click("#conversations button:has-text('Demo chat')")
    expect(bob_page.locator("#messages .content")).to_have_text(["<b>hello</b> from the demo"], timeout=WAIT_MS)
    expect(alice_page.locator("#messages .receipt")).to_have_text(f"read by {bob.user_id}", timeout=WAIT_MS)
    bob_page.fill("#composer [name=content]", "hi")
    expect(alice_page.locator("#typing")).to_have_text(f"{bob.user_id} is typing…", timeout=WAIT_MS)
    bob_page.click("#messages .actions button:has-text('👍')")
    expect(alice_page.locator("#messages .actions button:has-text('👍')")).to_have_text("👍 1", timeout=WAIT_MS)
    bob_page.press("#composer [name=content]", "Enter")
    expect(alice_page.locator("#messages .content")).to_have_text(["<b>hello</b> from the demo", "hi"], timeout=WAIT_MS)
    alice_page.click("#messages .actions button:has-text('edit')")
    alice_page.fill("#composer [name=content]", "hello, edited")
    alice_page.press("#composer [name=content]", "Enter")
    expect(bob_page.locator("#messages .message").first).to_contain_text("hello, edited(edited)", timeout=WAIT_MS)

    assert alice_page.locator("#messages b").count() == 0, "message content is shown as text, never as HTML"
    assert errors == []
    for page in pages:
        page.close()
