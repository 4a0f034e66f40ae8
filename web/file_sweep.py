"""Deletes files that no message carries once ``UNATTACHED_FILE_TTL_SECS`` have passed since upload.

An upload that is never posted (to a conversation or not) would otherwise stay stored forever.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random

from storage import Storage
from storage.clock import utcnow
from storage.errors import StorageError

logger = logging.getLogger(__name__)

SWEEP_INTERVAL_MAX_SECS = 3600.0


def sweep_interval_secs(ttl_secs: float) -> float:
    """A quarter of the TTL (at most an hour): a file outlives its TTL by at most that much."""
    return min(ttl_secs / 4, SWEEP_INTERVAL_MAX_SECS)


async def sweep_unattached_files(storage: Storage, ttl_secs: float) -> None:
    """Runs until cancelled; jittered, so that restarted processes do not sweep in step."""
    interval = sweep_interval_secs(ttl_secs)
    while True:
        await asyncio.sleep(interval * random.uniform(0.75, 1.25))
        try:
            deleted = await storage.files.delete_unattached(utcnow() - datetime.timedelta(seconds=ttl_secs))
        except StorageError as error:
            logger.warning("could not delete unattached files (%s); trying again later", error)
            continue
        if deleted:
            logger.info("deleted %d files never attached to a message", deleted)
