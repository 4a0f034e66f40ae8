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


HALF_SENT_BODIES = 30
DECLARED_BYTES = 10_000_000
SENT_BYTES = 4 * MIB
HALF_OPEN = 400
DESCRIPTOR_LIMIT = 256


def half_send(server: ServerProcess, head: str, body_bytes: int) -> socket.socket:
    """Send a request head and part of its body, then stop; the server may close on us meanwhile."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        sock.sendall(head.encode())
        sock.sendall(b"x" * body_bytes)
    except OSError:
        pass  # refused before the body: what the limit is for
    return sock


def read_to_end(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset counts as closing)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def test_unauthenticated_half_sent_bodies_hold_little_memory():
    server = ServerProcess().start()
    held: list[socket.socket] = []
    try:
        before = rss(server)
        heads = [
            f"POST /api/notifications/chat/conversations/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {DECLARED_BYTES}\r\n\r\n",
            f"POST /api/notifications/chat/upload/ HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: {DECLARED_BYTES}\r\n\r\n",
            "POST /api/notifications/chat/conversations/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + f"{SENT_BYTES:x}\r\n",
        ]
        held = [half_send(server, heads[n % len(heads)], SENT_BYTES) for n in range(HALF_SENT_BODIES)]
        grown = rss(server) - before
        assert grown < 64 * MIB, f"{HALF_SENT_BODIES} half-sent {DECLARED_BYTES} byte bodies grew the server by {grown / MIB:.0f} MiB"
        assert server.health()["status"] == "ok"
    finally:
        for sock in held:
            sock.close()
        server.stop()


def test_json_body_just_over_the_limit_gets_a_readable_413():
    server = ServerProcess(env={"MAX_FRAME_BYTES": "4096"}).start()
    try:
        alice = User(server, unique("tenant"), unique("alice"))
        body = b'{"type": "group", "title": "' + b"t" * 5000 + b'"}'
        request = (
            f"POST /api/notifications/chat/conversations/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(request)
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413") and b"payload_too_large" in answer, answer[:300]
    finally:
        server.stop()


def test_connections_that_send_nothing_or_stop_mid_body_are_closed():
    server = ServerProcess(env={"HTTP_IDLE_TIMEOUT_SECS": "0.5", "HTTP_BODY_TIMEOUT_SECS": "0.5"}).start()
    try:
        silent = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        stalled = half_send(
            server, "POST /api/notifications/chat/conversations/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", 10
        )
        for sock in (silent, stalled):
            assert read_to_end(sock) == b"", "closed by the server without an answer"
            sock.close()
    finally:
        server.stop()


def test_half_open_handshakes_at_the_descriptor_limit_neither_lock_out_nor_flood_the_log():
    """Past the descriptor limit Tornado's accept loop logged every failed accept, 105 MB in 35 s;
    and a health check could not get in while half-open handshakes held every descriptor."""
    server = ServerProcess(env={"LOG_LEVEL": "INFO"}, descriptor_limit=DESCRIPTOR_LIMIT).start()
    handshakes: list[socket.socket] = []
    try:
        start = server.log_size()
        for _ in range(HALF_OPEN):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            sock.sendall(b"GET /ws/chat/t/?token=x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")  # never finished
            handshakes.append(sock)
        assert server.health(timeout_secs=30)["status"] == "ok", "a real client still gets in"
        # Some handshakes were evicted or refused to make room: their sockets read EOF.
        grown = server.log_size() - start
        assert grown < MIB, f"the log grew by {grown} bytes"
        assert server.proc.poll() is None
    finally:
        for sock in handshakes:
            sock.close()
        server.stop()
