"""The one Redis connection a node sends commands on: in order, pipelined, and known up or down.

Commands are queued and sent as one pipeline per loop pass, one pipeline in flight at a time:
an awaited command costs the client 150-200 us of CPU, twenty of them pipelined about 20 us
each, and a single writer keeps the order in which they were queued (a conversation's frame
is published before the answer that refers to it). While Redis does not answer, ``send``
refuses at once (``LinkDown``) instead of making every caller wait out a connect timeout; a
probe finds it again and tells whoever asked (``on_up``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

logger = logging.getLogger(__name__)

# How long one command may take before Redis counts as gone, and how often a gone Redis is tried.
COMMAND_TIMEOUT_SECS = 2.0
PROBE_EVERY_SECS = 0.5


class LinkDown(Exception):
    """Redis did not answer (or is known not to): the command may or may not have run."""


def connect(url: str, *, read_timeout: float | None = COMMAND_TIMEOUT_SECS, retries: int = 0) -> Redis:
    """A client that fails fast, so the caller decides what a failure means. With ``retries``, a
    command that fails on a broken connection is sent again once on a new one: the first command
    after a Redis restart meets a connection Redis has closed. (Sent again, a command may run
    twice; everything this node sends through the link is safe to repeat.)"""
    return Redis.from_url(
        url,
        socket_timeout=read_timeout,
        socket_connect_timeout=COMMAND_TIMEOUT_SECS,
        retry=Retry(NoBackoff(), retries),
        health_check_interval=0,
    )


class RedisLink:
    def __init__(self, url: str) -> None:
        self.client = connect(url, retries=1)
        self.up = False
        self._queue: list[tuple[tuple, asyncio.Future | None]] = []
        self._queued = asyncio.Event()
        self._on_up: list[Callable[[], None]] = []
        self._task: asyncio.Task | None = None

    def on_up(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` every time Redis answers again (and the first time)."""
        self._on_up.append(callback)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.client.aclose()

    def send(self, *command: Any) -> asyncio.Future:
        """Queue a command; its future gives the reply, ``LinkDown``, or Redis's error."""
        if not self.up:
            raise LinkDown()
        future = asyncio.get_running_loop().create_future()
        self._queue.append((command, future))
        self._queued.set()
        return future

    def send_and_forget(self, *command: Any) -> None:
        """Queue a command nobody waits for (a publish): lost if Redis is gone."""
        if self.up:
            self._queue.append((command, None))
            self._queued.set()

    async def call(self, *command: Any) -> Any:
        return await self.send(*command)

    async def _run(self) -> None:
        while True:
            if not self.up:
                await self._find_again()
            await self._queued.wait()
            self._queued.clear()
            batch, self._queue = self._queue, []
            if batch:
                await self._execute(batch)

    async def _execute(self, batch: list[tuple[tuple, asyncio.Future | None]]) -> None:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for command, _ in batch:
                    pipe.execute_command(*command)
                replies = await pipe.execute(raise_on_error=False)
        except Exception as error:  # whatever broke, the batch is lost and Redis is tried again
            logger.warning("Redis stopped answering: %s", error)
            self.up = False
            for _, future in batch + self._queue:
                if future is not None and not future.done():
                    future.set_exception(LinkDown())
            self._queue.clear()
            return
        for (_, future), reply in zip(batch, replies):
            if future is None or future.done():
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _find_again(self) -> None:
        while True:
            try:
                await self.client.ping()
            except (RedisError, OSError, asyncio.TimeoutError):
                await asyncio.sleep(PROBE_EVERY_SECS)
                continue
            logger.info("Redis answers")
            self.up = True
            for callback in list(self._on_up):
                try:
                    callback()
                except Exception:
                    logger.exception("a callback for Redis coming back failed")
            return
