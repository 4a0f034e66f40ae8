"""openapi.json stays true: every route and method of web/app.py is described and nothing else is;
request bodies list the same fields as their schemas in web/protocol.py; the schemas are valid.
(Every answer in the tests/test_rest_*.py suites is also validated against it: tests/support/rest.py.)
"""

from __future__ import annotations

import inspect
import json
import re

import jsonschema
import tornado.web
import tornado.websocket
from marshmallow import validate

from config import load_settings
from tests.support.rest import spec_of
from web.app import routes
from web.protocol import Protocol
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


def max_lengths(schema) -> set[int]:
    """Every ``maxLength`` and ``maxItems`` in a (possibly nested) schema."""
    found = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            found |= {value} if key in ("maxLength", "maxItems") else max_lengths(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= max_lengths(value)
    return found


def _field_properties(schema) -> tuple[set[str], set[str]]:
    return set(schema.fields), {name for name, field in schema.fields.items() if field.required}


def test_request_bodies_match_the_protocol_schemas():
    settings = load_settings({})
    spec, protocol = build_spec(settings), Protocol(settings)
    used = set()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in METHODS or "requestBody" not in operation:
                continue
            name = operation["x-body-schema"]
            used.add(name)
            [(media, content)] = operation["requestBody"]["content"].items()
            component = spec["components"]["schemas"][content["schema"]["$ref"].rsplit("/", 1)[-1]]
            names, required = _field_properties(protocol.rest_bodies[name])
            if name == "upload":
                names, required = names | {"file"}, required | {"file"}
            assert set(component["properties"]) == names, (path, method, name)
            assert set(component["required"]) == required, (path, method, name)
            assert component.get("additionalProperties") is False, "unknown fields are refused"
            for field_name, field in protocol.rest_bodies[name].fields.items():
                limits = {v.max for v in field.validators if isinstance(v, validate.Length) and v.max is not None}
                assert limits <= max_lengths(component["properties"][field_name]), (name, field_name)
    assert used == set(protocol.rest_bodies), f"REST body schemas never described: {set(protocol.rest_bodies) - used}"


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
