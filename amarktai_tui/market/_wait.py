"""A sleep that a stop event cuts short (shared by the feeds)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

#: ``sleep(seconds)``: asyncio.sleep, or a fake in tests that advances a fake clock.
SleepFn = Callable[[float], Awaitable[object]]


async def sleep_unless_stopped(sleep: SleepFn, seconds: float, stop: asyncio.Event) -> bool:
    """Sleep ``seconds`` via ``sleep`` unless ``stop`` is set first. True if stopped."""
    if stop.is_set():
        return True
    sleeper = asyncio.ensure_future(sleep(max(0.0, seconds)))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((sleeper, stopper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, stopper):
            if not task.done():
                task.cancel()
    if sleeper.done() and not sleeper.cancelled():
        exc = sleeper.exception()
        if exc is not None:
            raise exc
    return stop.is_set()
