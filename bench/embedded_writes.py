"""Big writes on the embedded database, and what another tenant waits meanwhile.

    python -m bench.embedded_writes                      # this checkout, embedded mongomock
    python -m bench.embedded_writes --ours-dir /tmp/old  # another checkout (before/after)

mongomock runs every operation on the server's event loop, so a write that scans a
collection holds up every other request, of every tenant. The script creates one
conversation of 500 participants, then ten of 100, then one of 2 (a later small write),
while a user of another tenant asks for its own presence in a loop, one request at a time.
It prints each creation's time and that user's request latency over the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from types import SimpleNamespace

if __package__ in (None, ""):  # python bench/embedded_writes.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "bench"  # noqa: A001

from bench.common import make_token, percentiles  # noqa: E402
from bench.loadgen.httpclient import KeepAliveHTTP  # noqa: E402
from bench.servers import Ours  # noqa: E402

API = "/api/notifications/chat"


def headers(user_id: str, tenant_id: str) -> dict:
    return {"Authorization": f"Bearer {make_token(user_id, tenant_id)}", "Content-Type": "application/json"}


async def create_conversation(http: KeepAliveHTTP, tag: str, size: int) -> float:
    """Seconds to create a group of ``size`` participants besides its creator."""
    body = {"type": "group", "title": tag, "participant_ids": [f"{tag}-user-{n}" for n in range(size)]}
    started = time.perf_counter()
    status, data = await http.request("POST", f"{API}/conversations/", headers(f"{tag}-owner", "bench-writer"), json.dumps(body).encode())
    elapsed = time.perf_counter() - started
    if status != 201:
        raise RuntimeError(f"create conversation: {status} {data[:300]!r}")
    return elapsed


async def ping_until(done: asyncio.Event, answered: asyncio.Event, port: int, latencies: list[int]) -> None:
    """Another tenant's requests, one after another, until ``done``: nanoseconds each;
    ``answered`` is set once the first one is."""
    http = KeepAliveHTTP("127.0.0.1", port)
    hdr = headers("pinger", "bench-other")
    try:
        while not done.is_set():
            started = time.perf_counter_ns()
            status, data = await http.get(f"{API}/presence/me/", hdr)
            latencies.append(time.perf_counter_ns() - started)
            if status != 200:
                raise RuntimeError(f"ping: {status} {data[:300]!r}")
            answered.set()
    finally:
        http.close()


async def measure(port: int) -> None:
    http = KeepAliveHTTP("127.0.0.1", port)
    latencies: list[int] = []
    done, answered = asyncio.Event(), asyncio.Event()
    pinger = asyncio.ensure_future(ping_until(done, answered, port, latencies))
    try:
        await asyncio.wait_for(answered.wait(), 30)
        latencies.clear()  # from here on: while the writes run
        one = await create_conversation(http, "big", 500)
        ten = [await create_conversation(http, f"mid{n}", 100) for n in range(10)]
        small = await create_conversation(http, "small", 2)
    finally:
        done.set()
        await pinger
        http.close()
    p = percentiles(latencies, (50, 95, 100))
    print(f"create 1 conversation of 500 participants: {one:.3f} s")
    print(f"create 10 conversations of 100 participants: {sum(ten):.3f} s (slowest {max(ten):.3f} s)")
    print(f"then 1 conversation of 2 participants: {small * 1000:.1f} ms")
    print(
        f"another tenant's GET presence/me/ meanwhile: {len(latencies)} requests, "
        f"p50 {p[50]:.1f} ms, p95 {p[95]:.1f} ms, max {p[100]:.1f} ms"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.embedded_writes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ours-dir", help="checkout of our server to run (default: this repository)")
    args = parser.parse_args(argv)
    opts = SimpleNamespace(mongodb_uri=None, ours_dir=args.ours_dir, history_db="embedded", prepare_secs=60.0)
    with tempfile.TemporaryDirectory(prefix="bench-embedded-writes-") as logdir:
        server = Ours(opts, logdir)
        server.start("embedded-writes")
        try:
            print(f"server: {server.root} (embedded mongomock)")
            asyncio.run(measure(server.port))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
