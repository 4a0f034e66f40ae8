"""Tornado's HTTPServer with limits for clients that never finish: a cap on open connections,
and accept errors that cannot flood the log or spin the loop.

Tornado's own accept loop lets ``EMFILE`` (out of descriptors) escape to the IOLoop, which
logs it and calls the handler again at once: a full descriptor table wrote 105 MB of log in
35 s. Here an accept error is logged at most once per ``ACCEPT_ERROR_LOG_SECS`` and accepting
pauses for ``ACCEPT_PAUSE_SECS``, while the oldest connection that has not sent a request is
closed to give a descriptor back. At ``max_open_connections`` the same eviction makes room, so
a flood of half-open handshakes can never lock out a real client (or the PaaS's health check);
with nothing to evict, the new connection is closed at once.
"""

from __future__ import annotations

import logging
import resource
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

import tornado.httpserver
import tornado.httputil
from tornado.ioloop import IOLoop

logger = logging.getLogger(__name__)

ACCEPT_BATCH = 128
ACCEPT_PAUSE_SECS = 0.1
ACCEPT_ERROR_LOG_SECS = 10.0
# Descriptors kept back from client connections: database pool, logs, files, the listener.
RESERVED_DESCRIPTORS = 128


def raise_descriptor_limit() -> int:
    """The soft limit raised to the hard one (as nginx and most servers do); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as error:
            logger.warning("cannot raise the descriptor limit from %d to %d: %s", soft, hard, error)
    return soft


def default_connection_cap() -> int:
    return max(16, raise_descriptor_limit() - RESERVED_DESCRIPTORS)


class _Throttled:
    """A warning logged at most once per interval, with how many were held back."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.last = float("-inf")
        self.suppressed = 0

    def __call__(self, *args: Any) -> None:
        now = time.monotonic()
        if now - self.last < ACCEPT_ERROR_LOG_SECS:
            self.suppressed += 1
            return
        suffix = f" ({self.suppressed} more like it since the last)" if self.suppressed else ""
        logger.warning(self.message + suffix, *args)
        self.last, self.suppressed = now, 0


class _HeadersArrived(tornado.httputil.HTTPMessageDelegate):
    """Passes a request on and says when its headers have come (the connection is in use)."""

    def __init__(self, delegate: tornado.httputil.HTTPMessageDelegate, arrived: Callable[[], None]) -> None:
        self.delegate = delegate
        self.arrived = arrived

    def headers_received(self, start_line, headers):
        self.arrived()
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes):
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        self.delegate.finish()

    def on_connection_close(self) -> None:
        self.delegate.on_connection_close()


class GuardedHTTPServer(tornado.httpserver.HTTPServer):
    def initialize(
        self, *args: Any, max_open_connections: int, open_elsewhere: Callable[[], int] = lambda: 0, **kwargs: Any
    ) -> None:
        """``open_elsewhere`` counts connections the server no longer tracks: upgraded WebSockets."""
        super().initialize(*args, **kwargs)
        self.max_open_connections = max_open_connections
        self._open_elsewhere = open_elsewhere
        # Connections waiting for a request's headers, oldest first: the ones to evict.
        self._idle: dict[Any, None] = {}
        self._accept_failed = _Throttled("cannot accept connections: %s; pausing")
        self._refused = _Throttled("at MAX_OPEN_CONNECTIONS (%d open): closing a new connection")

    @property
    def open_connections(self) -> int:
        return len(self._connections) + self._open_elsewhere()

    # --- accepting ------------------------------------------------------------------------

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._watch(sock)

    def _watch(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        IOLoop.current().add_handler(sock, lambda _fd, _events: self._accept_ready(sock), IOLoop.READ)
        self._handlers[fd] = lambda: IOLoop.current().remove_handler(sock)

    def _accept_ready(self, sock: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                connection, address = sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as error:  # EMFILE, ENFILE, ENOBUFS, ENOMEM
                self._pause_accepting(sock, error)
                return
            self._handle_connection(connection, address)

    def _pause_accepting(self, sock: socket.socket, error: OSError) -> None:
        self._accept_failed(error)
        self._evict_idle()
        IOLoop.current().remove_handler(sock)
        self._handlers[sock.fileno()] = lambda: None  # stop() unregisters each listener once

        def resume() -> None:
            if not self._stopped:
                self._watch(sock)

        IOLoop.current().call_later(ACCEPT_PAUSE_SECS, resume)

    def handle_stream(self, stream, address: tuple) -> None:
        if self.open_connections >= self.max_open_connections and not self._evict_idle():
            self._refused(self.open_connections)
            stream.close()
            return
        super().handle_stream(stream, address)

    def _evict_idle(self) -> bool:
        """Close the connection that has waited longest without a request; False if none waits."""
        if not self._idle:
            return False
        server_conn = next(iter(self._idle))
        del self._idle[server_conn]
        server_conn.stream.close()
        return True

    # --- which connections are idle ------------------------------------------------------

    def start_request(self, server_conn: object, request_conn: tornado.httputil.HTTPConnection):
        self._idle[server_conn] = None
        delegate = super().start_request(server_conn, request_conn)
        return _HeadersArrived(delegate, lambda: self._idle.pop(server_conn, None))

    def on_close(self, server_conn: object) -> None:
        self._idle.pop(server_conn, None)
        super().on_close(server_conn)
