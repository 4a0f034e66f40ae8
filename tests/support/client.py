"""Test clients that speak the wire contract over real sockets: WebSocket and REST."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import jwt
import tornado.httpclient
import tornado.websocket

# How long to wait for an event that will come. Generous, so a loaded machine never fails a
# test: a wait ends as soon as the event arrives, and this bound only matters when it never does.
DEFAULT_WAIT_SECS = 30.0
_ids = itertools.count(1)


def unique(prefix: str) -> str:
    """Ids unique within a test run, so tests sharing one server never collide."""
    return f"{prefix}-{next(_ids)}-{time.monotonic_ns() % 10**9}"


def make_token(secret: str, tenant_id: str, user_id: str, *, role: str | None = None, ttl_secs: int = 600, **claims: Any) -> str:
    payload = {"user_id": user_id, "tenant_id": tenant_id, "exp": int(time.time()) + ttl_secs, **claims}
    if role:
        payload["role"] = role
    return jwt.encode(payload, secret, algorithm="HS256")


class Socket:
    """A WebSocket client that keeps every event it receives, so tests wait on events, not sleeps.

    ``patient``: ``request`` waits out a ``rate_limited`` answer as it says, then sends again."""

    def __init__(self, conn: tornado.websocket.WebSocketClientConnection, *, patient: bool = False) -> None:
        self.conn = conn
        self.patient = patient
        self.events: list[dict] = []
        self._taken: set[int] = set()
        self._floor = 0  # every event below this index is taken
        self._presence_taken: set[tuple[int, str]] = set()  # (event index, user_id) seen by next_presence
        self._reader = asyncio.Lock()
        self.closed = False

    @classmethod
    async def connect(cls, server, tenant_id: str, token: str | None, *, path: str = "chat", patient: bool = False) -> Socket:
        url = f"{server.ws_url}/ws/{path}/{tenant_id}/" + (f"?token={token}" if token is not None else "")
        conn = await tornado.websocket.websocket_connect(url)
        return cls(conn, patient=patient)

    def send(self, frame: dict | str | bytes, **fields: Any) -> None:
        if isinstance(frame, dict):
            frame = json.dumps({**frame, **fields})
        self.conn.write_message(frame, binary=isinstance(frame, bytes))

    def send_type(self, kind: str, **fields: Any) -> None:
        self.send({"type": kind, **fields})

    async def _read_one(self, timeout: float) -> dict | None:
        message = await asyncio.wait_for(self.conn.read_message(), timeout)
        if message is None:
            self.closed = True
            return None
        event = json.loads(message)
        self.events.append(event)
        return event

    def _take(self, kind: str | None, match: dict) -> dict | None:
        for index in range(self._floor, len(self.events)):
            if index in self._taken:
                continue
            event = self.events[index]
            if (kind is None or event.get("type") == kind) and all(event.get(k) == v for k, v in match.items()):
                self._taken.add(index)
                while self._floor in self._taken:
                    self._taken.discard(self._floor)
                    self._floor += 1
                return event
        return None

    async def next(self, kind: str | None = None, *, timeout: float = DEFAULT_WAIT_SECS, **match: Any) -> dict:
        """The oldest event not yet taken of ``kind`` with matching fields; safe for concurrent waiters."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            event = self._take(kind, match)
            if event is not None:
                return event
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or self.closed:
                why = f"the socket closed ({self.conn.close_code} {self.conn.close_reason})" if self.closed else f"{timeout}s passed"
                raise AssertionError(f"no {kind} {match}: {why}; saw {[e.get('type') for e in self.events]}")
            await self._read_some(remaining)

    def presence_updates(self) -> list[tuple[int, dict]]:
        """Every presence change received, in order, as (event index, presence object): the
        server sends a lone change as ``presence_update`` and several in one interval as one
        ``presence_batch``, whichever the timing makes them."""
        found = []
        for index, event in enumerate(self.events):
            if event.get("type") == "presence_update":
                found.append((index, event))
            elif event.get("type") == "presence_batch":
                found.extend((index, update) for update in event["updates"])
        return found

    def presence_of(self, user_id: str) -> list[str]:
        """The statuses received for ``user_id`` so far, in order."""
        return [update["status"] for _, update in self.presence_updates() if update["user_id"] == user_id]

    async def next_presence(self, user_id: str, *, timeout: float = DEFAULT_WAIT_SECS, **match: Any) -> dict:
        """The oldest presence change of ``user_id`` not yet taken here with matching fields, alone
        or in a batch."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for index, update in self.presence_updates():
                key = (index, user_id)
                if update["user_id"] == user_id and key not in self._presence_taken and all(update.get(k) == v for k, v in match.items()):
                    self._presence_taken.add(key)
                    return update
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or self.closed:
                raise AssertionError(f"no presence of {user_id} {match}; saw {[(u['user_id'], u['status']) for _, u in self.presence_updates()]}")
            await self._read_some(remaining)

    async def _read_some(self, timeout: float) -> None:
        """Read under a lock, so concurrent waiters share one reader instead of racing for frames."""
        seen = len(self.events)
        async with self._reader:
            if len(self.events) > seen or self.closed:
                return  # another waiter read something meanwhile: look at it first
            try:
                await self._read_one(timeout)
            except asyncio.TimeoutError:
                pass

    async def request(self, kind: str, expect: str | None = None, *, timeout: float = DEFAULT_WAIT_SECS, **fields: Any) -> dict:
        """Send a frame with a fresh request_id and return the event that answers it."""
        while True:
            request_id = unique("req")
            self.send_type(kind, request_id=request_id, **fields)
            if not self.patient:
                return await self.next(expect, request_id=request_id, timeout=timeout)
            answer = await self.next(None, request_id=request_id, timeout=timeout)
            if answer["type"] != "error" or answer["code"] != "rate_limited":
                assert expect is None or answer["type"] == expect, answer
                return answer
            await asyncio.sleep(answer["details"]["retry_after"])  # the wait the server asks for

    async def quiet(self, secs: float = 0.3) -> list[dict]:
        """Events that arrive within ``secs`` (used to show that something did NOT arrive).

        Call it after a barrier, an event that the unwanted one would come before or with, so
        that how long the window lasts on a slow machine does not decide the check.
        """
        seen_before = len(self.events)
        deadline = asyncio.get_running_loop().time() + secs
        while not self.closed:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                await self._read_one(remaining)
            except asyncio.TimeoutError:
                break
        self._taken.clear()
        self._floor = len(self.events)
        return self.events[seen_before:]

    async def wait_closed(self, timeout: float = DEFAULT_WAIT_SECS) -> tuple[int | None, str | None]:
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.closed:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError("socket did not close")
            try:
                await self._read_one(remaining)
            except asyncio.TimeoutError:
                continue
        return self.conn.close_code, self.conn.close_reason

    def close(self) -> None:
        self.conn.close()
        self.closed = True

    async def close_and_wait(self) -> None:
        """Close, and wait for the server's answering close frame: the server handles the close in
        the same step as it answers, so before anything the test sends after this returns."""
        self.conn.close()
        await self.wait_closed()


class Api:
    """REST calls as one user; answers ``(status, json_body)`` and never raises on 4xx/5xx.

    ``patient``: a 429 ``rate_limited`` is waited out for as long as it says, then asked again,
    as a well-behaved client does; for housekeeping calls next to a throttled fuzz run."""

    def __init__(self, server, token: str | None, *, patient: bool = False) -> None:
        self.server = server
        self.token = token
        self.patient = patient
        self.http = tornado.httpclient.AsyncHTTPClient()

    async def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None, headers: dict | None = None) -> tuple[int, Any]:
        while True:
            status, parsed = await self._call_once(method, path, body, raw, headers)
            if not (self.patient and status == 429 and parsed["error"]["code"] == "rate_limited"):
                return status, parsed
            await asyncio.sleep(parsed["error"]["details"]["retry_after"])  # the wait the server asks for

    async def _call_once(self, method: str, path: str, body: Any, raw: bytes | None, headers: dict | None) -> tuple[int, Any]:
        all_headers = {"Content-Type": "application/json"}
        if self.token is not None:
            all_headers["Authorization"] = f"Bearer {self.token}"
        all_headers.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is None and method in ("POST", "PUT", "PATCH"):
            data = b""
        url = path if path.startswith("http") else f"{self.server.http_url}/api/notifications/chat/{path.lstrip('/')}"
        response = await self.http.fetch(
            url, method=method, body=data, headers=all_headers, raise_error=False, allow_nonstandard_methods=True, request_timeout=30
        )
        self.last_headers = response.headers
        text = response.body or b""
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return response.code, parsed

    async def get(self, path: str, **kw):
        return await self.call("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw):
        return await self.call("POST", path, body, **kw)

    async def put(self, path: str, body: Any = None, **kw):
        return await self.call("PUT", path, body, **kw)

    async def delete(self, path: str, **kw):
        return await self.call("DELETE", path, **kw)


class User:
    """A tenant's user with a token, REST access and as many sockets as a test opens."""

    def __init__(self, server, tenant_id: str, user_id: str, role: str | None = None, *, patient: bool = False) -> None:
        self.server = server
        self.tenant_id = tenant_id
        self.user_id = user_id
        self.token = make_token(server.jwt_secret, tenant_id, user_id, role=role)
        self.patient = patient  # see Api and Socket
        self.api = Api(server, self.token, patient=patient)

    async def socket(self) -> Socket:
        sock = await Socket.connect(self.server, self.tenant_id, self.token, patient=self.patient)
        await sock.next("connection_established")
        return sock

    async def create_conversation(self, kind: str = "group", others: list[User] = (), title: str | None = None) -> str:
        status, body = await self.api.post(
            "conversations/", {"type": kind, "title": title, "participant_ids": [u.user_id for u in others]}
        )
        assert status in (200, 201), (status, body)
        return body["id"]
