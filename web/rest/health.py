"""``/healthz``: liveness for the PaaS router and the live figures operators ask for first."""

from __future__ import annotations

import threading

import orjson
import tornado.web

from actors.runtime import live_actor_count
from web.context import AppContext
from web.unbranded import Unbranded


class HealthHandler(Unbranded, tornado.web.RequestHandler):
    def initialize(self, context: AppContext) -> None:
        self.ctx = context

    def _node(self) -> dict:
        """With REDIS_URL: this node, the nodes it sees alive, and whether Redis answers it."""
        cluster = self.ctx.cluster
        if cluster is None:
            return {}
        return {"node": {"id": cluster.node_id, "live_nodes": list(cluster.nodes.live), "redis": cluster.link.up and cluster.bus.connected}}

    def get(self) -> None:
        directory = self.ctx.directory
        embedded = self.ctx.settings.uses_embedded_database
        self.set_header("Content-Type", "application/json")
        self.set_status(503 if self.ctx.shutting_down else 200)
        self.finish(
            orjson.dumps(
                {
                    "status": "stopping" if self.ctx.shutting_down else "ok",
                    # The embedded database lives in this process: a restart loses everything in it.
                    "storage": {"kind": "embedded", "durable": False} if embedded else {"kind": "mongodb", "durable": True},
                    "sockets": len(self.ctx.sockets),
                    "live_conversations": directory.live_conversations(),
                    "live_tenants": directory.live_tenants(),
                    "actors": live_actor_count(),
                    "threads": threading.active_count(),
                    **self._node(),
                }
            )
        )
