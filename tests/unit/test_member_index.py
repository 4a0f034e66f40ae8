"""The embedded database's member index (storage/member_index.py): kept by the participants
repository as it writes, it must answer what a query of the rows answers after every change."""

from __future__ import annotations

from storage import open_storage
from storage.participants import ParticipantRepository
from tests.support.client import unique
from tests.support.loop import on_loop

TENANT = "t1"


@on_loop
async def test_the_index_answers_what_a_query_of_the_rows_answers():
    storage = open_storage(None, f"unit_{unique('members').replace('-', '_')}", 5000)
    indexed = storage.participants
    scanning = ParticipantRepository(indexed.collection.database)  # the same rows, read by query
    first, second = unique("c"), unique("c")

    async def roles(conversation_id: str, tenant_id: str = TENANT) -> dict[str, str]:
        answer = await indexed.roles(tenant_id, conversation_id)
        assert answer == await scanning.roles(tenant_id, conversation_id)
        return answer

    await indexed.add_new_conversation(TENANT, first, {"a": "owner", "b": "member"})
    await indexed.add(TENANT, first, "c", "admin")
    assert (await indexed.add(TENANT, first, "b", "admin"))[1] is False, "already there: unchanged"
    await indexed.add(TENANT, second, "a", "member")
    await indexed.add("t2", first, "z", "owner")  # the same conversation id in another tenant stays apart
    assert await roles(first) == {"a": "owner", "b": "member", "c": "admin"}
    assert list(await roles(first))[-1] == "c", "in the order they joined"
    assert await roles(second) == {"a": "member"}
    assert await roles(first, "t2") == {"z": "owner"}

    assert await indexed.remove(TENANT, first, "b") is True
    assert await indexed.remove(TENANT, first, "b") is False
    await indexed.remove_all(TENANT, second)
    assert await roles(first) == {"a": "owner", "c": "admin"}
    assert await roles(second) == {}
    assert await roles(unique("none")) == {}
    assert await roles(first, "t2") == {"z": "owner"}
