"""What every REST handler shares: bearer auth, JSON in and out, one error shape, rate limits."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import orjson
import tornado.web

from actors.principal import Principal
from web.auth import decode_token
from web.context import AppContext
from web.errors import ChatError, InvalidMessage, MethodNotAllowed, NotFound, RateLimited, UnsupportedMediaType

logger = logging.getLogger(__name__)

API_PREFIX = "/api/notifications/chat"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
_HTTP_STATUS_ERRORS = {404: NotFound, 405: MethodNotAllowed}


class ApiHandler(tornado.web.RequestHandler):
    principal: Principal

    def initialize(self, context: AppContext) -> None:
        self.ctx = context

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    def prepare(self) -> None:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        self.principal = decode_token(token.strip() if scheme.lower() == "bearer" else None, self.ctx.settings)
        if self.request.method in WRITE_METHODS:
            self.ctx.limiter.check(self.principal.tenant_id, self.principal.user_id)

    @property
    def tenant_id(self) -> str:
        return self.principal.tenant_id

    # --- input ----------------------------------------------------------------------------

    def json_body(self) -> Any:
        content_type = self.request.headers.get("Content-Type", "application/json")
        if self.request.body and "json" not in content_type.lower():
            raise UnsupportedMediaType("Send JSON (Content-Type: application/json)")
        try:
            return orjson.loads(self.request.body or b"{}")
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
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise InvalidMessage(f"Invalid query parameter {name!r}", {name: [f"Must be {bound}."]})
        return value

    def page_url(self, **query: Any) -> str:
        """This resource's URL with ``query`` (``None`` values dropped), for next/previous links."""
        params = {k: v for k, v in query.items() if v is not None}
        return f"{self.request.path}?{urlencode(params)}" if params else self.request.path

    # --- output ---------------------------------------------------------------------------

    def respond(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(orjson.dumps(body))

    def no_content(self) -> None:
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()

    def _handle_request_exception(self, error: BaseException) -> None:
        if isinstance(error, ChatError) and not self._finished:
            if error.status >= 500:
                logger.warning("%s %s: %s", self.request.method, self.request.path, error.message)
            self.clear()
            self.set_default_headers()
            self.set_status(error.status)
            if isinstance(error, RateLimited):
                self.set_header("Retry-After", str(max(1, round(error.retry_after_secs + 0.5))))
            self.finish(orjson.dumps({"error": error.as_dict()}))
            return
        super()._handle_request_exception(error)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors Tornado raises itself (unknown method, bad request, crashes) in our shape."""
        error_class = _HTTP_STATUS_ERRORS.get(status_code)
        if error_class is not None:
            error = error_class()
        else:
            error = ChatError(self._reason if status_code < 500 else None)
            error.code = "bad_request" if status_code < 500 else "internal_error"
        self.set_default_headers()
        self.finish(orjson.dumps({"error": error.as_dict()}))


class NotFoundHandler(ApiHandler):
    """Unknown paths answer our JSON 404, before any auth check."""

    def prepare(self) -> None:
        raise NotFound("No such endpoint")


async def require_participant(ctx: AppContext, principal: Principal, conversation_id: str) -> tuple[dict, str]:
    """The conversation and the caller's role in it; ``NotFound`` for outsiders and other tenants."""
    conversation = await ctx.storage.conversations.get(principal.tenant_id, conversation_id)
    if conversation is None:
        raise NotFound("Conversation not found")
    participant = await ctx.storage.participants.get(principal.tenant_id, conversation_id, principal.user_id)
    if participant is not None:
        return conversation, participant["role"]
    if principal.is_tenant_admin:
        return conversation, "admin"
    raise NotFound("Conversation not found")
