"""SIGUSR1 writes a tracemalloc snapshot when tracing is on, and never stops the server."""

from __future__ import annotations

import os
import signal
import time
import tracemalloc
from pathlib import Path

from tests.support.server import ROOT, ServerProcess


def wait_for_file(directory: Path, timeout: float = 30.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(directory.glob("*.tracemalloc"))
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no snapshot in {directory} after {timeout}s")


def test_sigusr1_dumps_a_snapshot_of_the_server(tmp_path):
    server = ServerProcess(env={"PYTHONTRACEMALLOC": "3", "TRACEMALLOC_SNAPSHOT_DIR": str(tmp_path)}).start()
    try:
        os.kill(server.proc.pid, signal.SIGUSR1)
        path = wait_for_file(tmp_path)
        assert path.name.startswith(f"chat-server-{server.proc.pid}-")
        files = {stat.traceback[0].filename for stat in tracemalloc.Snapshot.load(str(path)).statistics("filename")}
        assert str(ROOT / "web" / "app.py") in files
        assert server.health()["status"] == "ok"
        assert not list(tmp_path.glob("*.partial"))
    finally:
        server.stop()


def test_sigusr1_without_tracing_says_how_and_keeps_serving(tmp_path):
    server = ServerProcess(env={"PYTHONTRACEMALLOC": "", "TRACEMALLOC_SNAPSHOT_DIR": str(tmp_path)}).start()
    try:
        os.kill(server.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while "PYTHONTRACEMALLOC" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "start the server with PYTHONTRACEMALLOC=<frames>" in server.log()
        assert server.health()["status"] == "ok"
        assert not list(tmp_path.iterdir())
    finally:
        server.stop()
