"""Fuzz the REST API with random and mutated requests to every route ``web.app.routes`` has.

Routes are read from the app at run time, so resources added later are fuzzed too. Each
request gets a random method (standard, lower-case, unknown), a path (a known route with
ids from the live run or junk, or an unknown path), a query string (``limit``, ``offset``,
``before``, ``after``, ``user_ids`` as junk), headers (missing, garbage, expired and
other-tenant tokens, tokens naming ids outside the safe set; odd content types) and a body
(none, bytes, any JSON, valid bodies of every schema with one field attacked, multipart junk,
files with odd names). Some requests are aimed at one documented limit each (``limit_probe``)
and know the only answers they may get. Every answer must be:

- never 5xx;
- an error as ``{"error": {"code", "message", "details"}}`` in JSON, with a known code;
- 401 ``unauthorized`` for a bad token on a known route, 404 on an unknown path;
- never 2xx nor 403 for objects the user may not see (another tenant, a conversation the
  user is not in): 404 says nothing about whether they exist;
- 400 ``invalid_message`` naming the field for a body with a user id outside the safe set;
- for a stored file, a name without control or format characters that ends in an extension
  of its type;
- on the throttled server (``THROTTLED_ENV``), possibly 429 ``rate_limited`` (any read or write
  with a good token) or ``upload_quota_exceeded`` (uploads), with ``Retry-After`` and
  ``details.retry_after``; on the unthrottled one, never 429.

State: the objects the fuzzing user can touch (conversations, participants, messages with
reactions, presence) are read back between requests. Rejected requests must change nothing;
after an accepted write the state is read again (once it settles) as the new baseline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
import time
import unicodedata
import urllib.parse
from collections import Counter
from collections.abc import Iterable
from typing import Any

import jwt
import orjson
import pytest
import tornado.httpclient
import tornado.web
from hypothesis import given
from hypothesis import strategies as st

from config.settings import Settings
from tests.support.client import Api, User, make_token, unique
from tests.support.fuzz import (
    BIG_INTS,
    CONTROL_CHARS,
    KNOWN_ERROR_CODES,
    DataSource,
    RandomSource,
    Source,
    backends,
    check_limit_error,
    dumps,
    fuzz_settings,
    json_value,
    long_text,
    mutate_bytes,
    odd_text,
    odd_value,
    printable_text,
    server_log_problems,
    start_fuzz_server,
    text,
)
from tests.support.rest import multipart
from web.app import routes
from web.rest.base import API_PREFIX, ApiHandler, is_json_media_type

# Per backend, in the default tier; the slow variants send ten times as many. Real MongoDB
# (FerretDB) answers the state read-backs about ten times slower, so it gets fewer. On the
# throttled server most requests are refused for a limit before anything else: fewer show that.
HYPOTHESIS_EXAMPLES = {"mock": 30, "mongodb": 15}  # of 1 to 20 requests each
RANDOM_REQUESTS = {"mock": 1200, "mongodb": 300}  # from a seeded random.Random
THROTTLED_EXAMPLES = {"mock": 8, "mongodb": 4}
THROTTLED_REQUESTS = {"mock": 300, "mongodb": 150}
CHECK_EVERY = 40  # requests between state checks when nothing was accepted
STATE_READERS = 16  # per tenant
MAX_SEGMENT_CHARS = 4001  # of one path segment, before encoding
MAX_TARGET_CHARS = 48 * 1024  # of the path and query string, encoded
SEED = 4_2026
LIMIT_PROBE_PERCENT = 15

MAX_FRAME_BYTES = Settings().max_frame_bytes
# What is read of any body before the token is checked; past it Tornado answers a bare 400 and
# closes the connection (docs/rest-api.md, "Limits for clients that never finish").
BODY_SLACK_BYTES = 64 * 1024
# User and tenant ids (docs/rest-api.md): letters, digits and ._:@-, 1 to 128 of them.
SAFE_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
ID_BODY_FIELDS = ("participant_ids", "user_id")

STANDARD_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
ODD_METHODS = ("FOO", "PROPFIND", "get", "Post", "PURGE", "TRACE", "LINK")
METHOD_WEIGHTS = ["GET"] * 6 + ["POST"] * 5 + ["PUT"] * 3 + ["PATCH"] * 2 + ["DELETE"] * 3 + ["HEAD", "OPTIONS", "odd"]

QUERY_KEYS = ["limit", "offset", "before", "after", "user_ids", "since_seq", "q", "page", "token", "limit[]"]
QUERY_VALUES = [
    "", "0", "1", "-1", "20", "100", "101", "500", "501", "1e3", "0x10", " 5", "5 ", "+5", "1_000", "\u0663", "\uff15",
    "1.5", "NaN", "inf", "null", "true", "[]", str(2**53), str(2**53 + 1), str(2**63), str(2**64), str(10**30), "-" + str(10**30),
    "9" * 5000, "a,b", ",", "%00", "\x00",
]
CONTENT_TYPES = [
    "application/json", "application/json; charset=utf-8", "application/json; charset=latin-1", "APPLICATION/JSON",
    "application/problem+json", "text/plain", "text/json", "application/x-www-form-urlencoded", "multipart/form-data",
    "multipart/form-data; boundary=", "multipart/form-data; boundary=xyz", "application/octet-stream", "", "json", "*/*",
    "application/json;;;", "application/jsonx",
]
# REST bodies (the wire contract) by the route and method that take them.
BODY_SCHEMAS = {
    ("ConversationsHandler", "POST"): "create_conversation",
    ("ConversationHandler", "PUT"): "update_conversation",
    ("ConversationHandler", "PATCH"): "update_conversation",
    ("ParticipantsHandler", "POST"): "add_participant",
    ("MessagesHandler", "POST"): "create_message",
    ("MessageHandler", "PUT"): "edit_message",
    ("ReactionsHandler", "POST"): "add_reaction",
    ("MyPresenceHandler", "PUT"): "update_presence",
    ("ReadReceiptHandler", "POST"): "mark_read",
}
SCHEMA_FIELDS = {
    "create_conversation": ["type", "title", "description", "participant_ids"],
    "update_conversation": ["title", "description"],
    "add_participant": ["user_id", "role"],
    "create_message": ["content", "message_type", "metadata", "client_msg_id", "reply_to"],
    "edit_message": ["content"],
    "add_reaction": ["emoji"],
    "update_presence": ["status"],
    "mark_read": ["message_id"],
}
EMOJI = ["\U0001f44d", "\u2764\ufe0f", "x", ":+1:"]
FIXTURES = ("mine", "member", "channel", "hidden")  # World.make_fixture says what each is
# Ids outside the safe set; none has a comma or white space at its ends, so each is still
# unsafe when a query string of comma-separated ids is split and trimmed.
UNSAFE_IDS = [
    "m m", "m/x", "m\\x", "m#x", "m?x", "m+x", "m'x", 'm"x', "m<x>", "m*x", "m~x", "m!x", "m$x", "m{x}", "m%x", "m&x",
    "\u00e9", "m\u00a0x", "m\u200bx", "m\u202ex", "m\ufeffx", "\U0001f44d", "m\x00x", "m\x1bx", "m\x7fx", "m\tx",
    "\u0130", "\uff4d", "x" * 129, "x" * 1000,
]
FILENAME_MAX_CHARS = 255
# Characters a file name must not keep (docs/rest-api.md, Files), and separators it must lose.
FILENAME_TRAPS = [
    "", "\u202e", "\u202d", "\u2066", "\u2069", "\u200b", "\u200d", "\u200e", "\ufeff", "\u00ad", "\U000e0041",
    "\x85", "\x00", "\x01", "\x1b", "\x7f", "\t", "\r", "\n", " ", "/", "\\", "..", "\u2028",
]
# Text, some past the throttled server's upload quota (413 there), and HTML, which is text too.
FILE_CONTENTS = [b"hello", b"", b"<html><script>x</script>", b"m" * 400, b"big text\n" * 600]
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(40)
# The extensions the stored names of the fuzz's files (text and PNG) may end in.
TYPE_EXTENSIONS = {"text/plain": (".txt", ".text", ".log"), "image/png": (".png",)}


@dataclasses.dataclass
class Route:
    pattern: re.Pattern
    template: str  # the path with {name} for each argument
    names: list[str]
    handler: type
    methods: tuple[str, ...]


def api_routes() -> list[Route]:
    """The app's REST routes (under the API prefix), as templates and the methods they implement
    beyond the CORS preflight (OPTIONS) that every one of them answers alike."""
    found = []
    for spec in routes(None):
        regex, handler = spec[0], spec[1]
        if not regex.startswith(API_PREFIX) or not issubclass(handler, tornado.web.RequestHandler):
            continue
        names = re.findall(r"\(\?P<(\w+)>[^)]*\)", regex)
        template = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", regex).replace("\\.", ".").rstrip("?").rstrip("/") + "/"
        methods = tuple(
            m for m in STANDARD_METHODS if getattr(handler, m.lower()) is not getattr(ApiHandler, m.lower())
        )
        found.append(Route(re.compile(regex + "$"), template, names, handler, methods))
    return found


ROUTES = api_routes()


def matching_route(path: str) -> Route | None:
    return next((route for route in ROUTES if route.pattern.match(path)), None)


def is_upload(route: Route | None) -> bool:
    """``upload/``: it takes multipart bodies, and raises the body size limit for them."""
    return route is not None and route.handler.__name__ == "UploadHandler"


# --- the live run -------------------------------------------------------------------------


@dataclasses.dataclass
class Request:
    method: str
    path: str  # encoded, with the query string
    headers: dict[str, str]
    body: bytes | None
    auth: str  # "good", "admin" or what was wrong with it
    secrecy: str | None = None  # "missing", "hidden" (mallory is not in it) or "foreign" (another tenant)
    maybe_accepted: bool = False  # good token, a route's own method, a well-formed body
    # The only answers a limit probe may get, as (status, error code or None), and a field its
    # error must name; None: the rules every request obeys decide.
    expect: frozenset[tuple[int, str | None]] | None = None
    expect_field: str | None = None
    filename: str | None = None  # an upload's file name as the server reads it, when that is certain


class World:
    """Users, fixtures the fuzzing user can reach (and one it cannot), and their last state."""

    def __init__(self, server) -> None:
        self.server = server
        self.throttled = server.throttled
        self.tenant = unique("fuzz-rest")
        # Their own calls (fixtures, state reads) wait out the limits the fuzzing runs into.
        patient = self.throttled
        self.mallory = User(server, self.tenant, unique("mallory"), patient=patient)  # the fuzzing user
        self.olivia = User(server, self.tenant, unique("olivia"), patient=patient)  # owns most fixtures
        self.trent = User(server, unique("fuzz-other-tenant"), unique("trent"), patient=patient)
        # Tenant admins who only read the state back, each in turn, so that on the throttled server
        # no reader's budget holds the state checks up. Admins who are not participants all see a
        # conversation alike.
        self.readers = {
            tenant: itertools.cycle([User(server, tenant, unique("reader"), role="admin", patient=patient) for _ in range(STATE_READERS)])
            for tenant in (self.tenant, self.trent.tenant_id)
        }
        self.http = tornado.httpclient.AsyncHTTPClient()
        self.fixtures: dict[str, str] = {}
        self.messages: dict[str, list[str]] = {}
        self.files: list[str] = []
        self.baseline: dict | None = None
        self.sent = 0
        self.since_check = 0
        self.statuses: dict[int, int] = {}
        self.codes: Counter[str] = Counter()  # of the errors answered
        self.probed = 0  # limit probes answered as they must be
        self.limits_hit: Counter[str] = Counter()  # 429s by the limit that refused: "read", "write", "upload quota"
        self.accepted_writes = 0
        self.unverified = 0
        self.repairs = 0
        self.public: set[str] = set()
        self.snapshots = 0
        secret = server.jwt_secret
        self.tokens = {
            "good": self.mallory.token,
            "admin": make_token(secret, self.tenant, self.mallory.user_id, role="admin"),
        }
        now = int(time.time())
        self.bad_tokens = {
            "missing": None,
            "empty": "",
            "garbage": "Bearer not-a-jwt",
            "scheme": f"Basic {self.mallory.token}",
            "no-scheme": self.mallory.token,
            "expired": "Bearer " + make_token(secret, self.tenant, self.mallory.user_id, ttl_secs=-30),
            "wrong-secret": "Bearer " + make_token("another-secret-0123456789abcdef0123", self.tenant, self.mallory.user_id),
            "alg-none": "Bearer " + jwt.encode({"user_id": "m", "tenant_id": self.tenant, "exp": now + 60}, None, algorithm="none"),
            "no-tenant": "Bearer " + jwt.encode({"user_id": "m", "exp": now + 60}, secret, algorithm="HS256"),
            "user-not-string": "Bearer " + jwt.encode({"user_id": ["m"], "tenant_id": self.tenant, "exp": now + 60}, secret, algorithm="HS256"),
            "long-user": "Bearer " + jwt.encode({"user_id": "m" * 129, "tenant_id": self.tenant, "exp": now + 60}, secret, algorithm="HS256"),
            "bearer-only": "Bearer",
            "bearer-spaces": "Bearer    ",
            "junk-latin1": "Bearer \u00e9\u00ff\u00a0",
            # Well signed, but naming ids outside the safe set.
            "unsafe-user": "Bearer " + make_token(secret, self.tenant, "m m"),
            "unsafe-user-nul": "Bearer " + make_token(secret, self.tenant, "m\x00"),
            "unsafe-sub": "Bearer " + jwt.encode({"sub": "m\u202ex", "tenant_id": self.tenant, "exp": now + 60}, secret, algorithm="HS256"),
            "unsafe-tenant": "Bearer " + make_token(secret, self.tenant + "/x", self.mallory.user_id, role="admin"),
        }

    # --- fixtures ----------------------------------------------------------------------------

    async def setup(self) -> None:
        for name in FIXTURES:
            await self.make_fixture(name)
        status, body = await self.trent.api.post("conversations/", {"type": "group", "title": "other tenant"})
        assert status == 201, body
        self.fixtures["other_tenant"] = body["id"]
        status, sent = await self.trent.api.post(f"conversations/{body['id']}/messages/", {"content": "not yours"})
        assert status == 201, sent
        self.messages["other_tenant"] = [sent["id"]]
        status, uploaded = await self.upload(self.mallory, self.fixtures["mine"])
        assert status == 201, uploaded
        self.files = [uploaded["id"]]
        for route in ROUTES:  # routes served without a token (openapi.json)
            path = route.template
            for name in route.names:
                path = path.replace("{" + name + "}", "x")
            status, _ = await Api(self.server, None).get(self.server.http_url + path)
            if status != 401:
                self.public.add(route.template)
        self.baseline = await self.settled_snapshot()

    async def make_fixture(self, name: str) -> None:
        """``mine``: mallory owns it, olivia is in it; ``member``: olivia's group, mallory a member;
        ``channel``: olivia's channel, mallory a member (reads only); ``hidden``: olivia's, without mallory."""
        owner, other = (self.mallory, self.olivia) if name == "mine" else (self.olivia, self.mallory)
        kind = "channel" if name == "channel" else "group"
        others = [] if name == "hidden" else [other]
        conv = await owner.create_conversation(kind, others, title=f"fuzz {name}")
        self.fixtures[name] = conv
        ids = []
        for author in ([owner] if name in ("channel", "hidden") else [owner, other]):
            status, sent = await author.api.post(f"conversations/{conv}/messages/", {"content": f"{name} by {author.user_id}"})
            assert status == 201, sent
            ids.append(sent["id"])
        status, _ = await owner.api.post(f"messages/{ids[0]}/reactions/", {"emoji": "\U0001f44d"})
        assert status == 201
        self.messages[name] = ids

    async def upload(self, user: User, conversation_id: str | None):
        body, content_type = multipart({"conversation_id": conversation_id} if conversation_id else {}, [("file", "a.txt", "text/plain", b"hello")])
        return await user.api.call("POST", "upload/", raw=body, headers={"Content-Type": content_type})

    def expected_roles(self) -> dict[str, dict[str, str | None]]:
        m, o = self.mallory.user_id, self.olivia.user_id
        return {
            "mine": {m: "owner", o: "member"},
            "member": {o: "owner", m: "member"},
            "channel": {o: "owner", m: "member"},
            "hidden": {o: "owner", m: None},
        }

    async def repair(self, state: dict) -> bool:
        """Put back any fixture an accepted request deleted or changed the membership of."""
        repaired = False
        for name, roles in self.expected_roles().items():
            members = state[name]["participants"]
            if members is None or any(members.get(user) != role for user, role in roles.items()):
                await self.make_fixture(name)
                repaired = True
        self.repairs += repaired
        return repaired

    # --- state -------------------------------------------------------------------------------

    async def snapshot(self) -> dict:
        """What the fuzzing user's requests could have changed, read by others but for her own list."""
        self.snapshots += 1

        def reader(tenant: str) -> Api:
            return next(self.readers[tenant]).api

        async def conversation(name: str, conv: str, tenant: str) -> dict:
            detail, messages = await asyncio.gather(
                reader(tenant).get(f"conversations/{conv}/"), reader(tenant).get(f"conversations/{conv}/messages/?limit=100")
            )
            if detail[0] == 404:
                return {"participants": None}
            assert detail[0] == messages[0] == 200, (name, detail, messages)
            # last_activity_at trails accepted writes (ACTIVITY_WRITE_SECS).
            return {
                "detail": {k: v for k, v in detail[1].items() if k != "last_activity_at"},
                "messages": messages[1]["results"],
                "participants": {p["user_id"]: p["role"] for p in detail[1]["participants"]},
            }

        parts = await asyncio.gather(
            *(conversation(name, self.fixtures[name], self.tenant) for name in FIXTURES),
            conversation("other_tenant", self.fixtures["other_tenant"], self.trent.tenant_id),
            self.mallory.api.get("conversations/?limit=100"),
            reader(self.tenant).get(f"presence/?user_ids={self.mallory.user_id}"),
        )
        state = dict(zip([*FIXTURES, "other_tenant"], parts[:5]))
        listed, presence = parts[5], parts[6]
        assert listed[0] == 200 and presence[0] == 200, (listed, presence)
        state["mallory_conversations"] = sorted(
            (c["id"], c["title"], c["description"], c["updated_at"], c["my_role"], (c["last_message"] or {}).get("seq"))
            for c in listed[1]["results"]
        )
        state["presence"] = presence[1]["results"][0]["status"]
        return state

    async def settled_snapshot(self) -> dict:
        """A snapshot once background work (system messages, activity times) is done: two equal reads."""
        previous = await self.snapshot()
        for _ in range(20):
            await asyncio.sleep(0.01)
            current = await self.snapshot()
            if current == previous:
                return current
            previous = current
        raise AssertionError("the state did not settle")

    async def check_unchanged(self, since: list[Request]) -> None:
        state = await self.snapshot()
        if state != self.baseline:
            changed = sorted(k for k in state if state[k] != self.baseline.get(k))
            raise AssertionError(
                f"rejected requests changed {changed}:\nbefore {[self.baseline[k] for k in changed]}\n"
                f"after  {[state[k] for k in changed]}\nrequests: {[(r.method, r.path, r.body and r.body[:200]) for r in since]}"
            )

    async def after_accepted_write(self, request: Request, status: int, body: Any) -> None:
        self.accepted_writes += 1
        state = await self.settled_snapshot()
        cleanup = request.method == "POST" and request.path.split("?")[0].rstrip("/").endswith("/conversations") and isinstance(body, dict)
        if cleanup and body.get("id") not in self.fixtures.values():  # keep the user's list short
            token_user = self.mallory
            status, _ = await token_user.api.delete(f"conversations/{body['id']}/")
            assert status in (204, 403, 404), status
            state = await self.settled_snapshot()
        if await self.repair(state):
            state = await self.settled_snapshot()
        self.baseline = state

    # --- sending -----------------------------------------------------------------------------

    async def send(self, request: Request) -> tuple[int, bytes, Any]:
        http_request = tornado.httpclient.HTTPRequest(
            self.server.http_url + request.path,
            method=request.method,
            headers=request.headers,
            body=request.body,
            allow_nonstandard_methods=True,
            request_timeout=30,
            follow_redirects=False,
        )
        try:
            response = await self.http.fetch(http_request, raise_error=False)
        except Exception as error:  # the server dropped the connection
            raise AssertionError(f"{error!r} on {request}") from None
        return response.code, response.body or b"", response.headers

    def check_answer(self, request: Request, status: int, body: bytes, headers) -> Any:
        context = f"{request.method} {request.path} auth={request.auth} headers={request.headers} body={(request.body or b'')[:300]!r} -> {status} {body[:500]!r}"
        expect, field = (request.expect, request.expect_field) if request.expect is not None else body_rule(request)
        if status == 599 and len(request.body or b"") > MAX_FRAME_BYTES + BODY_SLACK_BYTES:
            return None  # past what is read before the token is checked: closed, maybe before the 400 is read
        assert status != 599, f"the server dropped the connection; {context}"
        assert status < 500, f"server error; {context}"
        assert 200 <= status < 500 and status not in range(300, 400), context
        path = urllib.parse.urlsplit(request.path).path
        route = matching_route(path)
        known = route is not None
        parsed = None
        if request.method != "HEAD" and body and not (status == 200 and "/files/" in path):
            assert "json" in headers.get("Content-Type", ""), context
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise AssertionError(f"not JSON; {context}") from None
        code = None
        bare = not body and expect is not None and (status, None) in expect  # Tornado's 400 for a body past the slack
        if status >= 400 and request.method != "HEAD" and not bare:
            assert isinstance(parsed, dict) and set(parsed) == {"error"}, context
            error = parsed["error"]
            assert isinstance(error, dict) and set(error) == {"code", "message", "details"}, context
            assert error["code"] in KNOWN_ERROR_CODES, f"unknown code; {context}"
            assert isinstance(error["message"], str) and error["message"], context
            code = error["code"]
            self.codes[code] += 1
        if status == 429:
            self.check_throttled(request, route, code, parsed, headers, context)
        elif expect is not None:
            assert (status, code) in expect, f"want one of {sorted(expect, key=str)}; {context}"
            if field is not None and code is not None:
                assert field in (parsed["error"]["details"] or {}), f"the error does not name {field}; {context}"
            self.probed += request.expect is not None
        elif status == 400 and (parsed is None or code == "bad_request"):
            # Tornado's own 400, before any handler code: a path argument that is not UTF-8,
            # or a form body (multipart, urlencoded) it cannot parse.
            form = request.headers.get("Content-Type", "").lower().startswith(("multipart/", "application/x-www-form-urlencoded"))
            assert form or re.search(r"%[89a-fA-F][0-9a-fA-F]", path), f"an unexplained 400 bad_request; {context}"
        elif request.method == "OPTIONS":
            assert status == 204 and not body, f"OPTIONS is the CORS preflight: 204 on any path, without auth; {context}"
        elif not known and request.method in STANDARD_METHODS:
            assert status == 404, f"an unknown path must be 404; {context}"
        elif known and request.method in STANDARD_METHODS and request.auth not in ("good", "admin") and route.template not in self.public:
            assert status == 401 and (code == "unauthorized" or request.method == "HEAD"), f"a bad token must be 401; {context}"
        # OPTIONS answers alike on every path, so it tells nothing about whose object is there.
        if request.method != "OPTIONS" and (request.secrecy == "foreign" or (request.secrecy == "hidden" and request.auth == "good")):
            assert status >= 400 and status != 403, f"another's object must look missing; {context}"
        if status == 201 and is_upload(route):
            check_stored_name(parsed, request.filename, context)
            self.files = [*self.files[-4:], parsed["id"]]
        return parsed

    def check_throttled(self, request: Request, route: Route | None, code: str | None, parsed: Any, headers, context: str) -> None:
        """Only the throttled server refuses for a limit, and only requests a limit applies to:
        with a good token, reads (GET: the read budget), writes (the write rate) and uploads (their quotas)."""
        assert self.throttled, f"429 from the unthrottled server; {context}"
        limited = (
            route is not None
            and route.template not in self.public
            and request.auth in ("good", "admin")
            and request.method in ("GET", *WRITE_METHODS)
            and len(request.body or b"") <= MAX_FRAME_BYTES + BODY_SLACK_BYTES
        )
        assert limited, f"429 for a request no limit applies to; {context}"
        uploading = request.method == "POST" and is_upload(route)
        assert code == "rate_limited" or (uploading and code == "upload_quota_exceeded"), context
        check_limit_error(parsed["error"], context)
        assert int(headers.get("Retry-After", "0")) >= 1, f"no Retry-After; {context}"
        self.limits_hit["upload quota" if code == "upload_quota_exceeded" else "read" if request.method == "GET" else "write"] += 1

    async def run(self, requests: Iterable[Request]) -> None:
        """``requests`` are made one at a time, each once the answers before it are checked and
        the fixtures repaired, so that each names the fixtures as they are."""
        since: list[Request] = []
        for request in requests:
            if request.maybe_accepted and since:
                # Before a write that may change the state: all since the last check were refused.
                await self.check_unchanged(since)
                since, self.since_check = [], 0
            status, body, headers = await self.send(request)
            self.sent += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1
            parsed = self.check_answer(request, status, body, headers)
            if status < 400 and request.method not in ("GET", "HEAD", "OPTIONS"):
                self.unverified += len(since)  # refused, but mixed up with an accepted write
                await self.after_accepted_write(request, status, parsed)
                since, self.since_check = [], 0
                continue
            since.append(request)
            self.since_check += 1
            if self.since_check >= CHECK_EVERY:
                await self.check_unchanged(since)
                since, self.since_check = [], 0
        await self.check_unchanged(since)
        self.since_check = 0


