"""Read floods, and what another tenant waits meanwhile, with the read budget on and off.

    python -m bench.read_abuse                     # this checkout, embedded mongomock
    python -m bench.read_abuse --seconds 20

One user of tenant A floods reads of a conversation of 1,000 messages, in two ways in turn:

* replay: 4 sockets re-join with ``since_seq=0`` back to back, each reading the whole replay;
* pager: 3 REST clients page through the history (100 a page) back to back.

Meanwhile a user of tenant B asks for its own presence over REST, one request at a time. Each
attack runs against a server with the default read budget (``READ_ROWS_PER_SEC``) and against
one with it off, in the same run; a refused attacker retries at once. Printed: tenant B's
latency (p50, p95, max) and the rows the attacker got per second.
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

if __package__ in (None, ""):  # python bench/read_abuse.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "bench"  # noqa: A001

import websockets  # noqa: E402

from bench.common import make_token, percentiles, ws_path  # noqa: E402
from bench.loadgen.httpclient import KeepAliveHTTP  # noqa: E402
from bench.servers import Ours  # noqa: E402

API = "/api/notifications/chat"
HISTORY = 1000
ATTACKER, VICTIM = ("attacker", "tenant-a"), ("pinger", "tenant-b")


def headers(user: tuple[str, str]) -> dict:
    return {"Authorization": f"Bearer {make_token(*user)}", "Content-Type": "application/json"}


async def prepare(port: int) -> str:
    """Tenant A's conversation with ``HISTORY`` messages."""
    http = KeepAliveHTTP("127.0.0.1", port)
    try:
        body = json.dumps({"type": "group", "title": "history", "participant_ids": ["someone"]}).encode()
        status, data = await http.request("POST", f"{API}/conversations/", headers(ATTACKER), body)
        assert status == 201, data
        conversation_id = json.loads(data)["id"]
        for n in range(HISTORY):
            status, data = await http.request(
                "POST", f"{API}/conversations/{conversation_id}/messages/", headers(ATTACKER), json.dumps({"content": f"m{n}"}).encode()
            )
            assert status == 201, data
        return conversation_id
    finally:
        http.close()


async def replay_flood(port: int, conversation_id: str, stop: asyncio.Event, rows: list[int]) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{port}{ws_path(*ATTACKER)}", max_size=None) as sock:
        while not stop.is_set():
            await sock.send(json.dumps({"type": "join_conversation", "conversation_id": conversation_id, "since_seq": 0}))
            while True:
                event = json.loads(await sock.recv())
                if event["type"] == "error":
                    break
                if event["type"] == "new_message":
                    rows[0] += 1
                    if event["message"]["seq"] >= HISTORY:
                        break
            await sock.send(json.dumps({"type": "leave_conversation", "conversation_id": conversation_id}))


async def page_flood(port: int, conversation_id: str, stop: asyncio.Event, rows: list[int]) -> None:
    http = KeepAliveHTTP("127.0.0.1", port)
    try:
        path = f"{API}/conversations/{conversation_id}/messages/?limit=100"
        while not stop.is_set():
            status, data = await http.get(path, headers(ATTACKER))
            if status == 200:
                page = json.loads(data)
                rows[0] += len(page["results"])
                path = page["next"] or f"{API}/conversations/{conversation_id}/messages/?limit=100"
    finally:
        http.close()


async def victim(port: int, stop: asyncio.Event, latencies: list[int]) -> None:
    http = KeepAliveHTTP("127.0.0.1", port)
    try:
        while not stop.is_set():
            started = time.perf_counter_ns()
            status, data = await http.get(f"{API}/presence/me/", headers(VICTIM))
            latencies.append(time.perf_counter_ns() - started)
            assert status == 200, data
    finally:
        http.close()


async def attack(port: int, conversation_id: str, kind: str, seconds: float) -> dict:
    stop, rows, latencies = asyncio.Event(), [0], []
    flood = replay_flood if kind == "replay" else page_flood
    attackers = [asyncio.ensure_future(flood(port, conversation_id, stop, rows)) for _ in range(4 if kind == "replay" else 3)]
    await asyncio.sleep(1.0)  # the flood under way before anything is measured
    rows[0] = 0
    watcher = asyncio.ensure_future(victim(port, stop, latencies))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(watcher, *attackers, return_exceptions=True)
    p = percentiles(latencies, (50, 95, 100))
    return {"requests": len(latencies), "p50": p[50], "p95": p[95], "max": p[100], "rows_per_sec": rows[0] / seconds}


def run(root: str | None, budget: bool, seconds: float) -> dict:
    # On: the default budget, named so that the figure says what it measured.
    env = {"READ_ROWS_PER_SEC": "2000" if budget else "0"}
    opts = SimpleNamespace(mongodb_uri=None, ours_dir=root, history_db="embedded", prepare_secs=60.0, server_env=env)
    with tempfile.TemporaryDirectory(prefix="bench-read-abuse-") as logdir:
        server = Ours(opts, logdir)
        server.start("read-abuse")
        try:
            conversation_id = asyncio.run(prepare(server.port))
            return {kind: asyncio.run(attack(server.port, conversation_id, kind, seconds)) for kind in ("replay", "pager")}
        finally:
            server.stop()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.read_abuse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ours-dir", help="checkout of our server to run (default: this repository)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each attack is measured (default 10)")
    args = parser.parse_args(argv)
    results = {budget: run(args.ours_dir, budget, args.seconds) for budget in (False, True)}
    print(f"{HISTORY} messages; tenant B's GET presence/me/ while tenant A floods reads ({args.seconds:.0f} s each)")
    print(f"{'attack':<8} {'read budget':<12} {'B requests':>10} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'A rows/s':>9}")
    for kind in ("replay", "pager"):
        for budget in (False, True):
            r = results[budget][kind]
            print(f"{kind:<8} {'on (2000/s)' if budget else 'off':<12} {r['requests']:>10} {r['p50']:>8.1f} {r['p95']:>8.1f} {r['max']:>8.1f} {r['rows_per_sec']:>9.0f}")


if __name__ == "__main__":
    main()
