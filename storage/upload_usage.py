"""Bytes uploaded in the last 24 hours, per uploader and per tenant, for the upload quotas.

Counted from what is stored, so a restart does not reset it: a tenant's files of the window are
read once, on its first upload, and from then on kept as a tally in the process (on the embedded
database every query scans the collection). An upload reserves its bytes before it is stored, so
two at once cannot both pass a quota that only one of them fits. A deleted file (with its
conversation, or unattached past its TTL) no longer counts, as after a restart it would not.
Counted by the minute: a file leaves the window 24 hours after the minute of its upload.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import time
from collections.abc import Awaitable, Callable

from storage.clock import as_utc

WINDOW_SECS = 24 * 3600
WINDOW_MINUTES = WINDOW_SECS // 60
# How often tallies with nothing left in the window are forgotten, so memory follows recent uploaders.
DROP_IDLE_EVERY_SECS = 3600


def minute_of(moment: datetime.datetime) -> int:
    return int(as_utc(moment).timestamp()) // 60


@dataclasses.dataclass(frozen=True)
class Quotas:
    """Bytes per rolling 24 hours; 0 is no limit."""

    user_bytes: int
    tenant_bytes: int

    @property
    def unlimited(self) -> bool:
        return not self.user_bytes and not self.tenant_bytes


class QuotaExceeded(Exception):
    """``retry_after_secs`` is when enough of the window's bytes have aged out; None when the
    file alone is larger than the quota, so waiting never helps."""

    def __init__(self, scope: str, quota_bytes: int, used_bytes: int, retry_after_secs: float | None) -> None:
        super().__init__(f"{scope} upload quota: {used_bytes} of {quota_bytes} bytes used")
        self.scope = scope
        self.quota_bytes = quota_bytes
        self.used_bytes = used_bytes
        self.retry_after_secs = retry_after_secs


class RollingBytes:
    """One uploader's (or tenant's) stored bytes by minute of upload, and the bytes reserved by
    uploads being stored now."""

    def __init__(self) -> None:
        self.by_minute: dict[int, int] = {}
        self.reserved = 0

    def used(self, now_minute: int) -> int:
        for minute in [m for m in self.by_minute if m <= now_minute - WINDOW_MINUTES]:
            del self.by_minute[minute]
        return sum(self.by_minute.values()) + self.reserved

    def add(self, minute: int, size: int) -> None:
        self.by_minute[minute] = self.by_minute.get(minute, 0) + size

    def remove(self, minute: int, size: int) -> None:
        left = self.by_minute.get(minute, 0) - size
        if left > 0:
            self.by_minute[minute] = left
        else:
            self.by_minute.pop(minute, None)

    def frees_in(self, excess: int, now: float) -> float:
        """Seconds until ``excess`` bytes have left the window; reserved bytes count as uploaded now."""
        freed = 0
        for minute in sorted(self.by_minute):
            freed += self.by_minute[minute]
            if freed >= excess:
                return (minute + WINDOW_MINUTES) * 60 - now
        return WINDOW_SECS


class TenantUsage:
    def __init__(self) -> None:
        self.total = RollingBytes()
        self.users: dict[str, RollingBytes] = {}

    def user(self, owner_id: str) -> RollingBytes:
        return self.users.setdefault(owner_id, RollingBytes())

    def add(self, owner_id: str, minute: int, size: int) -> None:
        self.total.add(minute, size)
        self.user(owner_id).add(minute, size)

    def remove(self, owner_id: str, minute: int, size: int) -> None:
        self.total.remove(minute, size)
        if owner_id in self.users:
            self.user(owner_id).remove(minute, size)

    def reserve(self, owner_id: str, size: int) -> None:
        self.total.reserved += size
        self.user(owner_id).reserved += size

    def unreserve(self, owner_id: str, size: int) -> None:
        self.total.reserved -= size
        self.user(owner_id).reserved -= size

    def drop_idle_users(self, now_minute: int) -> bool:
        """Forget uploaders with nothing in the window; True when the whole tenant has nothing."""
        for owner_id in [o for o, tally in self.users.items() if not tally.used(now_minute)]:
            del self.users[owner_id]
        return not self.total.used(now_minute)


# (tenant_id, since) -> the tenant's files uploaded since then: _id, owner_id, size, created_at.
LoadSince = Callable[[str, datetime.datetime], Awaitable[list[dict]]]


class UploadUsage:
    def __init__(self, load_since: LoadSince) -> None:
        self._load_since = load_since
        self._tenants: dict[str, TenantUsage] = {}
        # Tenants being read, with the ids of their files deleted meanwhile (the read may include them).
        self._loading: dict[str, tuple[asyncio.Future, set[str]]] = {}
        self._dropped_idle_at = time.monotonic()

    async def check(self, tenant_id: str, owner_id: str, size: int, quotas: Quotas) -> None:
        """``QuotaExceeded`` if ``size`` more bytes would not fit now; reserves nothing."""
        if not quotas.unlimited:
            self._refuse_past_quota(await self._tenant(tenant_id), owner_id, size, quotas)

    async def reserve(self, tenant_id: str, owner_id: str, size: int, quotas: Quotas) -> Reservation:
        """Hold ``size`` bytes against the quotas, or raise ``QuotaExceeded``; the check and the
        hold happen with no await between them."""
        if quotas.unlimited:
            return Reservation(None, owner_id, size)
        if time.monotonic() - self._dropped_idle_at > DROP_IDLE_EVERY_SECS:
            self._drop_idle()
        usage = await self._tenant(tenant_id)
        self._refuse_past_quota(usage, owner_id, size, quotas)
        usage.reserve(owner_id, size)
        return Reservation(usage, owner_id, size)

    def forget(self, docs: list[dict]) -> None:
        """Deleted files no longer count."""
        for doc in docs:
            loading = self._loading.get(doc["tenant_id"])
            if loading is not None:
                loading[1].add(doc["_id"])
            elif (usage := self._tenants.get(doc["tenant_id"])) is not None:
                usage.remove(doc["owner_id"], minute_of(doc["created_at"]), doc["size"])

    def _drop_idle(self) -> None:
        """Forget tenants with nothing in the window (read again from storage on their next upload)."""
        self._dropped_idle_at = time.monotonic()
        now_minute = int(time.time()) // 60
        for tenant_id in [t for t, usage in self._tenants.items() if usage.drop_idle_users(now_minute)]:
            del self._tenants[tenant_id]

    @staticmethod
    def _refuse_past_quota(usage: TenantUsage, owner_id: str, size: int, quotas: Quotas) -> None:
        now = time.time()
        for scope, tally, quota in (
            ("user", usage.users.get(owner_id) or RollingBytes(), quotas.user_bytes),
            ("tenant", usage.total, quotas.tenant_bytes),
        ):
            used = tally.used(int(now) // 60)
            if quota and used + size > quota:
                retry_after = None if size > quota else tally.frees_in(used + size - quota, now)
                raise QuotaExceeded(scope, quota, used, retry_after)

    async def _tenant(self, tenant_id: str) -> TenantUsage:
        while (usage := self._tenants.get(tenant_id)) is None:
            loading = self._loading.get(tenant_id)
            if loading is None:
                loading = self._loading[tenant_id] = (asyncio.ensure_future(self._read(tenant_id)), set())
            await asyncio.shield(loading[0])
        return usage

    async def _read(self, tenant_id: str) -> None:
        since = datetime.datetime.fromtimestamp((int(time.time()) // 60 - WINDOW_MINUTES + 1) * 60, datetime.timezone.utc)
        try:
            docs = await self._load_since(tenant_id, since)
            deleted = self._loading[tenant_id][1]
            usage = TenantUsage()
            for doc in docs:
                if doc["_id"] not in deleted:
                    usage.add(doc["owner_id"], minute_of(doc["created_at"]), doc["size"])
            self._tenants[tenant_id] = usage
        finally:
            del self._loading[tenant_id]


class Reservation:
    """Bytes held for one upload: ``commit`` once the file is stored, ``release`` if it is not."""

    def __init__(self, usage: TenantUsage | None, owner_id: str, size: int) -> None:
        self._usage = usage
        self._owner_id = owner_id
        self._size = size

    def commit(self, created_at: datetime.datetime) -> None:
        if self._usage is not None:
            self._usage.unreserve(self._owner_id, self._size)
            self._usage.add(self._owner_id, minute_of(created_at), self._size)
            self._usage = None

    def release(self) -> None:
        if self._usage is not None:
            self._usage.unreserve(self._owner_id, self._size)
            self._usage = None
