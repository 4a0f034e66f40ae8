"""Bare Tornado WebSocket broadcast server: the ceiling of our own stack.

Same protocol subset as the bench uses against the real server, and nothing
else: no actors, no validation beyond what it needs to route a frame, no
storage, no rate limits.  One process, one IOLoop, stdlib json, payload
encoded once per broadcast and written to every joined socket in one pass.

    python bench/baselines/bare_tornado.py --port 8001 --secret S

WS  /ws/chat/{tenant_id}/?token=JWT   (HS256, exp required; 4401 bad token, 4403 wrong tenant)
 -> connection_established
 <- join_conversation {conversation_id}          -> conversation_joined {conversation_id, last_seq}
 <- send_message {conversation_id, content, message_type, client_msg_id?}
                                                  -> new_message {message} to every joined socket
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import uuid

import jwt
import tornado.web
import tornado.websocket

# conversation id -> set of joined handlers; conversation id -> last seq
ROOMS: dict[str, set] = {}
SEQ: dict[str, int] = {}


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")


class ChatSocket(tornado.websocket.WebSocketHandler):
    def initialize(self, secret: str):
        self.secret = secret
        self.user_id = None
        self.tenant_id = None
        self.rooms: set[str] = set()

    def check_origin(self, origin):
        return True

    def open(self, tenant_id):
        token = self.get_query_argument("token", "")
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"], options={"require": ["exp"]})
        except jwt.PyJWTError:
            self.close(4401, "invalid token")
            return
        if str(claims.get("tenant_id")) != tenant_id:
            self.close(4403, "tenant mismatch")
            return
        self.user_id = str(claims.get("user_id") or claims.get("sub"))
        self.tenant_id = tenant_id
        # Tornado leaves Nagle on; small chat frames then wait for delayed ACKs (~40 ms).
        self.set_nodelay(True)
        self.write_message(json.dumps({
            "type": "connection_established", "message": "Connected to chat service",
            "user_id": self.user_id, "tenant_id": tenant_id, "timestamp": _now_iso(),
        }))

    def on_message(self, raw):
        try:
            d = json.loads(raw)
        except ValueError:
            self.write_message(json.dumps({"type": "error", "code": "invalid_message", "message": "bad json"}))
            return
        t = d.get("type")
        cid = d.get("conversation_id")
        room_key = f"{self.tenant_id}:{cid}"
        if t == "join_conversation":
            ROOMS.setdefault(room_key, set()).add(self)
            self.rooms.add(room_key)
            self.write_message(json.dumps({"type": "conversation_joined", "conversation_id": cid,
                                           "last_seq": SEQ.get(room_key, 0)}))
        elif t == "send_message":
            seq = SEQ.get(room_key, 0) + 1
            SEQ[room_key] = seq
            payload = json.dumps({"type": "new_message", "message": {
                "id": uuid.uuid4().hex, "conversation_id": cid, "sender_id": self.user_id,
                "content": d.get("content", ""), "message_type": d.get("message_type", "text"),
                "metadata": d.get("metadata") or {}, "seq": seq, "created_at": _now_iso(),
                "edited_at": None, "is_deleted": False, "reply_to": d.get("reply_to"),
                "client_msg_id": d.get("client_msg_id"), "reactions": [],
            }})
            for h in ROOMS.get(room_key, ()):
                try:
                    h.write_message(payload)
                except tornado.websocket.WebSocketClosedError:
                    pass
        elif t == "ping":
            self.write_message(json.dumps({"type": "pong"}))
        else:
            self.write_message(json.dumps({"type": "error", "code": "invalid_message",
                                           "message": f"unknown type {t!r}"}))

    def on_close(self):
        for r in self.rooms:
            s = ROOMS.get(r)
            if s is not None:
                s.discard(self)
        self.rooms.clear()


def make_app(secret: str) -> tornado.web.Application:
    return tornado.web.Application([(r"/ws/chat/([^/]+)/?", ChatSocket, {"secret": secret})])


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8001")))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--secret", default=os.environ.get("JWT_SECRET", "bench-secret"))
    a = ap.parse_args()
    app = make_app(a.secret)
    app.listen(a.port, a.host)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
