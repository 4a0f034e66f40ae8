"""Who is typing in one conversation, with the timers that make it expire on its own.

Owned by a ``ConversationActor`` and run on the loop thread like it; timers come from the
actor's ``call_later`` so an expiry is handled as one of its messages. Only changes are
announced: a refresh just pushes the expiry back.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any


class TypingState:
    def __init__(self, ttl_secs: float, call_later: Callable[[float, Callable[[], None]], Any], announce: Callable[[str, bool], None]) -> None:
        self._ttl_secs = ttl_secs
        self._call_later = call_later
        self._announce = announce  # (user_id, is_typing), on every change
        self._timers: dict[str, tuple[int, Any]] = {}  # user_id -> (token, timer)
        self._tokens = itertools.count()

    def __bool__(self) -> bool:
        return bool(self._timers)

    def __contains__(self, user_id: str) -> bool:
        return user_id in self._timers

    def set(self, user_id: str, is_typing: bool) -> None:
        previous = self._timers.pop(user_id, None)
        if previous is not None:
            previous[1].cancel()
        if is_typing:
            token = next(self._tokens)
            self._timers[user_id] = (token, self._call_later(self._ttl_secs, lambda: self._expired(user_id, token)))
        if (previous is not None) != is_typing:
            self._announce(user_id, is_typing)

    def clear(self) -> None:
        """Forget everyone, silently (the actor is going)."""
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _expired(self, user_id: str, token: int) -> None:
        current = self._timers.get(user_id)
        if current is not None and current[0] == token:
            self.set(user_id, False)
