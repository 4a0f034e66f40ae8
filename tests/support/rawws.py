"""A bare-socket WebSocket client (RFC 6455) for tests that need control of the TCP socket:
a tiny receive buffer set before connect (a reader that falls behind fast), reading only
when the test says so, or dropping the connection at an awkward moment."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from typing import Any


class RawWebSocket:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.handshake = b""  # the server's answer to the upgrade request, headers included

    @classmethod
    def connect(cls, host: str, port: int, path: str, *, rcvbuf: int | None = None, timeout: float = 30.0) -> RawWebSocket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect, so the window the kernel advertises is small from the start.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        raw = cls(sock)
        head = raw.handshake = raw._read_until(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status_line + b" ":
            raise ConnectionError(f"handshake refused: {head[:200]!r}")
        return raw

    # --- sending ------------------------------------------------------------------------

    def send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n <= 0xFFFF:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send_json(self, frame: dict[str, Any]) -> None:
        self.send_frame(0x1, json.dumps(frame).encode())

    def send_close(self, code: int = 1000) -> None:
        self.send_frame(0x8, struct.pack("!H", code))

    # --- receiving ----------------------------------------------------------------------

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self._buffer += chunk
        return True

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            if not self._fill():
                raise ConnectionError("closed during the handshake")
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _read_exact(self, n: int) -> bytes:
        while len(self._buffer) < n:
            if not self._fill():
                raise EOFError("connection closed")
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def read_frame(self) -> tuple[int, bytes]:
        """One frame as ``(opcode, payload)``; a close frame sets ``close_code``. Raises EOFError."""
        first, second = self._read_exact(2)
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read_exact(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read_exact(8))
        payload = self._read_exact(n)
        opcode = first & 0x0F
        if opcode == 0x8:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            self.close_reason = payload[2:].decode(errors="replace")
        return opcode, payload

    def read_json(self) -> dict:
        """The next text frame, decoded (pings are answered, other control frames skipped)."""
        while True:
            opcode, payload = self.read_frame()
            if opcode == 0x1:
                return json.loads(payload)
            if opcode == 0x9:
                self.send_frame(0xA, payload)
            if opcode == 0x8:
                raise EOFError(f"closed with {self.close_code}")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
