"""Event-loop lag: how late the loop wakes a task that asked to sleep for a fixed interval.

The engine, the TUI and the servers share one asyncio loop; a callback that blocks it (a slow
synchronous call, a huge frame) delays everything else. ``LoopLagMonitor`` sleeps
``interval_s`` again and again and records by how much each wake-up came late (seconds,
``loop.time()``), keeping the last ``window`` samples for p50/p99 and passing each one to its
observers (the ``/metrics`` histogram). ``/health`` and the System pane read ``stats()``.

One monitor per loop: ``start_monitor`` starts it (``ops.services``), ``current`` finds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_INTERVAL_S = 0.25
DEFAULT_WINDOW = 240
"""Samples kept: a minute at the default interval."""


@dataclass(frozen=True, slots=True)
class LagStats:
    """Lag over the window, in ms (None before the first sample); ``samples`` in the window;
    ``total`` since the start."""

    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    samples: int
    total: int


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of a non-empty ascending list."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class LoopLagMonitor:
    """Measures the running loop's lag from ``start`` until ``stop``."""

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S, window: int = DEFAULT_WINDOW) -> None:
        if interval_s <= 0 or window < 1:
            raise ValueError(f"interval_s must be > 0 and window >= 1 (got {interval_s}, {window})")
        self.interval_s = interval_s
        self._samples: deque[float] = deque(maxlen=window)
        self._total = 0
        self._observers: list[Callable[[float], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._cache: tuple[int, LagStats] | None = None
        self.sampled = asyncio.Event()
        """Set after each sample (a test waits on it, then clears it)."""

    @property
    def window_s(self) -> float:
        """The span the window covers when the loop keeps up (seconds)."""
        return self.interval_s * (self._samples.maxlen or 0)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start sampling on the running loop (no-op when already running)."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def observe(self, fn: Callable[[float], None]) -> Callable[[], None]:
        """Call ``fn(lag_seconds)`` on every sample; returns the function that removes it."""
        self._observers.append(fn)

        def remove() -> None:
            if fn in self._observers:
                self._observers.remove(fn)

        return remove

    def record(self, lag_s: float) -> None:
        """Add one sample (seconds late, >= 0) and tell the observers."""
        lag_s = max(0.0, lag_s)
        self._samples.append(lag_s)
        self._total += 1
        for fn in tuple(self._observers):
            fn(lag_s)
        self.sampled.set()

    def stats(self) -> LagStats:
        """p50, p99 and max over the window (cached until the next sample: cheap to call often)."""
        cached = self._cache
        if cached is not None and cached[0] == self._total:
            return cached[1]
        ordered = sorted(self._samples)
        if ordered:
            st = LagStats(
                percentile(ordered, 0.5) * 1000,
                percentile(ordered, 0.99) * 1000,
                ordered[-1] * 1000,
                len(ordered),
                self._total,
            )
        else:
            st = LagStats(None, None, None, 0, self._total)
        self._cache = (self._total, st)
        return st

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.interval_s
        while True:
            asked = loop.time()
            await asyncio.sleep(interval)
            self.record(loop.time() - asked - interval)


_MONITORS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopLagMonitor] = weakref.WeakKeyDictionary()


def start_monitor(interval_s: float = DEFAULT_INTERVAL_S, window: int = DEFAULT_WINDOW) -> LoopLagMonitor:
    """The running loop's monitor, started (a new one unless one is running already)."""
    loop = asyncio.get_running_loop()
    monitor = _MONITORS.get(loop)
    if monitor is None or not monitor.running:
        monitor = LoopLagMonitor(interval_s, window)
        _MONITORS[loop] = monitor
        monitor.start()
    return monitor


def current() -> LoopLagMonitor | None:
    """The running loop's monitor while it runs, else None."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    monitor = _MONITORS.get(loop)
    return monitor if monitor is not None and monitor.running else None
