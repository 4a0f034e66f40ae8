"""REST test helpers: every answer checked against openapi.json, multipart bodies, raw downloads.

``rest_users`` is the ``users`` fixture with one difference: each user's ``api`` validates
every JSON answer against the response schema the served OpenAPI description gives for
that path, method and status, so the description cannot drift from what is served.
"""

from __future__ import annotations

import json
import re
import socket
import uuid
from typing import Any
from urllib.parse import quote, urlsplit

import jsonschema
import pytest
import referencing
import tornado.httpclient
from referencing.jsonschema import DRAFT202012

from tests.support.client import DEFAULT_WAIT_SECS, Api, User, make_token, unique

API = "/api/notifications/chat"
SPEC_URI = "urn:chat-openapi"
_specs: dict[int, dict] = {}


def spec_of(server) -> dict:
    if server.port not in _specs:
        import urllib.request

        with urllib.request.urlopen(f"{server.http_url}{API}/openapi.json", timeout=10) as response:
            _specs[server.port] = json.loads(response.read())
    return _specs[server.port]


def template_for(spec: dict, path: str) -> str | None:
    """The spec's path template that ``path`` (no query) matches."""
    for template in spec["paths"]:
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            return template
    return None


def response_schema(spec: dict, path: str, method: str, status: int) -> dict | None:
    """The JSON schema the spec gives for this answer; AssertionError if it lists no such answer."""
    template = template_for(spec, path)
    assert template is not None, f"{path} is not in openapi.json"
    operation = spec["paths"][template].get(method.lower())
    assert operation is not None, f"{method} {template} is not in openapi.json"
    response = operation["responses"].get(str(status))
    assert response is not None, f"{method} {template} answered {status}, which openapi.json does not list"
    if "$ref" in response:
        response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    if "application/json" not in response.get("content", {}):
        return None
    listed = operation["responses"][str(status)]
    if "$ref" in listed:
        pointer = "components/responses/" + listed["$ref"].rsplit("/", 1)[-1]
    else:
        pointer = "/".join(
            part.replace("~", "~0").replace("/", "~1") for part in ("paths", template, method.lower(), "responses", str(status))
        )
    return {"$ref": f"{SPEC_URI}#/{pointer}/content/application~1json/schema"}


def spec_validator(spec: dict, schema: dict) -> jsonschema.Draft202012Validator:
    """A validator of ``schema``, whose ``$ref`` may point into the spec as ``urn:chat-openapi#/...``."""
    registry = referencing.Registry().with_resource(SPEC_URI, referencing.Resource.from_contents(spec, default_specification=DRAFT202012))
    return jsonschema.Draft202012Validator(schema, registry=registry, format_checker=jsonschema.FormatChecker())


