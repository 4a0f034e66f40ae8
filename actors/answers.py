"""How a loop-hosted actor answers a call that needs I/O without ever awaiting: start the I/O,
then finish the call as one of the actor's own messages (``LoopActor.run_io``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from actors.delivery import storage_failure
from actors.errors import ChatError
from actors.runtime import LoopFuture

logger = logging.getLogger(__name__)


class AnswersAfterIO:
    """Mixin for a ``LoopActor`` that also ``RetiresWhenIdle``: I/O under way keeps it busy."""

    _busy = 0  # I/O calls under way

    def _io(
        self,
        awaitable: Awaitable[Any],
        then: Callable[[Any, BaseException | None], Any],
        on_error: Callable[[BaseException], None] | None = None,
    ) -> LoopFuture:
        """Run I/O, then ``then(result, None)`` as a message; its return value (or error) is the answer.

        A failed I/O skips ``then``: ``on_error`` undoes what the call had already changed.
        """
        reply = LoopFuture()
        self._busy += 1
        self._cancel_idle()

        def done(result, error):
            self._busy -= 1
            try:
                if error is not None:
                    if on_error is not None:
                        on_error(error)
                    raise storage_failure(error)
                answer = then(result, None)
                if isinstance(answer, LoopFuture):  # answered once a follow-up write is done
                    answer.forward_to(reply)
                else:
                    reply.set(answer)
            except ChatError:
                reply.set_exception()
            except Exception:
                logger.exception("failed in %s", self)
                reply.set_exception((ChatError, ChatError(), None))
            finally:
                self._maybe_idle()

        self.run_io(awaitable, done)
        return reply

    @staticmethod
    def _answered(value: Any) -> LoopFuture:
        reply = LoopFuture()
        reply.set(value)
        return reply
