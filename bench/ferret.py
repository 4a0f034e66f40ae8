"""A throwaway MongoDB wire server for the history scenario: FerretDB (SQLite backend).

Uses the binary the test suite builds (``.ci/build-ferretdb.sh``): ``$FERRETDB_BIN`` or
``~/.cache/chat-ferretdb/ferretdb``.  It prints ``ready mongodb://HOST:PORT/`` on stdout
once listening and exits when its stdin closes, so a crashed runner leaks nothing.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def find_binary() -> str | None:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "chat-ferretdb" / "ferretdb"
    for cand in (os.environ.get("FERRETDB_BIN"), str(default)):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


class Ferret:
    def __init__(self, binary: str, log_path: str):
        self.binary = binary
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.state_dir = None
        self.uri = None

    def start(self, timeout: float = 30.0) -> str:
        self.state_dir = tempfile.mkdtemp(prefix="chat-bench-ferretdb-")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "-listen-addr", "127.0.0.1:0", "-state-dir", self.state_dir, "-exit-on-stdin-eof"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
            env={**os.environ, "FERRETDB_TELEMETRY": "disable", "DO_NOT_TRACK": "1"},
        )
        log.close()
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
                for line in buf.decode(errors="replace").splitlines():
                    if line.startswith("ready "):
                        self.uri = line.split(" ", 1)[1].strip()
                        return self.uri
            if self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"FerretDB did not become ready; see {self.log_path}")

    def pid(self):
        return self.proc.pid if self.proc else None

    def stop(self):
        if self.proc is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.terminate()
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None
        if self.state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state_dir = None