def validate_answer(spec: dict, path: str, method: str, status: int, body: Any) -> None:
    """The spec lists this answer, and a JSON body matches its schema."""
    schema = response_schema(spec, path, method, status)
    if schema is None or not isinstance(body, (dict, list)):
        return
    errors = sorted(spec_validator(spec, schema).iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{method} {path} -> {status}: does not match openapi.json: {errors[0].message} at {list(errors[0].path)}"


class CheckedApi(Api):
    """An ``Api`` whose answers must match openapi.json."""

    async def call(self, method: str, path: str, body: Any = None, **kw) -> tuple[int, Any]:
        status, answer = await super().call(method, path, body, **kw)
        url = path if path.startswith("http") else f"{API}/{path.lstrip('/')}"
        request_path = urlsplit(url).path
        if status != 405:  # Tornado's answer to a method no handler has; not an operation
            validate_answer(spec_of(self.server), request_path, method, status, answer)
        return status, answer


def checked_user(server, tenant_id: str, name: str, role: str | None = None) -> User:
    user = User(server, tenant_id, unique(name), role=role)
    user.api = CheckedApi(server, user.token)
    return user


@pytest.fixture
def rest_users(server, tenant):
    """``rest_users("alice", "bob", role=None, tenant=None)``: users whose REST answers are checked against the spec."""

    def make(*names: str, role: str | None = None, tenant_id: str | None = None) -> list[User]:
        return [checked_user(server, tenant_id or tenant, name, role) for name in names]

    return make


# --- bodies and raw calls ------------------------------------------------------------


def multipart(
    fields: dict[str, str] | None = None,
    files: list[tuple[str, str, str | None, bytes]] = (),
    *,
    boundary: str | None = None,
    encoded_names: bool = False,
) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body: ``files`` as ``(field, filename, content_type or None, data)``.

    ``encoded_names``: file names as ``filename*=UTF-8''...`` (RFC 5987), which can carry any
    character; else as a quoted string, in which control characters make an invalid part header."""
    boundary = boundary or uuid.uuid4().hex
    out = bytearray()
    for name, value in (fields or {}).items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    for name, filename, content_type, data in files:
        param = f"filename*=UTF-8''{quote(filename, safe='')}" if encoded_names else f'filename="{filename}"'
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; {param}\r\n'.encode()
        if content_type is not None:
            out += f"Content-Type: {content_type}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


async def upload(
    user: User,
    data: bytes,
    *,
    filename: str = "f.bin",
    content_type: str | None = None,
    conversation_id: str | None = None,
    fields: dict | None = None,
    encoded_name: bool = False,
) -> tuple[int, Any]:
    form = dict(fields or {})
    if conversation_id is not None:
        form["conversation_id"] = conversation_id
    body, ctype = multipart(form, [("file", filename, content_type, data)], encoded_names=encoded_name)
    return await user.api.post("upload/", raw=body, headers={"Content-Type": ctype})


async def fetch_raw(user: User | None, path: str, *, token: str | None = None) -> tornado.httpclient.HTTPResponse:
    """A GET whose body is left as bytes (downloads)."""
    server = user.server
    headers = {}
    bearer = token if token is not None else user.token
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    url = path if path.startswith("http") else f"{server.http_url}{path if path.startswith('/') else API + '/' + path}"
    return await tornado.httpclient.AsyncHTTPClient().fetch(url, headers=headers, raise_error=False, request_timeout=30)


def raw_http(server, request: bytes, *, timeout: float = 10.0) -> bytes:
    """Send bytes on a plain socket and read the answer until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks):
                    head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
                    match = re.search(rb"Content-Length: (\d+)", head, re.I)
                    if match and len(rest) >= int(match.group(1)):
                        break
        except socket.timeout:
            pass
    return b"".join(chunks)


def assert_error(answer: tuple[int, Any], status: int, code: str | None = None) -> dict:
    """The answer is ``status`` with the error body shape; returns the error object."""
    got, body = answer
    assert got == status, (got, body)
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"} and isinstance(error["message"], str), error
    if code is not None:
        assert error["code"] == code, error
    return error


def body_fields(spec: dict, operation: dict) -> set[str]:
    """The JSON body fields an operation of the spec accepts (none if it takes no JSON body)."""
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return set()
    return set(spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]["properties"])


def valid_body(spec: dict, operation: dict, candidates: dict) -> dict | None:
    """``candidates`` cut down to what the operation accepts; None when it takes no body."""
    accepted = body_fields(spec, operation)
    return {k: v for k, v in candidates.items() if k in accepted} if accepted else None


async def system_events(user: User, conversation_id: str, expected_count: int, *, timeout: float = DEFAULT_WAIT_SECS) -> list[str]:
    """The ``metadata.event`` of the conversation's system messages, once there are ``expected_count``.

    A membership or title change answers before its system message is stored (the actor
    stores it next, in seq order), so a reader polls for it instead of expecting it at once.
    """
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status, page = await user.api.get(f"conversations/{conversation_id}/messages/?limit=100")
        assert status == 200, page
        events = [m["metadata"].get("event") for m in page["results"] if m["message_type"] == "system"]
        if len(events) >= expected_count or asyncio.get_running_loop().time() > deadline:
            return events
        await asyncio.sleep(0.02)


def token_for(server, tenant_id: str, user_id: str, **kw) -> str:
    return make_token(server.jwt_secret, tenant_id, user_id, **kw)
