"""The chat server as a child process on a free loopback port, as a PaaS would run it."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Short timers so that expiry, grace and idle behaviour show within a test's patience. Not the
# heartbeat: the server reads a pong only after the socket's earlier frames are handled, and on
# a loaded machine a socket with several frames queued takes longer than a short ping timeout.
TEST_ENV = {
    "JWT_SECRET": "test-secret-0123456789abcdef0123456789abcdef",
    "LOG_LEVEL": "WARNING",
    "TYPING_TTL_SECS": "1.0",
    "PRESENCE_GRACE_SECS": "0.6",
    "ACTOR_IDLE_SECS": "0.5",
    "HEARTBEAT_INTERVAL_SECS": "25",
    "HEARTBEAT_TIMEOUT_SECS": "20",
    "RATE_LIMIT_PER_SEC": "200",
    "RATE_LIMIT_BURST": "400",
    # Tests read as fast as the machine lets them; tests/test_read_budget.py runs its own server.
    "READ_ROWS_PER_SEC": "100000",
    "READ_ROWS_BURST": "200000",
    "SHUTDOWN_TIMEOUT_SECS": "5",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    def __init__(
        self,
        env: dict[str, str] | None = None,
        mongodb_uri: str | None = None,
        db_name: str | None = None,
        descriptor_limit: int | None = None,
    ) -> None:
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "MONGODB_DB")}
        self.env.update(TEST_ENV)
        self.env.update(env or {})
        self.env.update({"PORT": str(self.port), "HOST": "127.0.0.1"})
        if mongodb_uri:
            self.env["MONGODB_URI"] = mongodb_uri
            self.env["MONGODB_DB"] = db_name or f"chat_test_{self.port}"
        self.proc: subprocess.Popen | None = None
        self.descriptor_limit = descriptor_limit  # RLIMIT_NOFILE, soft and hard, for the server alone
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"chat-server-{self.port}.log"

    def _limit_descriptors(self) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.descriptor_limit, self.descriptor_limit))

    @property
    def jwt_secret(self) -> str:
        return self.env["JWT_SECRET"]

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout_secs: float = 20.0) -> ServerProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "web", "serve"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=self._limit_descriptors if self.descriptor_limit else None,
        )
        deadline = time.monotonic() + timeout_secs
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.http_url}/healthz", timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server did not start in {timeout_secs}s:\n{self.log()}")

    def health(self, timeout_secs: float = 30.0) -> dict:
        import json

        with urllib.request.urlopen(f"{self.http_url}/healthz", timeout=timeout_secs) as response:
            return json.loads(response.read())

    def stop(self, timeout_secs: float = 15.0) -> int:
        """SIGTERM, as a PaaS restart sends; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_secs)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_size(self) -> int:
        """Where the log ends now: pass it to ``log(since=...)`` to read only what a test caused."""
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log(self, since: int | None = None) -> str:
        """The log's last 5,000 characters, or everything written after offset ``since``."""
        try:
            with open(self.log_path, "rb") as log:
                if since is not None:
                    log.seek(since)
                text = log.read().decode(errors="replace")
        except OSError:
            return ""
        return text if since is not None else text[-5000:]
