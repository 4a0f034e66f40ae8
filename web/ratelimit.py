"""Per-user token buckets, shared by a user's sockets and REST calls (loop thread only).

Two budgets per user: writes (``RateLimiter``: each costs a token up front) and reads
(``ReadBudget``: rows sent, REST pages and ``since_seq`` replays alike). A read's size is known
only once it is answered, so it is admitted while the budget is not spent and pays afterwards,
which may leave the budget in debt: the next read waits until it is paid off.

``UserLimits`` is what handlers draw from: these buckets in one process, or with a cluster the
same budgets kept in Redis for all nodes (``cluster.buckets``), and these again while Redis is
away, so that a Redis outage limits each node on its own instead of nobody.
"""

from __future__ import annotations

import time

from actors.errors import RateLimited
from cluster.buckets import SharedBuckets
from cluster.link import LinkDown

# Buckets untouched this long are full again and can be forgotten.
SWEEP_EVERY_SECS = 60.0
# What any read costs besides its rows: a request that sends one row is not free to serve.
READ_REQUEST_ROWS = 10


class TokenBucket:
    __slots__ = ("rate", "capacity", "tokens", "updated")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = now

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; 0 when allowed, else the seconds until it would be."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate if self.rate > 0 else float("inf")

    def debit(self, now: float, cost: float) -> None:
        """Take ``cost`` even past zero: a debt that later takes wait out."""
        self.take(now, 0.0)
        self.tokens = max(-self.capacity, self.tokens - cost)


class RateLimiter:
    def __init__(self, rate_per_sec: float, burst: int, clock=time.monotonic) -> None:
        self.rate = rate_per_sec
        self.burst = burst
        self._clock = clock
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._last_sweep = clock()

    def check(self, tenant_id: str, user_id: str, cost: float = 1.0) -> None:
        """Raise ``RateLimited`` with ``retry_after`` when the user is over the limit."""
        now = self._clock()
        wait = self._bucket(tenant_id, user_id, now).take(now, cost)
        if wait:
            raise RateLimited(wait)

    def _bucket(self, tenant_id: str, user_id: str, now: float) -> TokenBucket:
        if now - self._last_sweep > SWEEP_EVERY_SECS:
            self._sweep(now)
        key = (tenant_id, user_id)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket

    def _sweep(self, now: float) -> None:
        full_after = 2 * self.burst / self.rate if self.rate > 0 else float("inf")  # from the deepest debt
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.updated < full_after}
        self._last_sweep = now


class ReadBudget(RateLimiter):
    """Rows a user may be sent per second by REST reads and replays; ``rate`` 0 turns it off.

    Every read also costs ``READ_REQUEST_ROWS``, the price of a lookup that sends little."""

    def admit(self, tenant_id: str, user_id: str) -> None:
        """``RateLimited`` while the user's budget is spent (or in debt)."""
        if self.rate <= 0:
            return
        now = self._clock()
        bucket = self._bucket(tenant_id, user_id, now)
        bucket.take(now, 0.0)
        if bucket.tokens <= 0:
            raise RateLimited((READ_REQUEST_ROWS - bucket.tokens) / self.rate, "Reading too fast; wait and read again")

    def charge(self, tenant_id: str, user_id: str, rows: int) -> None:
        if self.rate > 0:
            now = self._clock()
            self._bucket(tenant_id, user_id, now).debit(now, READ_REQUEST_ROWS + rows)


class UserLimits:
    def __init__(self, writes: RateLimiter, reads: ReadBudget, shared: SharedBuckets | None = None) -> None:
        self.writes = writes
        self.reads = reads
        self._shared = shared

    async def check_write(self, tenant_id: str, user_id: str) -> None:
        """``RateLimited`` with ``retry_after`` when the user is over the write rate."""
        wait = await self._draw("w", tenant_id, user_id, self.writes, 1.0, "take")
        if wait is None:
            self.writes.check(tenant_id, user_id)
        elif wait:
            raise RateLimited(wait)

    async def admit_read(self, tenant_id: str, user_id: str) -> None:
        """``RateLimited`` while the user's read budget is spent (or in debt)."""
        if self.reads.rate <= 0:
            return
        wait = await self._draw("r", tenant_id, user_id, self.reads, READ_REQUEST_ROWS, "admit")
        if wait is None:
            self.reads.admit(tenant_id, user_id)
        elif wait:
            raise RateLimited(wait, "Reading too fast; wait and read again")

    def charge_read(self, tenant_id: str, user_id: str, rows: int) -> None:
        if self.reads.rate <= 0:
            return
        if self._shared is not None:
            try:
                self._shared.debit(f"r:{tenant_id}:{user_id}", self.reads.rate, self.reads.burst, READ_REQUEST_ROWS + rows)
                return
            except LinkDown:
                pass
        self.reads.charge(tenant_id, user_id, rows)

    async def _draw(self, budget: str, tenant_id: str, user_id: str, local: RateLimiter, cost: float, mode: str) -> float | None:
        """The shared bucket's answer; None when there is none (no cluster, or Redis is away)."""
        if self._shared is None:
            return None
        try:
            return await self._shared.draw(f"{budget}:{tenant_id}:{user_id}", local.rate, local.burst, cost, mode)
        except LinkDown:
            return None
