"""REST messages over real HTTP: send (idempotent), history paging by seq, get, edit, delete, read receipts."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.support.rest import assert_error, rest_users  # noqa: F401  (fixture)

API = "/api/notifications/chat/"


def seqs(page: dict) -> list[int]:
    return [m["seq"] for m in page["results"]]


def query_of(link: str | None) -> dict | None:
    return None if link is None else {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}


async def follow(user, link: str) -> dict:
    status, page = await user.api.get(link.removeprefix(API))
    assert status == 200, page
    return page


async def test_send_answers_201_and_a_retry_200_with_the_original(rest_users):
    alice, bob = rest_users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    path = f"conversations/{conv}/messages/"
    status, message = await alice.api.post(path, {"content": "hello", "client_msg_id": "c-1", "metadata": {"k": [1, 2]}})
    assert status == 201
    assert message["content"] == "hello" and message["seq"] == 1 and message["sender_id"] == alice.user_id
    assert message["message_type"] == "text" and message["metadata"] == {"k": [1, 2]} and message["client_msg_id"] == "c-1"
    assert message["reactions"] == [] and message["is_deleted"] is False and message["edited_at"] is None

    status, retry = await alice.api.post(path, {"content": "hello (retry)", "client_msg_id": "c-1"})
    assert status == 200 and retry == message
    # another sender's same client_msg_id is their own message
    status, bobs = await bob.api.post(path, {"content": "mine", "client_msg_id": "c-1"})
    assert status == 201 and bobs["seq"] == 2
    status, reply = await bob.api.post(path, {"content": "re", "reply_to": message["id"], "message_type": "emoji"})
    assert status == 201 and reply["reply_to"] == message["id"] and reply["message_type"] == "emoji"
    status, page = await alice.api.get(path)
    assert seqs(page) == [1, 2, 3]


async def test_history_pages_by_seq(rest_users):
    alice, bob = rest_users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    path = f"conversations/{conv}/messages/"
    status, empty = await bob.api.get(path)
    assert status == 200 and empty == {"results": [], "next": None, "previous": None}
    for n in range(1, 8):
        assert (await alice.api.post(path, {"content": f"m{n}"}))[0] == 201

    status, newest = await bob.api.get(f"{path}?limit=3")
    assert seqs(newest) == [5, 6, 7], "newest page first, ascending within the page"
    assert newest["previous"] is None and query_of(newest["next"]) == {"limit": "3", "before": "5"}
    older = await follow(bob, newest["next"])
    assert seqs(older) == [2, 3, 4] and query_of(older["previous"]) == {"limit": "3", "after": "4"}
    oldest = await follow(bob, older["next"])
    assert seqs(oldest) == [1] and oldest["next"] is None
    back = await follow(bob, oldest["previous"])
    assert seqs(back) == [2, 3, 4]
    assert seqs(await follow(bob, back["previous"])) == [5, 6, 7]

    status, catch_up = await bob.api.get(f"{path}?after=0&limit=3")
    assert seqs(catch_up) == [1, 2, 3] and catch_up["next"] is None
    assert seqs(await follow(bob, catch_up["previous"])) == [4, 5, 6]
    status, window = await bob.api.get(f"{path}?after=2&before=5")
    assert seqs(window) == [3, 4] and query_of(window["next"]) == {"limit": "50", "before": "3"}
    assert query_of(window["previous"]) == {"limit": "50", "after": "4"}
    status, beyond = await bob.api.get(f"{path}?after=7")
    assert beyond["results"] == [] and beyond["previous"] is None and query_of(beyond["next"]) == {"limit": "50", "before": "8"}
    status, below = await bob.api.get(f"{path}?before=1")
    assert below["results"] == [] and below["next"] is None and query_of(below["previous"]) == {"limit": "50", "after": "0"}
    status, exactly_the_rest = await bob.api.get(f"{path}?before=4&limit=3")
    assert seqs(exactly_the_rest) == [1, 2, 3] and exactly_the_rest["next"] is None
    status, exactly_the_end = await bob.api.get(f"{path}?after=4&limit=3")
    assert seqs(exactly_the_end) == [5, 6, 7] and exactly_the_end["previous"] is None
    status, window_at_end = await bob.api.get(f"{path}?after=4&before=8&limit=3")
    assert seqs(window_at_end) == [5, 6, 7] and window_at_end["previous"] is None
    status, all_of_it = await bob.api.get(f"{path}?limit=100")
    assert seqs(all_of_it) == list(range(1, 8)) and all_of_it["next"] is None and all_of_it["previous"] is None

    for bad in ("limit=0", "limit=101", "limit=x", "before=0", "before=-3", "after=-1", "after=1.5"):
        error = assert_error(await bob.api.get(f"{path}?{bad}"), 400, "invalid_message")
        assert bad.split("=")[0] in error["details"]


async def test_default_page_is_50(rest_users):
    [alice] = rest_users("alice")
    conv = await alice.create_conversation("group")
    for n in range(52):
        await alice.api.post(f"conversations/{conv}/messages/", {"content": f"m{n}"})
    status, page = await alice.api.get(f"conversations/{conv}/messages/")
    assert seqs(page) == list(range(3, 53)) and query_of(page["next"]) == {"limit": "50", "before": "3"}


async def test_get_edit_delete_rules(rest_users):
    alice, bob, carol, dave = rest_users("alice", "bob", "carol", "dave")
    conv = await alice.create_conversation("group", [bob, carol])
    status, message = await bob.api.post(f"conversations/{conv}/messages/", {"content": "original"})
    path = f"conversations/{conv}/messages/{message['id']}/"

    status, got = await carol.api.get(path)
    assert status == 200 and got == message
    assert_error(await dave.api.get(path), 404, "not_found")
    other = await alice.create_conversation("group", [bob])
    assert_error(await bob.api.get(f"conversations/{other}/messages/{message['id']}/"), 404, "not_found")
    assert_error(await bob.api.get(f"conversations/{conv}/messages/no-such-id/"), 404, "not_found")

    assert_error(await carol.api.put(path, {"content": "hijack"}), 403, "forbidden")
    assert_error(await alice.api.put(path, {"content": "even the owner"}), 403, "forbidden")
    assert_error(await dave.api.put(path, {"content": "outsider"}), 404, "not_found")
    assert_error(await bob.api.put(path, {"content": "   "}), 400, "invalid_message")
    assert_error(await bob.api.put(path, {"content": "x", "message_type": "emoji"}), 400, "invalid_message")
    assert_error(await bob.api.put(path, {}), 400, "invalid_message")
    assert (await bob.api.get(path))[1]["content"] == "original", "nothing changed"

    status, edited = await bob.api.put(path, {"content": "edited"})
    assert status == 200 and edited["content"] == "edited" and edited["edited_at"] and edited["seq"] == message["seq"]

    assert_error(await carol.api.delete(path), 403, "forbidden")
    assert_error(await dave.api.delete(path), 404, "not_found")
    status, tombstone = await alice.api.delete(path)  # the owner may delete others' messages
    assert status == 200 and tombstone["is_deleted"] is True and tombstone["content"] == "" and tombstone["seq"] == message["seq"]
    status, got = await carol.api.get(path)
    assert got["is_deleted"] and got["content"] == "" and got["metadata"] == {}
    status, page = await carol.api.get(f"conversations/{conv}/messages/")
    assert [m["is_deleted"] for m in page["results"]] == [True], "the tombstone keeps its seq in history"
    assert_error(await bob.api.put(path, {"content": "too late"}), 409, "conflict")
    status, again = await bob.api.delete(path)
    assert status == 200 and again["is_deleted"], "deleting a tombstone is harmless"

    status, own = await carol.api.post(f"conversations/{conv}/messages/", {"content": "mine"})
    assert (await carol.api.delete(f"conversations/{conv}/messages/{own['id']}/"))[0] == 200, "the sender deletes"


async def test_channel_members_read_but_do_not_post(rest_users):
    alice, bob = rest_users("alice", "bob")
    conv = await alice.create_conversation("channel", [bob])
    assert_error(await bob.api.post(f"conversations/{conv}/messages/", {"content": "me too"}), 403, "forbidden")
    status, news = await alice.api.post(f"conversations/{conv}/messages/", {"content": "news"})
    assert status == 201
    status, page = await bob.api.get(f"conversations/{conv}/messages/")
    assert [m["content"] for m in page["results"]] == ["news"]
    status, receipt = await bob.api.post(f"conversations/{conv}/read/", {})
    assert status == 200 and receipt["last_read_seq"] == 1


async def test_send_bad_input_changes_nothing(rest_users):
    alice, bob = rest_users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    path = f"conversations/{conv}/messages/"
    bad_bodies = [
        {},
        {"content": ""},
        {"content": "   "},
        {"content": 5},
        {"content": None},
        {"content": ["a"]},
        {"content": "x" * 4001},
        {"content": "a\x07b"},
        {"content": "hi", "message_type": "system"},
        {"content": "hi", "message_type": "video"},
        {"content": "hi", "metadata": "not an object"},
        {"content": "hi", "metadata": {"big": "x" * 5000}},
        {"content": "hi", "client_msg_id": ""},
        {"content": "hi", "client_msg_id": 12},
        {"content": "hi", "reply_to": 3},
        {"content": "hi", "conversation_id": conv},
        {"content": "hi", "sender_id": bob.user_id},
        {"content": "", "message_type": "file"},
        {"content": "", "message_type": "image", "metadata": {"file_id": 3}},
    ]
    for bad in bad_bodies:
        error = assert_error(await alice.api.post(path, bad), 400, "invalid_message")
        assert error["details"], (bad, error)
    assert_error(await alice.api.post(path, raw=b"{not json"), 400, "invalid_message")
    assert_error(await alice.api.post(path, raw=b'["content"]'), 400, "invalid_message")
    assert_error(await alice.api.post(path, raw=b'"hello"'), 400, "invalid_message")
    assert_error(await alice.api.post(path, raw=b'{"content": "hi"}', headers={"Content-Type": "text/plain"}), 415)
    assert_error(await alice.api.post(path, {"content": "hi", "reply_to": "no-such-message"}), 404, "not_found")
    assert_error(await alice.api.post("conversations/no-such-conversation/messages/", {"content": "hi"}), 404, "not_found")
    status, page = await alice.api.get(path)
    assert page["results"] == [], "no bad request stored a message"


async def test_read_receipts(rest_users):
    alice, bob, carol = rest_users("alice", "bob", "carol")
    conv = await alice.create_conversation("group", [bob])
    ids = [(await alice.api.post(f"conversations/{conv}/messages/", {"content": f"m{n}"}))[1]["id"] for n in range(3)]
    path = f"conversations/{conv}/read/"

    status, receipt = await bob.api.post(path, {"message_id": ids[1]})
    assert status == 200
    assert receipt["conversation_id"] == conv and receipt["user_id"] == bob.user_id
    assert receipt["last_read_seq"] == 2 and receipt["last_read_message_id"] == ids[1] and receipt["read_at"]
    status, older = await bob.api.post(path, {"message_id": ids[0]})
    assert older["last_read_seq"] == 2, "the pointer never moves back"
    status, latest = await bob.api.post(path)
    assert latest["last_read_seq"] == 3 and latest["last_read_message_id"] == ids[2]
    status, conversation = await bob.api.get(f"conversations/{conv}/")
    assert conversation["unread_count"] == 0
    assert [p["last_read_seq"] for p in conversation["participants"] if p["user_id"] == bob.user_id] == [3]

    assert_error(await carol.api.post(path, {}), 404, "not_found")
    assert_error(await bob.api.post(path, {"message_id": "no-such-message"}), 404, "not_found")
    assert_error(await bob.api.post(path, {"message_id": 5}), 400, "invalid_message")
    assert_error(await bob.api.post(path, {"seq": 1}), 400, "invalid_message")
