"""What every handler shares: settings, storage, the actor directory, the protocol and limits."""

from __future__ import annotations

import dataclasses

from actors.directory import Directory
from actors.protocol import Protocol
from cluster import Cluster
from cluster.buckets import SharedBuckets
from config import Settings
from storage import Storage
from web.ratelimit import RateLimiter, ReadBudget, UserLimits


@dataclasses.dataclass
class AppContext:
    settings: Settings
    storage: Storage
    directory: Directory
    protocol: Protocol
    limits: UserLimits
    cluster: Cluster | None = None  # with REDIS_URL: this node and its links to the others
    sockets: set = dataclasses.field(default_factory=set)
    shutting_down: bool = False
    frames_in_flight: int = 0  # WebSocket frames being handled; a shutdown lets them finish

    @classmethod
    def build(cls, settings: Settings, storage: Storage) -> AppContext:
        cluster = Cluster.open(settings) if settings.redis_url else None
        return cls(
            settings=settings,
            storage=storage,
            directory=Directory(storage, settings, cluster),
            cluster=cluster,
            protocol=Protocol(settings),
            limits=UserLimits(
                RateLimiter(settings.rate_limit_per_sec, settings.rate_limit_burst),
                ReadBudget(settings.read_rows_per_sec, settings.read_rows_burst),
                SharedBuckets(cluster.link) if cluster is not None else None,
            ),
        )
