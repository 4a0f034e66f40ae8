"""The WebSocket gateway: authenticate, parse each frame, route it to the right actor.

Handlers stay thin: a frame's ``type`` maps to one handler through ``HANDLERS`` (the
protocol refuses every other type), and every failure becomes an ``error`` event on a
socket that stays open. Only floods (4429) and slow readers (4408) get the socket closed.

Handlers are found in a table, never by name, and are called ``handle_<type>``: a method
named ``on_ping`` (or ``ping``) would override Tornado's own and cut off every client that
sends keepalive ping frames.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import tornado.websocket
from tornado.iostream import IOStream, StreamBufferFullError, StreamClosedError

from actors import protocol
from actors.conversation import ConversationActor
from actors.errors import ChatError, NotFound, RateLimited, ShuttingDown, StorageUnavailable, TooManyConnections, Unauthorized
from actors.protocol import Rate
from actors.stats import STATS
from actors.tenant import TenantActor
from storage.clock import new_id
from storage.errors import StorageError
from web.auth import decode_token
from web.context import AppContext
from web.cors import origin_allowed
from web.ratelimit import TokenBucket
from web.unbranded import Unbranded

logger = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_WRONG_PATH = 4404
CLOSE_SLOW_CONSUMER = 4408
CLOSE_FLOOD = 4429

# Frames of any kind a single socket may send, as a multiple of the per-user write rate.
FRAME_RATE_FACTOR = 5


# The handler of each client message type; the type itself (fields, rate) is declared in
# ``actors.protocol``, and tests/test_ws_keepalive.py checks that every type has one handler.
HANDLERS: dict[str, Callable[..., Awaitable[None]]] = {}


def handles(kind: str) -> Callable:
    """Register the decorated ``ChatSocket`` method as the handler of client messages of ``kind``."""

    def register(handler: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        assert kind not in HANDLERS, kind
        HANDLERS[kind] = handler
        return handler

    return register


_last_frame: tuple[bytes, bytes] = (b"", b"")


def text_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented server-to-client text frame (RFC 6455 section 5.2).

    A broadcast hands the same payload object to every socket, so the last frame built is
    remembered and reused: one frame per broadcast, not one per recipient.
    """
    global _last_frame
    if _last_frame[0] is payload:
        return _last_frame[1]
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length <= 0xFFFF:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    frame = header + payload
    _last_frame = (payload, frame)
    return frame


