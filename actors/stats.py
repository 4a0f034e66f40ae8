"""What a node counts of its own work, for ``/metrics`` (``web/metrics.py``).

Plain numbers bumped on the loop thread, so counting a delivery costs one addition; the
metrics handler reads them when it is scraped.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses

# Upper bounds, in seconds, of the store-latency histogram's buckets.
STORE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclasses.dataclass
class Stats:
    deliveries: int = 0  # events written to sockets
    forwarded: int = 0  # writes sent to the node that owns their conversation
    gap_reads: int = 0  # reads of rows another node stored that this node did not hear of in order
    resyncs: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # resync_required, by reason
    refusals: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # error answers, by code
    store_buckets: list[int] = dataclasses.field(default_factory=lambda: [0] * (len(STORE_BUCKETS) + 1))
    store_seconds: float = 0.0

    def stored(self, seconds: float) -> None:
        """One batch stored (or refused by the database) in ``seconds``."""
        self.store_buckets[bisect.bisect_left(STORE_BUCKETS, seconds)] += 1
        self.store_seconds += seconds


STATS = Stats()
