"""The URL map: every WebSocket and REST route, and the application settings that matter."""

from __future__ import annotations

import logging

import tornado.web

from config import Settings
from web.assets import asset_routes
from web.context import AppContext
from web.metrics import MetricsHandler, metrics_registry
from web.rest.base import API_PREFIX, NotFoundHandler
from web.rest.conversations import ConversationHandler, ConversationsHandler
from web.rest.events import EventsHandler
from web.rest.files import FileHandler, UploadHandler
from web.rest.health import HealthHandler
from web.rest.messages import MessageHandler, MessagesHandler, ReadReceiptHandler
from web.rest.openapi import OpenApiHandler
from web.rest.participants import ParticipantHandler, ParticipantsHandler
from web.rest.presence import MyPresenceHandler, PresenceHandler
from web.rest.reactions import ReactionHandler, ReactionsHandler
from web.websocket import ChatSocket, WrongPathSocket

access_log = logging.getLogger("tornado.access")


def ID(name: str) -> str:
    """One path segment, passed to the handler as the keyword ``name`` (and named so in openapi.json)."""
    return rf"(?P<{name}>[^/]+)"


def routes(context: AppContext | None) -> list[tuple]:
    """Every route (with ``context`` None, those of the default settings); tests/test_rest_openapi.py
    checks this list against the OpenAPI description."""
    settings = context.settings if context is not None else Settings()
    ctx = {"context": context}
    api = API_PREFIX
    conversation = f"{api}/conversations/{ID('conversation_id')}"
    message = f"{api}/messages/{ID('message_id')}"
    return [
        (r"/healthz", HealthHandler, ctx),
        (r"/metrics", MetricsHandler, {"registry": metrics_registry(context)}),
        (rf"/ws/chat/{ID('tenant_id')}/?", ChatSocket, ctx),
        (rf"/ws/notifications/{ID('tenant_id')}/?", WrongPathSocket),
        (rf"{api}/openapi\.json", OpenApiHandler, ctx),
        (rf"{api}/conversations/?", ConversationsHandler, ctx),
        (rf"{conversation}/?", ConversationHandler, ctx),
        (rf"{conversation}/participants/?", ParticipantsHandler, ctx),
        (rf"{conversation}/participants/{ID('user_id')}/?", ParticipantHandler, ctx),
        (rf"{conversation}/messages/?", MessagesHandler, ctx),
        (rf"{conversation}/messages/{ID('message_id')}/?", MessageHandler, ctx),
        (rf"{conversation}/read/?", ReadReceiptHandler, ctx),
        (rf"{conversation}/events/?", EventsHandler, ctx),
        (rf"{message}/reactions/?", ReactionsHandler, ctx),
        (rf"{message}/reactions/{ID('emoji')}/?", ReactionHandler, ctx),
        (rf"{api}/presence/?", PresenceHandler, ctx),
        (rf"{api}/presence/me/?", MyPresenceHandler, ctx),
        (rf"{api}/upload/?", UploadHandler, ctx),
        (rf"{api}/files/{ID('file_id')}/?", FileHandler, ctx),
        *asset_routes(settings.demo_enabled),
    ]


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's access log, minus the query string: it carries the token on WebSocket URLs."""
    status = handler.get_status()
    log = access_log.info if status < 400 else access_log.warning if status < 500 else access_log.error
    request = handler.request
    log("%d %s %s (%s) %.2fms", status, request.method, request.path, request.remote_ip, 1000.0 * request.request_time())


def make_app(context: AppContext) -> tornado.web.Application:
    settings = context.settings
    return tornado.web.Application(
        routes(context),
        default_handler_class=NotFoundHandler,
        default_handler_args={"context": context},
        log_function=log_request,
        websocket_ping_interval=settings.heartbeat_interval_secs or None,
        websocket_ping_timeout=settings.heartbeat_timeout_secs or None,
        websocket_max_message_size=settings.max_frame_bytes,
        compress_response=False,
    )
