"""Retirement of idle actors: a loop-hosted actor stops after ``ACTOR_IDLE_SECS`` with nothing to do."""

from __future__ import annotations


class RetiresWhenIdle:
    """Mixin for a ``LoopActor`` with ``_settings``. Subclasses say what keeps them busy
    (``_is_busy``) and how they leave (``_retire``); call ``_maybe_idle`` whenever work ends
    and ``_cancel_idle`` when work starts."""

    _idle_timer = None
    _idle_token = 0

    def _is_busy(self) -> bool:
        raise NotImplementedError

    def _retire(self) -> None:
        raise NotImplementedError

    def _maybe_idle(self) -> None:
        if self._is_busy() or self._idle_timer is not None or self.actor_stopped.is_set():
            return
        self._idle_token += 1
        token = self._idle_token
        self._idle_timer = self.call_later(self._settings.actor_idle_secs, lambda: self._idle_expired(token))

    def _cancel_idle(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _idle_expired(self, token: int) -> None:
        if token != self._idle_token or self._idle_timer is None:
            return  # cancelled, or superseded by a newer timer
        self._idle_timer = None
        if not self._is_busy():
            self._retire()
