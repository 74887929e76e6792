"""The autonomy scheduler: jobs on ENGINE time, one at a time, beside the engine.

``AutonomyService`` reads the time from the engine's ``EngineTick`` events (the close time of the
candle just processed, ms UTC: market time in a replay, so a replay schedules exactly as the
market would have, and a test is deterministic). A job is ``async def job(now_ms: int) -> None``:

- ``every(name, interval_ms, job)``: due at each multiple of ``interval_ms`` since the epoch (UTC);
  the first due time is the first multiple after the first tick seen;
- ``daily(name, "HH:MM", job)``: due once per UTC day at that time.

A tick at or after a job's due time queues one run with ``now_ms`` = that tick's time; the next due
time is the first one after it (missed slots are not run twice: a gap in the data gives one run).
Queued runs go through one task, in order, one at a time (a job never runs beside itself or another
job). A job has at most one run waiting: when it falls due again before that run started, the
waiting run takes the newer time instead of queueing a second one (APScheduler's ``coalesce``), so
a replay at full speed never leaves a backlog of stale runs behind the engine. A job that raises
is logged and the next one runs; nothing here can stop the engine (``drain`` waits for the queue).

``start_autonomy(engine, settings)`` builds the ``Adjuster`` (``autonomy.changes``), attaches it
to the engine (``changes.adjuster_for(engine)``: the TUI and the control socket find it there) and
the service, and registers the helpers' jobs; ``ops.services.start_services`` calls it (daemon and
TUI, not ``amarktai backtest``) and ``AutonomyService.close`` stops it all.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from amarktai_tui.autonomy.changes import Adjuster, attach, detach
from amarktai_tui.autonomy.settings import AutonomySettings
from amarktai_tui.engine.events import EngineTick, EventBus

if TYPE_CHECKING:
    from amarktai_tui.engine.engine import TradingEngine

__all__ = ["DAY_MS", "AutonomyService", "Job", "start_autonomy"]

log = logging.getLogger("amarktai.autonomy")

DAY_MS = 86_400_000
Job = Callable[[int], Awaitable[None]]


@dataclass
class _Entry:
    name: str
    job: Job
    interval_ms: int  # DAY_MS for a daily job
    offset_ms: int  # a daily job's time of day; 0 for ``every``
    next_ms: int | None = None  # the next due time, set at the first tick
    waiting_ms: int | None = None  # the engine time of the run waiting in the queue, if one is

    def first_due(self, now: int) -> int:
        """The first due time strictly after ``now`` on this job's grid."""
        k = (now - self.offset_ms) // self.interval_ms + 1
        return k * self.interval_ms + self.offset_ms


def parse_hhmm(at: str) -> int:
    """``"HH:MM"`` (UTC, 00:00-23:59) -> ms after midnight. Raises ValueError naming the value."""
    hh, sep, mm = at.partition(":")
    if not (sep and hh.isdigit() and mm.isdigit() and len(hh) == 2 and len(mm) == 2):
        raise ValueError(f"{at!r}: expected a UTC time HH:MM")
    h, m = int(hh), int(mm)
    if h > 23 or m > 59:
        raise ValueError(f"{at!r}: expected a UTC time HH:MM, 00:00 to 23:59")
    return (h * 60 + m) * 60_000


