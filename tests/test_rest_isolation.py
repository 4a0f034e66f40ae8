"""Two tenants over real HTTP: neither sees the other's objects through any path, even with the same
user ids and a tenant-admin token; and an outsider in the same tenant sees no conversation it is not in."""

from __future__ import annotations

import re
from urllib.parse import quote

from config import load_settings
from tests.support.client import User
from tests.support.rest import API, CheckedApi, assert_error, fetch_raw, rest_users, upload, valid_body  # noqa: F401
from tests.test_rest_files import PDF
from web.rest.openapi import build_spec


async def tenant_a_objects(alice, bob) -> dict[str, str]:
    """One of everything in tenant A, by path parameter name."""
    conv = await alice.create_conversation("group", [bob], title="secret")
    status, message = await alice.api.post(f"conversations/{conv}/messages/", {"content": "secret"})
    assert (await bob.api.post(f"messages/{message['id']}/reactions/", {"emoji": "👍"}))[0] == 201
    status, file = await upload(alice, PDF, filename="secret.pdf", conversation_id=conv)
    assert status == 201
    await alice.api.put("presence/me/", {"status": "busy"})
    return {"conversation_id": conv, "message_id": message["id"], "user_id": bob.user_id, "emoji": quote("👍"), "file_id": file["id"]}


async def try_every_path(intruder, ids: dict[str, str]) -> None:
    """Every operation with a path id, aimed at tenant A's objects: 404, in the error shape."""
    spec = build_spec(load_settings({}))
    body = {"content": "x", "user_id": intruder.user_id, "emoji": "👀", "title": "mine now", "description": "x"}
    tried = 0
    for template, item in spec["paths"].items():
        if "{" not in template or template.startswith("/ws/"):
            continue
        path = re.sub(r"\{([^}]+)\}", lambda m: ids[m.group(1)], template).removeprefix(API + "/")
        for method in ("get", "post", "put", "patch", "delete"):
            if method not in item:
                continue
            if path.startswith("files/"):
                response = await fetch_raw(intruder, path)
                assert response.code == 404 and b"secret" not in response.body, path
            else:
                answer = await intruder.api.call(method.upper(), path, valid_body(spec, item[method], body))
                error = assert_error(answer, 404, "not_found")
                assert "secret" not in str(error), error
            tried += 1
    assert tried == 18


async def test_another_tenant_sees_nothing_through_any_path(rest_users, server):
    alice, bob = rest_users("alice", "bob")
    ids = await tenant_a_objects(alice, bob)
    other = "other-" + alice.tenant_id
    # same user ids as tenant A's users, and a tenant-wide admin
    [mallory] = rest_users("mallory", role="admin", tenant_id=other)
    twin = User(server, other, alice.user_id, role="admin")
    twin.api = CheckedApi(server, twin.token)

    for intruder in (mallory, twin):
        await try_every_path(intruder, ids)
        status, page = await intruder.api.get("conversations/")
        assert status == 200 and page["results"] == []
        status, page = await intruder.api.get("presence/")
        assert alice.user_id not in [p["user_id"] for p in page["results"]]
        status, page = await intruder.api.get(f"presence/?user_ids={alice.user_id},{bob.user_id}")
        assert [p["status"] for p in page["results"]] == ["offline", "offline"], "tenant A's busy status is not visible"
        assert_error(await upload(intruder, PDF, conversation_id=ids["conversation_id"]), 404, "not_found")
        status, own = await intruder.api.post("conversations/", {"type": "direct", "participant_ids": [bob.user_id]})
        assert status == 201 and own["id"] != ids["conversation_id"]

    # tenant A is untouched
    status, conversation = await alice.api.get(f"conversations/{ids['conversation_id']}/")
    assert conversation["title"] == "secret" and {p["user_id"] for p in conversation["participants"]} == {alice.user_id, bob.user_id}
    status, page = await alice.api.get(f"conversations/{ids['conversation_id']}/messages/")
    assert [m["content"] for m in page["results"]] == ["secret"]
    assert [r["count"] for r in page["results"][0]["reactions"]] == [1]
    assert (await alice.api.get("presence/me/"))[1]["status"] == "busy"
    assert (await fetch_raw(bob, f"files/{ids['file_id']}/")).body == PDF


async def test_an_outsider_of_the_same_tenant_gets_404_not_403(rest_users):
    alice, bob, carol = rest_users("alice", "bob", "carol")
    ids = await tenant_a_objects(alice, bob)
    await try_every_path(carol, ids)
    status, page = await carol.api.get("conversations/")
    assert page["results"] == []
