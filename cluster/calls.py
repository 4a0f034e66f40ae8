"""Requests from one node to another over Redis, answered on the asking node's own channel.

Each node listens on ``chat:node:{id}``. A request carries a correlation id and the asker's
id; the answer names the same id. Nothing is retried here: a request that gets no answer in
time, or whose node leaves the live set meanwhile, fails with ``NoAnswer``, and the caller
tells its client that the outcome is unknown (a retry with the same ``client_msg_id`` is
safe). A request seen twice (the link sends a command again after a broken connection) is
served once. A ``tell`` is a request nobody waits for: it is served, and no answer is sent.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from cluster import codec
from cluster.bus import Bus

logger = logging.getLogger(__name__)

# How many served request ids a node remembers, to serve a repeated request once.
REMEMBERED_REQUESTS = 10_000


class NoAnswer(Exception):
    """The other node did not answer: what was asked may or may not have happened."""


class RemoteError(Exception):
    """The other node answered with an error: ``error`` is its ``{code, message, details}``."""

    def __init__(self, error: dict) -> None:
        super().__init__(error.get("message"))
        self.error = error


def node_channel(node_id: str) -> str:
    return f"chat:node:{node_id}"


class Calls:
    def __init__(self, bus: Bus, node_id: str) -> None:
        self._bus = bus
        self.node_id = node_id
        self._ids = itertools.count()
        self._waiting: dict[str, tuple[asyncio.Future, str]] = {}
        self._served: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._serve: Callable[[Any], Awaitable[tuple[Any, Any]]] | None = None
        bus.subscribe(node_channel(node_id), self._received)

    def serve(self, handler: Callable[[Any], Awaitable[tuple[Any, Any]]]) -> None:
        """``handler(body)`` answers ``(result, extra)``; it raises for an error answer, which
        ``error_of`` turns into ``{code, message, details}``."""
        self._serve = handler

    async def request(self, node_id: str, body: Any, timeout_secs: float) -> tuple[Any, Any]:
        """Ask ``node_id``; the answer is ``(result, extra)``. ``NoAnswer`` or ``RemoteError``."""
        request_id = f"{self.node_id}:{next(self._ids)}"
        future = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = (future, node_id)
        message = codec.dumps({"t": "call", "id": request_id, "from": self.node_id, "body": body})
        try:
            if not self._bus.publish(node_channel(node_id), message):
                raise NoAnswer()
            return await asyncio.wait_for(future, timeout_secs)
        except asyncio.TimeoutError:
            raise NoAnswer() from None
        finally:
            self._waiting.pop(request_id, None)

    def tell(self, node_id: str, body: Any) -> None:
        """Have ``node_id`` serve ``body`` without answering (lost if Redis or the node is away)."""
        self._bus.publish(node_channel(node_id), codec.dumps({"t": "tell", "body": body}))

    def nodes_gone(self, nodes: set[str] | None = None) -> None:
        """Fail every request waiting on a node that left (None: on any node, when this node's
        own subscription broke and no answer can reach it)."""
        for future, node_id in list(self._waiting.values()):
            if (nodes is None or node_id in nodes) and not future.done():
                future.set_exception(NoAnswer())

    def _received(self, data: bytes) -> None:
        message = codec.loads(data)
        kind = message.get("t")
        if kind == "call":
            if message["id"] in self._served:
                return
            self._served[message["id"]] = None
            if len(self._served) > REMEMBERED_REQUESTS:
                self._served.popitem(last=False)
            asyncio.ensure_future(self._answer(message))
        elif kind == "tell":
            asyncio.ensure_future(self._serve_told(message["body"]))
        elif kind == "reply":
            waiting = self._waiting.get(message["id"])
            if waiting is not None and not waiting[0].done():
                if "error" in message:
                    waiting[0].set_exception(RemoteError(message["error"]))
                else:
                    waiting[0].set_result((message["result"], message.get("extra")))

    async def _answer(self, message: dict) -> None:
        reply: dict[str, Any] = {"t": "reply", "id": message["id"]}
        try:
            result, extra = await self._serve(message["body"])
            reply.update(result=result, extra=extra)
        except Exception as error:
            reply["error"] = error_of(error)
        self._bus.publish(node_channel(message["from"]), codec.dumps(reply))

    async def _serve_told(self, body: Any) -> None:
        try:
            await self._serve(body)
        except Exception as error:
            error_of(error)  # logged unless it is an error a client would have been told


def error_of(error: BaseException) -> dict:
    """An error as it travels: its ``as_dict()`` when it has one (a client-visible error)."""
    as_dict = getattr(error, "as_dict", None)
    if as_dict is None:
        logger.error("a request from another node failed", exc_info=(type(error), error, error.__traceback__))
        return {"code": "internal_error", "message": "Internal error", "details": None}
    return as_dict()
