"""A pykka runtime whose actors are drained by IOLoop callbacks instead of threads.

pykka's ``ThreadingActor`` gives every actor an OS thread; with 10,000 live
conversations that costs 10,000 threads and a thread hand-off per message
(docs/architecture.md, "The actor runtime"; ``python -m bench.actor_runtime``). ``LoopActor`` keeps pykka's model and API (``ActorRef``,
``tell``/``ask``, proxies, ``on_start``/``on_stop``/``on_failure``) but runs every
actor on the one asyncio loop that Tornado uses, so an actor may write sockets and
start motor coroutines directly, and awaiting an actor's answer never blocks.

Rules (enforced here, relied upon everywhere):

* Actor code runs on the loop thread, one message at a time per actor.
* An actor never blocks: ``run_io`` starts a coroutine and delivers its outcome
  back to the actor as a message; ``call_later`` delivers a timer as a message.
* A method may answer later by returning a ``LoopFuture`` it settles itself.
* ``await future`` on a ``LoopFuture`` suspends the coroutine; it never calls
  ``get()`` on the loop (which would deadlock).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import pykka
from pykka import ActorDeadError, ActorRegistry
from pykka._envelope import Envelope

logger = logging.getLogger(__name__)

# How many envelopes one actor handles per loop callback before yielding, so one
# busy conversation cannot starve sockets or other actors.
DRAIN_BATCH = 64

_loop: asyncio.AbstractEventLoop | None = None
_loop_thread_id: int | None = None


def bind_loop(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Host all actors on ``loop`` (the running loop by default). Called at start-up."""
    global _loop, _loop_thread_id
    _loop = loop or asyncio.get_running_loop()
    _loop_thread_id = threading.get_ident()


def loop() -> asyncio.AbstractEventLoop:
    if _loop is None:
        raise RuntimeError("actors.runtime.bind_loop() was not called")
    return _loop


def on_loop_thread() -> bool:
    return threading.get_ident() == _loop_thread_id


def call_soon(callback: Callable[..., Any], *args: Any) -> None:
    """Schedule ``callback`` on the loop from any thread, cheaply from the loop itself."""
    if on_loop_thread():
        loop().call_soon(callback, *args)
    else:
        loop().call_soon_threadsafe(callback, *args)


