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
# may take. A server that accepts a request and then never answers (hung, stopped, partitioned)
# fails the operation after SOCKET_TIMEOUT_FACTOR times as long (10 s by default; the driver may
# retry once), well within the WebSocket keepalive (25 s + 20 s): a socket's frames are handled
# one at a time, so a frame stuck longer would get its socket closed by the missed pongs.
# Every query here is small and indexed; an index build at start-up that times out is retried.
SOCKET_TIMEOUT_FACTOR = 2


def _make_client(uri: str | None, timeout_ms: int):
    if not uri:
        from mongomock_motor import AsyncMongoMockClient

        return AsyncMongoMockClient()
    options = {
        "serverSelectionTimeoutMS": timeout_ms,
        "connectTimeoutMS": timeout_ms,
        "socketTimeoutMS": timeout_ms * SOCKET_TIMEOUT_FACTOR,
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


def open_storage(uri: str | None, db_name: str, timeout_ms: int) -> Storage:
    """Build the repositories over one client; indexes are made by ``ensure_indexes``.

    ``timeout_ms`` (``MONGODB_TIMEOUT_MS``) bounds server selection and connecting, and (times
    ``SOCKET_TIMEOUT_FACTOR``) the wait for an answer."""
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
        participants=ParticipantRepository(db, embedded=not uri),
        messages=MessageRepository(db, embedded=not uri),
        reactions=ReactionRepository(db),
        presence=PresenceRepository(db, embedded=not uri),
        files=FileRepository(db),
    )