class AutonomyService:
    """Runs registered jobs on engine time (module doc). Construct on the engine's loop."""

    def __init__(self, bus: EventBus) -> None:
        self._entries: dict[str, _Entry] = {}
        self._queue: asyncio.Queue[_Entry] = asyncio.Queue()
        self._closers: list[Callable[[], object]] = []
        self._idle = asyncio.Event()
        self._idle.set()
        self.runs = 0  # jobs run so far (failed ones included)
        self.failures = 0
        self.coalesced = 0  # due times folded into a run already waiting
        self.last_tick_ms: int | None = None
        self._unsubscribe = bus.subscribe(EngineTick, self._on_tick)
        self._task: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(self._worker())

    # -- registration ------------------------------------------------------------------------
    def every(self, name: str, interval_ms: int, job: Job) -> None:
        """Run ``job`` every ``interval_ms`` (> 0) of engine time. Raises ValueError for a bad
        interval or a name already registered."""
        if interval_ms <= 0:
            raise ValueError(f"{name}: interval_ms must be > 0, got {interval_ms}")
        self._add(_Entry(name, job, interval_ms, 0))

    def daily(self, name: str, at: str, job: Job) -> None:
        """Run ``job`` once a UTC day at ``at`` (``"HH:MM"``) of engine time. Raises ValueError for
        a bad time or a name already registered."""
        self._add(_Entry(name, job, DAY_MS, parse_hhmm(at)))

    def on_close(self, closer: Callable[[], object]) -> None:
        """Call ``closer`` (a function, or an async one) when the service closes, last added first."""
        self._closers.append(closer)

    @property
    def jobs(self) -> dict[str, int | None]:
        """Each job's next due time (ms UTC), None before the first tick."""
        return {name: e.next_ms for name, e in self._entries.items()}

    def _add(self, entry: _Entry) -> None:
        if entry.name in self._entries:
            raise ValueError(f"a job named {entry.name!r} is registered already")
        if self.last_tick_ms is not None:
            entry.next_ms = entry.first_due(self.last_tick_ms)
        self._entries[entry.name] = entry

    # -- engine time -------------------------------------------------------------------------
    def _on_tick(self, ev: EngineTick) -> None:
        now = ev.ts
        if self.last_tick_ms is not None and now <= self.last_tick_ms:
            return  # another stream's candle closing at the same time: one look per engine time
        self.last_tick_ms = now
        for e in self._entries.values():
            if e.next_ms is None:
                e.next_ms = e.first_due(now)
            elif now >= e.next_ms:
                e.next_ms = e.first_due(now)
                if e.waiting_ms is None:
                    self._idle.clear()
                    self._queue.put_nowait(e)
                else:
                    self.coalesced += 1
                e.waiting_ms = now  # the waiting run takes the newest time

    async def _worker(self) -> None:
        while True:
            entry = await self._queue.get()
            now, entry.waiting_ms = entry.waiting_ms or 0, None
            try:
                await entry.job(now)
            except asyncio.CancelledError:
                raise
            except Exception:  # a failing job is logged; the engine and the other jobs go on
                self.failures += 1
                log.exception("autonomy job %s failed at %d", entry.name, now)
            finally:
                self.runs += 1
                self._queue.task_done()
                if self._queue.empty():
                    self._idle.set()

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every queued run has run (raises TimeoutError after ``timeout`` seconds)."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def close(self) -> None:
        """Stop: no more runs (the one running is cancelled, queued ones dropped), then the closers."""
        self._unsubscribe()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while self._closers:
            closer = self._closers.pop()
            try:
                out = closer()
                if inspect.isawaitable(out):
                    await out
            except Exception:
                log.exception("autonomy closer %r failed", closer)


async def start_autonomy(
    engine: TradingEngine, settings: AutonomySettings
) -> tuple[AutonomyService, Adjuster]:
    """The scheduler and the Adjuster beside ``engine``; the Adjuster is attached to the engine
    (``autonomy.changes.adjuster_for(engine)``) until the service closes."""
    adjuster = Adjuster(engine, settings)
    service = AutonomyService(engine.bus)
    attach(engine, adjuster)
    service.on_close(adjuster.close)  # runs after the line below (closers run last added first)
    service.on_close(lambda: detach(engine))
    try:
        # each registers its job when its section is enabled and closes it with the service
        from amarktai_tui.autonomy import autopilot, healing, learning

        learning.register(service, engine, adjuster, settings)  # when [autonomy.learning] enabled
        healing.register(service, engine, adjuster, settings)  # when [autonomy.healing] enabled
        autopilot.register(service, engine, adjuster, settings)  # when [autonomy.autopilot] enabled
    except BaseException:
        await service.close()
        raise
    return service, adjuster
