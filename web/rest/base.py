"""What every REST handler shares: bearer auth, JSON in and out, one error shape, rate limits, CORS."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import orjson
import tornado.web

from actors.errors import (
    ChatError,
    InvalidMessage,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    StorageUnavailable,
    UnsupportedMediaType,
)
from actors.policy import Action, authorize
from actors.principal import Principal
from actors.stats import STATS
from storage.errors import StorageError
from web import cors
from web.auth import decode_token
from web.context import AppContext
from web.unbranded import Unbranded

logger = logging.getLogger(__name__)

API_PREFIX = "/api/notifications/chat"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
_HTTP_STATUS_ERRORS = {404: NotFound, 405: MethodNotAllowed}
QUERY_INT_MAX = 2**53


class ApiHandler(Unbranded, tornado.web.RequestHandler):
    principal: Principal
    ctx: AppContext | None = None
    rows_sent: int | None = None  # set for reads, which pay for them once answered

    def initialize(self, context: AppContext) -> None:
        self.ctx = context
        self._tell_browsers_who_may_read()  # the first set_default_headers ran before there was a context

    def set_default_headers(self) -> None:
        """Also what every error answer starts from (``clear()``), so errors carry CORS headers too."""
        super().set_default_headers()
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        if self.ctx is not None:
            self._tell_browsers_who_may_read()

    async def prepare(self) -> None:
        if self.request.method == "OPTIONS":
            return  # a CORS preflight: browsers send it without the Authorization header
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        self.principal = decode_token(token.strip() if scheme.lower() == "bearer" else None, self.ctx.settings)
        if self.request.method in WRITE_METHODS:
            await self.ctx.limits.check_write(self.principal.tenant_id, self.principal.user_id)
        elif self.request.method == "GET":
            await self.ctx.limits.admit_read(self.principal.tenant_id, self.principal.user_id)
            self.rows_sent = 1  # what an answer that is not a page counts as

    def on_finish(self) -> None:
        """A read pays for what it sent, once it is known (``web.ratelimit.ReadBudget``)."""
        if self.rows_sent is not None:
            self.ctx.limits.charge_read(self.principal.tenant_id, self.principal.user_id, self.rows_sent)

    def options(self, *_args: str, **_path: str) -> None:
        """Any OPTIONS is a CORS preflight, 204 without auth; an origin not allowed gets no CORS headers."""
        if self.cors_headers():
            for name, value in cors.PREFLIGHT_HEADERS.items():
                self.set_header(name, value)
        self.no_content()

    @property
    def tenant_id(self) -> str:
        return self.principal.tenant_id

    # --- input ----------------------------------------------------------------------------

    def json_body(self) -> Any:
        """The body as JSON: an empty body is ``{}``; a body must say it is JSON and fit a frame."""
        body = self.request.body
        if body and not is_json_media_type(self.request.headers.get("Content-Type", "")):
            raise UnsupportedMediaType("Send JSON (Content-Type: application/json)")
        limit = self.ctx.settings.max_frame_bytes
        if len(body) > limit:
            raise PayloadTooLarge(f"A JSON body may have at most {limit} bytes", {"body": [f"Longer than {limit} bytes."]})
        try:
            return orjson.loads(body or b"{}")
        except orjson.JSONDecodeError as error:
            raise InvalidMessage("The body is not valid JSON", {"body": [str(error)]}) from None

    def load_body(self, schema_name: str) -> dict:
        return self.ctx.protocol.load_body(schema_name, self.json_body())

    def int_argument(self, name: str, default: int | None, *, minimum: int = 0, maximum: int | None = None) -> int | None:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise InvalidMessage(f"Invalid query parameter {name!r}", {name: ["Not a valid integer."]}) from None
        # Beyond 2**53 no seq, offset or count is real, and MongoDB takes 64-bit integers at most.
        maximum = QUERY_INT_MAX if maximum is None else maximum
        if value < minimum or value > maximum:
            raise InvalidMessage(f"Invalid query parameter {name!r}", {name: [f"Must be between {minimum} and {maximum}."]})
        return value

    def page_url(self, **query: Any) -> str:
        """This resource's URL with ``query`` (``None`` values dropped), for next/previous links."""
        params = {k: v for k, v in query.items() if v is not None}
        return f"{self.request.path}?{urlencode(params)}" if params else self.request.path

    def respond_page(self, results: list, next_url: str | None = None, previous_url: str | None = None) -> None:
        """Every list answers the same shape: ``{results, next, previous}``."""
        self.rows_sent = len(results)
        self.respond({"results": results, "next": next_url, "previous": previous_url})

    # --- output ---------------------------------------------------------------------------

    def respond(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(orjson.dumps(body))

    def no_content(self) -> None:
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()

    def cors_headers(self) -> dict[str, str]:
        return cors.response_headers(self.request.headers.get("Origin"), self.request.host, self.ctx.settings.allowed_origins)

    def _tell_browsers_who_may_read(self) -> None:
        self.set_header("Vary", "Origin")
        for name, value in self.cors_headers().items():
            self.set_header(name, value)

    def _handle_request_exception(self, error: BaseException) -> None:
        if isinstance(error, StorageError):  # a read straight from storage during an outage
            logger.warning("%s %s: database unavailable: %s", self.request.method, self.request.path, error)
            error = StorageUnavailable()
        if isinstance(error, ChatError) and not self._finished:
            self.respond_error(error)
            return
        super()._handle_request_exception(error)

    def respond_error(self, error: ChatError) -> None:
        """The one error shape; also for answers given outside a handler method (while streaming)."""
        if error.status >= 500:
            logger.warning("%s %s: %s", self.request.method, self.request.path, error.message)
        STATS.refusals[error.code] += 1
        self.clear()  # back to the default headers, CORS included
        self.set_status(error.status)
        if error.retry_after_secs is not None:
            self.set_header("Retry-After", str(max(1, round(error.retry_after_secs + 0.5))))
        # Field errors of list items are keyed by index: integers, which JSON spells as strings.
        self.finish(orjson.dumps({"error": error.as_dict()}, option=orjson.OPT_NON_STR_KEYS))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors Tornado raises itself (unknown method, bad request, crashes) in our shape."""
        error_class = _HTTP_STATUS_ERRORS.get(status_code)
        if error_class is not None:
            error = error_class()
        else:
            error = ChatError(self._reason if status_code < 500 else None)
            error.code = "bad_request" if status_code < 500 else "internal_error"
        self.finish(orjson.dumps({"error": error.as_dict()}))


def is_json_media_type(content_type: str) -> bool:
    """``application/json`` or a ``+json`` type, any parameters (charset) aside."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


class NotFoundHandler(ApiHandler):
    """Unknown paths answer our JSON 404, before any auth check."""

    def prepare(self) -> None:
        if self.request.method != "OPTIONS":  # the preflight passes, so a browser can read the 404 after it
            raise NotFound("No such endpoint")


async def authorize_conversation(
    ctx: AppContext, principal: Principal, conversation_id: str, action: Action = Action.READ
) -> tuple[dict, str]:
    """The conversation and the caller's effective role, if ``actors.policy`` allows ``action``.

    ``NotFound`` for outsiders and other tenants, as the conversation actor answers."""
    conversation = await ctx.storage.conversations.get(principal.tenant_id, conversation_id)
    if conversation is None:
        raise NotFound("Conversation not found")
    participant = await ctx.storage.participants.get(principal.tenant_id, conversation_id, principal.user_id)
    member_role = participant["role"] if participant is not None else None
    return conversation, authorize(action, principal, conversation["type"], member_role)
