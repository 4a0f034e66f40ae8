"""Per-user token buckets, shared by a user's sockets and REST calls (loop thread only)."""

from __future__ import annotations

import time

from web.errors import RateLimited

# Buckets untouched this long are full again and can be forgotten.
SWEEP_EVERY_SECS = 60.0


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
        if now - self._last_sweep > SWEEP_EVERY_SECS:
            self._sweep(now)
        key = (tenant_id, user_id)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        wait = bucket.take(now, cost)
        if wait:
            raise RateLimited(wait)

    def _sweep(self, now: float) -> None:
        full_after = self.burst / self.rate if self.rate > 0 else float("inf")
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.updated < full_after}
        self._last_sweep = now
