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
import urllib.request

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

    def cwd(self) -> str:
        return REPO_ROOT

    def prepare(self, groups: list[list[str]], tag: str, tenant_id: str = TENANT) -> list:
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
        self.proc = subprocess.Popen(argv, cwd=self.cwd(), env=full_env, stdout=self.logfile,
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

    def __init__(self, opts, logdir):
        super().__init__(opts, logdir)
        self.ferret = None
        self.uri = None
        self.db_name = None
        self.db_label = "embedded mongomock"

    @property
    def storage_note(self):
        if self.opts.mongodb_uri:
            return "stores every message (MongoDB at --mongodb-uri)"
        return "stores every message (embedded mongomock; history scenario: see its rows)"

    def start(self, scenario: str):
        from .ferret import Ferret, find_binary

        self.uri = self.opts.mongodb_uri
        self.db_label = "MongoDB at --mongodb-uri" if self.uri else "embedded mongomock"
        if not self.uri and scenario == "history" and self.opts.history_db == "ferretdb":
            binary = find_binary()
            if binary:
                self.ferret = Ferret(binary, os.path.join(self.logdir, f"ferretdb-{scenario}.log"))
                self.uri = self.ferret.start()
                self.db_label = "FerretDB 1.24 + SQLite"
        self.db_name = f"bench_{int(time.time())}_{self._n + 1}"
        try:
            super().start(scenario)
        except BaseException:
            self._stop_db()
            raise

    def stop(self):
        super().stop()
        self._stop_db()

    def _stop_db(self):
        if self.ferret is not None:
            self.ferret.stop()
            self.ferret = None

    def db_cpu_seconds(self):
        if self.ferret is None or self.ferret.pid() is None:
            return None
        try:
            t = psutil.Process(self.ferret.pid()).cpu_times()
            return t.user + t.system
        except psutil.Error:
            return None

    def bulk_seed(self, conversation_id: str, sender_id: str, first_seq: int, count: int, batch: int = 2000,
                  start_index: int = 0) -> float:
        """Insert ``count`` messages straight into the database behind MONGODB_URI.

        Documents are built by our own ``storage.messages.MessageRepository.build`` so the
        layout follows the server's; seq continues from ``first_seq``.  Returns seconds taken.
        """
        import datetime as dt

        import pymongo

        import importlib
        import sys as _sys

        if self.root not in _sys.path:
            _sys.path.insert(0, self.root)
        MessageRepository = importlib.import_module("storage.messages").MessageRepository  # noqa: N806

        client = pymongo.MongoClient(self.uri, tz_aware=True)
        try:
            col = client[self.db_name][MessageRepository.collection_name]
            t0 = time.perf_counter()
            base = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=count)
            for start in range(start_index, start_index + count, batch):
                docs = []
                for i in range(start, min(start_index + count, start + batch)):
                    d = MessageRepository.build(TENANT, conversation_id, sender_id,
                                                content=f"B|0|0|seed|history message {i}",
                                                message_type="text", client_msg_id=f"seed-{i}")
                    d["seq"] = first_seq + (i - start_index)
                    d["created_at"] = base + dt.timedelta(seconds=i)
                    docs.append(d)
                col.insert_many(docs, ordered=False)
            return time.perf_counter() - t0
        finally:
            client.close()

    @property
    def root(self) -> str:
        return os.path.abspath(self.opts.ours_dir or REPO_ROOT)

    def _argv(self):
        """``python -m web serve`` from the checkout under test (same as the ``chat-server serve``
        console script, without depending on which checkout ``pip install -e`` pointed at)."""
        return [PY, "-m", "web", "serve"]

    def available(self):
        if not os.path.isfile(os.path.join(self.root, "web", "__main__.py")):
            return False, f"no {self.root}/web/__main__.py (our server is not there)"
        return True, ""

    def cwd(self) -> str:
        return self.root

    def command(self, port):
        env = {
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "JWT_SECRET": JWT_SECRET,
            "RATE_LIMIT_PER_SEC": "1000000",
            "RATE_LIMIT_BURST": "1000000",
            "FLOOD_CLOSE_AFTER": "1000000",
            "MAX_CONNECTIONS_PER_USER": "100000",
            "READ_ROWS_PER_SEC": "0",  # the history scenario pages as fast as it can
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": self.root,
        }
        if self.uri:
            env["MONGODB_URI"] = self.uri
            env["MONGODB_DB"] = self.db_name
        env.update(getattr(self.opts, "server_env", None) or {})
        return self._argv(), env

    # -- REST set-up --------------------------------------------------------
    def prepare(self, groups, tag, tenant_id=TENANT):
        return asyncio.run(self._prepare(groups, tenant_id))

    async def _prepare(self, groups, tenant_id, concurrency: int = 8):
        ids: list = [None] * len(groups)
        queue = list(enumerate(groups))[::-1]
        errors: list[str] = []
        deadline = time.monotonic() + self.opts.prepare_secs

        async def worker():
            cli = KeepAliveHTTP("127.0.0.1", self.port)
            try:
                while queue and time.monotonic() < deadline:
                    i, members = queue.pop()
                    owner = members[0]
                    hdr = {"Authorization": f"Bearer {make_token(owner, tenant_id)}", "Content-Type": "application/json"}
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

    def count_bench_messages(self, conversation_id: str, user: str, max_pages: int = 50) -> int:
        """Stored messages of the bench (content starting with "B|") in a conversation,
        following the list endpoint's ``next`` links whatever its order."""
        from urllib.parse import urlparse

        path = f"/api/notifications/chat/conversations/{conversation_id}/messages/?limit=100"
        n = 0
        for _ in range(max_pages):
            status, body = self.rest_get(path, user)
            if status != 200:
                raise ServerFailed(f"GET {path}: HTTP {status} {body[:200]!r}")
            d = json.loads(body)
            n += sum(1 for m in d.get("results") or [] if str(m.get("content", "")).startswith("B|"))
            nxt = d.get("next")
            if not nxt:
                return n
            u = urlparse(str(nxt))
            path = (u.path or path.split("?")[0]) + ("?" + u.query if u.query else "")
        return n

    def health(self) -> dict:
        """``/healthz``: live sockets, actors, conversations and tenants."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=30) as response:
            return json.loads(response.read())

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
