"""The URL map: every WebSocket and REST route, and the application settings that matter."""

from __future__ import annotations

import logging

import tornado.web

from web.context import AppContext
from web.rest.base import API_PREFIX, NotFoundHandler
from web.rest.health import HealthHandler
from web.rest.conversations import ConversationHandler, ConversationsHandler
from web.rest.participants import ParticipantHandler, ParticipantsHandler
from web.websocket import ChatSocket, WrongPathSocket

access_log = logging.getLogger("tornado.access")

ID = r"([^/]+)"


def routes(context: AppContext) -> list[tuple]:
    ctx = {"context": context}
    api = API_PREFIX
    return [
        (r"/healthz", HealthHandler, ctx),
        (rf"/ws/chat/{ID}/?", ChatSocket, ctx),
        (rf"/ws/notifications/{ID}/?", WrongPathSocket),
        (rf"{api}/conversations/?", ConversationsHandler, ctx),
        (rf"{api}/conversations/{ID}/?", ConversationHandler, ctx),
        (rf"{api}/conversations/{ID}/participants/?", ParticipantsHandler, ctx),
        (rf"{api}/conversations/{ID}/participants/{ID}/?", ParticipantHandler, ctx),
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
