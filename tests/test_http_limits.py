"""What a client that never finishes can hold: memory per slow download, per half-sent body,
per half-open connection. Figures are memory, never time."""

from __future__ import annotations

import os
import socket

import psutil

from tests.support.client import User, unique
from tests.support.rest import upload
from tests.support.server import ServerProcess

MIB = 1024 * 1024
SLOW_READERS = 20


def rss(server: ServerProcess) -> int:
    return psutil.Process(server.proc.pid).memory_info().rss


def start_stalled_download(server: ServerProcess, user: User, url: str) -> socket.socket:
    """A GET whose reader takes the first bytes and then stops reading, with a small window."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {user.token}\r\n\r\n".encode())
    assert sock.recv(1024).startswith(b"HTTP/1.1 200"), "the download started"
    return sock


async def test_slow_downloads_hold_a_chunk_each_not_the_file():
    server = ServerProcess().start()
    readers: list[socket.socket] = []
    try:
        alice = User(server, unique("tenant"), unique("alice"))
        status, file = await upload(alice, b"%PDF-1.4\n" + os.urandom(10 * MIB - 64), filename="big.pdf")
        assert status == 201, file
        before = rss(server)
        readers = [start_stalled_download(server, alice, file["url"]) for _ in range(SLOW_READERS)]
        grown = rss(server) - before
        # Holding the whole file per reader would be 200 MiB; a 255 KiB chunk each is about 5.
        assert grown < 40 * MIB, f"{SLOW_READERS} stalled downloads of a 10 MiB file grew the server by {grown / MIB:.0f} MiB"
        assert server.health()["status"] == "ok"
    finally:
        for sock in readers:
            sock.close()
        server.stop()