class ChatSocket(Unbranded, tornado.websocket.WebSocketHandler):
    def initialize(self, context: AppContext) -> None:
        self.ctx = context
        self.principal = None
        self.conn_id = new_id()
        self.joined: set[str] = set()
        # Conversations this socket said it is typing in (joined or not): its close clears them.
        self.typing_in: set[str] = set()
        self._registered = False

    def check_origin(self, origin: str) -> bool:
        return origin_allowed(origin, self.request.host, self.ctx.settings.allowed_origins)

    def get_compression_options(self):
        return None

    async def open(self, tenant_id: str) -> None:
        try:
            principal = decode_token(self.get_query_argument("token", None), self.ctx.settings)
        except Unauthorized as error:
            self.close(CLOSE_UNAUTHORIZED, error.message[:120])
            return
        if principal.tenant_id != tenant_id:
            self.close(CLOSE_FORBIDDEN, "The token belongs to another tenant")
            return
        if self.ctx.shutting_down:
            self.close(CLOSE_GOING_AWAY, ShuttingDown.default_message)
            return
        self.principal = principal
        # Small frames back to back (an answer, then the next) must not wait for delayed ACKs.
        self.set_nodelay(True)
        settings = self.ctx.settings
        now = time.monotonic()
        self._frames = TokenBucket(settings.rate_limit_per_sec * FRAME_RATE_FACTOR, settings.rate_limit_burst * FRAME_RATE_FACTOR, now)
        self._strikes = TokenBucket(1.0, settings.flood_close_after, now)
        self.ws_connection.stream.max_write_buffer_size = settings.outbound_buffer_bytes
        self.send(protocol.connection_established(principal.user_id, principal.tenant_id))
        try:
            await self.ctx.directory.call_tenant(principal.tenant_id, TenantActor.connect, self)
        except TooManyConnections as error:
            STATS.refusals[error.code] += 1
            self.close(CLOSE_FLOOD, error.message)
            return
        self._registered = True
        self.ctx.sockets.add(self)
        if self.ws_connection is None:  # closed while it was being registered: on_close found nothing to undo
            self.on_close()

    # --- outgoing (loop thread only) ----------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write an encoded event; a reader that lets its buffer fill up is cut off."""
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        STATS.deliveries += 1
        stream = self.ws_connection.stream
        frame = text_frame(data)
        # Not write_message: it wraps every write in a new asyncio Task, which costs as much as
        # the rest of a delivery. Not IOStream.write either while nothing is queued: it makes a
        # Future per write and resolves it through a loop callback. When the kernel takes the
        # whole frame, one send() is all a delivery costs; what it leaves goes to the stream,
        # which queues it in order and finishes it when the socket is writable.
        if type(stream) is IOStream and not stream.writing():
            try:
                sent = stream.socket.send(frame)
            except BlockingIOError:
                sent = 0
            except OSError as error:
                stream.close(exc_info=error)
                return
            if sent == len(frame):
                return
            frame = memoryview(frame)[sent:]
        try:
            # IOStream.write retrieves the failure of a write that a closing socket leaves behind.
            stream.write(frame)
        except StreamBufferFullError:
            self._cut_off_slow_reader()
        except StreamClosedError:
            pass

    def _cut_off_slow_reader(self) -> None:
        logger.info("closing a slow reader (user %s)", self.principal.user_id)
        STATS.resyncs["slow_reader"] += 1
        stream = self.ws_connection.stream
        stream.max_write_buffer_size = None
        notice = protocol.event(
            "resync_required",
            reason="the connection fell too far behind; reconnect and join with since_seq",
            conversation_ids=sorted(self.joined),
        )
        try:
            stream.write(text_frame(notice))
        except StreamClosedError:
            pass
        self.close(CLOSE_SLOW_CONSUMER, "Too slow to keep up; reconnect and resume with since_seq")

    # --- incoming -------------------------------------------------------------------------

    async def on_message(self, raw: str | bytes) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing():
            return  # we are closing it (flood, slow reader, shutdown): what it still sends is not acted upon
        self.ctx.frames_in_flight += 1
        try:
            await self._handle_frame(raw)
        finally:
            self.ctx.frames_in_flight -= 1

    async def _handle_frame(self, raw: str | bytes) -> None:
        request_id = None
        try:
            self._admit_frame(raw)
            kind, data, request_id = self.ctx.protocol.parse_frame(raw)
            rate = self.ctx.protocol.client_messages[kind].rate
            if rate is Rate.WRITE:
                if self.ctx.shutting_down:  # what is already queued is being stored; nothing new
                    raise ShuttingDown()
                await self.ctx.limits.check_write(self.principal.tenant_id, self.principal.user_id)
            elif rate is Rate.READ:
                await self.ctx.limits.admit_read(self.principal.tenant_id, self.principal.user_id)  # the handler pays
            await HANDLERS[kind](self, request_id=request_id, **data)
        except RateLimited as error:
            STATS.refusals[error.code] += 1
            self.send(protocol.error_event(error, request_id))
            if self._strikes.take(time.monotonic()):
                self.close(CLOSE_FLOOD, "Too many messages")
        except ChatError as error:
            STATS.refusals[error.code] += 1
            self.send(protocol.error_event(error, request_id))
        except StorageError as error:  # a direct read (e.g. which conversation a message is in)
            logger.warning("storage unavailable for a frame from %s: %s", self.principal.user_id, error)
            STATS.refusals[StorageUnavailable.code] += 1
            self.send(protocol.error_event(StorageUnavailable(), request_id))
        except Exception:
            logger.exception("unexpected failure handling a frame from %s", self.principal.user_id)
            self.send(protocol.error_event(ChatError(), request_id))

    def _admit_frame(self, raw: str | bytes) -> None:
        """Every frame costs a token of the socket's bucket. One over the rate is not read but for
        its request_id: the client must know which of its requests was refused."""
        wait = self._frames.take(time.monotonic())
        if wait:
            raise RateLimited(wait, request_id=protocol.request_id_of(raw))

    async def _call(self, conversation_id: str, method: Callable[..., Any], *args: Any) -> Any:
        return await self.ctx.directory.call(self.principal.tenant_id, conversation_id, method, *args)

    async def _conversation_of(self, message_id: str) -> str:
        doc = await self.ctx.storage.messages.get(self.principal.tenant_id, message_id)
        if doc is None:
            raise NotFound("Message not found")
        return doc["conversation_id"]

    @handles("join_conversation")
    async def handle_join_conversation(self, conversation_id: str, since_seq: int | None, request_id: Any) -> None:
        replayed = await self._call(conversation_id, ConversationActor.join, self, since_seq, request_id)
        self.ctx.limits.charge_read(self.principal.tenant_id, self.principal.user_id, replayed)
        if not self._registered:  # closed while the join was under way
            self.ctx.directory.tell(self.principal.tenant_id, conversation_id, ConversationActor.drop, self)
            return
        self.joined.add(conversation_id)
        self.ctx.directory.tell_tenant(self.principal.tenant_id, TenantActor.set_current_conversation, self.principal.user_id, conversation_id)

    @handles("leave_conversation")
    async def handle_leave_conversation(self, conversation_id: str, request_id: Any) -> None:
        if conversation_id not in self.joined:
            raise NotFound("Not joined to this conversation")
        self.joined.discard(conversation_id)
        await self._call(conversation_id, ConversationActor.leave, self, request_id)

    @handles("send_message")
    async def handle_send_message(self, conversation_id: str, request_id: Any, **body: Any) -> None:
        await self._call(conversation_id, ConversationActor.send, self.principal, body, self, request_id)

    @handles("edit_message")
    async def handle_edit_message(self, message_id: str, content: str, request_id: Any) -> None:
        conversation_id = await self._conversation_of(message_id)
        await self._call(conversation_id, ConversationActor.edit, self.principal, message_id, content, self, request_id)

    @handles("delete_message")
    async def handle_delete_message(self, message_id: str, request_id: Any) -> None:
        conversation_id = await self._conversation_of(message_id)
        await self._call(conversation_id, ConversationActor.delete, self.principal, message_id, self, request_id)

    @handles("add_reaction")
    async def handle_add_reaction(self, message_id: str, emoji: str, request_id: Any) -> None:
        conversation_id = await self._conversation_of(message_id)
        await self._call(conversation_id, ConversationActor.react, self.principal, message_id, emoji, self, request_id)

    @handles("remove_reaction")
    async def handle_remove_reaction(self, message_id: str, emoji: str, request_id: Any) -> None:
        conversation_id = await self._conversation_of(message_id)
        await self._call(conversation_id, ConversationActor.unreact, self.principal, message_id, emoji, self, request_id)

    @handles("start_typing")
    async def handle_start_typing(self, conversation_id: str, request_id: Any) -> None:
        await self._call(conversation_id, ConversationActor.typing, self.principal, True)
        self.typing_in.add(conversation_id)

    @handles("stop_typing")
    async def handle_stop_typing(self, conversation_id: str, request_id: Any) -> None:
        self.typing_in.discard(conversation_id)
        await self._call(conversation_id, ConversationActor.typing, self.principal, False)

    @handles("mark_read")
    async def handle_mark_read(self, conversation_id: str, message_id: str | None, request_id: Any) -> None:
        await self._call(conversation_id, ConversationActor.mark_read, self.principal, message_id, self, request_id)

    @handles("update_presence")
    async def handle_update_presence(self, status: str, request_id: Any) -> None:
        await self.ctx.directory.call_tenant(self.principal.tenant_id, TenantActor.set_status, self.principal, status, self, request_id)

    @handles("ping")
    async def handle_ping(self, request_id: Any) -> None:
        self.send(protocol.event("pong", request_id))

    # --- closing --------------------------------------------------------------------------

    def on_close(self) -> None:
        if not self._registered:
            return
        self._registered = False
        self.ctx.sockets.discard(self)
        tenant_id = self.principal.tenant_id
        for conversation_id in self.joined | self.typing_in:
            self.ctx.directory.socket_closed(tenant_id, conversation_id, self)
        self.joined.clear()
        self.typing_in.clear()
        self.ctx.directory.tell_tenant(tenant_id, TenantActor.disconnect, self)


class WrongPathSocket(Unbranded, tornado.websocket.WebSocketHandler):
    """The seed's documented mistake: say where chat lives instead of failing silently."""

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self, tenant_id: str) -> None:
        self.close(CLOSE_WRONG_PATH, f"Wrong path: connect to /ws/chat/{tenant_id}/ for chat")
