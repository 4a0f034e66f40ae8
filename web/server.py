"""Start, run and stop the server as a PaaS expects: bind ``$PORT``, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import re
import signal

from actors.runtime import bind_loop
from actors.tenant_cluster import chosen_statuses
from config import Settings
from storage import open_storage
from storage.errors import StorageError
from web.app import make_app
from web.context import AppContext
from web.file_sweep import sweep_unattached_files
from web.gc_tuning import tune_after_startup
from web.http_server import GuardedHTTPServer, default_connection_cap
from web.memory_snapshot import dump_on_signal
from web.websocket import CLOSE_GOING_AWAY

logger = logging.getLogger(__name__)

INDEX_RETRY_SECS = 5.0
# How long a shutdown waits for clients to answer its close frames.
CLOSE_HANDSHAKE_SECS = 0.5
# A JSON body a little over MAX_FRAME_BYTES is still read, so that it gets a readable 413.
JSON_BODY_SLACK_BYTES = 64 * 1024


class TokenRedactingFilter(logging.Filter):
    """A last line of defence: no log record may carry ``token=...`` from a URL."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message:
            record.msg = re.sub(r"token=[^&\s\"']+", "token=[redacted]", message)
            record.args = ()
        return True


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(TokenRedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


async def ensure_indexes_until_done(context: AppContext) -> None:
    """Indexes at start-up; if MongoDB is not up yet, keep trying instead of refusing to start."""
    while True:
        try:
            await context.storage.ensure_indexes()
            return
        except StorageError as error:
            logger.warning("cannot create indexes yet (%s); retrying in %.0fs", error, INDEX_RETRY_SECS)
            await asyncio.sleep(INDEX_RETRY_SECS)


class ChatServer:
    """The running process: HTTP server, actors and storage, and an orderly stop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context: AppContext | None = None
        self.http_server: GuardedHTTPServer | None = None
        self.port: int | None = None
        self._stopped = asyncio.Event()
        self._sweep_task: asyncio.Task | None = None

    async def start(self, sockets=None) -> None:
        bind_loop()
        storage = open_storage(self.settings.mongodb_uri, self.settings.mongodb_db, self.settings.mongodb_timeout_ms)
        self.context = AppContext.build(self.settings, storage)
        try:
            await storage.ensure_indexes()
        except StorageError as error:
            logger.error("MongoDB is unreachable at start-up (%s); serving, and retrying the indexes", error)
            self._index_task = asyncio.ensure_future(ensure_indexes_until_done(self.context))
        if self.context.cluster is not None:
            self.context.cluster.link.on_up(self._resync_presence)
            self.context.cluster.start()
        if self.settings.unattached_file_ttl_secs:
            self._sweep_task = asyncio.ensure_future(sweep_unattached_files(storage, self.settings.unattached_file_ttl_secs))
        app = make_app(self.context)
        context = self.context
        self.http_server = GuardedHTTPServer(
            app,
            xheaders=self.settings.trust_proxy_headers,
            # Before a token is checked, a body is at most a JSON one; the upload route raises its
            # own limit once it has checked the token.
            max_body_size=self.settings.max_frame_bytes + JSON_BODY_SLACK_BYTES,
            idle_connection_timeout=self.settings.http_idle_timeout_secs,
            body_timeout=self.settings.http_body_timeout_secs,
            max_open_connections=self.settings.max_open_connections or default_connection_cap(),
            open_elsewhere=lambda: len(context.sockets),
        )
        if sockets is not None:
            self.http_server.add_sockets(sockets)
            self.port = sockets[0].getsockname()[1]
        else:
            self.http_server.listen(self.settings.port, address=self.settings.host)
            self.port = self.settings.port
        logger.info("chat server listening on %s:%s", self.settings.host, self.port)

    def _resync_presence(self) -> None:
        """Redis answers (again): make it hold exactly the sockets this node holds, and the
        statuses their users chose, in case it lost them. The sockets are listed again once the
        statuses are read: one that closed meanwhile must not be put back."""

        def held() -> list[tuple[str, str, str]]:
            return [(s.principal.tenant_id, s.principal.user_id, s.conn_id) for s in self.context.sockets]

        async def resync() -> None:
            try:
                chosen = await chosen_statuses(self.context.storage, held())
                sockets = held()
                await self.context.cluster.presence.resync_node(sockets, chosen)
                logger.info("Redis holds this node's %d sockets", len(sockets))
            except Exception as error:
                logger.warning("presence not resynced with Redis: %s", error)

        asyncio.ensure_future(resync())

    async def stop(self) -> None:
        """Stop accepting, finish storing what was queued, close sockets with 1001, release storage."""
        if self.context is None or self.context.shutting_down:
            return
        context = self.context
        context.shutting_down = True
        self.http_server.stop()
        if self._sweep_task is not None:
            self._sweep_task.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_timeout_secs
        if context.cluster is not None:
            await context.cluster.leave()
        try:
            await asyncio.wait_for(context.directory.settle(), self.settings.shutdown_timeout_secs)
        except asyncio.TimeoutError:
            logger.error("gave up waiting for queued messages after %.0fs", self.settings.shutdown_timeout_secs)
        for socket in list(context.sockets):
            socket.close(CLOSE_GOING_AWAY, "Server restarting; reconnect and resume with since_seq")
        # Clients answer the close at once (a silent one is not waited for long), and frames being
        # handled finish before the actors and the database go; the loop's end would cancel them.
        handshakes_until = min(deadline, loop.time() + CLOSE_HANDSHAKE_SECS)
        while (context.sockets and loop.time() < handshakes_until) or (context.frames_in_flight and loop.time() < deadline):
            await asyncio.sleep(0.01)
        context.directory.stop_all()
        await asyncio.sleep(0)
        if context.cluster is not None:
            await context.cluster.close()
        context.storage.close()
        self._stopped.set()

    async def run_until_signal(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.stop()))
        dump_on_signal(loop, self.settings.tracemalloc_snapshot_dir)
        await self._stopped.wait()
        logger.info("chat server stopped")


async def serve(settings: Settings) -> None:
    server = ChatServer(settings)
    await server.start()
    tune_after_startup()
    await server.run_until_signal()
