"""Short-lived sockets for the soak: connect, join, send, react, disconnect, at a steady rate.

Each cycle is one user's whole visit on a fresh socket, every step awaited before the next
(an answer is matched by its ``request_id``), so a cycle that completes proves the server
did each step. One cycle in ``ABORT_EVERY`` drops the TCP connection without a close
handshake, as a phone losing its network does; the others close cleanly.
"""

from __future__ import annotations

import asyncio
import json
import time
from array import array

from . import wsclient
from ..common import ws_path

ABORT_EVERY = 10
EMOJI = "+1"


class CycleFailed(RuntimeError):
    pass


class ChurnSocket:
    """One visit's socket: events carrying a ``request_id`` settle the request that sent it."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.proto = None
        self.established = loop.create_future()
        self.waiters: dict[str, asyncio.Future] = {}
        self.others = 0  # events caused by other users (their messages, reactions, presence)

    def on_message(self, proto, payload: bytes, recv_ns: int) -> None:
        event = json.loads(payload)
        kind = event.get("type")
        if kind == "connection_established":
            if not self.established.done():
                self.established.set_result(event)
            return
        waiter = self.waiters.pop(str(event.get("request_id")), None)
        if waiter is None:
            self.others += 1
        elif kind == "error":
            waiter.set_exception(CycleFailed(f"{event.get('code')}: {event.get('message')}"))
        else:
            waiter.set_result(event)

    def on_close(self, proto) -> None:
        error = CycleFailed(f"closed by the server ({proto.close_code})")
        for future in (self.established, *self.waiters.values()):
            if not future.done():
                future.set_exception(error)
        self.waiters.clear()

    async def request(self, request_id: str, frame: dict, timeout: float) -> dict:
        waiter = asyncio.get_running_loop().create_future()
        self.waiters[request_id] = waiter
        self.proto.send(json.dumps({**frame, "request_id": request_id}).encode())
        return await asyncio.wait_for(waiter, timeout)


class Churn:
    """A worker's share of the users, visited round-robin across slices."""

    def __init__(self, wid: int) -> None:
        self.wid = wid
        self.cursor = 0
        self.number = 0

    async def cycle(self, host: str, port: int, user: str, tenant: str, conversation: str, timeout: float) -> int:
        """One visit; returns how many other users' events it saw."""
        self.number += 1
        number = self.number
        sock = ChurnSocket()
        sock.proto = await wsclient.connect(host, port, ws_path(user, tenant), sock.on_message, sock.on_close, timeout=timeout)
        try:
            await asyncio.wait_for(sock.established, timeout)
            await sock.request("join", {"type": "join_conversation", "conversation_id": conversation}, timeout)
            sent = await sock.request(
                "send",
                {"type": "send_message", "conversation_id": conversation, "content": f"soak {number}", "client_msg_id": f"w{self.wid}.{number}"},
                timeout,
            )
            await sock.request("react", {"type": "add_reaction", "message_id": sent["message"]["id"], "emoji": EMOJI}, timeout)
            return sock.others
        finally:
            if number % ABORT_EVERY == 0:
                sock.proto.transport.abort()
            else:
                sock.proto.close()

    async def run_slice(self, c: dict) -> dict:
        """Start ``rate`` cycles a second for ``duration`` seconds (at most ``concurrency`` at once;
        a cycle due while that many are open is not started, and counted), then wait for the
        ones still open."""
        host, port, visits = c["host"], c["port"], c["visits"]  # visits: [(user, tenant, conversation)]
        rate, duration, concurrency, timeout = c["rate"], c["duration"], c["concurrency"], c["timeout"]
        latencies = array("q")
        failures: list[str] = []
        counts = {"started": 0, "ok": 0, "failed": 0, "not_started": 0, "others": 0}
        open_cycles: set[asyncio.Task] = set()

        async def timed(visit) -> None:
            started = time.perf_counter_ns()
            try:
                counts["others"] += await self.cycle(host, port, *visit, timeout)
            except (OSError, asyncio.TimeoutError, CycleFailed, KeyError) as error:
                counts["failed"] += 1
                if len(failures) < 5:
                    failures.append(f"{visit[0]}@{visit[1]}: {type(error).__name__}: {error}"[:300])
                return
            latencies.append(time.perf_counter_ns() - started)
            counts["ok"] += 1

        t0 = time.monotonic()
        due = 0
        while (now := time.monotonic()) < t0 + duration:
            for _ in range(int((now - t0) * rate) - due):
                due += 1
                if len(open_cycles) >= concurrency:
                    counts["not_started"] += 1
                    continue
                visit = visits[self.cursor % len(visits)]
                self.cursor += 1
                counts["started"] += 1
                task = asyncio.ensure_future(timed(visit))
                open_cycles.add(task)
                task.add_done_callback(open_cycles.discard)
            await asyncio.sleep(0.005)
        if open_cycles:
            await asyncio.wait(list(open_cycles))
        return {**counts, "lat": latencies.tobytes(), "failures": failures}
