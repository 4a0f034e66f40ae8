"""Actors hosted on a test's own asyncio loop, in-process, with no server."""

from __future__ import annotations

import functools

import pykka

from actors.runtime import bind_loop


def on_loop(test):
    """Host actors on the test's own loop, and stop every one before that loop closes.

    The test keeps its fixtures: they are passed through by name."""

    @functools.wraps(test)
    async def run(**fixtures):
        bind_loop()
        try:
            await test(**fixtures)
        finally:
            stopping = [ref.stop(block=False) for ref in pykka.ActorRegistry.get_all()]
            for stopped in stopping:
                await stopped

    return run