def body_rule(request: Request) -> tuple[frozenset | None, str | None]:
    """What a body alone decides (docs/rest-api.md), and a field the error must name; else no rule:

    - past MAX_FRAME_BYTES + 64 KiB (but for an upload, which raises its own limit): a bare 400;
    - a JSON body to a route that takes one, once the token passes: past MAX_FRAME_BYTES, 413;
      naming a user id outside the safe set, 400 ``invalid_message``, whatever else is wrong with it.
    """
    route = matching_route(urllib.parse.urlsplit(request.path).path)
    size = len(request.body or b"")
    if size > MAX_FRAME_BYTES + BODY_SLACK_BYTES and not is_upload(route):
        return frozenset({(400, None)}), None
    schema = BODY_SCHEMAS.get((route.handler.__name__, request.method)) if route else None
    json_type = is_json_media_type(request.headers.get("Content-Type", ""))
    if schema is None or request.auth not in ("good", "admin") or not json_type or not size:
        return None, None
    if size > MAX_FRAME_BYTES:
        return frozenset({(413, "payload_too_large")}), "body"
    try:
        body = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        return None, None
    for name in ID_BODY_FIELDS:
        if isinstance(body, dict) and name in SCHEMA_FIELDS[schema] and names_unsafe_id(body.get(name)):
            return frozenset({(400, "invalid_message")}), name
    return None, None


