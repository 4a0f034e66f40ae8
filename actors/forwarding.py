"""Calls to a conversation's actor on another node: writes, run by the owner, and questions a
node's live actor answers (``LIVE_ONLY``).

The asking node sends the method's name and its arguments: the principal as its fields, the
asking socket as its id. On the owner the socket becomes a ``RemoteOrigin``: what the actor
sends it (its own copy of the event, with its ``request_id``) travels back with the answer,
and the asking node hands it to the socket in stream order (``FollowsOtherNodes.deliver_answer``).
Errors come back as the client-visible error they were. A write that gets no answer is
reported ``storage_unavailable``: it may have been stored, so the client retries it with its
``client_msg_id``, which is safe on any node.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from actors.conversation import ConversationActor
from actors.errors import ChatError, InvalidMessage, StorageUnavailable
from actors.principal import Principal
from actors.stats import STATS
from cluster.calls import NoAnswer, RemoteError

# The methods that change a conversation: run by its owner. Joining, leaving and replays are
# served by the node the socket is on.
FORWARDED = frozenset(
    method.__name__
    for method in (
        ConversationActor.send,
        ConversationActor.edit,
        ConversationActor.delete,
        ConversationActor.react,
        ConversationActor.unreact,
        ConversationActor.typing,
        ConversationActor.mark_read,
        ConversationActor.add_participant,
        ConversationActor.remove_participant,
        ConversationActor.update_details,
        ConversationActor.delete_conversation,
    )
)

# Served by the node's live actor, never one started for them (none live: the answer is None):
# typing across nodes (``actors.typing_nodes``).
LIVE_ONLY = frozenset(method.__name__ for method in (ConversationActor.unjoined_on, ConversationActor.has_joined))

# How long a node waits for another to answer a ``LIVE_ONLY`` question: it is answered from memory.
QUESTION_TIMEOUT_SECS = 2.0

NO_ANSWER = "The conversation's node did not answer; not acknowledged: retry with the same client_msg_id"


class RemoteOrigin:
    """A socket on another node, as the owner's actor sees it (``actors.subscriber.Subscriber``)."""

    def __init__(self, conn_id: str, principal: Principal) -> None:
        self.conn_id = conn_id
        self.principal = principal
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sent.append(data)


def _is_socket(value: Any) -> bool:
    return hasattr(value, "conn_id") and hasattr(value, "send")


def encode_call(tenant_id: str, conversation_id: str, method_name: str, args: tuple) -> dict:
    encoded = []
    for arg in args:
        if isinstance(arg, Principal):
            encoded.append({"principal": dataclasses.astuple(arg)})
        elif _is_socket(arg):
            encoded.append({"origin": arg.conn_id})
        else:
            encoded.append({"value": arg})
    return {"conversation": [tenant_id, conversation_id], "method": method_name, "args": encoded}


def decode_call(body: dict) -> tuple[str, str, Any, list, RemoteOrigin | None]:
    """``(tenant_id, conversation_id, method, args, origin)`` of a forwarded call."""
    name = body["method"]
    if name not in FORWARDED and name not in LIVE_ONLY:
        raise InvalidMessage(f"{name} is not forwarded")
    args, origin, principal = [], None, None
    for arg in body["args"]:
        if "principal" in arg:
            principal = Principal(*arg["principal"])
            args.append(principal)
        elif "origin" in arg:
            origin = RemoteOrigin(arg["origin"], principal)
            args.append(origin)
        else:
            args.append(arg["value"])
    tenant_id, conversation_id = body["conversation"]
    return tenant_id, conversation_id, getattr(ConversationActor, name), args, origin


async def forward(directory, node_id: str, tenant_id: str, conversation_id: str, method, args: tuple) -> Any:
    """Run ``method`` on the owner ``node_id``; its answers for the asking socket are handed on."""
    cluster = directory.cluster
    STATS.forwarded += 1
    body = encode_call(tenant_id, conversation_id, method.__name__, args)
    try:
        result, answers = await cluster.calls.request(node_id, body, cluster.call_timeout_secs)
    except RemoteError as error:
        raise ChatError.from_dict(error.error) from None
    except NoAnswer:
        raise StorageUnavailable(NO_ANSWER) from None
    socket = next((arg for arg in args if _is_socket(arg)), None)
    for seq, data in answers or ():
        directory.deliver_answer(tenant_id, conversation_id, socket, seq, data.encode())
    return result


def tell_live(cluster, node_id: str, tenant_id: str, conversation_id: str, method, args: tuple) -> None:
    """Have ``node_id``'s live actor run ``method``; nothing is answered."""
    cluster.calls.tell(node_id, encode_call(tenant_id, conversation_id, method.__name__, args))


async def ask_live(cluster, node_id: str, tenant_id: str, conversation_id: str, method, args: tuple) -> Any:
    """``method``'s answer from ``node_id``'s live actor; None when it has none or did not answer in time."""
    try:
        result, _ = await cluster.calls.request(node_id, encode_call(tenant_id, conversation_id, method.__name__, args), QUESTION_TIMEOUT_SECS)
    except (NoAnswer, RemoteError):
        return None
    return result


async def serve_forwarded(directory, body: dict) -> tuple[Any, list]:
    """Run a call another node forwarded; answer ``(result, [(seq, data), ...])``, the data being
    what the actor sent the asking socket."""
    tenant_id, conversation_id, method, args, origin = decode_call(body)
    if method.__name__ in LIVE_ONLY:
        return await directory.call_if_live(tenant_id, conversation_id, method, *args), []
    result = await directory.call_here(tenant_id, conversation_id, method, *args)
    sent = origin.sent if origin is not None else []
    return result, [(orjson.loads(data).get("seq"), data.decode()) for data in sent]
