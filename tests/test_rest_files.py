"""Uploads and downloads over real HTTP: bytes stored in MongoDB, size and type rules, who may download,
and file/image messages that must name a usable file."""

from __future__ import annotations

import http.client
import io
import json
import os
import select
import socket
import struct
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib

import pytest
import requests

from tests.support.client import unique
from tests.support.rest import API, assert_error, fetch_raw, multipart, raw_http, rest_users, token_for, upload  # noqa: F401
from tests.support.server import ServerProcess
from web.rest.files import BODY_OVERHEAD_BYTES, DISCARD_ALLOWANCE_BYTES

MAX_BYTES = 10 * 1024 * 1024  # the default UPLOAD_MAX_BYTES the test server runs with


def png(extra: bytes = b"") -> bytes:
    """A real 1x1 PNG (plus ``extra`` bytes after IEND, which viewers ignore)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b"") + extra


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 200


def zipped() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "hello")
    return buffer.getvalue()


def stored_counts(server, tenant_id: str) -> tuple[int, int] | None:
    """(files, chunks) of the tenant, read straight from MongoDB; None on the embedded database."""
    uri = server.env.get("MONGODB_URI")
    if not uri:
        return None
    import pymongo

    with pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000) as client:
        db = client[server.env["MONGODB_DB"]]
        return db.files.count_documents({"tenant_id": tenant_id}), db.file_chunks.count_documents({"tenant_id": tenant_id})


async def test_upload_and_download_the_same_bytes(rest_users, server):
    alice, bob, carol = rest_users("alice", "bob", "carol")
    conv = await alice.create_conversation("group", [bob])
    big = png(os.urandom(600 * 1024))  # three chunks
    status, file = await upload(alice, big, filename="../../holiday photo.png", content_type="image/png", conversation_id=conv)
    assert status == 201, file
    assert file["filename"] == "holiday photo.png" and file["content_type"] == "image/png" and file["size"] == len(big)
    assert file["url"] == f"/api/notifications/chat/files/{file['id']}/" and file["conversation_id"] == conv

    response = await fetch_raw(bob, file["url"])
    assert response.code == 200 and response.body == big
    assert response.headers["Content-Type"] == "image/png" and response.headers["X-Content-Type-Options"] == "nosniff"
    assert "holiday%20photo.png" in response.headers["Content-Disposition"]
    assert (await fetch_raw(carol, file["url"])).code == 404, "not a participant"
    assert stored_counts(server, alice.tenant_id) in (None, (1, 3))

    text = "première ligne\nsecond line\n".encode()
    status, note = await upload(alice, text, filename="notes.txt", conversation_id=conv)
    assert status == 201 and note["content_type"] == "text/plain"
    response = await fetch_raw(alice, note["url"])
    assert response.body == text and response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    for data, declared, expected in (
        (PDF, "application/pdf", "application/pdf"),
        (zipped(), "application/zip", "application/zip"),
        (b"a,b\n1,2\n", "text/csv", "text/csv"),
        (png(), "application/octet-stream", "image/png"),
    ):
        status, stored = await upload(alice, data, filename="x", content_type=declared, conversation_id=conv)
        assert status == 201 and stored["content_type"] == expected, stored
        assert (await fetch_raw(bob, stored["url"])).body == data


async def test_files_without_a_conversation_are_the_uploaders(rest_users):
    alice, bob = rest_users("alice", "bob")
    [boss] = rest_users("boss", role="admin")
    status, file = await upload(alice, PDF, filename="cv.pdf")
    assert status == 201 and file["conversation_id"] is None and file["content_type"] == "application/pdf"
    assert (await fetch_raw(alice, file["url"])).body == PDF
    assert (await fetch_raw(boss, file["url"])).body == PDF, "tenant admins may"
    assert (await fetch_raw(bob, file["url"])).code == 404
    assert (await fetch_raw(bob, "files/no-such-file/")).code == 404
    response = await fetch_raw(alice, file["url"], token="")
    assert response.code == 401


async def test_content_type_is_checked_against_the_bytes(rest_users, server):
    alice, bob = rest_users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    for data, declared in (
        (b"just some text", "image/png"),  # declared image, bytes are text
        (png(), "application/pdf"),  # declared pdf, bytes are png
        (png(), "text/plain"),
        (PDF, "image/jpeg"),
        (ELF, None),  # an executable: not on the allow-list
        (ELF, "application/octet-stream"),
        (os.urandom(4096), None),  # unrecognisable binary
        (b"<html><script>alert(1)</script></html>", "text/html"),  # text, but not an allowed text type
        (b"GIF89a" + b"\x00" * 20, "image/svg+xml"),
    ):
        error = assert_error(await upload(alice, data, filename="f", content_type=declared, conversation_id=conv), 415, "unsupported_media_type")
        assert error["details"]["file"], error
    assert_error(await alice.api.post("upload/", {"file": "not multipart"}), 415, "unsupported_media_type")
    assert stored_counts(server, alice.tenant_id) in (None, (0, 0)), "nothing stored"


async def test_form_rules(rest_users, server):
    alice, bob, carol = rest_users("alice", "bob", "carol")
    conv = await alice.create_conversation("group", [bob])
    body, ctype = multipart({"conversation_id": conv})
    assert assert_error(await alice.api.post("upload/", raw=body, headers={"Content-Type": ctype}), 400)["details"]["file"]
    body, ctype = multipart({"file": "a plain field"})
    assert assert_error(await alice.api.post("upload/", raw=body, headers={"Content-Type": ctype}), 400)["details"]["file"]
    body, ctype = multipart({"caption": "hi"}, [("file", "a.pdf", None, PDF)])
    assert assert_error(await alice.api.post("upload/", raw=body, headers={"Content-Type": ctype}), 400)["details"]["caption"]
    body, ctype = multipart({}, [("file", "a.pdf", None, PDF), ("file", "b.pdf", None, PDF)])
    assert_error(await alice.api.post("upload/", raw=body, headers={"Content-Type": ctype}), 400, "invalid_message")
    body, ctype = multipart({}, [("file", "a.pdf", None, PDF)])
    assert_error(await alice.api.post("upload/", raw=body[:-20], headers={"Content-Type": ctype}), 400, "invalid_message")
    assert_error(await alice.api.post("upload/", raw=body, headers={"Content-Type": "multipart/form-data"}), 400)
    assert_error(await upload(alice, b"", filename="empty.txt"), 400, "invalid_message")
    assert_error(await upload(alice, PDF, conversation_id=""), 400, "invalid_message")
    assert_error(await upload(carol, PDF, conversation_id=conv), 404, "not_found")
    assert_error(await upload(alice, PDF, conversation_id="no-such-conversation"), 404, "not_found")
    assert stored_counts(server, alice.tenant_id) in (None, (0, 0)), "nothing stored"


async def test_too_large_upload_stores_nothing(rest_users, server):
    [alice] = rest_users("alice")
    conv = await alice.create_conversation("group")
    exactly = png(b"\x00" * (MAX_BYTES - len(png())))
    too_big = exactly + b"\x00"
    error = assert_error(await upload(alice, too_big, filename="big.png", conversation_id=conv), 413, "payload_too_large")
    assert error["details"]["max_bytes"] == MAX_BYTES
    assert stored_counts(server, alice.tenant_id) in (None, (0, 0)), "nothing stored"

    status, file = await upload(alice, exactly, filename="limit.png", conversation_id=conv)
    assert status == 201 and file["size"] == MAX_BYTES
    assert (await fetch_raw(alice, file["url"])).body == exactly
    assert stored_counts(server, alice.tenant_id) in (None, (1, -(-MAX_BYTES // (255 * 1024))))


async def test_file_and_image_messages_need_a_usable_file(rest_users):
    alice, bob, carol = rest_users("alice", "bob", "carol")
    conv = await alice.create_conversation("group", [bob])
    other = await alice.create_conversation("group", [carol])
    path = f"conversations/{conv}/messages/"
    image = (await upload(bob, png(), filename="p.png", conversation_id=conv))[1]
    pdf = (await upload(bob, PDF, filename="d.pdf", conversation_id=conv))[1]
    elsewhere = (await upload(alice, png(), filename="o.png", conversation_id=other))[1]
    bobs_own = (await upload(bob, png(), filename="mine.png"))[1]
    alices_own = (await upload(alice, png(), filename="hers.png"))[1]

    status, sent = await bob.api.post(path, {"content": "", "message_type": "image", "metadata": {"file_id": image["id"]}})
    assert status == 201 and sent["metadata"] == {"file_id": image["id"]}
    assert (await bob.api.post(path, {"content": "the doc", "message_type": "file", "metadata": {"file_id": pdf["id"]}}))[0] == 201
    assert (await bob.api.post(path, {"content": "", "message_type": "file", "metadata": {"file_id": image["id"]}}))[0] == 201
    assert (await bob.api.post(path, {"content": "", "message_type": "image", "metadata": {"file_id": bobs_own["id"]}}))[0] == 201

    error = assert_error(await bob.api.post(path, {"content": "", "message_type": "image", "metadata": {"file_id": pdf["id"]}}), 400)
    assert error["details"] == {"metadata": {"file_id": ["Not an image."]}}
    for file_id in ("no-such-file", elsewhere["id"], alices_own["id"]):
        assert_error(await bob.api.post(path, {"content": "", "message_type": "file", "metadata": {"file_id": file_id}}), 404, "not_found")
    status, page = await bob.api.get(path)
    assert len(page["results"]) == 4, "refused messages are not stored"

    sock = await bob.socket()
    refused = await sock.request("send_message", "error", conversation_id=conv, content="", message_type="image", metadata={"file_id": "nope"})
    assert refused["code"] == "not_found"
    accepted = await sock.request("send_message", "new_message", conversation_id=conv, content="", message_type="image", metadata={"file_id": image["id"]})
    assert accepted["message"]["seq"] == 5
    sock.close()


async def test_another_tenant_cannot_download(rest_users, server):
    [alice] = rest_users("alice")
    [mallory] = rest_users("alice", role="admin", tenant_id="other-" + alice.tenant_id)
    conv = await alice.create_conversation("group")
    status, file = await upload(alice, PDF, conversation_id=conv)
    assert (await fetch_raw(mallory, file["url"])).code == 404
    assert_error(await upload(mallory, PDF, conversation_id=conv), 404, "not_found")


async def test_deleting_a_conversation_deletes_its_files(users):
    alice, bob = users("alice", "bob")
    conv = await alice.create_conversation("group", [bob])
    status, file = await upload(alice, png(), filename="a.png", content_type="image/png", conversation_id=conv)
    assert status == 201
    status, _ = await alice.api.delete(f"conversations/{conv}/")
    assert status == 204
    status, _ = await alice.api.get(f"files/{file['id']}/")
    assert status == 404


async def test_filenames_lose_invisible_characters_and_end_in_their_types_extension(rest_users):
    (alice,) = rest_users("alice")
    named = {
        "\u202egnp.txt": (b"plain words\n", "gnp.txt"),  # a right-to-left override would show it as txt.png
        "zero\u200bwidth\u2066.png": (png(), "zerowidth.png"),
        "invoice.exe": (PDF, "invoice.exe.pdf"),
        "page.html": (b"<p>not html to us</p>\n", "page.html.txt"),
        "PHOTO.JPG.png": (png(), "PHOTO.JPG.png"),
    }
    for sent, (data, expected) in named.items():
        status, file = await upload(alice, data, filename=sent)
        assert status == 201 and file["filename"] == expected, (sent, status, file)
        response = await fetch_raw(alice, file["url"])
        assert f"filename*=UTF-8''{expected}" in response.headers["Content-Disposition"].replace("%20", " ")


async def test_names_sent_encoded_keep_their_quotes_and_backslashes(rest_users):
    # Tornado hands over a filename*= (RFC 5987) name escaped: `z"x.txt` as `z\"x.txt`, which was
    # then cut at the backslash and stored as `"x.txt`.
    (alice,) = rest_users("alice")
    named = {'z"x.txt': 'z"x.txt', '"quoted".txt': '"quoted".txt', "dir\\a\"b.txt": 'a"b.txt', "\u00e9t\u00e9 \"1\".txt": '\u00e9t\u00e9 "1".txt'}
    for sent, expected in named.items():
        status, file = await upload(alice, b"plain words\n", filename=sent, encoded_name=True)
        assert status == 201 and file["filename"] == expected, (sent, status, file)
    status, file = await upload(alice, b"plain words\n", filename="C:\\Users\\me\\notes.txt")  # as old browsers send a path
    assert status == 201 and file["filename"] == "notes.txt", file


SMALL_MAX_BYTES = 1024 * 1024
PAST_THE_LIMIT = 8 * SMALL_MAX_BYTES  # past the limit and its framing, more than socket buffers hold, within the discard bound


@pytest.fixture(scope="module")
def small_server(mongodb_uri):
    """A 1 MiB upload limit; on real MongoDB when there is one, so that stored files can be counted."""
    proc = ServerProcess(
        env={"UPLOAD_MAX_BYTES": str(SMALL_MAX_BYTES)}, mongodb_uri=mongodb_uri, db_name=f"chat_{unique('small').replace('-', '_')}" if mongodb_uri else None
    ).start()
    yield proc
    proc.stop()


def upload_parts(server, token: str, data: bytes) -> tuple[str, bytes, dict[str, str]]:
    """URL, multipart body and headers of an upload of ``data`` as a PNG."""
    body, ctype = multipart({}, [("file", "big.png", "image/png", data)])
    return f"{server.http_url}{API}/upload/", body, {"Authorization": f"Bearer {token}", "Content-Type": ctype}


def assert_too_large(body: bytes) -> None:
    error = json.loads(body)["error"]
    assert error["code"] == "payload_too_large" and error["details"]["max_bytes"] == SMALL_MAX_BYTES, error


def test_urllib_reads_the_413_of_an_upload_past_the_limit(small_server, tenant):
    url, body, headers = upload_parts(small_server, token_for(small_server, tenant, "uploader"), png(b"\x00" * PAST_THE_LIMIT))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=30)
    assert refused.value.code == 413
    assert_too_large(refused.value.read())
    assert stored_counts(small_server, tenant) in (None, (0, 0)), "nothing stored"


def test_requests_reads_the_413_and_its_session_uploads_next(small_server, tenant):
    token = token_for(small_server, tenant, "uploader")
    url = f"{small_server.http_url}{API}/upload/"
    auth = {"Authorization": f"Bearer {token}"}
    with requests.Session() as session:
        refused = session.post(url, files={"file": ("big.png", png(b"\x00" * PAST_THE_LIMIT), "image/png")}, headers=auth, timeout=30)
        assert refused.status_code == 413
        assert_too_large(refused.content)
        assert stored_counts(small_server, tenant) in (None, (0, 0)), "nothing stored"

        stored = session.post(url, files={"file": ("small.png", png(), "image/png")}, headers=auth, timeout=30)
        assert stored.status_code == 201, stored.text
        assert session.get(f"{small_server.http_url}{stored.json()['url']}", headers=auth, timeout=30).content == png()
    assert stored_counts(small_server, tenant) in (None, (1, 1))


def test_the_connection_stays_usable_after_a_413(small_server, tenant):
    """A body past the limit, with a length and chunked, is read to its end: the next request follows on the same socket."""
    token = token_for(small_server, tenant, "uploader")
    url, too_big, headers = upload_parts(small_server, token, png(b"\x00" * PAST_THE_LIMIT))
    path = urllib.parse.urlsplit(url).path
    pieces = (too_big[i : i + 65536] for i in range(0, len(too_big), 65536))
    conn = http.client.HTTPConnection("127.0.0.1", small_server.port, timeout=30)
    try:
        conn.request("POST", path, body=too_big, headers=headers)
        answer = conn.getresponse()
        assert answer.status == 413
        assert_too_large(answer.read())
        sock = conn.sock
        conn.request("POST", path, body=pieces, headers=headers, encode_chunked=True)
        answer = conn.getresponse()
        assert answer.status == 413 and conn.sock is sock
        assert_too_large(answer.read())
        assert stored_counts(small_server, tenant) in (None, (0, 0)), "nothing stored"

        _, body, headers = upload_parts(small_server, token, png())
        conn.request("POST", path, body=body, headers=headers)
        answer = conn.getresponse()
        assert answer.status == 201 and conn.sock is sock, answer.read()
        answer.read()
    finally:
        conn.close()


def test_a_body_past_the_discard_bound_is_answered_at_once(small_server, tenant):
    """Declared past the bound: 413 from the headers alone. Chunked: 413 once it passes the bound.
    Either way the connection then closes, the rest unread."""
    token = token_for(small_server, tenant, "uploader")
    head = (
        f"POST {API}/upload/ HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
    )
    bound = SMALL_MAX_BYTES + BODY_OVERHEAD_BYTES + DISCARD_ALLOWANCE_BYTES
    answer = raw_http(small_server, f"{head}Content-Length: {bound + 1}\r\n\r\n".encode())  # no body is ever sent
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert_too_large(answer.partition(b"\r\n\r\n")[2])

    chunk = b"10000\r\n" + b"\x00" * 0x10000 + b"\r\n"
    answer = send_until_answered(small_server, f"{head}Transfer-Encoding: chunked\r\n\r\n".encode(), chunk)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert_too_large(answer.partition(b"\r\n\r\n")[2])
    assert stored_counts(small_server, tenant) in (None, (0, 0)), "nothing stored"


def send_until_answered(server, head: bytes, chunk: bytes, timeout: float = 30.0) -> bytes:
    """Send ``head``, then ``chunk`` over and over until the server answers, reading as we send
    (as curl and browsers do); the answer, read until the server closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(head)
        pending = memoryview(b"")
        while True:
            readable, writable, _ = select.select([sock], [sock], [], timeout)
            if readable:
                break
            assert writable, "the server neither read nor answered"
            pending = pending or memoryview(chunk)
            pending = pending[sock.send(pending) :]
        received = b""
        try:
            while data := sock.recv(65536):
                received += data
        except ConnectionResetError:
            pass  # closed with our data unread: what came before is the answer
        return received
