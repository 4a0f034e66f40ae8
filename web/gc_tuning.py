"""Cyclic garbage collection tuned for a long-running event-loop server.

CPython's default young threshold (700 net allocations) is far below what one message in
flight allocates across its coroutines, futures, frames and dicts. Under load most of those
objects are still alive when a young collection runs, so they are promoted, and the promotions
trigger a full collection about every 1.5 s. A full collection walks the whole heap on the loop
thread: 120-140 ms of CPU with 1,000 sockets and the embedded database (bench/README.md), a
stall that every message queued behind it sees as latency. With a young threshold of 50,000
the transient objects are freed by reference counting before any collection meets them, and the
objects that exist once the server is up (modules, classes, routes, settings) are frozen out of
every later collection, as they live as long as the process.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 20)


def tune_after_startup() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