def names_unsafe_id(value: Any) -> bool:
    if isinstance(value, list):
        return any(names_unsafe_id(item) for item in value)
    return isinstance(value, str) and not SAFE_ID.fullmatch(value)


def read_as_sent(filename: str, encoded: bool) -> bool:
    """Whether the server reads ``filename`` exactly as sent: always when encoded; quoted, when it
    has no quote or backslash (escapes) and no control character but tab (an invalid part header)."""
    return encoded or not any(c in filename for c in '"\\') and not any(c in CONTROL_CHARS and c != "\t" for c in filename)


def check_stored_name(stored: dict, sent: str | None, context: str) -> None:
    """docs/rest-api.md, Files: the sent name's last path component without control and format
    characters, trimmed, ``file`` if nothing is left; an extension of the detected type added if
    it has none; at most 255 characters. ``sent``: the name the server read, if certain."""
    name = stored["filename"]
    assert 1 <= len(name) <= FILENAME_MAX_CHARS and "/" not in name and "\\" not in name, f"stored as {name!r}; {context}"
    assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in name), f"stored as {name!r}; {context}"
    extensions = TYPE_EXTENSIONS.get(stored["content_type"])
    if extensions is None:  # a type the fuzz's files are rarely detected as: an extension of some kind
        assert re.search(r"\.\w+$", name), f"stored as {name!r}; {context}"
        return
    assert name.lower().endswith(extensions), f"stored as {name!r}, a {stored['content_type']}; {context}"
    if sent is None:
        return
    visible = "".join(c for c in re.split(r"[/\\]", sent)[-1] if unicodedata.category(c) not in ("Cc", "Cf")).strip() or "file"
    if visible.lower().endswith(extensions):
        assert name == visible[-FILENAME_MAX_CHARS:], f"sent {sent!r}, stored as {name!r}; {context}"
    else:
        extension = next(e for e in extensions if name.lower().endswith(e))
        assert name == visible[: FILENAME_MAX_CHARS - len(extension)] + name[-len(extension) :], f"sent {sent!r}, stored as {name!r}; {context}"


