"""No ``Server`` header on any answer: Tornado's names its exact version, which only helps
someone matching known exploits to the server."""

from __future__ import annotations


class Unbranded:
    """Mix in before a Tornado handler class; ``clear()`` calls this for every answer, errors included."""

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.clear_header("Server")
