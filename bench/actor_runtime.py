"""Actor-layer benchmark: pykka ThreadingActor vs our loop-hosted LoopActor (docs/architecture.md, "The actor runtime").

A toy conversation actor counts each message and hands a result back to the asyncio
loop, 100,000 messages spread over N live actors. Each runtime and N runs in a fresh
subprocess so memory figures do not bleed into each other. Run:

    python -m bench.actor_runtime            # N = 1,000 and 10,000, both runtimes
    python -m bench.actor_runtime --quick    # smaller, for a smoke run

Target (issue 2): with 10,000 live conversation actors the actor layer moves at least
50,000 messages per second in under 50 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time

import psutil

MIB = 1024 * 1024


def _run(runtime: str, actors: int, messages: int) -> dict:
    import pykka

    from actors.runtime import LoopActor, bind_loop

    base = LoopActor if runtime == "loop" else pykka.ThreadingActor

    class Counter(base):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def on_receive(self, message):
            self.count += 1
            return self.count

    async def main() -> dict:
        bind_loop()
        loop = asyncio.get_running_loop()
        process = psutil.Process()
        rss_before = process.memory_info().rss
        refs = [Counter.start() for _ in range(actors)]
        done = loop.create_future()
        remaining = [messages]

        def answered(_future=None) -> None:
            remaining[0] -= 1
            if remaining[0] == 0 and not done.done():
                done.set_result(None)

        started = time.perf_counter()
        if runtime == "loop":
            for i in range(messages):
                refs[i % actors].ask(i, block=False).add_done_callback(answered)
        else:
            # A thread-hosted actor hands its answer to the loop with a thread-safe callback.
            for i in range(messages):
                refs[i % actors].actor_inbox.put(_envelope(i, _LoopReply(loop, answered)))
        await done
        elapsed = time.perf_counter() - started
        rss_after = process.memory_info().rss
        threads = threading.active_count()
        for ref in refs:
            ref.stop(block=False)
        return {
            "runtime": runtime,
            "actors": actors,
            "messages": messages,
            "msgs_per_sec": round(messages / elapsed),
            "rss_delta_mib": round((rss_after - rss_before) / MIB, 1),
            "threads": threads,
        }

    result = asyncio.run(main())
    if runtime == "threading":
        pykka.ActorRegistry.stop_all(block=True)
    return result


class _LoopReply:
    """A reply slot that a thread-hosted actor fills by scheduling a loop callback."""

    def __init__(self, loop, callback) -> None:
        self._loop = loop
        self._callback = callback

    def set(self, value=None) -> None:
        self._loop.call_soon_threadsafe(self._callback)

    def set_exception(self, exc_info=None) -> None:
        self._loop.call_soon_threadsafe(self._callback)


def _envelope(message, reply_to):
    from pykka._envelope import Envelope

    return Envelope(message, reply_to=reply_to)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("RUNTIME", "ACTORS", "MESSAGES"))
    args = parser.parse_args()
    if args.child:
        runtime, actors, messages = args.child
        print(json.dumps(_run(runtime, int(actors), int(messages))))
        return
    messages = 20_000 if args.quick else 100_000
    sizes = (1_000, 2_000) if args.quick else (1_000, 10_000)
    rows = []
    for actors in sizes:
        for runtime in ("threading", "loop"):
            out = subprocess.run(
                [sys.executable, "-m", "bench.actor_runtime", "--child", runtime, str(actors), str(messages)],
                capture_output=True, text=True, check=True,
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"cores: {psutil.cpu_count()}  python: {sys.version.split()[0]}  messages: {messages:,}")
    print(f"{'runtime':<28}{'actors':>8}{'msg/s':>12}{'RSS +MiB':>10}{'threads':>9}")
    for row in rows:
        name = "pykka ThreadingActor" if row["runtime"] == "threading" else "LoopActor (IOLoop-drained)"
        print(f"{name:<28}{row['actors']:>8,}{row['msgs_per_sec']:>12,}{row['rss_delta_mib']:>10}{row['threads']:>9,}")
    for actors in sizes:
        pair = {r["runtime"]: r for r in rows if r["actors"] == actors}
        ratio = pair["loop"]["msgs_per_sec"] / max(1, pair["threading"]["msgs_per_sec"])
        print(f"N={actors:,}: LoopActor is {ratio:.1f}x ThreadingActor")
    big = [r for r in rows if r["runtime"] == "loop" and r["actors"] == max(sizes)][0]
    verdict = "meets" if big["msgs_per_sec"] >= 50_000 and big["rss_delta_mib"] < 50 else "MISSES"
    print(f"target (>= 50,000 msg/s in < 50 MiB at N={max(sizes):,}): {verdict}")


if __name__ == "__main__":
    main()