# --- requests -------------------------------------------------------------------------------


# What a path argument names, besides the fuzzing user's own objects.
SECRECY = {"hidden": "hidden", "other_tenant": "foreign"}
RANK = {None: 0, "missing": 1, "hidden": 2, "foreign": 3}


def id_for(src: Source, world: World, name: str, *, odd: bool = True) -> tuple[str, str | None]:
    """A value for path argument ``name``, and whether it names something hidden from mallory;
    ``odd``: sometimes junk instead."""
    f = world.fixtures
    if odd and src.chance(15):
        return odd_segment(src), "missing"
    if name == "conversation_id":
        key = src.choice(["mine", "mine", "member", "member", "channel", "hidden", "other_tenant", "gone"])
        return f.get(key, "no-such-conversation"), SECRECY.get(key, "missing" if key == "gone" else None)
    if name == "message_id":
        key = src.choice(["mine", "mine", "member", "channel", "hidden", "other_tenant"])
        return src.choice(world.messages[key]), SECRECY.get(key)
    if name == "user_id":
        if odd and src.chance(20):
            return urllib.parse.quote(src.choice(UNSAFE_IDS), safe=""), None
        return src.choice([world.mallory.user_id, world.olivia.user_id, world.trent.user_id, "nobody"]), None
    if name == "emoji":
        return urllib.parse.quote(src.choice(EMOJI + ["x\n", " ", "%", "\u2003"]), safe=""), None
    if name == "file_id":
        return src.choice(world.files + ["no-such-file"]), None
    return src.choice([f["mine"], world.messages["mine"][0], world.mallory.user_id, "x"]), None


