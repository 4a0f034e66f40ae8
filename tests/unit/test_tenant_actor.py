"""The tenant actor's presence saves (actors/tenant.py), in-process on the embedded database, with
writes the test holds back: one write in flight at a time, and ``written`` answered only once
every change made before it is stored."""

from __future__ import annotations

import asyncio
import dataclasses

from actors.principal import Principal
from actors.tenant import TenantActor
from config import Settings
from storage import open_storage
from tests.support.client import unique
from tests.support.loop import on_loop
from tests.unit.test_conversation_actor import WAIT_SECS, FakeSocket

TENANT = "t1"
# No interval ends during a test: every save after the first waits for written() or the test.
SETTINGS = Settings(presence_batch_secs=3600.0)


class HeldWrites:
    """The presence repository with each save_many held until the test lets it through."""

    def __init__(self, presence) -> None:
        self.presence = presence
        self.gate = asyncio.Event()
        self.started = 0

    async def save_many(self, *args, **kwargs) -> None:
        self.started += 1
        await self.gate.wait()
        await self.presence.save_many(*args, **kwargs)


class StubDirectory:
    def forget_tenant(self, tenant_id, actor_ref) -> None:
        pass


def start_tenant():
    storage = open_storage(None, f"unit_{unique('tenant').replace('-', '_')}", SETTINGS.mongodb_timeout_ms)
    held = HeldWrites(storage.presence)
    actor = TenantActor.start(StubDirectory(), dataclasses.replace(storage, presence=held), SETTINGS, TENANT).proxy()
    return actor, storage, held


async def stored_status(storage, user_id: str) -> str | None:
    row = await storage.presence.get(TENANT, user_id)
    return row and row["status"]


@on_loop
async def test_written_waits_for_the_save_under_way():
    actor, storage, held = start_tenant()
    await actor.connect(FakeSocket(Principal(TENANT, "alice")))  # a quiet tenant saves at once
    written = actor.written()
    await asyncio.sleep(0)
    assert held.started == 1 and not written.done()
    held.gate.set()
    await asyncio.wait_for(written, WAIT_SECS)
    assert await stored_status(storage, "alice") == "online"


@on_loop
async def test_a_change_made_during_a_save_is_written_next_and_written_waits_for_it():
    actor, storage, held = start_tenant()
    await actor.connect(FakeSocket(Principal(TENANT, "alice")))
    await actor.connect(FakeSocket(Principal(TENANT, "bob")))  # waits: one write in flight at a time
    assert held.started == 1
    assert set(await actor.live_presence()) == {"alice", "bob"}, "readers get unsaved changes from the actor"
    written = actor.written()
    held.gate.set()
    await asyncio.wait_for(written, WAIT_SECS)
    assert held.started == 2
    assert [await stored_status(storage, user) for user in ("alice", "bob")] == ["online", "online"]


@on_loop
async def test_coming_online_keeps_a_stored_row_and_a_chosen_status_replaces_it():
    actor, storage, held = start_tenant()
    held.gate.set()
    bob = Principal(TENANT, "bob")
    await actor.set_status(bob, "busy")  # no socket: stored all the same
    await asyncio.wait_for(actor.written(), WAIT_SECS)
    await actor.connect(FakeSocket(bob))
    await asyncio.wait_for(actor.written(), WAIT_SECS)
    assert await stored_status(storage, "bob") == "busy", "while connected, readers get bob's presence from the actor"
    assert (await actor.live_presence(["bob"]))["bob"]["status"] == "online"
    await actor.set_status(bob, "away")
    await asyncio.wait_for(actor.written(), WAIT_SECS)
    assert await stored_status(storage, "bob") == "away"
