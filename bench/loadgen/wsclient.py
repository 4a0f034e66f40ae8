"""A deliberately small asyncio WebSocket client for the load generator.

Why not tornado.websocket.websocket_connect or the ``websockets`` library?
Both run a coroutine (or future) per received frame; with 500 sockets each
receiving every fan-out message, that per-frame overhead on the client side is
as large as the server's own per-delivery cost, and on a 2-core machine the load
generator would become the bottleneck.  This client parses frames directly in
``asyncio.Protocol.data_received`` and hands each text payload (bytes) to a
plain callback: no task, no future, no copy beyond the slice.

Scope (enough for the bench, RFC 6455 otherwise):
* client handshake without extensions (no permessage-deflate is offered, so
  servers send plain frames);
* masked client frames (mask key from os.urandom, XOR done on Python ints);
* text/binary/continuation/close/ping/pong from the server.

Runs on the loop thread only; not thread-safe.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from typing import Callable, Optional

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BIN = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if n == 0:
        return payload
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def encode_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """A single final, masked client frame."""
    n = len(payload)
    key = os.urandom(4)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + key + _mask(payload, key)


class WSClientProtocol(asyncio.Protocol):
    """One client WebSocket.

    ``on_message(proto, payload: bytes, recv_ns: int)`` is called for every
    complete text or binary message; ``recv_ns`` is ``time.time_ns()`` taken
    once when the chunk holding the frame arrived.
    """

    __slots__ = (
        "transport", "on_message", "on_close", "_buf", "_handshake_done", "_hs_future",
        "_frag", "_frag_op", "closed", "close_code", "_host", "_path", "_key", "tag",
    )

    def __init__(self, host: str, path: str,
                 on_message: Callable[["WSClientProtocol", bytes, int], None],
                 on_close: Optional[Callable[["WSClientProtocol"], None]] = None,
                 tag=None):
        self.transport: Optional[asyncio.Transport] = None
        self.on_message = on_message
        self.on_close = on_close
        self._buf = bytearray()
        self._handshake_done = False
        self._hs_future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._frag: Optional[bytearray] = None
        self._frag_op = 0
        self.closed = False
        self.close_code: Optional[int] = None
        self._host = host
        self._path = path
        self._key = base64.b64encode(os.urandom(16))
        self.tag = tag

    # -- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        req = (
            b"GET " + self._path.encode() + b" HTTP/1.1\r\n"
            b"Host: " + self._host.encode() + b"\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + self._key + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        transport.write(req)

    def connection_lost(self, exc):
        self.closed = True
        if not self._hs_future.done():
            self._hs_future.set_exception(ConnectionError(f"connection lost during handshake: {exc}"))
        if self.on_close is not None:
            self.on_close(self)

    def data_received(self, data: bytes):
        recv_ns = time.time_ns()
        buf = self._buf
        buf += data
        if not self._handshake_done:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            status_line = head.split(b"\r\n", 1)[0]
            if b" 101 " not in status_line + b" ":
                if not self._hs_future.done():
                    self._hs_future.set_exception(
                        ConnectionError(f"handshake refused: {status_line.decode(errors='replace')}"))
                self.transport.close()
                return
            self._handshake_done = True
            self._hs_future.set_result(True)
        # frame loop
        pos = 0
        n = len(buf)
        on_message = self.on_message
        while True:
            if n - pos < 2:
                break
            b0 = buf[pos]
            b1 = buf[pos + 1]
            ln = b1 & 0x7F
            hl = 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln = (buf[pos + 2] << 8) | buf[pos + 3]
                hl = 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln = struct.unpack_from("!Q", buf, pos + 2)[0]
                hl = 10
            masked = b1 & 0x80
            if masked:
                hl += 4
            if n - pos < hl + ln:
                break
            payload = bytes(buf[pos + hl: pos + hl + ln])
            if masked:  # servers must not mask, but be lenient
                payload = _mask(payload, bytes(buf[pos + hl - 4: pos + hl]))
            pos += hl + ln
            fin = b0 & 0x80
            op = b0 & 0x0F
            if op == OP_TEXT or op == OP_BIN:
                if fin:
                    on_message(self, payload, recv_ns)
                else:
                    self._frag = bytearray(payload)
                    self._frag_op = op
            elif op == OP_CONT:
                if self._frag is not None:
                    self._frag += payload
                    if fin:
                        msg = bytes(self._frag)
                        self._frag = None
                        on_message(self, msg, recv_ns)
            elif op == OP_PING:
                self._send_raw(encode_frame(payload, OP_PONG))
            elif op == OP_CLOSE:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                if not self.closed:
                    self._send_raw(encode_frame(payload[:2], OP_CLOSE))
                    self.closed = True
                    self.transport.close()
                break
        if pos:
            del buf[:pos]

    # -- API ----------------------------------------------------------------
    async def handshake(self, timeout: float = 30.0):
        await asyncio.wait_for(self._hs_future, timeout)

    def _send_raw(self, data: bytes):
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send(self, payload: bytes):
        if not self.closed:
            self._send_raw(encode_frame(payload, OP_TEXT))

    def close(self, code: int = 1000):
        if not self.closed:
            self._send_raw(encode_frame(struct.pack("!H", code), OP_CLOSE))
            self.closed = True
            if self.transport is not None:
                self.transport.close()


async def connect(host: str, port: int, path: str, on_message, on_close=None, tag=None,
                  timeout: float = 30.0) -> WSClientProtocol:
    loop = asyncio.get_running_loop()
    _, proto = await asyncio.wait_for(
        loop.create_connection(lambda: WSClientProtocol(f"{host}:{port}", path, on_message, on_close, tag),
                               host, port),
        timeout)
    await proto.handshake(timeout)
    return proto
