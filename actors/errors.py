"""One error base with a stable code; each subclass fixes the code and the HTTP status.

Raised anywhere (actors, storage glue, handlers) and rendered once: as an ``error``
event on a socket, or as ``{"error": {code, message, details}}`` over REST.
"""

from __future__ import annotations

import math
from typing import Any


class ChatError(Exception):
    code = "internal_error"
    status = 500
    default_message = "Internal error"
    retry_after_secs: float | None = None  # sent as Retry-After over REST

    def __init__(self, message: str | None = None, details: Any = None, **extra: Any) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.details = details
        self.extra = extra

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}

    @classmethod
    def from_dict(cls, error: dict[str, Any]) -> ChatError:
        """The error ``as_dict`` describes, as its own class (an error another node answered)."""
        kinds = [ChatError]
        for kind in kinds:
            kinds.extend(kind.__subclasses__())
        kind = next((k for k in reversed(kinds) if k.code == error.get("code")), ChatError)
        rebuilt = kind.__new__(kind)
        ChatError.__init__(rebuilt, error.get("message"), error.get("details"))
        return rebuilt


class InvalidMessage(ChatError):
    code, status, default_message = "invalid_message", 400, "The request is not valid"


class Unauthorized(ChatError):
    code, status, default_message = "unauthorized", 401, "A valid token is required"


class Forbidden(ChatError):
    code, status, default_message = "forbidden", 403, "Not allowed"


class NotFound(ChatError):
    code, status, default_message = "not_found", 404, "Not found"


class MethodNotAllowed(ChatError):
    code, status, default_message = "method_not_allowed", 405, "Method not allowed"


class Conflict(ChatError):
    code, status, default_message = "conflict", 409, "Conflict"


class PayloadTooLarge(ChatError):
    code, status, default_message = "payload_too_large", 413, "The payload is too large"


class UnsupportedMediaType(ChatError):
    code, status, default_message = "unsupported_media_type", 415, "Unsupported media type"


class RateLimited(ChatError):
    code, status, default_message = "rate_limited", 429, "Too many requests"

    def __init__(self, retry_after_secs: float, message: str | None = None, **extra: Any) -> None:
        # Rounded up to the millisecond: a refusal never says "retry after 0", and a client
        # that waits what it says finds the token there.
        super().__init__(message, {"retry_after": math.ceil(retry_after_secs * 1000) / 1000}, **extra)
        self.retry_after_secs = retry_after_secs


class UploadQuotaExceeded(ChatError):
    """Refused before anything is stored; ``details`` say which quota, how full, and when it has room."""

    code, status, default_message = "upload_quota_exceeded", 429, "Upload quota exceeded"

    def __init__(self, message: str, details: dict, retry_after_secs: float) -> None:
        super().__init__(message, details)
        self.retry_after_secs = retry_after_secs


class TooManyConnections(ChatError):
    code, status, default_message = "too_many_connections", 429, "Too many connections for this user"


class StorageUnavailable(ChatError):
    code, status, default_message = "storage_unavailable", 503, "The database is unavailable; not acknowledged: retry with the same client_msg_id"


class ShuttingDown(ChatError):
    code, status, default_message = "shutting_down", 503, "The server is restarting"