def odd_segment(src: Source) -> str:
    kind = src.integer(0, 3)
    if kind == 0:
        return urllib.parse.quote(odd_text(src) or "x", safe="")
    if kind == 1:
        return src.choice(["%FF", "%C3", "%00", "%2F", "..", ".", "%2e%2e", "%ZZ", "%", "a%20b", "x" * 300, "null", "-1"])
    if kind == 2:
        return urllib.parse.quote(long_text(src)[:MAX_SEGMENT_CHARS], safe="")
    return urllib.parse.quote(str(src.choice(BIG_INTS)), safe="")


def fill(src: Source, world: World, route: Route, *, odd: bool = True) -> tuple[str, str | None]:
    path, secrecy = route.template, None
    for name in route.names:
        value, secret = id_for(src, world, name, odd=odd)
        secrecy = max(secrecy, secret, key=RANK.get)
        path = path.replace("{" + name + "}", value, 1)
    if src.chance(15):
        path = path.rstrip("/")
    return path, secrecy


def odd_path(src: Source) -> str:
    kind = src.integer(0, 3)
    base = API_PREFIX + "/"
    if kind == 0:
        return base + "/".join(odd_segment(src) for _ in range(src.integer(0, 4))) + "/"
    if kind == 1:
        return base + src.choice(["conversations//", "conversations/x/y/z/", "messages/", "messages/x/", "presence/me/x/", "files/", "upload/x/", "reactions/", "openapi.json/x", "conversations/x/messages/y/z/"])
    if kind == 2:
        return src.choice(["/api/notifications/", "/api/", "/", "/api/notifications/chat", "/api/notifications/chat/../chat/conversations/"])
    return base + src.choice(["Conversations/", "CONVERSATIONS/", "conversation/", "conversations.json", "conversations/?/"])


def query_string(src: Source) -> str:
    if src.chance(50):
        return ""
    pairs = []
    for _ in range(src.integer(1, 4)):
        value = src.choice(QUERY_VALUES) if src.chance(80) else odd_text(src)
        pairs.append(urllib.parse.quote(src.choice(QUERY_KEYS), safe="[]") + "=" + urllib.parse.quote(value, safe=","))
    return "?" + "&".join(pairs)


def good_field(src: Source, world: World, name: str) -> Any:
    if name == "type":
        return src.choice(["group", "channel", "direct"])
    if name in ("title", "description"):
        return src.choice([None, "t " + printable_text(src, 0, 30)])
    if name == "participant_ids":
        return src.choice([[], [world.olivia.user_id], [world.olivia.user_id, "someone-else"]])
    if name == "user_id":
        return src.choice([world.olivia.user_id, world.mallory.user_id, "newcomer"])
    if name == "role":
        return src.choice(["member", "admin"])
    if name == "content":
        return "c " + printable_text(src, 0, 40)
    if name == "message_type":
        return src.choice(["text", "emoji"])
    if name == "metadata":
        return {printable_text(src, 0, 6): printable_text(src) for _ in range(src.integer(0, 2))}
    if name == "client_msg_id":
        return src.choice([None, f"rest-cmid-{src.integer(0, 3)}"])
    if name in ("reply_to", "message_id"):
        return src.choice([None, *world.messages["mine"], *world.messages["member"]])
    if name == "emoji":
        return src.choice(EMOJI)
    if name == "status":
        return src.choice(["online", "away", "busy", "offline"])
    return printable_text(src)


