"""Upload quotas over real HTTP: per user and per tenant over 24 hours, counted from what is stored
(so a restart keeps them), with the bytes reserved before storing (so two uploads at once cannot
both pass). A refused upload stores nothing and counts for nothing."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.client import User, unique
from tests.support.fuzz import backends
from tests.support.rest import API, assert_error, checked_user, raw_http, upload
from tests.support.server import ServerProcess
from tests.test_rest_files import png, stored_counts
from web.rest.files import BODY_OVERHEAD_BYTES

QUOTA = 300 * 1024
TENANT_QUOTA = 500 * 1024
FILE = 200 * 1024  # one chunk; a second one does not fit the user quota
QUOTA_ENV = {"UPLOAD_QUOTA_BYTES": str(QUOTA), "TENANT_UPLOAD_QUOTA_BYTES": str(TENANT_QUOTA)}


def image(size: int) -> bytes:
    return png(b"\x00" * (size - len(png())))


def quota_server_on(mongodb_uri: str | None, db_name: str | None = None) -> ServerProcess:
    return ServerProcess(env=QUOTA_ENV, mongodb_uri=mongodb_uri, db_name=db_name or (f"chat_{unique('quota').replace('-', '_')}" if mongodb_uri else None))


@pytest.fixture(scope="module", params=backends())
def quota_server(request, mongodb_uri):
    proc = quota_server_on(mongodb_uri if request.param == "mongodb" else None).start()
    yield proc
    proc.stop()


@pytest.fixture
def people(quota_server, tenant):
    return lambda *names, tenant_id=None: [checked_user(quota_server, tenant_id or tenant, name) for name in names]


def assert_quota_refusal(answer, scope: str, quota: int, used: int) -> dict:
    error = assert_error(answer, 429, "upload_quota_exceeded")
    details = error["details"]
    assert details == {"quota": scope, "quota_bytes": quota, "used_bytes": used, "retry_after": details["retry_after"]}, error
    assert 0 < details["retry_after"] <= 24 * 3600, error
    return error


async def test_past_the_user_quota_the_upload_is_refused_and_nothing_is_stored(people, quota_server, tenant):
    [alice] = people("alice")
    assert (await upload(alice, image(FILE), filename="a.png"))[0] == 201
    assert_quota_refusal(await upload(alice, image(FILE), filename="b.png"), "user", QUOTA, FILE)
    retry_after = int(alice.api.last_headers["Retry-After"])
    assert 23 * 3600 < retry_after <= 24 * 3600 + 1, "room frees up when the first upload leaves the 24 hours"
    assert stored_counts(quota_server, tenant) in (None, (1, 1)), "nothing stored"

    assert (await upload(alice, image(50 * 1024), filename="c.png"))[0] == 201, "what still fits is accepted"
    assert_quota_refusal(await upload(alice, image(60 * 1024), filename="d.png"), "user", QUOTA, FILE + 50 * 1024)


async def test_the_tenant_quota_is_shared_by_its_users(people):
    alice, bob, carol = people("alice", "bob", "carol")
    assert (await upload(alice, image(FILE)))[0] == 201
    assert (await upload(bob, image(FILE)))[0] == 201
    assert_quota_refusal(await upload(carol, image(FILE)), "tenant", TENANT_QUOTA, 2 * FILE)
    assert (await upload(carol, image(TENANT_QUOTA - 2 * FILE)))[0] == 201, "exactly up to the quota"
    [elsewhere] = people("dave", tenant_id=unique("tenant"))
    assert (await upload(elsewhere, image(FILE)))[0] == 201, "another tenant has its own quota"


async def test_a_file_larger_than_the_whole_quota_is_too_large(people):
    [alice] = people("alice")
    error = assert_error(await upload(alice, image(QUOTA + 1)), 413, "payload_too_large")
    assert error["details"]["max_bytes"] == QUOTA, "waiting would never help: not a 429"


async def test_two_uploads_at_once_that_together_exceed_the_quota_one_passes(people, quota_server, tenant):
    [alice] = people("alice")
    answers = await asyncio.gather(*(upload(alice, image(FILE), filename=f"{n}.png") for n in range(2)))
    assert sorted(status for status, _ in answers) == [201, 429], answers
    assert stored_counts(quota_server, tenant) in (None, (1, 1))


async def test_a_declared_length_past_the_quota_is_refused_whatever_the_body(people, quota_server, tenant):
    """The headers alone decide: the body (not even multipart here) is dropped as it arrives, then answered."""
    [alice] = people("alice")
    assert (await upload(alice, image(FILE)))[0] == 201
    body = b"\x00" * (BODY_OVERHEAD_BYTES + QUOTA - FILE + 1)
    head = (
        f"POST {API}/upload/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {alice.token}\r\n"
        f"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    answer = raw_http(quota_server, head.encode() + body)
    assert answer.startswith(b"HTTP/1.1 429"), answer[:300]
    assert b"Retry-After: " in answer and b'"upload_quota_exceeded"' in answer, answer[:600]
    assert stored_counts(quota_server, tenant) in (None, (1, 1))


async def test_files_deleted_with_their_conversation_no_longer_count(people):
    [alice] = people("alice")
    conv = await alice.create_conversation("group")
    assert (await upload(alice, image(FILE), conversation_id=conv))[0] == 201
    assert_quota_refusal(await upload(alice, image(FILE)), "user", QUOTA, FILE)
    assert (await alice.api.delete(f"conversations/{conv}/"))[0] == 204
    assert (await upload(alice, image(FILE)))[0] == 201


async def test_the_quota_survives_a_restart(mongodb_uri, tenant):
    if mongodb_uri is None:
        pytest.skip("needs a MongoDB wire server (FerretDB not built)")
    db_name = f"chat_{unique('restart').replace('-', '_')}"
    user_id = unique("alice")
    first = quota_server_on(mongodb_uri, db_name).start()
    try:
        assert (await upload(User(first, tenant, user_id), image(FILE)))[0] == 201
    finally:
        assert first.stop() == 0
    second = quota_server_on(mongodb_uri, db_name).start()
    try:
        assert_quota_refusal(await upload(User(second, tenant, user_id), image(FILE)), "user", QUOTA, FILE)
    finally:
        second.stop()
