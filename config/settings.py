"""Every setting the server reads, with its environment variable and default.

Units are in the names (``_SECS``, ``_BYTES``) so that no caller has to guess them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

DEV_JWT_SECRET = "development-secret-change-me-in-production"


class ConfigError(ValueError):
    """A setting's value cannot be used; the message names the variable."""


@dataclasses.dataclass(frozen=True)
class Settings:
    port: int = 9090
    host: str = "0.0.0.0"
    jwt_secret: str = DEV_JWT_SECRET
    jwt_algorithm: str = "HS256"
    mongodb_uri: str | None = None
    mongodb_db: str = "chat"
    # How long a MongoDB call waits for a reachable server (and a connect may take), and half of
    # how long it waits for an answer; past that the caller gets storage_unavailable. See storage.database.
    mongodb_timeout_ms: int = 5000
    allowed_origins: tuple[str, ...] = ()
    heartbeat_interval_secs: float = 25.0
    heartbeat_timeout_secs: float = 20.0
    max_content_chars: int = 4000
    max_frame_bytes: int = 64 * 1024
    max_metadata_bytes: int = 4096
    rate_limit_per_sec: float = 10.0
    rate_limit_burst: int = 20
    # Rows (messages, participants, ...) a user may be sent per second by REST reads and
    # since_seq replays together; 0 turns the read budget off.
    read_rows_per_sec: float = 2000.0
    read_rows_burst: int = 5000
    flood_close_after: int = 50
    max_connections_per_user: int = 20
    outbound_buffer_bytes: int = 1024 * 1024
    typing_ttl_secs: float = 8.0
    presence_grace_secs: float = 5.0
    presence_fanout_max_sockets: int = 2000
    # Presence changes that follow one another are pushed together, one frame per socket per
    # this interval (the first after a quiet interval at once); 0: each change at once.
    presence_batch_secs: float = 0.25
    actor_idle_secs: float = 30.0
    activity_write_secs: float = 2.0
    replay_limit: int = 1000
    upload_max_bytes: int = 10 * 1024 * 1024
    # Bytes one user, and one tenant, may upload in any 24 hours (files since deleted no longer
    # count); 0: no limit. See storage.upload_usage.
    upload_quota_bytes: int = 100 * 1024 * 1024
    tenant_upload_quota_bytes: int = 1024 * 1024 * 1024
    # A file that no stored message carries is deleted this long after its upload; 0: never.
    unattached_file_ttl_secs: float = 24 * 3600.0
    # Client connections (HTTP and WebSocket) open at once; 0: the descriptor limit less a reserve.
    max_open_connections: int = 0
    # How long a connection may wait to send a request's headers (keep-alive included), and to
    # send a whole body, before it is closed.
    http_idle_timeout_secs: float = 60.0
    http_body_timeout_secs: float = 120.0
    shutdown_timeout_secs: float = 10.0
    log_level: str = "INFO"
    # X-Forwarded-For / X-Real-IP name the client only behind a proxy that sets them; anywhere
    # else any client could write what the access log shows as its address.
    trust_proxy_headers: bool = False
    # Where SIGUSR1 writes a tracemalloc snapshot when PYTHONTRACEMALLOC is set; None: the temp dir.
    tracemalloc_snapshot_dir: str | None = None
    # The demo app at /demo/ (the SDK at /sdk/chat.js is always served).
    demo_enabled: bool = True
    # Set, processes with the same REDIS_URL and MONGODB_URI serve as one (docs/scale-out.md).
    redis_url: str | None = None
    # How often a node tells Redis it is alive, and how long after its last word it counts as gone.
    node_heartbeat_secs: float = 2.0
    node_ttl_secs: float = 6.0

    @property
    def uses_embedded_database(self) -> bool:
        return not self.mongodb_uri


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def env_name(field: dataclasses.Field) -> str:
    """Every setting's variable is its field name in capitals: ``port`` is ``PORT``."""
    return field.name.upper()


def _convert(field: dataclasses.Field, name: str, raw: str):
    kind = field.type
    try:
        if kind == "bool":
            if raw.strip().lower() not in _TRUE | _FALSE:
                raise ValueError(raw)
            return raw.strip().lower() in _TRUE
        if kind == "int":
            value = int(raw)
        elif kind == "float":
            value = float(raw)
        elif kind == "tuple[str, ...]":
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        elif kind == "str | None":
            return raw or None
        else:
            return raw
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind}") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must not be negative")
    return value


def load_settings(environ: Mapping[str, str] | None = None, **overrides) -> Settings:
    """Build settings from ``environ`` (default ``os.environ``); ``overrides`` win."""
    environ = os.environ if environ is None else environ
    values = {}
    for field in dataclasses.fields(Settings):
        name = env_name(field)
        if name in environ:
            values[field.name] = _convert(field, name, environ[name])
    values.update(overrides)
    settings = Settings(**values)
    if settings.jwt_algorithm not in {"HS256", "HS384", "HS512"}:
        raise ConfigError("JWT_ALGORITHM must be one of HS256, HS384, HS512")
    if not settings.jwt_secret:
        raise ConfigError("JWT_SECRET must not be empty")
    if settings.mongodb_timeout_ms <= 0:
        raise ConfigError("MONGODB_TIMEOUT_MS must be a positive number of milliseconds")
    if settings.redis_url and settings.uses_embedded_database:
        raise ConfigError("REDIS_URL needs MONGODB_URI: the embedded database lives in one process, so nodes cannot share it")
    if settings.redis_url and not 0 < settings.node_heartbeat_secs < settings.node_ttl_secs:
        raise ConfigError("NODE_HEARTBEAT_SECS must be positive and below NODE_TTL_SECS")
    return settings
