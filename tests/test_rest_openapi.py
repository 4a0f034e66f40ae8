"""openapi.json stays true: every route and method of web/app.py is described and nothing else is;
sample request bodies get the same verdict from it as from the server; the schemas are valid.
(Every answer in the tests/test_rest_*.py suites is also validated against it: tests/support/rest.py.)
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any

import jsonschema
import tornado.web
import tornado.websocket

from actors.protocol import (
    DESCRIPTION_MAX_CHARS,
    EMOJI_MAX_CHARS,
    ID_MAX_CHARS,
    MAX_PARTICIPANTS_PER_REQUEST,
    TITLE_MAX_CHARS,
    Protocol,
)
from config import load_settings
from tests.support.client import unique
from tests.support.rest import API, SPEC_URI, assert_error, rest_users, spec_of, spec_validator, upload  # noqa: F401  (fixture)
from web.app import routes
from web.rest.base import ApiHandler
from web.rest.openapi import build_spec

METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


def template_of(pattern: str) -> str:
    """A route's regex as an OpenAPI path template: named segments become ``{name}``."""
    template = re.sub(r"\(\?P<(\w+)>\[\^/\]\+\)", r"{\1}", pattern).replace("\\.", ".")
    if template.endswith("/?"):
        template = template[:-2] + "/"
    assert not re.search(r"[()\[\]?*+\\]", template), f"route {pattern!r} is not a plain path with named segments"
    return template


def route_table() -> dict[str, set[str]]:
    """``{path template: {methods}}`` as web/app.py serves them, less what every REST route serves
    alike: OPTIONS, the CORS preflight (docs/rest-api.md), which is no operation of the API."""
    table = {}
    for route in routes(None):
        handler = route[1]
        base = ApiHandler if issubclass(handler, ApiHandler) else tornado.web.RequestHandler
        table[template_of(route[0])] = {m for m in METHODS if getattr(handler, m) is not getattr(base, m)}
    return table


def spec_table(spec: dict) -> dict[str, set[str]]:
    return {path: {m for m in item if m in METHODS} for path, item in spec["paths"].items()}


def test_every_route_and_method_is_described_and_nothing_else():
    served, described = route_table(), spec_table(build_spec(load_settings({})))
    assert set(served) == set(described), (
        f"routes without a description: {sorted(set(served) - set(described))}; "
        f"described but not served: {sorted(set(described) - set(served))}"
    )
    for path in served:
        assert served[path] == described[path], f"{path}: served {sorted(served[path])}, described {sorted(described[path])}"


def test_path_parameters_match_the_routes_and_the_handlers():
    spec = build_spec(load_settings({}))
    for route in routes(None):
        pattern, handler = route[0], route[1]
        names = re.findall(r"\(\?P<(\w+)>", pattern)
        item = spec["paths"][template_of(pattern)]
        for method in (m for m in METHODS if m in item):
            declared = [p["name"] for p in item.get("parameters", []) + item[method].get("parameters", []) if p["in"] == "path"]
            assert sorted(declared) == sorted(names), (pattern, method, declared, names)
            websocket = issubclass(handler, tornado.websocket.WebSocketHandler)
            function = getattr(handler, "open" if websocket else method)
            assert list(inspect.signature(function).parameters)[1:] == names, (handler, method)