def odd_field(src: Source, name: str) -> Any:
    if name in ID_BODY_FIELDS and src.chance(30):
        unsafe = src.choice(UNSAFE_IDS)
        return unsafe if name == "user_id" else src.choice([[unsafe], ["someone", unsafe]])
    if src.chance(40):
        return odd_value(src)
    return src.choice(
        {
            "type": ["GROUP", "dm", "", None, "system", 1],
            "title": ["x" * 201, "a\x00", "a\x1b", 5, [], "\u202e"],
            "description": ["x" * 2001, "a\x00", {}, 0.5],
            "participant_ids": [["x"] * 501, [""], ["a\x00"], [None], "olivia", {}, [["x"]], [1]],
            "user_id": ["", "x" * 129, "a\x00", None, 5, ["x"]],
            "role": ["owner", "OWNER", "", None, "superuser"],
            "content": ["", " ", "a\x00", "x" * 4001, None, 1, "\u2003"],
            "message_type": ["system", "video", "", None],
            "metadata": [[], "x", None, {"a\x00": 1}, {"$set": 1}, {"a.b": 1}, {"a": 2**63}, {"k": "x" * 5000}, {"file_id": 5}],
            "client_msg_id": ["", "x" * 129, "a\x00", 5],
            "reply_to": ["", "no-such-message", 5],
            "message_id": ["", "no-such-message", 5, {}],
            "emoji": ["x\n", " x", "", "x" * 33, "a\x00", 5, "\u00a0"],
            "status": ["Online", "invisible", "", None, 1],
        }.get(name, [None, "", 0])
    )


def schema_body(src: Source, world: World, schema: str) -> dict:
    fields = SCHEMA_FIELDS[schema]
    body = {name: good_field(src, world, name) for name in fields if src.chance(70) or name in ("type", "content", "emoji", "status", "user_id")}
    if not body and schema == "update_conversation":
        body["title"] = good_field(src, world, "title")
    return body


def body_for(src: Source, world: World, route: Route | None, method: str) -> tuple[bytes | None, str | None, bool, str | None]:
    """The body, the content type it is sent as (None: no header), whether it is well-formed, and
    the name of the file it uploads as the server reads it, when that is certain."""
    schema = BODY_SCHEMAS.get((route.handler.__name__, method)) if route else None
    upload = is_upload(route)
    kind = src.integer(0, 9)
    if method in ("GET", "HEAD", "OPTIONS", "DELETE") and kind < 7:
        return None, None, True, None
    if upload and kind < 6:
        body, content_type, filename = multipart_body(src, world)
        return body, content_type, True, filename
    if kind <= 3 and schema:
        body = schema_body(src, world, schema)
        return dumps(body).encode(), "application/json", True, None
    if kind <= 5:  # a body of some schema, one field attacked or an extra key
        schema = schema or src.choice(sorted(SCHEMA_FIELDS))
        body = schema_body(src, world, schema)
        if src.chance(80):
            name = src.choice(SCHEMA_FIELDS[schema])
            body[name] = odd_field(src, name)
        else:
            body[odd_text(src)] = json_value(src)
        return dumps(body, ascii_only=src.chance(30)).encode(), "application/json", False, None
    if kind == 6:
        return dumps(json_value(src)).encode(), src.choice(["application/json", src.choice(CONTENT_TYPES)]), False, None
    if kind == 7:
        return src.binary(200), src.choice(CONTENT_TYPES), False, None
    if kind == 8:
        return mutate_bytes(src, dumps(schema_body(src, world, schema or "create_message")).encode()), "application/json", False, None
    return text(src, 100).encode(), src.choice(CONTENT_TYPES), False, None


def multipart_body(src: Source, world: World) -> tuple[bytes, str, str | None]:
    """The body, its content type, and the file name the server reads from it when that is certain."""
    fields, files = {}, []
    if src.chance(50):
        fields["conversation_id"] = src.choice([world.fixtures["mine"], world.fixtures["hidden"], "", "a\x00", "x" * 200, "nope"])
    if src.chance(20):
        fields[src.choice(["caption", "file", "extra"])] = odd_text(src) or "x"
    for _ in range(src.choice([0, 1, 1, 1, 2])):
        files.append(
            (
                src.choice(["file", "file", "upload", "conversation_id"]),
                src.choice(["a.txt", "", "../../etc/passwd", "a\x00b.txt", "\u00e9\u00e9.png", "x" * 400]) if src.chance(50) else odd_filename(src),
                src.choice([None, "text/plain", "image/png", "application/octet-stream", "application/x-msdownload", "text/html", "garbage"]),
                src.choice(FILE_CONTENTS + [src.binary(100), b"\x89PNG\r\n\x1a\n" + src.binary(40), b"MZ\x90\x00" + src.binary(20)]),
            )
        )
    encoded = src.chance(40)
    body, content_type = multipart(fields, files, boundary=src.choice(["fuzzboundary", "b", "x" * 70]), encoded_names=encoded)
    sent = files[0][1] if len(files) == 1 and read_as_sent(files[0][1], encoded) else None
    if src.chance(25):
        body, sent = mutate_bytes(src, body), None
    if src.chance(10):
        content_type = src.choice(["multipart/form-data", "multipart/form-data; boundary=other", "multipart/mixed; boundary=fuzzboundary"])
    return body, content_type, sent


def odd_filename(src: Source) -> str:
    """A name with invisible, bidi, control and separator characters, an extension that may not
    fit the content, or a length around the limit."""
    if src.chance(15):
        n = src.choice([FILENAME_MAX_CHARS - 4, FILENAME_MAX_CHARS - 1, FILENAME_MAX_CHARS, FILENAME_MAX_CHARS + 1, 400])
        return "n" * n + src.choice(["", ".txt", ".png"])
    parts = [printable_text(src, 0, 8) for _ in range(src.integer(1, 3))]
    name = "".join(part + src.choice(FILENAME_TRAPS) for part in parts)
    return name + src.choice(["", ".txt", ".TXT", ".png", ".exe", ".tar.gz", ".", ".txt ", ".t\u200bxt", "\u202egnp.exe"])


def next_request(src: Source, world: World) -> Request:
    if src.chance(LIMIT_PROBE_PERCENT):
        return limit_probe(src, world)
    method = src.choice(METHOD_WEIGHTS)
    if method == "odd":
        method = src.choice(ODD_METHODS)
    kind = src.integer(0, 9)
    route, secrecy = None, None
    if kind <= 7:
        route = src.choice(ROUTES)
        if kind <= 5 and route.methods and method in STANDARD_METHODS:
            method = src.choice(route.methods)  # mostly a method the route has
        path, secrecy = fill(src, world, route)
    else:
        path = odd_path(src)
    body, content_type, well_formed, filename = body_for(src, world, route, method)
    auth, headers = authorization(src, world, src.choice(["good"] * 8 + ["admin", "bad"]))
    if content_type is not None and src.chance(90):
        headers["Content-Type"] = content_type
    elif src.chance(20):
        headers["Content-Type"] = src.choice(CONTENT_TYPES)
    if src.chance(10):
        headers[src.choice(["X-Forwarded-For", "X-Real-Ip", "X-Scheme", "Accept", "Origin", "X-Http-Method-Override"])] = src.choice(
            ["1.2.3.4", "not-an-ip", "::1", "javascript:", "DELETE", "text/html", "\u00e9", ""]
        )
    # A request head over Tornado's 64 KiB limit is not answered: the connection is closed.
    target = (path + query_string(src))[:MAX_TARGET_CHARS]
    accepted = may_be_accepted(route, method, auth, secrecy) and well_formed
    return Request(method, target, headers, body, auth, secrecy, accepted, filename=filename)


