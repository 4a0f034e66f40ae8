"""Pub/sub between nodes: publish through the node's link, receive on one subscriber connection.

A channel is subscribed with a handler for its messages and an ``on_ready`` callback, called
each time the subscription takes effect: when Redis confirms it, and again after every
reconnect. Whatever was published while a node was not subscribed is lost to it, so
``on_ready`` is where a subscriber reads what it may have missed from the database.

The connection is ours to manage: on any failure it is dropped, a new one subscribes every
channel again, and a ping every ``PING_EVERY_SECS`` notices a Redis that stopped answering.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.exceptions import RedisError

from cluster.link import COMMAND_TIMEOUT_SECS, PROBE_EVERY_SECS, RedisLink, connect

logger = logging.getLogger(__name__)

PING_EVERY_SECS = 1.0

Handler = Callable[[bytes], None]


class Bus:
    def __init__(self, url: str, link: RedisLink) -> None:
        self._client = connect(url, read_timeout=None)
        self._link = link
        self._channels: dict[bytes, tuple[Handler, Callable[[], None] | None]] = {}
        self._pubsub = None
        self.connected = False
        self.published = 0
        self.received = 0
        self._task: asyncio.Task | None = None
        self._on_down: list[Callable[[], None]] = []

    def on_down(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the subscriber connection is lost: what was published to this
        node from then until it is subscribed again never reaches it."""
        self._on_down.append(callback)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._client.aclose()

    def publish(self, channel: str, data: bytes) -> bool:
        """Publish in the link's order; False if Redis is known to be away (the message is lost)."""
        if not self._link.up:
            return False
        self.published += 1
        self._link.send_and_forget("PUBLISH", channel, data)
        return True

    def subscribe(self, channel: str, handler: Handler, on_ready: Callable[[], None] | None = None) -> None:
        key = channel.encode()
        self._channels[key] = (handler, on_ready)
        if self.connected:
            self._send("SUBSCRIBE", key)

    def unsubscribe(self, channel: str) -> None:
        key = channel.encode()
        if self._channels.pop(key, None) is not None and self.connected:
            self._send("UNSUBSCRIBE", key)

    def _send(self, *command) -> None:
        pubsub = self._pubsub

        async def send() -> None:
            try:
                await pubsub.execute_command(*command)
            except (RedisError, OSError):
                pass  # the reader notices the broken connection and subscribes everything again

        asyncio.ensure_future(send())

    async def _run(self) -> None:
        while True:
            pubsub = self._client.pubsub()
            try:
                await self._listen(pubsub)
            except Exception as error:  # whatever broke, the connection is dropped and made again
                if self.connected:
                    logger.warning("lost the Redis subscriber connection: %s", error)
                    for callback in self._on_down:
                        callback()
            finally:
                self.connected = False
                self._pubsub = None
                try:
                    await pubsub.aclose()
                except (RedisError, OSError):
                    pass
            await asyncio.sleep(PROBE_EVERY_SECS)

    async def _listen(self, pubsub) -> None:
        self._pubsub = pubsub
        await pubsub.execute_command("SUBSCRIBE", *self._channels)
        self.connected = True
        logger.info("subscribed to %d Redis channels", len(self._channels))
        loop = asyncio.get_running_loop()
        ping_due = loop.time() + PING_EVERY_SECS
        pong_due = None
        while True:
            message = await pubsub.parse_response(block=False, timeout=PING_EVERY_SECS)
            now = loop.time()
            if message is not None:
                pong_due = self._dispatch(message, pong_due)
            if pong_due is not None and now > pong_due:
                raise asyncio.TimeoutError("Redis did not answer a ping")
            if now >= ping_due:
                await pubsub.execute_command("PING")
                ping_due = now + PING_EVERY_SECS
                pong_due = pong_due or now + COMMAND_TIMEOUT_SECS

    def _dispatch(self, message: list | bytes, pong_due: float | None) -> float | None:
        if not isinstance(message, list):  # the answer to PING: the connection is alive
            return None
        kind = message[0]
        if kind == b"message":
            entry = self._channels.get(message[1])
            if entry is not None:
                self.received += 1
                try:
                    entry[0](message[2])
                except Exception:
                    logger.exception("a handler of %s failed", message[1])
        elif kind == b"subscribe":
            entry = self._channels.get(message[1])
            if entry is not None and entry[1] is not None:
                entry[1]()
        elif kind == b"pong":
            return None
        return pong_due