def weakly(method: Callable[..., Any]) -> Callable[..., Any]:
    """A bound ``method`` that does not keep its object alive (and does nothing once it is gone).

    An actor's parts call back into it through this: were they to hold it strongly, the actor
    and its parts would form a cycle, which only a full garbage collection frees, and those are
    rare by design in this server (``web.gc_tuning``); every conversation actor that retired
    would wait for one, and a long run's memory would creep up meanwhile (``bench.soak``)."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any, **kwargs: Any) -> Any:
        target = ref()
        return None if target is None else target(*args, **kwargs)

    return call


class LoopFuture(pykka.Future):
    """A pykka future settled on the loop, awaitable from loop coroutines.

    ``get()`` from another thread waits as usual; ``get()`` on the loop thread before
    the value is there raises instead of deadlocking. The thread event a foreign
    waiter needs is made only when one asks: most futures never cross threads.
    """

    _event_lock = threading.Lock()

    def __init__(self) -> None:
        super().__init__()
        self._done = False
        self._value: Any = None
        self._exc: BaseException | None = None
        self._callbacks: list[Callable[[LoopFuture], None]] | None = None
        self._event: threading.Event | None = None

    def done(self) -> bool:
        return self._done

    def set(self, value: Any = None) -> None:
        self._settle(value, None)

    def set_exception(self, exc_info: Any = None) -> None:
        if exc_info is None:
            exc_info = sys.exc_info()
        exc = exc_info[1] if exc_info[1] is not None else exc_info[0]()
        self._settle(None, exc)

    def _settle(self, value: Any, exc: BaseException | None) -> None:
        if not on_loop_thread():
            call_soon(self._settle, value, exc)
            return
        if self._done:
            return
        self._value, self._exc = value, exc
        with self._event_lock:
            self._done = True
            event = self._event
        if event is not None:
            event.set()
        callbacks, self._callbacks = self._callbacks, None
        if callbacks:
            for callback in callbacks:
                callback(self)

    def add_done_callback(self, callback: Callable[[LoopFuture], None]) -> None:
        """Run ``callback(self)`` on the loop once settled (at once if it already is)."""
        if self._done:
            callback(self)
        elif self._callbacks is None:
            self._callbacks = [callback]
        else:
            self._callbacks.append(callback)

    def forward_to(self, target: pykka.Future) -> None:
        """Settle ``target`` with this future's value or error once this one is settled."""

        def forward(done: LoopFuture) -> None:
            if done._exc is not None:
                exc = done._exc
                target.set_exception((type(exc), exc, exc.__traceback__))
            else:
                target.set(done._value)

        self.add_done_callback(forward)

    def then(self, fn: Callable[[Any], Any]) -> LoopFuture:
        """A future of ``fn(value)`` once this one succeeds (when ``fn`` answers with a
        ``LoopFuture``, of that one's outcome); of this one's error otherwise."""
        chained = LoopFuture()

        def settle(done: LoopFuture) -> None:
            if done._exc is not None:
                done.forward_to(chained)
                return
            try:
                value = fn(done._value)
            except Exception as error:
                chained.set_exception((type(error), error, error.__traceback__))
                return
            if isinstance(value, LoopFuture):
                value.forward_to(chained)
            else:
                chained.set(value)

        self.add_done_callback(settle)
        return chained

    def result(self) -> Any:
        if self._exc is not None:
            raise self._exc
        return self._value

    def get(self, *, timeout: float | None = None) -> Any:
        if self._get_hook is not None:
            return super().get(timeout=timeout)
        if not self._done:
            if on_loop_thread():
                if timeout == 0:
                    raise pykka.Timeout("0 seconds")
                raise RuntimeError("blocking get() on the IOLoop thread; await the future")
            with self._event_lock:
                if self._event is None:
                    self._event = threading.Event()
                    if self._done:
                        self._event.set()
            if not self._event.wait(timeout):
                raise pykka.Timeout(f"{timeout} seconds")
        return self.result()

    def __await__(self):
        if self._get_hook is not None:
            return (yield from self._poll_hook().__await__())
        if not self._done:
            waiter = loop().create_future()

            def wake(future: LoopFuture) -> None:
                if not waiter.done():
                    waiter.set_result(None)

            self.add_done_callback(wake)
            yield from waiter
        return self.result()

    __iter__ = __await__

    async def _poll_hook(self) -> Any:
        """pykka's derived futures (``stop``, ``map``, ``join``) only offer ``get``: poll it."""
        delay = 0.001
        while True:
            try:
                return self.get(timeout=0)
            except pykka.Timeout:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)


class LoopInbox:
    """A deque whose first ``put`` schedules a drain of its actor on the loop."""

    def __init__(self) -> None:
        self._queue: collections.deque[Envelope[Any]] = collections.deque()
        self._drain: Callable[[], None] | None = None
        self._scheduled = False

    def attach(self, drain: Callable[[], None]) -> None:
        """``drain`` (a bound method of the actor) is also what keeps a running actor alive: its
        refs hold it only weakly."""
        self._drain = drain
        if self._queue:
            self.schedule()

    def detach(self) -> None:
        """The actor stopped: let it go (its ref refuses messages from now on)."""
        self._drain = None

    def schedule(self) -> None:
        if not self._scheduled and self._drain is not None:
            self._scheduled = True
            call_soon(self._run_drain)

    def _run_drain(self) -> None:
        # Reset first: a put racing with the drain then schedules another one.
        self._scheduled = False
        if self._drain is not None:
            self._drain()

    def put(self, envelope: Envelope[Any], /) -> None:
        self._queue.append(envelope)
        self.schedule()

    def get(self) -> Envelope[Any]:
        return self._queue.popleft()

    def empty(self) -> bool:
        return not self._queue

    def __len__(self) -> int:
        return len(self._queue)


class _IoDone(NamedTuple):
    then: Callable[[Any, BaseException | None], Any]
    task: asyncio.Future


