"""Helpers shared by the delivery tests (tests/test_delivery_*.py): joins, bulk sends, history."""

from __future__ import annotations

from typing import Any

from tests.support.client import DEFAULT_WAIT_SECS, Api, Socket, unique


async def join(sock: Socket, conversation_id: str, since_seq: int | None = None) -> dict:
    """Join and return ``conversation_joined``; replayed messages follow it on the socket."""
    fields: dict[str, Any] = {"conversation_id": conversation_id}
    if since_seq is not None:
        fields["since_seq"] = since_seq
    return await sock.request("join_conversation", "conversation_joined", **fields)


async def next_messages(sock: Socket, count: int, *, timeout: float = DEFAULT_WAIT_SECS) -> list[dict]:
    """The next ``count`` ``new_message`` objects in arrival order (other events are skipped)."""
    return [(await sock.next("new_message", timeout=timeout))["message"] for _ in range(count)]


def send_many(sock: Socket, conversation_id: str, texts: list[str], *, prefix: str | None = None) -> list[str]:
    """Fire ``send_message`` frames without waiting; returns their request ids (acks carry them)."""
    prefix = prefix or unique("bulk")
    request_ids = []
    for n, text in enumerate(texts):
        request_id = f"{prefix}-{n}"
        sock.send_type("send_message", conversation_id=conversation_id, content=text, request_id=request_id)
        request_ids.append(request_id)
    return request_ids


async def acks(sock: Socket, request_ids: list[str], *, timeout: float = DEFAULT_WAIT_SECS) -> list[dict]:
    """The answers (``new_message`` or ``error``) to ``request_ids``, in request order."""
    wanted = set(request_ids)
    answers: dict[str, dict] = {}
    deadline_each = timeout
    while len(answers) < len(wanted):
        event = await sock.next(timeout=deadline_each)
        if event.get("request_id") in wanted and event["type"] in ("new_message", "error"):
            answers[event["request_id"]] = event
    return [answers[r] for r in request_ids]


async def messages_route(api: Api, conversation_id: str) -> bool:
    """Whether the REST messages resource exists in this build (another change adds it)."""
    status, body = await api.get(f"conversations/{conversation_id}/messages/")
    if status == 404 and isinstance(body, dict) and body.get("error", {}).get("message") == "No such endpoint":
        return False
    return True


async def rest_history(api: Api, conversation_id: str) -> list[dict]:
    """Every message over REST, oldest first, following the cursor links whatever their shape."""
    seen: dict[int, dict] = {}
    path = f"conversations/{conversation_id}/messages/?limit=100"
    for _ in range(1000):
        status, body = await api.get(path)
        assert status == 200, (status, body)
        results = body["results"] if isinstance(body, dict) else body
        for message in results:
            seen[message["seq"]] = message
        link = body.get("next") if isinstance(body, dict) else None
        if not link or not results:
            break
        if link.startswith("?"):
            path = f"conversations/{conversation_id}/messages/{link}"
        else:
            path = api.server.http_url + link if link.startswith("/") else link
    return [seen[seq] for seq in sorted(seen)]


async def stream_until(sock: Socket, last_seq: int, *, timeout: float = DEFAULT_WAIT_SECS) -> list[dict]:
    """The socket's stream events (those with a ``seq``) in arrival order, up to ``last_seq``,
    without the ``request_id`` a requester's own copy carries."""
    events: list[dict] = []
    while not events or events[-1]["seq"] < last_seq:
        event = await sock.next(timeout=timeout)
        if "seq" in event:
            events.append({k: v for k, v in event.items() if k != "request_id"})
    return events
