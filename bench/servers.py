"""The servers under test: how to start each one and how to set up conversations on it.

Every server runs as its own subprocess on a free loopback port, started fresh
for each scenario, with its output in a log file.  ``prepare`` turns lists of
user ids into conversation ids: the baselines accept any conversation id (they
keep no membership), ours needs the conversations created over REST first.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import psutil

from .common import JWT_SECRET, REPO_ROOT, TENANT, free_port, make_token, wait_port
from .loadgen.httpclient import KeepAliveHTTP

PY = sys.executable


class ServerFailed(RuntimeError):
    pass


class Server:
    key = "?"
    label = "?"
    has_history = False
    storage_note = ""
    start_timeout = 30.0

    def __init__(self, opts, logdir: str):
        self.opts = opts
        self.logdir = logdir
        self.proc: subprocess.Popen | None = None
        self.port = None
        self.ps: psutil.Process | None = None
        self.logfile = None
        self.log_path = None
        self._n = 0

    # -- to override --------------------------------------------------------
    def command(self, port: int) -> tuple[list[str], dict]:
        raise NotImplementedError

    def available(self) -> tuple[bool, str]:
        return True, ""

    def prepare(self, groups: list[list[str]], tag: str) -> list:
        """Conversation ids for the given member lists (first member is the creator)."""
        return [f"{tag}-{i}" for i in range(len(groups))]

    # -- lifecycle ------------------------------------------------------------
    def start(self, scenario: str):
        self._n += 1
        self.port = free_port()
        argv, env = self.command(self.port)
        full_env = dict(os.environ)
        full_env.update(env)
        self.log_path = os.path.join(self.logdir, f"{self.key}-{scenario}-{self._n}.log")
        self.logfile = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=full_env, stdout=self.logfile,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if not wait_port(self.port, self.start_timeout, self.proc):
            self.stop()
            raise ServerFailed(f"{self.label} did not start listening on {self.port}; see {self.log_path}:\n"
                               + self.log_tail())
        self.ps = psutil.Process(self.proc.pid)
        self.after_start()

    def after_start(self):
        pass

    def log_tail(self, n: int = 2000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
            return data[-n:].decode(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        self.ps = None
        if self.logfile is not None:
            self.logfile.close()
            self.logfile = None

    # -- measurements ---------------------------------------------------------
    def cpu_seconds(self) -> float:
        try:
            t = self.ps.cpu_times()
            return t.user + t.system
        except (psutil.Error, AttributeError):
            return 0.0

    def rss(self) -> int:
        try:
            return self.ps.memory_info().rss
        except (psutil.Error, AttributeError):
            return 0

    def threads(self) -> int:
        try:
            return self.ps.num_threads()
        except (psutil.Error, AttributeError):
            return 0


class BareTornado(Server):
    key = "bare"
    label = "bare Tornado"
    storage_note = "stores nothing"

    def command(self, port):
        return ([PY, os.path.join(REPO_ROOT, "bench", "baselines", "bare_tornado.py"),
                 "--port", str(port), "--host", "127.0.0.1", "--secret", JWT_SECRET], {})


class Channels(Server):
    key = "channels"
    storage_note = "stores nothing"

    @property
    def label(self):
        return f"Django Channels ({self.opts.channels_server})"

    def available(self):
        try:
            import channels  # noqa: F401
            import django  # noqa: F401
            if self.opts.channels_server == "daphne":
                import daphne  # noqa: F401
            else:
                import uvicorn  # noqa: F401
        except ImportError as e:
            return False, f"{e} (pip install -r bench/requirements.txt)"
        return True, ""

    def command(self, port):
        env = {"DJANGO_SETTINGS_MODULE": "bench.baselines.channels_app.settings", "JWT_SECRET": JWT_SECRET,
               "PYTHONPATH": REPO_ROOT}
        app = "bench.baselines.channels_app.asgi:application"
        if self.opts.channels_server == "daphne":
            return [PY, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port), app], env
        return [PY, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                "--no-access-log", "--loop", "asyncio", app], env


class Ours(Server):
    key = "ours"
    label = "ours (Tornado + pykka)"
    has_history = True

    @property
    def storage_note(self):
        if self.opts.mongodb_uri:
            return "stores every message (MongoDB at MONGODB_URI)"
        return "stores every message (embedded mongomock)"

    def _argv(self):
        exe = shutil.which("chat-server") or os.path.join(os.path.dirname(PY), "chat-server")
        if os.path.exists(exe):
            return [exe, "serve"]
        return [PY, "-m", "web", "serve"]

    def available(self):
        if not os.path.isdir(os.path.join(REPO_ROOT, "web")):
            return False, "web/ does not exist yet"
        exe = shutil.which("chat-server") or os.path.join(os.path.dirname(PY), "chat-server")
        if not os.path.exists(exe) and not os.path.exists(os.path.join(REPO_ROOT, "web", "__main__.py")):
            return False, "no chat-server console script (pip install -e .) and no web/__main__.py"
        return True, ""

    def command(self, port):
        env = {
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "JWT_SECRET": JWT_SECRET,
            "RATE_LIMIT_PER_SEC": "1000000",
            "RATE_LIMIT_BURST": "1000000",
            "FLOOD_CLOSE_AFTER": "1000000",
            "MAX_CONNECTIONS_PER_USER": "100000",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": REPO_ROOT,
        }
        if self.opts.mongodb_uri:
            env["MONGODB_URI"] = self.opts.mongodb_uri
            env["MONGODB_DB"] = f"bench_{int(time.time())}_{self._n}"
        return self._argv(), env

    # -- REST set-up --------------------------------------------------------
    def prepare(self, groups, tag):
        return asyncio.run(self._prepare(groups))

    async def _prepare(self, groups, concurrency: int = 8):
        ids: list = [None] * len(groups)
        queue = list(enumerate(groups))
        errors: list[str] = []

        async def worker():
            cli = KeepAliveHTTP("127.0.0.1", self.port)
            try:
                while queue:
                    i, members = queue.pop()
                    owner = members[0]
                    hdr = {"Authorization": f"Bearer {make_token(owner)}", "Content-Type": "application/json"}
                    body = {"type": "group", "title": f"bench {i}", "participant_ids": members[1:]}
                    status, data = await cli.request("POST", "/api/notifications/chat/conversations/", hdr,
                                                     json.dumps(body).encode())
                    if status not in (200, 201):
                        errors.append(f"create conversation: {status} {data[:300]!r}")
                        return
                    d = json.loads(data)
                    ids[i] = d.get("id")
            finally:
                cli.close()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        if errors:
            raise ServerFailed(errors[0])
        return ids

    def rest_get(self, path: str, user: str):
        async def go():
            cli = KeepAliveHTTP("127.0.0.1", self.port)
            try:
                return await cli.get(path, {"Authorization": f"Bearer {make_token(user)}"})
            finally:
                cli.close()
        return asyncio.run(go())


def make_servers(opts, logdir) -> list[Server]:
    table = {"ours": Ours, "channels": Channels, "bare": BareTornado}
    return [table[k](opts, logdir) for k in opts.servers]


__all__ = ["Server", "BareTornado", "Channels", "Ours", "make_servers", "ServerFailed", "TENANT"]