class _Timer(NamedTuple):
    callback: Callable[[], Any]


class LoopActor(pykka.Actor):
    """Base class for actors hosted on the loop. Subclasses use pykka's API as usual."""

    @staticmethod
    def _create_actor_inbox() -> LoopInbox:
        return LoopInbox()

    @staticmethod
    def _create_future() -> LoopFuture:
        return LoopFuture()

    def _start_actor_loop(self) -> None:
        call_soon(self._setup_on_loop)

    def _setup_on_loop(self) -> None:
        self._actor_loop_setup()
        self.actor_inbox.attach(self._drain)

    def _actor_loop_teardown(self) -> None:
        super()._actor_loop_teardown()
        self.actor_inbox.detach()

    def _drain(self) -> None:
        """Handle up to ``DRAIN_BATCH`` envelopes, then yield to the loop."""
        inbox = self.actor_inbox
        for _ in range(DRAIN_BATCH):
            if self.actor_stopped.is_set():
                self._actor_loop_teardown()
                return
            if inbox.empty():
                return
            self._handle_envelope(inbox.get())
        if self.actor_stopped.is_set():
            self._actor_loop_teardown()
        elif not inbox.empty():
            inbox.schedule()

    def _handle_envelope(self, envelope: Envelope[Any]) -> None:
        try:
            response = self._handle_receive(envelope.message)
        except Exception:
            if envelope.reply_to is not None:
                logger.debug("Exception returned from %s to caller", self, exc_info=True)
                envelope.reply_to.set_exception()
            else:
                self._fail(*sys.exc_info())
            return
        if envelope.reply_to is None:
            return
        if isinstance(response, LoopFuture):
            response.forward_to(envelope.reply_to)
        else:
            envelope.reply_to.set(response)

    def _fail(self, exc_type, exc_value, traceback) -> None:
        self._handle_failure(exc_type, exc_value, traceback)
        try:
            self.on_failure(exc_type, exc_value, traceback)
        except Exception:
            logger.exception("on_failure of %s raised", self)
        self._actor_loop_teardown()

    def _handle_receive(self, message: Any) -> Any:
        if isinstance(message, _IoDone):
            task = message.task
            if task.cancelled():
                return message.then(None, asyncio.CancelledError())
            return message.then(task.result() if task.exception() is None else None, task.exception())
        if isinstance(message, _Timer):
            return message.callback()
        return super()._handle_receive(message)

    def run_io(
        self,
        awaitable: Awaitable[Any],
        then: Callable[[Any, BaseException | None], Any],
    ) -> None:
        """Start ``awaitable`` on the loop; ``then(result, error)`` runs later as a message.

        If the actor has stopped by then, ``then`` still runs (on the loop) so that
        callers waiting on a reply are answered; it must not assume live state.
        """
        task = asyncio.ensure_future(awaitable)

        def deliver(done: asyncio.Future) -> None:
            if self.actor_stopped.is_set():
                self._handle_receive(_IoDone(then, done))
            else:
                self.actor_inbox.put(Envelope(_IoDone(then, done)))

        task.add_done_callback(deliver)

    def write_in_background(self, awaitable: Awaitable[Any], what: str) -> None:
        """Start a write nobody waits for; a failure is logged, naming ``what`` was not saved."""

        def logged(result: Any, error: BaseException | None) -> None:
            if error is not None:
                logger.warning("%s not saved: %s", what, error)

        self.run_io(awaitable, logged)

    def post(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` as a message to this actor (from a loop callback that is not one)."""
        if not self.actor_stopped.is_set():
            self.actor_inbox.put(Envelope(_Timer(callback)))

    def call_later(self, delay_secs: float, callback: Callable[[], Any]) -> asyncio.TimerHandle:
        """Run ``callback`` as a message to this actor after ``delay_secs``."""

        return loop().call_later(delay_secs, self.post, callback)


def live_actor_count() -> int:
    return len(ActorRegistry.get_all())


__all__ = [
    "ActorDeadError",
    "LoopActor",
    "LoopFuture",
    "bind_loop",
    "call_soon",
    "live_actor_count",
    "loop",
]
