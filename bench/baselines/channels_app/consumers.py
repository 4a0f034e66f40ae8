"""The chat consumer: join_conversation and send_message with group_send broadcast.

Mirrors the seed's ChatConsumer for the subset the bench uses.  Sequence
numbers live in a per-process dict (the in-memory layer is per-process too).
Nothing is stored.
"""

import datetime as dt
import uuid
from urllib.parse import parse_qs

import jwt
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

SEQ: dict[str, int] = {}


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _group(tenant_id: str, conversation_id) -> str:
    # group names: ASCII alphanumerics, hyphens, underscores, periods; < 100 chars
    raw = f"chat_{tenant_id}_{conversation_id}"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in raw)[:99]


class ChatConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.tenant_id = self.scope["url_route"]["kwargs"]["tenant_id"]
        qs = parse_qs(self.scope.get("query_string", b"").decode())
        token = (qs.get("token") or [""])[0]
        try:
            claims = jwt.decode(token, settings.JWT_SECRET, algorithms=["HS256"],
                                options={"require": ["exp"]})
        except jwt.PyJWTError:
            await self.close(code=4401)
            return
        if str(claims.get("tenant_id")) != self.tenant_id:
            await self.close(code=4403)
            return
        self.user_id = str(claims.get("user_id") or claims.get("sub"))
        self.joined = set()
        await self.accept()
        await self.send_json({
            "type": "connection_established", "message": "Connected to chat service",
            "user_id": self.user_id, "tenant_id": self.tenant_id, "timestamp": _now_iso(),
        })

    async def disconnect(self, code):
        for g in getattr(self, "joined", ()):
            await self.channel_layer.group_discard(g, self.channel_name)

    async def receive_json(self, content, **kwargs):
        t = content.get("type")
        cid = content.get("conversation_id")
        if t == "join_conversation":
            g = _group(self.tenant_id, cid)
            await self.channel_layer.group_add(g, self.channel_name)
            self.joined.add(g)
            await self.send_json({"type": "conversation_joined", "conversation_id": cid,
                                  "last_seq": SEQ.get(g, 0)})
        elif t == "send_message":
            g = _group(self.tenant_id, cid)
            seq = SEQ.get(g, 0) + 1
            SEQ[g] = seq
            message = {
                "id": uuid.uuid4().hex, "conversation_id": cid, "sender_id": self.user_id,
                "content": content.get("content", ""), "message_type": content.get("message_type", "text"),
                "metadata": content.get("metadata") or {}, "seq": seq, "created_at": _now_iso(),
                "edited_at": None, "is_deleted": False, "reply_to": content.get("reply_to"),
                "client_msg_id": content.get("client_msg_id"), "reactions": [],
            }
            await self.channel_layer.group_send(g, {"type": "chat.message", "message": message})
        elif t == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_json({"type": "error", "code": "invalid_message",
                                  "message": f"unknown type {t!r}"})

    async def chat_message(self, event):
        await self.send_json({"type": "new_message", "message": event["message"]})
