"""``kill -USR1 <pid>`` writes a tracemalloc snapshot, for finding what makes a long run grow.

Tracing is CPython's own switch, ``PYTHONTRACEMALLOC=<frames>``: it starts before the first
import, so every allocation has its traceback, and costs nothing when unset. The signal only
dumps what is traced, so it needs no endpoint (nothing a client could reach) and no restart
between two snapshots: take one after warm-up and one later, then compare them
(``tracemalloc.Snapshot.load(a).compare_to(...)``; ``python -m bench.soak --tracemalloc`` does).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import signal
import tempfile
import tracemalloc

logger = logging.getLogger(__name__)

_numbers = itertools.count(1)


def snapshot_path(directory: str | None, number: int) -> str:
    return os.path.join(directory or tempfile.gettempdir(), f"chat-server-{os.getpid()}-{number}.tracemalloc")


def dump_snapshot(directory: str | None) -> str | None:
    """Write a snapshot of what is still reachable (after a full collection); its path, or None
    when tracing is off. Written under a temporary name and renamed, so a reader that waits for
    the path never loads half a file."""
    if not tracemalloc.is_tracing():
        logger.warning("SIGUSR1: tracemalloc is off; start the server with PYTHONTRACEMALLOC=<frames> to take snapshots")
        return None
    gc.collect()
    path = snapshot_path(directory, next(_numbers))
    partial = path + ".partial"
    tracemalloc.take_snapshot().dump(partial)
    os.replace(partial, path)
    logger.warning("tracemalloc snapshot written to %s", path)
    return path


def dump_on_signal(loop: asyncio.AbstractEventLoop, directory: str | None) -> None:
    """SIGUSR1 dumps a snapshot on the loop thread, between two callbacks."""

    def dump() -> None:
        try:
            dump_snapshot(directory)
        except OSError as error:
            logger.error("cannot write a tracemalloc snapshot: %s", error)

    loop.add_signal_handler(signal.SIGUSR1, dump)
