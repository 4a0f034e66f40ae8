"""Library internals we lean on: private names of pykka and Tornado that our code uses or
overrides. An upgrade that changes one fails here, naming our module that depends on it,
instead of somewhere far away (or silently: an override of a renamed hook is never called).
"""

from __future__ import annotations

import asyncio
import inspect
import socket

import pykka
import pytest
from pykka._envelope import Envelope
from tornado.http1connection import HTTP1ServerConnection
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream, StreamBufferFullError
from tornado.tcpserver import TCPServer
from tornado.websocket import WebSocketProtocol13, _WebSocketParams

from actors.runtime import LoopActor, LoopFuture, LoopInbox
from tests.support.loop import on_loop
from web.websocket import text_frame

RUNTIME = "actors/runtime.py (the loop-hosted pykka runtime)"
SEND = "web/websocket.py (text_frame and ChatSocket.send's direct socket.send)"
HTTP_SERVER = "web/http_server.py (GuardedHTTPServer: accept loop, connection cap, idle eviction)"
WAIT_SECS = 30.0


class Probe(LoopActor):
    """A loop actor that is never started: pykka's own code is driven by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.started = False

    def on_start(self) -> None:
        self.started = True


# --- pykka --------------------------------------------------------------------------------


def test_pykka_envelope_takes_a_message_and_an_optional_reply_future():
    parameters = inspect.signature(Envelope).parameters
    assert list(parameters) == ["message", "reply_to"], f"{RUNTIME} builds Envelope(message) for I/O outcomes and timers"
    assert parameters["reply_to"].default is None, f"{RUNTIME} builds Envelope(message) with no reply"
    reply = LoopFuture()
    envelope = Envelope("hello", reply_to=reply)
    assert (envelope.message, envelope.reply_to) == ("hello", reply), f"{RUNTIME} reads .message and .reply_to"


def test_pykka_refs_fill_our_inbox_with_envelopes_and_our_futures():
    actor = Probe()
    assert isinstance(actor.actor_inbox, LoopInbox), f"{RUNTIME}: pykka must make the inbox with _create_actor_inbox()"
    actor.actor_ref.tell("told")
    reply = actor.actor_ref.ask("asked", block=False)
    told, asked = actor.actor_inbox.get(), actor.actor_inbox.get()
    assert isinstance(told, Envelope) and (told.message, told.reply_to) == ("told", None), (
        f"{RUNTIME}: tell must put Envelope(message) into the inbox"
    )
    assert isinstance(reply, LoopFuture), f"{RUNTIME}: ask must make its future with _create_future()"
    assert (asked.message, asked.reply_to) == ("asked", reply), f"{RUNTIME}: ask must put Envelope(message, reply_to=future)"


# The pykka.Actor methods runtime.py overrides or calls, with how many parameters it passes.
ACTOR_HOOKS = {
    "_create_actor_inbox": 0,
    "_create_future": 0,
    "_start_actor_loop": 1,
    "_actor_loop_setup": 1,
    "_actor_loop_teardown": 1,
    "_handle_receive": 2,
    "_handle_failure": 4,
}


@pytest.mark.parametrize("name", sorted(ACTOR_HOOKS))
def test_pykka_actor_hooks_keep_their_names_and_arity(name):
    method = getattr(pykka.Actor, name, None)
    assert method is not None, f"{RUNTIME} overrides or calls pykka.Actor.{name}"
    assert len(inspect.signature(method).parameters) == ACTOR_HOOKS[name], f"{RUNTIME} calls {name} with these arguments"


@on_loop
async def test_pykka_actor_setup_teardown_and_failure_do_what_the_runtime_expects():
    actor = Probe()
    actor._actor_loop_setup()
    assert actor.started, f"{RUNTIME}: _actor_loop_setup must call on_start"
    reply = actor.actor_ref.ask("never handled", block=False)
    actor._actor_loop_teardown()
    assert reply.done() and actor.actor_inbox.empty(), f"{RUNTIME}: _actor_loop_teardown must answer and drain what is queued"
    with pytest.raises(pykka.ActorDeadError):
        reply.result()
    actor._handle_failure(ValueError, ValueError("expected by the test"), None)
    assert actor.actor_stopped.is_set(), f"{RUNTIME}: _handle_failure must stop the actor before on_failure runs"


def test_pykka_derived_futures_carry_a_get_hook():
    future = LoopFuture()
    assert future._get_hook is None, f"{RUNTIME}: LoopFuture.get/await read pykka.Future._get_hook"
    derived = future.map(str)
    assert type(derived) is LoopFuture and derived._get_hook is not None, (
        f"{RUNTIME}: futures pykka derives (map, stop) must be our class with _get_hook set, so await polls them"
    )


# --- Tornado: WebSocket frames and the stream ChatSocket.send writes around ------------------


class CapturingStream:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def closed(self) -> bool:
        return False


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
def test_text_frame_is_the_frame_tornado_writes_for_a_server_text_message(length):
    protocol = WebSocketProtocol13(None, mask_outgoing=False, params=_WebSocketParams())
    protocol.stream = CapturingStream()
    payload = b"x" * length
    protocol._write_frame(True, 0x1, payload)
    assert text_frame(payload) == protocol.stream.written[0], f"{SEND} writes frames itself, as Tornado would"
    assert protocol.is_closing() is False, f"{SEND} asks ws_connection.is_closing() before writing"


async def test_iostream_exposes_what_chat_socket_send_uses():
    ours, peer = socket.socketpair()
    try:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        stream = IOStream(ours)
        assert stream.socket is ours, f"{SEND} sends on stream.socket directly"
        assert stream.writing() is False, f"{SEND} writes to the socket itself only while stream.writing() is false"
        stream.write(b"x" * (8 << 20))  # more than the socket takes: the stream keeps the rest
        assert stream.writing() is True, f"{SEND}: stream.writing() must say when the stream holds unsent bytes"
        stream.max_write_buffer_size = 1
        with pytest.raises(StreamBufferFullError):
            stream.write(b"more")
        assert "exc_info" in inspect.signature(stream.close).parameters, f"{SEND} closes with stream.close(exc_info=error)"
        stream.close(exc_info=OSError("expected by the test"))
        assert stream.closed()
    finally:
        ours.close()
        peer.close()


# --- Tornado: the HTTP server internals GuardedHTTPServer builds on --------------------------


async def test_tcpserver_handle_connection_wraps_a_plain_socket_for_handle_stream():
    handed = []

    class Recording(TCPServer):
        def handle_stream(self, stream, address):
            handed.append((stream, address))

    ours, peer = socket.socketpair()
    try:
        Recording()._handle_connection(ours, ("127.0.0.1", 4242))
        assert len(handed) == 1, f"{HTTP_SERVER} accepts itself and hands sockets to TCPServer._handle_connection"
        stream, address = handed[0]
        assert type(stream) is IOStream and stream.socket is ours and address == ("127.0.0.1", 4242), (
            f"{HTTP_SERVER} and {SEND} (type(stream) is IOStream)"
        )
        stream.close()
    finally:
        peer.close()


def test_tcpserver_stop_unregisters_each_listener_through_handlers():
    server = TCPServer()
    assert server._stopped is False, f"{HTTP_SERVER} reads TCPServer._stopped before resuming accepts"
    listener = socket.socket()
    unregistered = []
    server._sockets[listener.fileno()] = listener
    server._handlers[listener.fileno()] = lambda: unregistered.append(True)
    server.stop()
    assert unregistered == [True], f"{HTTP_SERVER} registers listeners in TCPServer._sockets and _handlers for stop()"
    assert server._stopped is True and listener.fileno() == -1


async def test_httpserver_tracks_connections_and_calls_the_hooks_we_override():
    hooks: asyncio.Queue = asyncio.Queue()

    class Recording(HTTPServer):
        def start_request(self, server_conn, request_conn):
            hooks.put_nowait(("start_request", server_conn))
            return super().start_request(server_conn, request_conn)

        def on_close(self, server_conn):
            hooks.put_nowait(("on_close", server_conn))
            super().on_close(server_conn)

    server = Recording(lambda request: None)
    ours, peer = socket.socketpair()
    stream = IOStream(ours)
    try:
        server.handle_stream(stream, ("127.0.0.1", 4242))
        assert len(server._connections) == 1, f"{HTTP_SERVER} counts HTTPServer._connections"
        (connection,) = server._connections
        assert isinstance(connection, HTTP1ServerConnection) and connection.stream is stream, (
            f"{HTTP_SERVER} evicts an idle connection by closing HTTP1ServerConnection.stream"
        )
        hook, server_conn = await asyncio.wait_for(hooks.get(), WAIT_SECS)
        assert (hook, server_conn) == ("start_request", connection), (
            f"{HTTP_SERVER} marks a connection idle in start_request(server_conn, request_conn)"
        )
        peer.close()
        hook, server_conn = await asyncio.wait_for(hooks.get(), WAIT_SECS)
        assert (hook, server_conn) == ("on_close", connection), f"{HTTP_SERVER} forgets a connection in on_close(server_conn)"
        assert not server._connections
    finally:
        stream.close()
        peer.close()
