"""Files that no message carries are deleted after UNATTACHED_FILE_TTL_SECS (here a few seconds,
swept every quarter of that), over real HTTP; files posted in a message stay."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.client import unique
from tests.support.fuzz import backends
from tests.support.rest import assert_error, checked_user, fetch_raw, upload
from tests.support.server import ServerProcess
from tests.test_rest_files import PDF, png, stored_counts

TTL_SECS = 3


@pytest.fixture(scope="module", params=backends())
def expiring_server(request, mongodb_uri):
    uri = mongodb_uri if request.param == "mongodb" else None
    proc = ServerProcess(
        env={"UNATTACHED_FILE_TTL_SECS": str(TTL_SECS)}, mongodb_uri=uri, db_name=f"chat_{unique('expiry').replace('-', '_')}" if uri else None
    ).start()
    yield proc
    proc.stop()


async def until_gone(user, urls: list[str], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while [(await fetch_raw(user, url)).code for url in urls] != [404] * len(urls):
        assert asyncio.get_running_loop().time() < deadline, "unattached files still served"
        await asyncio.sleep(0.1)


async def test_unattached_files_expire_and_attached_ones_stay(expiring_server, tenant):
    alice, bob = (checked_user(expiring_server, tenant, name) for name in ("alice", "bob"))
    conv = await alice.create_conversation("group", [bob])
    messages = f"conversations/{conv}/messages/"
    posted = (await upload(alice, png(), filename="p.png", conversation_id=conv))[1]
    posted_own = (await upload(alice, PDF, filename="own.pdf"))[1]
    assert (await alice.api.post(messages, {"content": "", "message_type": "image", "metadata": {"file_id": posted["id"]}}))[0] == 201
    assert (await alice.api.post(messages, {"content": "", "message_type": "file", "metadata": {"file_id": posted_own["id"]}}))[0] == 201
    # Uploaded after the posted ones: the sweep that deletes these had passed the others' expiry too.
    in_conversation = (await upload(alice, PDF, filename="never posted.pdf", conversation_id=conv))[1]
    alone = (await upload(alice, b"draft\n", filename="draft.txt"))[1]

    await until_gone(alice, [in_conversation["url"], alone["url"]])
    assert (await fetch_raw(bob, posted["url"])).body == png()
    assert (await fetch_raw(alice, posted_own["url"])).body == PDF
    assert stored_counts(expiring_server, tenant) in (None, (2, 2)), "the expired files' chunks went too"
    assert_error(await alice.api.post(messages, {"content": "", "message_type": "file", "metadata": {"file_id": alone["id"]}}), 404, "not_found")
