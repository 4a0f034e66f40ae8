"""The one seam where a MongoDB client is chosen and the repositories are built.

``MONGODB_URI`` set: motor (the user's choice), or PyMongo's own ``AsyncMongoClient``
with ``MONGODB_CLIENT=pymongo`` (motor is deprecated upstream; this is the way off it).
``MONGODB_URI`` unset: an embedded in-memory mongomock-motor database, so the server
runs on a fresh machine with nothing else installed.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from storage.conversations import ConversationRepository
from storage.files import FileRepository
from storage.messages import MessageRepository
from storage.participants import ParticipantRepository
from storage.presence import PresenceRepository
from storage.reactions import ReactionRepository

logger = logging.getLogger(__name__)

# MONGODB_TIMEOUT_MS: how long an operation waits for a reachable server, and how long a connect
# (and the monitor's heartbeat) may take. A server that stops answering mid-operation is caught by
# the heartbeat, which interrupts the operations in flight; no socketTimeoutMS is set, so that a
# legitimately long operation (an index build at start-up) is not cut off.
DEFAULT_TIMEOUT_MS = 5000


def _make_client(uri: str | None, timeout_ms: int = DEFAULT_TIMEOUT_MS):
    if not uri:
        from mongomock_motor import AsyncMongoMockClient

        return AsyncMongoMockClient()
    options = {
        "serverSelectionTimeoutMS": timeout_ms,
        "connectTimeoutMS": timeout_ms,
        "tz_aware": True,
    }
    if os.environ.get("MONGODB_CLIENT", "motor") == "pymongo":
        from pymongo import AsyncMongoClient

        return AsyncMongoClient(uri, **options)
    from motor.motor_asyncio import AsyncIOMotorClient

    return AsyncIOMotorClient(uri, **options)


@dataclasses.dataclass
class Storage:
    client: object
    conversations: ConversationRepository
    participants: ParticipantRepository
    messages: MessageRepository
    reactions: ReactionRepository
    presence: PresenceRepository
    files: FileRepository

    @property
    def repositories(self):
        return (self.conversations, self.participants, self.messages, self.reactions, self.presence, self.files)

    async def ensure_indexes(self) -> None:
        for repository in self.repositories:
            await repository.ensure_indexes()

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            result = close()
            if hasattr(result, "close"):
                result.close()


def open_storage(uri: str | None, db_name: str, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> Storage:
    """Build the repositories over one client; indexes are made by ``ensure_indexes``.

    ``timeout_ms`` (``MONGODB_TIMEOUT_MS``) bounds server selection and connecting."""
    if not uri:
        logger.warning(
            "MONGODB_URI is not set: using an embedded in-memory database; "
            "data will not survive a restart"
        )
    client = _make_client(uri, timeout_ms)
    db = client[db_name]
    return Storage(
        client=client,
        conversations=ConversationRepository(db),
        participants=ParticipantRepository(db),
        messages=MessageRepository(db, embedded=not uri),
        reactions=ReactionRepository(db),
        presence=PresenceRepository(db),
        files=FileRepository(db),
    )
