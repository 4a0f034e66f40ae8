"""The loop-hosted pykka runtime keeps pykka's API and never blocks the loop."""

from __future__ import annotations

import asyncio
import threading

import pykka
import pytest

from actors.runtime import LoopActor, LoopFuture
from tests.support.client import DEFAULT_WAIT_SECS
from tests.support.loop import on_loop


class Counter(LoopActor):
    def __init__(self, events: list) -> None:
        super().__init__()
        self.events = events
        self.count = 0
        self.thread = None

    def on_start(self) -> None:
        self.thread = threading.get_ident()
        self.events.append("start")

    def on_stop(self) -> None:
        self.events.append("stop")

    def on_failure(self, exc_type, exc_value, traceback) -> None:
        self.events.append(("failure", exc_type.__name__))

    def on_receive(self, message):
        if message == "boom":
            raise ValueError("boom")
        self.count += 1
        return self.count

    def add(self, n: int) -> int:
        self.count += n
        return self.count

    def later(self, value):
        """Answer after I/O: the reply is a LoopFuture settled by a message to ourselves."""
        reply = LoopFuture()

        async def io():
            await asyncio.sleep(0.01)
            return value * 2

        self.run_io(io(), lambda result, error: reply.set((result, threading.get_ident() == self.thread)))
        return reply

    def fail_in_method(self):
        raise KeyError("nope")


@on_loop
async def test_tell_ask_and_proxy_run_on_the_loop_thread():
    events: list = []
    ref = Counter.start(events)
    assert await ref.ask("x", block=False) == 1
    ref.tell("y")
    proxy = ref.proxy()
    assert await proxy.add(10) == 12
    assert await proxy.count == 12
    assert events == ["start"]
    assert await proxy.thread == threading.get_ident()


@on_loop
async def test_deferred_answers_come_back_as_messages():
    proxy = Counter.start([]).proxy()
    result, on_actor_thread = await proxy.later(21)
    assert result == 42 and on_actor_thread


@on_loop
async def test_exceptions_reach_the_caller_and_the_actor_lives_on():
    proxy = Counter.start([]).proxy()
    with pytest.raises(KeyError):
        await proxy.fail_in_method()
    assert await proxy.add(1) == 1


@on_loop
async def test_unhandled_failure_stops_the_actor_and_calls_on_failure():
    events: list = []
    ref = Counter.start(events)
    ref.tell("boom")
    deadline = asyncio.get_running_loop().time() + DEFAULT_WAIT_SECS
    while ref.is_alive() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert not ref.is_alive()
    assert ("failure", "ValueError") in events
    with pytest.raises(pykka.ActorDeadError):
        await ref.ask("again", block=False)


@on_loop
async def test_stop_runs_on_stop_and_fails_queued_asks():
    events: list = []
    ref = Counter.start(events)
    assert await ref.stop(block=False) is True
    assert events[-1] == "stop"
    with pytest.raises(pykka.ActorDeadError):
        ref.tell("late")


@on_loop
async def test_blocking_get_on_the_loop_raises_instead_of_deadlocking():
    proxy = Counter.start([]).proxy()
    future = proxy.later(1)
    with pytest.raises(RuntimeError, match="await"):
        future.get()
    assert (await future)[0] == 2


@on_loop
async def test_get_from_another_thread_waits_for_the_loop():
    ref = Counter.start([])
    answer = await asyncio.to_thread(lambda: ref.ask("from a thread", timeout=DEFAULT_WAIT_SECS))
    assert answer == 1


@on_loop
async def test_ten_thousand_actors_use_no_extra_threads():
    threads_before = threading.active_count()
    refs = [Counter.start([]) for _ in range(10_000)]
    answers = await asyncio.gather(*(asyncio.ensure_future(_ask(ref)) for ref in refs))
    assert answers == [1] * 10_000
    assert threading.active_count() == threads_before


async def _ask(ref):
    return await ref.ask("hi", block=False)
