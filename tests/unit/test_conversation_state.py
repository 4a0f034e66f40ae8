"""Loading conversation actors' states (actors/conversation_state.py): loads asked for in one turn
of the loop share their queries and each gets exactly its own conversation's state."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from actors.conversation_state import BATCH_MAX, StateLoader
from storage import open_storage
from storage.clock import utcnow
from storage.errors import StorageError
from tests.support.client import unique
from tests.support.loop import on_loop

TENANT = "t1"


async def conversations_of(storage, tenant_id: str, count: int) -> list[tuple[str, dict[str, str]]]:
    """``count`` groups, each with its own members (and one member in all of them)."""
    made = []
    for n in range(count):
        conversation, _ = await storage.conversations.create(tenant_id, type="group", created_by=f"u{n}", title=f"g{n}")
        roles = {f"u{n}": "owner", f"v{n}": "member", "shared": "admin"}
        await storage.participants.add_new_conversation(tenant_id, conversation["_id"], roles)
        made.append((conversation["_id"], roles))
    return made


class CountingParticipants:
    """The participants repository, counting the shared queries made through it."""

    def __init__(self, repository) -> None:
        self._repository = repository
        self.batches: list[list[str]] = []

    async def roles_of(self, tenant_id, conversation_ids):
        self.batches.append(list(conversation_ids))
        return await self._repository.roles_of(tenant_id, conversation_ids)


def fresh_storage():
    return open_storage(None, f"unit_{unique('state').replace('-', '_')}", 5000)


@on_loop
async def test_loads_asked_together_share_one_query_and_each_gets_its_own_state():
    storage = fresh_storage()
    made = await conversations_of(storage, TENANT, 3)
    other_tenant = await conversations_of(storage, "t2", 1)
    first_id = made[0][0]
    message = storage.messages.build(TENANT, first_id, "u0", content="hi", message_type="text")
    await storage.messages.insert_ordered([{**message, "seq": 1, "created_at": utcnow()}])
    counting = CountingParticipants(storage.participants)
    loader = StateLoader(dataclasses.replace(storage, participants=counting))

    missing = unique("missing")
    asked = [loader.load(TENANT, conversation_id) for conversation_id, _ in made]
    asked.append(loader.load(TENANT, missing))
    asked.append(loader.load(TENANT, other_tenant[0][0]))  # another tenant's id, asked as this tenant
    asked.append(loader.load("t2", other_tenant[0][0]))
    states = await asyncio.gather(*asked)

    assert sorted(map(sorted, counting.batches)) == sorted([sorted(cid for cid, _ in made), [other_tenant[0][0]]]), (
        "one participants query per tenant for everything asked in that turn"
    )
    for (conversation_id, roles), state in zip(made, states):
        assert state.conversation["_id"] == conversation_id
        assert state.members == roles
    assert [state.last_seq for state in states[:3]] == [1, 0, 0]
    assert states[3] is None and states[4] is None, "a missing id, or one of another tenant, loads nothing"
    assert states[5].members == other_tenant[0][1]


@on_loop
async def test_a_turn_with_many_loads_is_split_into_bounded_queries():
    storage = fresh_storage()
    made = await conversations_of(storage, TENANT, BATCH_MAX + 3)
    counting = CountingParticipants(storage.participants)
    loader = StateLoader(dataclasses.replace(storage, participants=counting))

    states = await asyncio.gather(*(loader.load(TENANT, conversation_id) for conversation_id, _ in made))

    assert sorted(map(len, counting.batches)) == [3, BATCH_MAX]
    assert [state.members for state in states] == [roles for _, roles in made]


@on_loop
async def test_a_failed_query_fails_every_load_that_shared_it_and_the_next_turn_loads_again():
    storage = fresh_storage()
    made = await conversations_of(storage, TENANT, 2)

    class FailingOnce:
        def __init__(self) -> None:
            self.failed = False

        async def roles_of(self, tenant_id, conversation_ids):
            if not self.failed:
                self.failed = True
                raise StorageError("database away")
            return await storage.participants.roles_of(tenant_id, conversation_ids)

    loader = StateLoader(dataclasses.replace(storage, participants=FailingOnce()))
    asked = [loader.load(TENANT, conversation_id) for conversation_id, _ in made]
    for future in asked:
        with pytest.raises(StorageError):
            await future

    states = await asyncio.gather(*(loader.load(TENANT, conversation_id) for conversation_id, _ in made))
    assert [state.members for state in states] == [roles for _, roles in made]


@on_loop
async def test_the_embedded_member_index_answers_what_a_query_of_the_rows_answers():
    """The embedded database's participants repository keeps its members in memory as it writes;
    read through the same collection without it, the rows must say the same after every change."""
    storage = fresh_storage()
    indexed = storage.participants
    scanning = type(indexed)(storage.conversations.collection.database)
    first, second = unique("c"), unique("c")

    async def agree(*conversation_ids: str) -> dict[str, dict[str, str]]:
        answer = await indexed.roles_of(TENANT, list(conversation_ids))
        assert answer == await scanning.roles_of(TENANT, list(conversation_ids))
        return answer

    await indexed.add_new_conversation(TENANT, first, {"a": "owner", "b": "member"})
    await indexed.add(TENANT, first, "c", "admin")
    assert (await indexed.add(TENANT, first, "b", "admin"))[1] is False, "already there: unchanged"
    await indexed.add(TENANT, second, "a", "member")
    await indexed.add("t2", first, "z", "owner")  # the same id in another tenant stays apart
    assert await agree(first, second) == {first: {"a": "owner", "b": "member", "c": "admin"}, second: {"a": "member"}}
    assert list((await agree(first))[first]) == ["a", "b", "c"], "in the order they joined"

    assert await indexed.remove(TENANT, first, "b") is True
    assert await indexed.remove(TENANT, first, "b") is False
    await indexed.remove_all(TENANT, second)
    missing = unique("none")
    assert await agree(first, second, missing) == {first: {"a": "owner", "c": "admin"}, second: {}, missing: {}}
    assert await indexed.roles_of("t2", [first]) == {first: {"z": "owner"}}
