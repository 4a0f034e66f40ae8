"""REST reactions over real HTTP: list, add (idempotent), remove one's own; URL-encoded emoji."""

from __future__ import annotations

from urllib.parse import quote

from tests.support.rest import assert_error, rest_users  # noqa: F401  (fixture)

THUMBS = "👍"
HEART = "❤️"


async def test_add_list_remove(rest_users):
    alice, bob, carol = rest_users("alice", "bob", "carol")
    conv = await alice.create_conversation("channel", [bob])
    status, message = await alice.api.post(f"conversations/{conv}/messages/", {"content": "react to me"})
    path = f"messages/{message['id']}/reactions/"

    status, reaction = await bob.api.post(path, {"emoji": THUMBS})  # channel members react
    assert status == 201
    assert reaction["emoji"] == THUMBS and reaction["user_id"] == bob.user_id and reaction["message_id"] == message["id"]
    status, again = await bob.api.post(path, {"emoji": THUMBS})
    assert status == 200 and again == reaction, "the same reaction twice is one reaction"
    assert (await alice.api.post(path, {"emoji": THUMBS}))[0] == 201
    assert (await alice.api.post(path, {"emoji": HEART}))[0] == 201

    status, page = await bob.api.get(path)
    assert status == 200 and page["next"] is None and page["previous"] is None
    assert [(r["user_id"], r["emoji"]) for r in page["results"]] == [
        (bob.user_id, THUMBS),
        (alice.user_id, THUMBS),
        (alice.user_id, HEART),
    ]
    status, got = await bob.api.get(f"conversations/{conv}/messages/{message['id']}/")
    assert got["reactions"] == [
        {"emoji": THUMBS, "count": 2, "user_ids": [bob.user_id, alice.user_id]},
        {"emoji": HEART, "count": 1, "user_ids": [alice.user_id]},
    ]

    assert await bob.api.delete(f"{path}{quote(THUMBS)}/") == (204, None)
    assert_error(await bob.api.delete(f"{path}{quote(THUMBS)}/"), 404, "not_found")
    assert_error(await bob.api.delete(f"{path}{quote(HEART)}/"), 404, "not_found")  # alice's, not bob's
    status, page = await bob.api.get(path)
    assert [(r["user_id"], r["emoji"]) for r in page["results"]] == [(alice.user_id, THUMBS), (alice.user_id, HEART)]
    assert await alice.api.delete(f"{path}{quote(HEART)}/") == (204, None)

    # outsiders see no message at all
    assert_error(await carol.api.get(path), 404, "not_found")
    assert_error(await carol.api.post(path, {"emoji": THUMBS}), 404, "not_found")
    assert_error(await carol.api.delete(f"{path}{quote(THUMBS)}/"), 404, "not_found")
    assert_error(await bob.api.get("messages/no-such-message/reactions/"), 404, "not_found")
    assert_error(await bob.api.post("messages/no-such-message/reactions/", {"emoji": THUMBS}), 404, "not_found")
    status, page = await alice.api.get(path)
    assert [(r["user_id"], r["emoji"]) for r in page["results"]] == [(alice.user_id, THUMBS)]


async def test_plain_text_emoji_and_encoded_path(rest_users):
    alice, bob = rest_users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    status, message = await alice.api.post(f"conversations/{conv}/messages/", {"content": "x"})
    path = f"messages/{message['id']}/reactions/"
    for emoji in (":+1:", "a/b", "100%"):
        assert (await bob.api.post(path, {"emoji": emoji}))[0] == 201
        assert await bob.api.delete(f"{path}{quote(emoji, safe='')}/") == (204, None)
    assert (await bob.api.get(path))[1]["results"] == []


async def test_bad_input_and_deleted_messages(rest_users):
    alice, bob = rest_users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    status, message = await alice.api.post(f"conversations/{conv}/messages/", {"content": "x"})
    path = f"messages/{message['id']}/reactions/"
    for bad in ({}, {"emoji": ""}, {"emoji": "a b"}, {"emoji": 1}, {"emoji": "x" * 33}, {"emoji": THUMBS, "user_id": bob.user_id}):
        assert_error(await bob.api.post(path, bad), 400, "invalid_message")
    assert_error(await bob.api.delete(f"{path}{quote('a b')}/"), 400, "invalid_message")
    assert_error(await bob.api.delete(f"{path}{'x' * 33}/"), 400, "invalid_message")
    assert (await bob.api.get(path))[1]["results"] == [], "nothing stored"

    await alice.api.delete(f"conversations/{conv}/messages/{message['id']}/")
    assert_error(await bob.api.post(path, {"emoji": THUMBS}), 409, "conflict")
