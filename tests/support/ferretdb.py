"""Run a real MongoDB wire server (FerretDB + SQLite) as a child process.

The binary is built from tests/ferretdb by .ci/build-ferretdb.sh. This module
deliberately has no pytest dependency so that conftest.py and ad-hoc scripts
can both use it::

    binary = find_ferretdb_binary()
    with FerretDB(binary, "/tmp/state") as server:
        client = pymongo.MongoClient(server.uri)
        ...
        server.stop()      # MongoDB "goes down"; data stays in state_dir
        server.start()     # same port, same data

Durability note: FerretDB's SQLite backend runs in WAL mode, so writes it has
acknowledged survive kill() (SIGKILL) as well as stop(); only an OS crash or
power loss could lose them.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from pathlib import Path

__all__ = ["DEFAULT_BINARY", "FerretDB", "FerretDBError", "find_ferretdb_binary"]

DEFAULT_BINARY = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "chat-ferretdb"
    / "ferretdb"
)


class FerretDBError(RuntimeError):
    """The server could not be started (the message includes its log tail)."""


def find_ferretdb_binary() -> str | None:
    """Return the FerretDB test binary (env FERRETDB_BIN, then the default
    cache path used by .ci/build-ferretdb.sh), or None if it is not built."""
    for candidate in (os.environ.get("FERRETDB_BIN"), DEFAULT_BINARY):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


class FerretDB:
    """One FerretDB process bound to 127.0.0.1, storing data in state_dir.

    The port is chosen by the kernel on the first start() and then kept, so
    restart()/start() after stop() or kill() bring the server back at the same
    URI with the same data and clients can simply reconnect.
    """

    def __init__(
        self,
        binary: str,
        state_dir: str | os.PathLike[str],
        *,
        port: int = 0,
        log_path: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.binary = str(binary)
        self.state_dir = Path(state_dir)
        self.port = port  # 0 until the first start() if not given
        # Outside state_dir would be tidier, but keeping it inside means one
        # tmp dir holds everything; FerretDB only looks at *.sqlite files.
        self.log_path = Path(log_path) if log_path else self.state_dir / "ferretdb.log"
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    # -- public API ---------------------------------------------------------

    @property
    def uri(self) -> str:
        if not self.port:
            raise FerretDBError("FerretDB has not been started yet")
        return f"mongodb://127.0.0.1:{self.port}/"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> FerretDB:
        """Launch the server and block until it answers a ping."""
        if self.running:
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.startup_timeout

        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [
                    self.binary,
                    "-listen-addr", f"127.0.0.1:{self.port}",
                    "-state-dir", str(self.state_dir),
                    # Our end of stdin closes if this Python process dies, even
                    # by SIGKILL, which makes the server exit instead of leaking.
                    "-exit-on-stdin-eof",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env={**os.environ, "FERRETDB_TELEMETRY": "disable", "DO_NOT_TRACK": "1"},
                # Own session: a Ctrl-C meant for the test runner must not take
                # the server down before the tests' own teardown does.
                start_new_session=True,
            )
        try:
            self._read_ready_line(deadline)
            self._wait_for_ping(deadline)
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        """Graceful shutdown (SIGTERM), falling back to SIGKILL after timeout.

        With clients connected this takes ~3 s: FerretDB lets open connections
        finish in-flight requests before closing them. Returns the exit code.
        """
        return self._terminate(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """Simulate a crash (SIGKILL); instantaneous."""
        return self._terminate(signal.SIGKILL, 10.0)

    def restart(self, *, hard: bool = False) -> FerretDB:
        """Stop (or kill if hard) and start again on the same port and data."""
        self.kill() if hard else self.stop()
        return self.start()

    def __enter__(self) -> FerretDB:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<FerretDB 127.0.0.1:{self.port} {state} state_dir={str(self.state_dir)!r}>"

    # -- internals ----------------------------------------------------------

    def _terminate(self, sig: signal.Signals, timeout: float) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.send_signal(sig)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe:
                pipe.close()
        self._proc = None
        return proc.returncode

    def _read_ready_line(self, deadline: float) -> None:
        """Wait for 'ready mongodb://127.0.0.1:PORT/' and learn the port."""
        assert self._proc is not None and self._proc.stdout is not None
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._fail("no ready line within the startup timeout")
                if sel.select(remaining):
                    chunk = os.read(self._proc.stdout.fileno(), 4096)
                    if not chunk:  # EOF: the process exited
                        self._proc.wait(5)
                        self._fail(f"exited with code {self._proc.returncode} during start-up")
                    buf += chunk
        line = buf.split(b"\n", 1)[0].decode()
        if not line.startswith("ready mongodb://"):
            self._fail(f"unexpected output {line!r}")
        self.port = int(line.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])

    def _wait_for_ping(self, deadline: float) -> None:
        import pymongo  # deferred: find_ferretdb_binary() should not need it
        from pymongo.errors import PyMongoError

        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not self.running:
                self._fail("exited during start-up")
            timeout_ms = max(100, min(2000, int((deadline - time.monotonic()) * 1000)))
            client = pymongo.MongoClient(
                self.uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
            )
            try:
                client.admin.command("ping")
                return
            except PyMongoError as e:
                last_error = e
                time.sleep(0.05)
            finally:
                client.close()
        self._fail(f"did not answer ping: {last_error!r}")

    def _fail(self, why: str) -> None:
        try:
            tail = self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            tail = ""
        raise FerretDBError(f"FerretDB ({self.binary}) {why}; log {self.log_path}:\n{tail}")