def authorization(src: Source, world: World, auth: str) -> tuple[str, dict[str, str]]:
    """``auth`` ("good", "admin", or "bad": then which bad token) and the headers that send it."""
    if auth != "bad":
        return auth, {"Authorization": f"Bearer {world.tokens[auth]}"}
    auth = src.choice(sorted(world.bad_tokens))
    header = world.bad_tokens[auth]
    return auth, {} if header is None else {"Authorization": header}


def may_be_accepted(route: Route | None, method: str, auth: str, secrecy: str | None) -> bool:
    """A write with a good token, on a route's own method, to what the user may see: it may change the state."""
    visible = secrecy is None or (auth == "admin" and secrecy == "hidden")
    return route is not None and method in route.methods and method in WRITE_METHODS and auth in ("good", "admin") and visible


# --- requests aimed at one limit each -----------------------------------------------------


def limit_probe(src: Source, world: World) -> Request:
    """A request aimed at one documented limit, with the only answers it may get."""
    probe = src.choice(
        [unsafe_id_in_body, unsafe_id_in_path, unsafe_ids_in_query, json_body_past_the_limit, speaking_without_the_right, upload_with_an_odd_name]
    )
    return probe(src, world)


def probe_request(
    src: Source, world: World, method: str, path: str, body: bytes | None, expect: set | None, *, field: str | None = None,
    auth: str = "good", content_type: str | None = "application/json", filename: str | None = None, accepted: bool = False,
) -> Request:
    """``expect`` None: the rules every request obeys decide. One in ten goes with a bad token
    instead, which is refused before anything else."""
    if src.chance(10):
        auth, headers = authorization(src, world, "bad")
        expect, field, accepted = {(401, "unauthorized")}, None, False
    else:
        headers = {"Authorization": f"Bearer {world.tokens[auth]}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    expect = expect and frozenset(expect)
    return Request(method, f"{API_PREFIX}/{path}", headers, body, auth, None, accepted, expect=expect, expect_field=field, filename=filename)


def unsafe_id_in_body(src: Source, world: World) -> Request:
    """Validated before anything is looked up: 400 for any conversation, even one the user cannot see."""
    unsafe = src.choice(UNSAFE_IDS + [""])
    if src.chance(50):
        body = {"type": src.choice(["group", "channel", "direct"]), "participant_ids": src.choice([[unsafe], [world.olivia.user_id, unsafe]])}
        path, field = "conversations/", "participant_ids"
    else:
        conv = world.fixtures[src.choice(["mine", "member", "hidden", "other_tenant"])]
        body = {"user_id": unsafe, "role": src.choice(["member", "admin"])}
        path, field = f"conversations/{conv}/participants/", "user_id"
    raw = dumps(body, ascii_only=src.chance(50)).encode()
    return probe_request(src, world, "POST", path, raw, {(400, "invalid_message")}, field=field, auth=src.choice(["good", "admin"]))


def unsafe_id_in_path(src: Source, world: World) -> Request:
    """No participant has such an id: managers find none (404); a plain member may not remove others (403)."""
    name = src.choice(["mine", "member", "channel", "hidden", "other_tenant"])
    auth = src.choice(["good", "admin"])
    unsafe = urllib.parse.quote(src.choice(UNSAFE_IDS), safe="")
    expect = {(403, "forbidden")} if auth == "good" and name in ("member", "channel") else {(404, "not_found")}
    return probe_request(src, world, "DELETE", f"conversations/{world.fixtures[name]}/participants/{unsafe}/", None, expect, auth=auth, content_type=None)


def unsafe_ids_in_query(src: Source, world: World) -> Request:
    ids = [world.olivia.user_id, world.mallory.user_id][: src.integer(0, 2)]
    ids.insert(src.integer(0, len(ids)), src.choice(UNSAFE_IDS))
    query = urllib.parse.quote(",".join(ids), safe=",")
    expect = {(400, "invalid_message")}
    return probe_request(src, world, "GET", f"presence/?user_ids={query}", None, expect, field="user_ids", auth=src.choice(["good", "admin"]), content_type=None)


def json_body_past_the_limit(src: Source, world: World) -> Request:
    """A JSON body of MAX_FRAME_BYTES is read; one byte more is 413, whatever it is sent to; past the
    slack read before the token is checked, Tornado answers a bare 400 and closes the connection."""
    handler, method = src.choice(sorted(BODY_SCHEMAS))
    route = next(r for r in ROUTES if r.handler.__name__ == handler)
    path, secrecy = fill(src, world, route, odd=False)
    body = dumps(schema_body(src, world, BODY_SCHEMAS[(handler, method)])).encode()
    size = src.choice([MAX_FRAME_BYTES, MAX_FRAME_BYTES + 1, MAX_FRAME_BYTES + src.integer(2, BODY_SLACK_BYTES), MAX_FRAME_BYTES + BODY_SLACK_BYTES + src.choice([1, 1000])])
    padded = body + b" " * (size - len(body)) if src.chance(50) else b"\n" * (size - len(body)) + body
    auth = src.choice(["good", "admin"])
    headers = {"Authorization": f"Bearer {world.tokens[auth]}", "Content-Type": "application/json"}
    if size == MAX_FRAME_BYTES:  # at the limit: answered as the same body without the padding
        return Request(method, path, headers, padded, auth, secrecy, may_be_accepted(route, method, auth, secrecy))
    if size > MAX_FRAME_BYTES + BODY_SLACK_BYTES:
        return Request(method, path, headers, padded, auth, secrecy, expect=frozenset({(400, None)}))
    return probe_request(src, world, method, path.removeprefix(API_PREFIX + "/"), padded, {(413, "payload_too_large")}, field="body", auth=auth)


def speaking_without_the_right(src: Source, world: World) -> Request:
    """A tenant admin who is not a participant moderates but does not speak; a channel's plain member does not post."""
    if src.chance(25):
        channel = world.fixtures["channel"]
        if src.chance(50):
            return probe_request(src, world, "POST", f"conversations/{channel}/messages/", dumps({"content": "c member"}).encode(), {(403, "forbidden")})
        return upload_into(src, world, channel, "good", {(403, "forbidden")})
    hidden, message, emoji = world.fixtures["hidden"], src.choice(world.messages["hidden"]), src.choice(EMOJI)
    if src.chance(15):
        return upload_into(src, world, hidden, "admin", {(403, "forbidden")})
    method, path, body = src.choice(
        [
            ("POST", f"conversations/{hidden}/messages/", {"content": "c moderator"}),
            ("PUT", f"conversations/{hidden}/messages/{message}/", {"content": "c edited"}),
            ("POST", f"messages/{message}/reactions/", {"emoji": emoji}),
            ("DELETE", f"messages/{message}/reactions/{urllib.parse.quote(emoji, safe='')}/", None),
            ("POST", f"conversations/{hidden}/read/", src.choice([{}, {"message_id": message}])),
        ]
    )
    raw = None if body is None else dumps(body).encode()
    return probe_request(src, world, method, path, raw, {(403, "forbidden")}, auth="admin", content_type=None if raw is None else "application/json")


def upload_into(src: Source, world: World, conversation_id: str, auth: str, expect: set) -> Request:
    body, content_type = multipart({"conversation_id": conversation_id}, [("file", "a.txt", "text/plain", b"hello")])
    return probe_request(src, world, "POST", "upload/", body, expect, auth=auth, content_type=content_type)


def upload_with_an_odd_name(src: Source, world: World) -> Request:
    """Stored (201) under a cleaned name; a control character in a quoted name is an invalid part header (400)."""
    name = odd_filename(src)
    encoded = src.chance(60) or '"' in name or "\\" in name
    data, declared = src.choice(
        [(b"hello", src.choice([None, "text/plain", "application/octet-stream"])), (PNG_BYTES, src.choice([None, "image/png", "application/octet-stream"]))]
    )
    fields = {"conversation_id": world.fixtures["mine"]} if src.chance(50) else {}
    body, content_type = multipart(fields, [("file", name, declared, data)], encoded_names=encoded)
    expect, field, filename = None, None, None
    if name == "":
        expect, field = {(400, "invalid_message")}, "file"  # a part without a file name is a plain field
    elif read_as_sent(name, encoded):
        expect, filename = {(201, None)}, name
    elif not encoded and "\n" not in name:  # a control character (line feeds may fold the header instead)
        expect, field = {(400, "invalid_message")}, "body"
    return probe_request(src, world, "POST", "upload/", body, expect, field=field, content_type=content_type, filename=filename, accepted=True)


# --- fixtures and tests -------------------------------------------------------------------


@pytest.fixture(scope="module", params=backends())
def fuzz_server(request, mongodb_uri):
    proc = start_fuzz_server(request.param, mongodb_uri, "rest")
    yield proc
    proc.stop()


@pytest.fixture(scope="module", params=backends())
def throttled_server(request, mongodb_uri):
    proc = start_fuzz_server(request.param, mongodb_uri, "rest_throttled", throttled=True)
    yield proc
    proc.stop()


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def open_world(fuzz_server, loop) -> World:
    async def make_world() -> World:
        world = World(fuzz_server)  # made inside the loop, so its HTTP clients bind to it
        await world.setup()
        return world

    return loop.run_until_complete(make_world())


def finish(world: World, fuzz_server) -> None:
    health = fuzz_server.health()
    assert health["status"] == "ok", health
    assert server_log_problems(fuzz_server) == []
    print(
        f"{world.sent} requests; statuses {dict(sorted(world.statuses.items()))}; errors {dict(world.codes.most_common())}; "
        f"{world.probed} limit probes answered as expected; 429s by limit {dict(world.limits_hit)}; {world.accepted_writes} accepted writes; "
        f"{world.unverified} refused ones not checked apart from an accepted one; {world.repairs} repairs; {world.snapshots} state reads"
    )
    assert world.unverified <= world.sent // 20, "too few refused requests were checked for state changes"


def fuzz_with_hypothesis(fuzz_server, loop, examples: int) -> World:
    world = open_world(fuzz_server, loop)

    @fuzz_settings(examples)
    @given(data=st.data())
    def fuzz(data) -> None:
        src = DataSource(data)
        loop.run_until_complete(world.run(next_request(src, world) for _ in range(src.integer(1, 20))))

    fuzz()
    finish(world, fuzz_server)
    return world


def fuzz_with_seed(fuzz_server, loop, requests: int) -> World:
    world = open_world(fuzz_server, loop)
    src = RandomSource(SEED)
    while world.sent < requests:
        loop.run_until_complete(world.run(next_request(src, world) for _ in range(50)))
    finish(world, fuzz_server)
    return world


def test_routes_are_read_from_the_app():
    templates = {route.template for route in ROUTES}
    assert f"{API_PREFIX}/conversations/" in templates
    assert f"{API_PREFIX}/conversations/{{conversation_id}}/participants/{{user_id}}/" in templates


def test_rest_fuzz_hypothesis(fuzz_server, loop):
    fuzz_with_hypothesis(fuzz_server, loop, HYPOTHESIS_EXAMPLES[fuzz_server.backend])


def test_rest_fuzz_seeded(fuzz_server, loop):
    requests = RANDOM_REQUESTS[fuzz_server.backend]
    world = fuzz_with_seed(fuzz_server, loop, requests)
    refused = sum(n for status, n in world.statuses.items() if status >= 400)
    assert refused > requests // 2 and world.accepted_writes > requests // 100, world.statuses
    assert world.probed > requests // 20, world.probed


def test_rest_fuzz_throttled_hypothesis(throttled_server, loop):
    fuzz_with_hypothesis(throttled_server, loop, THROTTLED_EXAMPLES[throttled_server.backend])


def test_rest_fuzz_throttled_seeded(throttled_server, loop):
    requests = THROTTLED_REQUESTS[throttled_server.backend]
    world = fuzz_with_seed(throttled_server, loop, requests)
    assert world.limits_hit["read"] and world.limits_hit["write"] and world.accepted_writes, (world.limits_hit, world.accepted_writes)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_rest_fuzz_hypothesis_slow(fuzz_server, loop):
    fuzz_with_hypothesis(fuzz_server, loop, HYPOTHESIS_EXAMPLES[fuzz_server.backend] * 10)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_rest_fuzz_seeded_slow(fuzz_server, loop):
    fuzz_with_seed(fuzz_server, loop, RANDOM_REQUESTS[fuzz_server.backend] * 10)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_rest_fuzz_throttled_hypothesis_slow(throttled_server, loop):
    fuzz_with_hypothesis(throttled_server, loop, THROTTLED_EXAMPLES[throttled_server.backend] * 10)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_rest_fuzz_throttled_seeded_slow(throttled_server, loop):
    fuzz_with_seed(throttled_server, loop, THROTTLED_REQUESTS[throttled_server.backend] * 10)


# --- what the fuzz found, pinned ------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "conversations/?offset={big}",
        "conversations/{conv}/participants/?offset={big}",
        "conversations/{conv}/messages/?before={big}",
        "conversations/{conv}/messages/?after={big}",
        "conversations/{conv}/messages/?after=9223372036854775807",  # after + 1 did not fit either
        "presence/?offset={big}",
    ],
)
@pytest.mark.parametrize("big", [str(2**63), str(10**30)])
async def test_query_integers_beyond_64_bits_are_refused(users, query, big):
    # They reached MongoDB as skip or seq bounds: 500 (OverflowError) on a real MongoDB.
    (alice,) = users("alice")
    conv = await alice.create_conversation("group")
    status, body = await alice.api.get(query.format(big=big, conv=conv))
    assert status == 400 and body["error"]["code"] == "invalid_message", (status, body)


async def test_query_integers_up_to_2_53_are_answered(users):
    (alice,) = users("alice")
    conv = await alice.create_conversation("group")
    for query in (f"conversations/?offset={2**53}", f"conversations/{conv}/messages/?after={2**53}&before={2**53}"):
        status, body = await alice.api.get(query)
        assert status == 200 and body["results"] == [], (status, body)

