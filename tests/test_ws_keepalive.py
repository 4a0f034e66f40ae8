"""Standard clients' keepalive: RFC 6455 ping frames are answered with pongs, never mistaken for the JSON ``ping``."""

from __future__ import annotations

import asyncio
import json
import os

import tornado.websocket
import websockets

from actors import protocol
from tests.support.client import make_token
from tests.support.rawws import RawWebSocket
from web.websocket import HANDLERS, ChatSocket

KEEPALIVE_INTERVAL_SECS = 0.5
KEEPALIVE_FOR_SECS = 5.0
OPCODE_PING, OPCODE_PONG = 0x9, 0xA


async def next_pong(client) -> dict:
    """The next JSON ``pong``, past the presence events a connect brings."""
    while True:
        event = json.loads(await asyncio.wait_for(client.recv(), 30))
        if event["type"] == "pong":
            return event


def next_control_frame(raw: RawWebSocket) -> tuple[int, bytes]:
    while True:
        opcode, payload = raw.read_frame()
        if opcode != 0x1:
            return opcode, payload


async def test_websockets_client_pinging_every_half_second_stays_connected(server, tenant):
    log_start = server.log_size()
    url = f"{server.ws_url}/ws/chat/{tenant}/?token={make_token(server.jwt_secret, tenant, 'pinger')}"
    async with websockets.connect(url, ping_interval=KEEPALIVE_INTERVAL_SECS, ping_timeout=30) as client:
        assert json.loads(await client.recv())["type"] == "connection_established"
        deadline = asyncio.get_running_loop().time() + KEEPALIVE_FOR_SECS
        rounds = 0
        while asyncio.get_running_loop().time() < deadline:
            # A keepalive round trip of our own as well as the library's, so the test sees the pongs.
            await asyncio.wait_for(await client.ping(), 30)
            await client.send(json.dumps({"type": "ping", "request_id": rounds}))
            assert await next_pong(client) == {"type": "pong", "request_id": rounds}
            rounds += 1
            await asyncio.sleep(KEEPALIVE_INTERVAL_SECS)
        assert rounds >= 2
    log = server.log(since=log_start)
    assert "Traceback" not in log and "ERROR" not in log, log


def test_raw_ping_frame_payload_comes_back_in_the_pong(server, tenant):
    token = make_token(server.jwt_secret, tenant, "raw-pinger")
    raw = RawWebSocket.connect("127.0.0.1", server.port, f"/ws/chat/{tenant}/?token={token}", timeout=30)
    try:
        assert raw.read_json()["type"] == "connection_established"
        payload = os.urandom(16)
        raw.send_frame(OPCODE_PING, payload)
        assert next_control_frame(raw) == (OPCODE_PONG, payload)
        raw.send_json({"type": "ping", "request_id": "after-raw-ping"})
        event = raw.read_json()
        while event["type"] != "pong":
            event = raw.read_json()
        assert event == {"type": "pong", "request_id": "after-raw-ping"}
    finally:
        raw.close()


def test_every_client_message_has_one_handler_that_no_tornado_hook_shares(server):
    from config import load_settings

    assert set(HANDLERS) == set(protocol.Protocol(load_settings({})).client_messages)
    tornado_names = set(dir(tornado.websocket.WebSocketHandler))
    for kind, handler in HANDLERS.items():
        assert handler.__name__ not in tornado_names, kind
        assert getattr(ChatSocket, handler.__name__) is handler
