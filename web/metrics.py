"""``/metrics``: the node's figures in Prometheus's text format (``prometheus_client``).

Read when scraped, from what the node keeps anyway (``actors.stats``, the directory, the bus):
nothing here runs per delivery. No tenant or user appears in a label, so the page tells
nothing about who uses the service; it is served without a token, like ``/healthz``.
"""

from __future__ import annotations

import tornado.web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from actors.runtime import live_actor_count
from actors.stats import STATS, STORE_BUCKETS
from web.context import AppContext
from web.unbranded import Unbranded


class NodeCollector:
    def __init__(self, context: AppContext) -> None:
        self._ctx = context

    def collect(self):
        ctx = self._ctx
        yield GaugeMetricFamily("chat_sockets", "WebSocket connections open on this node", value=len(ctx.sockets))
        yield GaugeMetricFamily("chat_live_conversations", "Conversation actors alive", value=ctx.directory.live_conversations())
        yield GaugeMetricFamily("chat_live_tenants", "Tenant actors alive", value=ctx.directory.live_tenants())
        yield GaugeMetricFamily("chat_actors", "Actors alive, of every kind", value=live_actor_count())
        yield CounterMetricFamily("chat_deliveries", "Events written to sockets", value=STATS.deliveries)
        yield CounterMetricFamily("chat_forwarded_writes", "Writes sent to the node owning their conversation", value=STATS.forwarded)
        yield CounterMetricFamily("chat_gap_reads", "Reads of events this node did not hear of in order", value=STATS.gap_reads)
        yield _by_label("chat_resyncs", "resync_required sent, by reason", "reason", STATS.resyncs)
        yield _by_label("chat_refusals", "Requests answered with an error, by code", "code", STATS.refusals)
        buckets, total = [], 0
        for bound, count in zip((*map(str, STORE_BUCKETS), "+Inf"), STATS.store_buckets):
            total += count
            buckets.append((bound, total))
        yield HistogramMetricFamily(
            "chat_store_batch_seconds", "Time to store one batch of stream rows", buckets=buckets, sum_value=STATS.store_seconds
        )
        cluster = ctx.cluster
        if cluster is not None:
            yield CounterMetricFamily("chat_bus_published", "Messages published to other nodes", value=cluster.bus.published)
            yield CounterMetricFamily("chat_bus_received", "Messages received from other nodes", value=cluster.bus.received)
            yield GaugeMetricFamily("chat_redis_up", "1 while Redis answers this node", value=int(cluster.link.up and cluster.bus.connected))
            yield GaugeMetricFamily("chat_live_nodes", "Nodes this node sees alive", value=len(cluster.nodes.live))


def _by_label(name: str, documentation: str, label: str, counts) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(counts.items()):
        family.add_metric([key], value)
    return family


def metrics_registry(context: AppContext) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(context))
    return registry


class MetricsHandler(Unbranded, tornado.web.RequestHandler):
    def initialize(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self._registry))
