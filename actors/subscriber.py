"""What actors need of a live connection; the WebSocket handler provides it."""

from __future__ import annotations

from typing import Protocol

from actors.principal import Principal


class Subscriber(Protocol):
    principal: Principal
    conn_id: str

    def send(self, data: bytes) -> None:
        """Queue an encoded event; loop thread only; never raises for a closed socket."""