def samples(settings, bob: str, message_id: str) -> dict[str, tuple[list[dict], list[dict]]]:
    """For each request body: bodies the server accepts, then bodies it refuses (400) for their shape alone."""
    long_content = "x" * (settings.max_content_chars + 1)
    return {
        "create_conversation": (
            [
                {"type": "group"},
                {"type": "channel", "title": None, "description": "tab\t and\nlines"},
                {"type": "group", "participant_ids": [bob]},
            ],
            [
                {},
                {"type": "room"},
                {"type": "group", "title": "x" * (TITLE_MAX_CHARS + 1)},
                {"type": "group", "title": "bell\x07"},
                {"type": "group", "participant_ids": ["not safe"]},
                {"type": "group", "participant_ids": [bob] * (MAX_PARTICIPANTS_PER_REQUEST + 1)},
                {"type": "group", "colour": "red"},
            ],
        ),
        "update_conversation": (
            [{"title": "renamed"}, {"description": None}],
            [{}, {"title": 7}, {"description": "x" * (DESCRIPTION_MAX_CHARS + 1)}, {"title": "\x00"}, {"topic": "x"}],
        ),
        "add_participant": (
            [{"user_id": unique("carol")}, {"user_id": unique("dave"), "role": "admin"}],
            [{}, {"user_id": "carol smith"}, {"user_id": "c" * (ID_MAX_CHARS + 1)}, {"user_id": "c", "role": "owner"}, {"user_id": None}],
        ),
        "create_message": (
            [{"content": "hello"}, {"content": "👍", "message_type": "emoji", "client_msg_id": unique("c"), "metadata": {"k": [1]}}],
            [
                {},
                {"content": long_content},
                {"content": "nul\x00"},
                {"content": "hi", "message_type": "system"},
                {"content": "hi", "client_msg_id": ""},
                {"content": "hi", "metadata": []},
                {"content": 5},
            ],
        ),
        "edit_message": ([{"content": "edited"}], [{}, {"content": None}, {"content": "del\x7f"}, {"content": "x", "metadata": {}}]),
        "add_reaction": (
            [{"emoji": "👍"}, {"emoji": "🎉"}],
            [{}, {"emoji": ""}, {"emoji": "a b"}, {"emoji": "x" * (EMOJI_MAX_CHARS + 1)}, {"emoji": "\x01"}],
        ),
        "update_presence": ([{"status": "away"}], [{}, {"status": "asleep"}, {"status": "away", "until": 5}]),
        "mark_read": ([{}, {"message_id": None}, {"message_id": message_id}], [{"message_id": ""}, {"message_id": 5}, {"seq": 1}]),
        # The form fields of an upload, besides its file.
        "upload": ([{}], [{"conversation_id": ""}, {"conversation_id": "ctrl\x01"}, {"title": "x"}]),
    }


def described_bodies(spec: dict) -> dict[str, tuple[str, str, str, dict]]:
    """``{body schema name: (path template, method, media type, schema)}`` of the operations taking a body."""
    described = {}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS and "requestBody" in operation:
                [(media, content)] = operation["requestBody"]["content"].items()
                described[operation["x-body-schema"]] = (path, method, media, content["schema"])
    return described


def server_accepts(answer: tuple[int, Any]) -> bool:
    if answer[0] in (200, 201):
        return True
    assert_error(answer, 400, "invalid_message")
    return False


async def test_sample_bodies_get_the_same_verdict_from_the_description_and_the_server(server, rest_users):
    """The request bodies are generated from the schemas the server loads them with; this checks the
    result both ways on real requests: what the description refuses the server refuses, and the reverse."""
    settings = load_settings(server.env)
    alice, bob = rest_users("alice", "bob")
    conversation = await alice.create_conversation("group", [bob])
    status, message = await alice.api.post(f"conversations/{conversation}/messages/", {"content": "first"})
    assert status == 201, message
    spec, cases = spec_of(server), samples(settings, bob.user_id, message["id"])
    described = described_bodies(spec)
    assert set(described) == set(Protocol(settings).rest_bodies) == set(cases)
    for name, (accepted, refused) in cases.items():
        template, method, media, schema = described[name]
        path = template.format(conversation_id=conversation, message_id=message["id"]).removeprefix(API + "/")
        validator = spec_validator(spec, {"$ref": SPEC_URI + schema["$ref"]})
        for sample, expected in [(s, True) for s in accepted] + [(s, False) for s in refused]:
            if media == "multipart/form-data":
                assert validator.is_valid({"file": "%PDF-1.4", **sample}) is expected, (name, sample)
                answer = await upload(alice, b"%PDF-1.4\n", filename="a.pdf", fields=sample)
            else:
                assert validator.is_valid(sample) is expected, (name, sample)
                answer = await alice.api.call(method.upper(), path, sample)
            assert server_accepts(answer) is expected, (name, sample, answer)


def test_component_schemas_are_valid_json_schema():
    spec = build_spec(load_settings({}))
    assert spec["openapi"].startswith("3.1")
    for name, schema in spec["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_limits_follow_the_settings():
    spec = build_spec(load_settings({"MAX_CONTENT_CHARS": "123", "UPLOAD_MAX_BYTES": "2048", "UPLOAD_QUOTA_BYTES": "4096", "TENANT_UPLOAD_QUOTA_BYTES": "0"}))
    assert spec["components"]["schemas"]["CreateMessage"]["properties"]["content"]["maxLength"] == 123
    upload_rules = spec["paths"]["/api/notifications/chat/upload/"]["post"]["description"]
    assert "`2048`" in upload_rules and "`4096` bytes per user and `0` per tenant" in upload_rules


async def test_served_without_auth_and_equal_to_the_built_one(server):
    import tornado.httpclient

    response = await tornado.httpclient.AsyncHTTPClient().fetch(f"{server.http_url}/api/notifications/chat/openapi.json")
    assert response.code == 200 and response.headers["Content-Type"].startswith("application/json")
    assert spec_of(server) == json.loads(json.dumps(build_spec(load_settings(server.env))))
