"""The health and metrics HTTP server: ``/health``, ``/status``, ``/metrics`` (aiohttp).

The server runs in a thread of its own, with its own event loop, so that a busy or stuck
engine loop cannot delay or silence ``/health``:

- the engine's loop runs the checks (``HealthState.reasons``, from memory: no database query,
  no system call) every ``PUBLISH_EVERY_S`` and publishes the verdict as an immutable
  ``HealthSnapshot`` (one attribute assignment); ``/health`` answers from the latest snapshot at
  once, without touching the engine's loop;
- a snapshot older than ``PUBLISH_EVERY_S`` + ``[health] max_loop_lag_ms`` means the engine's
  loop is not running its tasks: ``/health`` answers 503 ``"loop: engine not responding for N ms"``;
- ``/status`` and ``/metrics`` read engine state, so their work runs on the engine's loop
  (``asyncio.run_coroutine_threadsafe``); past ``ENGINE_TIMEOUT_S`` they answer 503 with one line.
  Nothing in the server thread reads an engine object.
- while serving, the thread switch interval is at most ``SWITCH_INTERVAL_S`` (1 ms), so the
  server thread gets the GIL quickly while the engine computes.

``/health``: 200 ``{"status": "ok"}``, or 503 ``{"status": "unhealthy", "reasons": [...]}``,
one reason per failing check, each starting with the check's name:

- ``engine``: the engine's loop is not running (starting, stopped, or failed);
- ``feed``: the feed ended or is retrying, or (exchange feeds) its newest candle closed more
  than ``[health] stale_candles`` timeframes of its fastest stream ago;
- ``loop``: the event loop's lag p99 over the last minute is above ``max_loop_lag_ms``, or the
  engine's loop has published no snapshot for longer than the limit above;
- ``breaker``: a circuit breaker is tripped (``engine.board.active``: a bot's, the account's,
  the emergency stop) or an exchange API breaker is open;
- ``database``: the data dir cannot take a write (a probe file, the database file's
  permissions) or has less than ``min_free_mb`` free; sampled every ``SAMPLE_EVERY_S`` by a
  background task.

``/status``: the JSON of ``status_json``. ``/metrics``: ``ops.metrics`` in the Prometheus text
format (or OpenMetrics when asked). ``start_health`` serves them; ``ops.services`` calls it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import hdrs, web
from prometheus_client.exposition import choose_encoder

from amarktai_tui.config import HealthSettings, Settings
from amarktai_tui.domain.enums import BotState
from amarktai_tui.domain.types import timeframe_to_ms
from amarktai_tui.exchanges.api_breaker import ApiState
from amarktai_tui.locations import db_path
from amarktai_tui.market.base import FeedState
from amarktai_tui.ops.looplag import LoopLagMonitor
from amarktai_tui.ops.metrics import EngineMetrics
from amarktai_tui.ops.sysinfo import DataDirState, ProcessInfo, ProcessSampler, build_info, data_dir_state

if TYPE_CHECKING:
    from amarktai_tui.engine.engine import TradingEngine

log = logging.getLogger("amarktai.health")

SAMPLE_EVERY_S = 10.0
"""Seconds between two samples of the data dir and the process (a thread does the system calls)."""
_MB = 1_000_000


class HealthState:
    """The checks and the status of one engine, from memory; ``sample`` refreshes the data-dir
    and process figures (call it from a task, not a handler). ``wall_ms`` is the clock (ms UTC)."""

    def __init__(
        self,
        engine: TradingEngine,
        conf: HealthSettings,
        data_dir: Path,
        lag: LoopLagMonitor | None,
        *,
        wall_ms: Callable[[], int] | None = None,
    ) -> None:
        self.engine = engine
        self.conf = conf
        self.data_dir = data_dir
        self.lag = lag
        self._wall = wall_ms or (lambda: int(time.time() * 1000))
        self.started_ms = self._wall()
        self._started = time.monotonic()
        self.disk: DataDirState | None = None
        self.process: ProcessInfo | None = None
        self._sampler = ProcessSampler(data_dir)
        self._min_tf_ms: int | None = None

    async def sample(self) -> None:
        """Probe the data dir and sample the process, in a thread."""
        db = db_path(self.data_dir)
        self.disk, self.process = await asyncio.to_thread(
            lambda: (data_dir_state(self.data_dir, db), self._sampler.sample())
        )

    async def run_sampler(self, every_s: float = SAMPLE_EVERY_S) -> None:
        """``sample`` every ``every_s`` until cancelled (a failed sample is logged and retried)."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.sample()
            except Exception:
                log.exception("health: data-dir sample failed")

    # -- the checks -----------------------------------------------------------------
    def reasons(self) -> list[str]:
        """One line per failing check, ``"<check>: <why>"``; empty when healthy."""
        out: list[str] = []
        e = self.engine
        if not e.running:
            out.append("engine: not running")
        out.extend(f"feed: {why}" for why in self._feed())
        stats = self.lag.stats() if self.lag is not None else None
        if stats is not None and stats.p99_ms is not None and stats.p99_ms > self.conf.max_loop_lag_ms:
            out.append(
                f"loop: event-loop lag p99 {stats.p99_ms:.0f} ms over the last {stats.samples} samples"
                f" (limit {self.conf.max_loop_lag_ms:g} ms)"
            )
        for trip in list(e.board.active.values()):
            runner = e.runners.get(trip.bot_id) if trip.bot_id is not None else None
            scope = f"bot {runner.rec.name}" if runner is not None else trip.scope.value
            out.append(f"breaker: {trip.breaker.value} tripped ({scope}, trip {trip.id}): {trip.message}")
        for ex, h in sorted(e.api_health().items()):
            if h.state is not ApiState.CLOSED:
                out.append(f"breaker: {ex} API breaker {h.state.value}: {h.last_error}")
        disk = self.disk
        if disk is not None:
            if disk.error:
                out.append(f"database: unwritable: {disk.error}")
            elif disk.free_bytes is not None and disk.free_bytes < self.conf.min_free_mb * _MB:
                out.append(
                    f"database: {disk.free_bytes / _MB:.0f} MB free in the data dir"
                    f" (minimum {self.conf.min_free_mb} MB)"
                )
        return out

    def failing(self) -> set[str]:
        """The names of the failing checks (``ops.metrics.HEALTH_CHECKS``)."""
        return {r.partition(":")[0] for r in self.reasons()}

    def _feed(self) -> list[str]:
        e = self.engine
        feed = e.feed
        if feed is None:
            return []  # not started: the engine check says so
        st = feed.status()
        if st.state is FeedState.ENDED:
            return [f"{st.source} feed ended ({st.detail})" if st.detail else f"{st.source} feed ended"]
        if st.state is FeedState.RETRYING:
            return [f"{st.source} feed retrying: {st.detail}"]
        if not e.realtime:
            return []  # a replay runs on market time: no wall-clock age
        tf = self._fastest_ms()
        if tf is None:
            return []
        limit = self.conf.stale_candles * tf
        ref = e.now_ms or self.started_ms
        age = self._wall() - ref
        if age <= limit:
            return []
        what = "newest candle closed" if e.now_ms else "no candle since the start,"
        return [f"{st.source} feed stale: {what} {age / 1000:.0f} s ago (limit {limit / 1000:.0f} s)"]

    def _fastest_ms(self) -> int | None:
        if self._min_tf_ms is None:
            feed = self.engine.feed
            tfs = [timeframe_to_ms(tf) for _, tf in feed.streams] if feed is not None else []
            self._min_tf_ms = min(tfs) if tfs else None
        return self._min_tf_ms

    # -- /status ----------------------------------------------------------------------
    def status_json(self) -> dict[str, Any]:
        """The ``/status`` document (money as quote-currency strings, times in ms UTC)."""
        reasons = self.reasons()
        stats = self.lag.stats() if self.lag is not None else None
        disk = self.disk
        return {
            "status": "unhealthy" if reasons else "ok",
            "reasons": reasons,
            **engine_status(self.engine),
            "loop_lag_ms": None
            if stats is None
            else {"p50": stats.p50_ms, "p99": stats.p99_ms, "max": stats.max_ms, "samples": stats.samples},
            "process": self.process.to_json() if self.process is not None else None,
            "data_dir": {
                "path": str(self.data_dir),
                "free_bytes": disk.free_bytes if disk is not None else None,
                "writable": disk.writable if disk is not None else None,
            },
            "uptime_s": round(time.monotonic() - self._started, 3),
            "build": build_info().to_json(),
        }


def engine_status(engine: TradingEngine) -> dict[str, Any]:
    """The engine's state from memory: mode, running, money (quote strings), bots by state,
    candles and fills of this run, the newest candle's close and the last trade (ms UTC), the feed,
    active breaker trips, exchange API health, and the errors in effect (``errors``: bots in
    ERROR, the exchange APIs' last errors, a retrying feed; newest knowledge, not a history)."""
    e = engine
    runners = list(e.runners.values())
    states = dict.fromkeys((s.value for s in BotState), 0)
    for r in runners:
        states[r.rec.state.value] += 1
    last = e.fill_log[-1] if e.fill_log else None
    names = {r.rec.id: r.rec.name for r in runners}
    errors = [f"bot {r.rec.name}: {r.rec.state_reason}" for r in runners if r.rec.state is BotState.ERROR]
    api = e.api_health()
    errors += [f"{ex} API: {h.last_error}" for ex, h in sorted(api.items()) if h.last_error]
    feed = e.feed.status() if e.feed is not None else None
    if feed is not None and feed.state is FeedState.RETRYING:
        errors.append(f"{feed.source} feed: {feed.detail}")
    return {
        "mode": e.mode.value,
        "running": e.running,
        "quote_currency": e.quote_currency,
        "equity": str(e.account_equity()),
        "realised_pnl": str(sum((r.stats.realised for r in runners), Decimal(0))),
        "unrealised_pnl": str(sum((r.unrealised() for r in runners), Decimal(0))),
        "today_pnl": str(e.today_pnl()),
        "pool": str(e.pool),
        "bots": {"total": len(runners), "by_state": states},
        "candles": e.candles_seen,
        "fills": e.fills_seen,
        "last_candle_close_ms": e.now_ms or None,
        "last_trade": None
        if last is None
        else {
            "ts": last.ts,
            "bot": names.get(last.bot_id, str(last.bot_id)),
            "pair": last.pair,
            "side": last.side.value,
            "quantity": str(last.quantity),
            "price": str(last.price),
        },
        "feed": None
        if feed is None
        else {
            "source": feed.source,
            "state": feed.state.value,
            "progress": feed.progress,
            "speed": feed.speed,
            "detail": feed.detail,
        },
        "breakers": [
            {
                "id": t.id,
                "breaker": t.breaker.value,
                "scope": t.scope.value,
                "bot": names.get(t.bot_id) if t.bot_id is not None else None,
                "since_ms": t.ts,
                "message": t.message,
            }
            for t in list(e.board.active.values())
        ],
        "exchanges": {
            ex: {
                "state": h.state.value,
                "consecutive_failures": h.consecutive_failures,
                "last_error": h.last_error,
                "latency_p50_ms": h.latency_p50_ms,
                "latency_p99_ms": h.latency_p99_ms,
                "calls": h.calls,
                "errors": h.errors,
            }
            for ex, h in sorted(api.items())
        },
        "errors": errors,
    }


# -- the server -------------------------------------------------------------------------
PUBLISH_EVERY_S = 0.25
"""Seconds between two health snapshots published by the engine's loop."""
ENGINE_TIMEOUT_S = 2.0
"""Seconds ``/status`` and ``/metrics`` wait for the engine's loop before answering 503."""
STOP_TIMEOUT_S = 5.0
"""Seconds ``close`` waits for the server thread to end."""
SWITCH_INTERVAL_S = 0.001
"""While serving, the interpreter's thread switch interval (``sys.setswitchinterval``) is at most
this. A request wakes the server thread a few times (poll, read, write); each time, while the
engine computes, it waits up to the switch interval for the GIL. Python's default (5 ms) put
``/health``'s p99 at 17-26 ms under a full-speed replay, 1 ms at 4-7 ms; when no other thread
wants the GIL the interval costs nothing (``bench/health_latency.py``)."""
_NO_STORE = {"Cache-Control": "no-store"}
_T = TypeVar("_T")


def _health_body(reasons: Sequence[str]) -> bytes:
    doc = {"status": "unhealthy", "reasons": list(reasons)} if reasons else {"status": "ok"}
    return json.dumps(doc).encode()


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """The checks' verdict at one moment, ready to send: ``reasons`` (empty when healthy),
    ``taken`` (``time.monotonic()``, seconds), and the ``/health`` answer (``code``, JSON ``body``).
    Built on the engine's loop, read by the server thread: immutable, swapped whole."""

    reasons: tuple[str, ...]
    taken: float
    code: int
    body: bytes

    @classmethod
    def of(cls, reasons: Sequence[str], taken: float) -> HealthSnapshot:
        return cls(tuple(reasons), taken, 503 if reasons else 200, _health_body(reasons))


class EngineNotResponding(Exception):
    """The engine's loop did not run a request's work in time (or is closed); ``str`` is one line."""


class HealthService:
    """The server: a thread with its own event loop serves HTTP; the engine's loop publishes a
    ``HealthSnapshot`` every ``publish_every_s`` and samples the data dir (``HealthState``).

    ``/health`` answers from the latest snapshot without touching the engine's loop, so it stays
    fast while the engine is busy and turns 503 when the snapshot is older than
    ``publish_every_s`` + ``[health] max_loop_lag_ms`` (the engine's loop is stuck). ``/status``
    and ``/metrics`` run their reads on the engine's loop (``run_coroutine_threadsafe``) and answer
    503 with one line after ``engine_timeout_s``. ``port`` is None when not serving.
    """

    def __init__(
        self,
        state: HealthState,
        metrics: EngineMetrics,
        *,
        publish_every_s: float = PUBLISH_EVERY_S,
        engine_timeout_s: float = ENGINE_TIMEOUT_S,
    ) -> None:
        self.state = state
        self.metrics = metrics
        self.publish_every_s = publish_every_s
        self.engine_timeout_s = engine_timeout_s
        self.stale_after_s = publish_every_s + state.conf.max_loop_lag_ms / 1000
        """A snapshot older than this (seconds) makes ``/health`` answer "engine not responding"."""
        self.snapshot = HealthSnapshot.of(("engine: no health snapshot yet",), time.monotonic())
        self.published = asyncio.Event()
        """Set after each snapshot (a test clears it, then waits on it)."""
        self.host: str | None = None
        self.port: int | None = None
        self._engine_loop: asyncio.AbstractEventLoop | None = None
        self._http_loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._check_error: str | None = None
        self._saved_switch: float | None = None

    @property
    def url(self) -> str | None:
        """``http://host:port`` while serving."""
        if self.port is None or self.host is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def thread(self) -> threading.Thread | None:
        """The server thread while it exists (``close`` joins it)."""
        return self._thread

    # -- on the engine's loop ---------------------------------------------------------------
    def publish(self) -> HealthSnapshot:
        """Run the checks and make the result the snapshot ``/health`` answers from.
        Checks that raise are logged once and published as an ``engine`` reason."""
        try:
            reasons = self.state.reasons()
            self._check_error = None
        except Exception as exc:
            why = f"engine: health checks failed: {type(exc).__name__}: {exc}"
            if why != self._check_error:
                log.exception("health: the checks failed")
            self._check_error = why
            reasons = [why]
        snap = HealthSnapshot.of(reasons, time.monotonic())
        self.snapshot = snap  # one attribute assignment: the server thread sees the old or the new
        self.published.set()
        return snap

    async def _publish_forever(self) -> None:
        while True:
            await asyncio.sleep(self.publish_every_s)
            self.publish()

    async def start(self, host: str, port: int) -> None:
        """Publish a first snapshot, listen on ``host:port`` (0: any free port) in a new thread,
        then publish and sample in the background. Call on the engine's loop. Raises OSError."""
        self._engine_loop = asyncio.get_running_loop()
        self.publish()
        loop = asyncio.new_event_loop()
        bound: concurrent.futures.Future[tuple[str, int]] = concurrent.futures.Future()
        thread = threading.Thread(
            target=self._thread_main, args=(loop, host, port, bound), name="health-http", daemon=True
        )
        self._http_loop, self._thread, self._stop = loop, thread, asyncio.Event()
        thread.start()
        try:
            host_port = await asyncio.wrap_future(bound)
        except BaseException:
            await self._stop_thread()
            raise
        self.host, self.port = host_port
        if sys.getswitchinterval() > SWITCH_INTERVAL_S:
            self._saved_switch = sys.getswitchinterval()
            sys.setswitchinterval(SWITCH_INTERVAL_S)
        engine_loop = self._engine_loop
        self._tasks = [
            engine_loop.create_task(self._publish_forever(), name="health-publisher"),
            engine_loop.create_task(self.state.run_sampler(), name="health-sampler"),
        ]

    async def close(self) -> None:
        """Stop the server thread (joined, at most ``STOP_TIMEOUT_S``), then the publisher and
        the sampler, and unsubscribe the metrics; restore the switch interval (unless someone
        changed it since). Call on the engine's loop."""
        await self._stop_thread()
        saved, self._saved_switch = self._saved_switch, None
        if saved is not None and sys.getswitchinterval() == SWITCH_INTERVAL_S:
            sys.setswitchinterval(saved)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.metrics.close()

    async def _stop_thread(self) -> None:
        thread, loop = self._thread, self._http_loop
        self.port = None
        if thread is None or loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the thread's loop is closed: it has ended
            loop.call_soon_threadsafe(self._stop.set)
        await asyncio.to_thread(thread.join, STOP_TIMEOUT_S)
        if thread.is_alive():
            log.error("health server thread did not stop within %g s", STOP_TIMEOUT_S)
            return
        self._thread = self._http_loop = None

    # -- in the server thread ---------------------------------------------------------------
    def _thread_main(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        bound: concurrent.futures.Future[tuple[str, int]],
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(host, port, bound))
        except BaseException as exc:
            if not bound.done():
                bound.set_exception(exc)
            else:
                log.exception("health server failed")
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    async def _serve(self, host: str, port: int, bound: concurrent.futures.Future[tuple[str, int]]) -> None:
        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, host, port, reuse_address=True).start()
            except OSError as exc:
                bound.set_exception(exc)
                return
            addr = runner.addresses[0]
            bound.set_result((str(addr[0]), int(addr[1])))
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/status", self._status)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _health(self, _request: web.Request) -> web.Response:
        snap = self.snapshot
        age_s = time.monotonic() - snap.taken
        if age_s <= self.stale_after_s:
            return web.Response(
                body=snap.body, status=snap.code, content_type="application/json", headers=_NO_STORE
            )
        stuck = (
            f"loop: engine not responding for {age_s * 1000:.0f} ms"
            f" (limit {self.stale_after_s * 1000:.0f} ms)"
        )
        return web.Response(
            body=_health_body([stuck, *snap.reasons]),
            status=503,
            content_type="application/json",
            headers=_NO_STORE,
        )

    async def _status(self, _request: web.Request) -> web.Response:
        try:
            doc = await self._on_engine(self.state.status_json, "/status")
        except EngineNotResponding as exc:
            doc = {"status": "unhealthy", "reasons": [f"loop: {exc}"]}
            return web.json_response(doc, status=503, headers=_NO_STORE)
        return web.json_response(doc, headers=_NO_STORE)

    async def _metrics(self, request: web.Request) -> web.Response:
        accept = ",".join(request.headers.getall(hdrs.ACCEPT, []))
        names = request.query.getall("name[]", [])
        registry = self.metrics.registry

        def render() -> tuple[bytes, str]:  # runs on the engine's loop: the collectors read the engine
            encoder, content_type = choose_encoder(accept)
            return encoder(registry.restricted_registry(names) if names else registry), content_type

        try:
            body, content_type = await self._on_engine(render, "/metrics")
        except EngineNotResponding as exc:
            return web.Response(text=f"{exc}\n", status=503, headers=_NO_STORE)
        response = web.Response(body=body, headers={"Content-Type": content_type, **_NO_STORE})
        response.enable_compression()
        return response

    async def _on_engine(self, fn: Callable[[], _T], what: str) -> _T:
        """``fn()`` run on the engine's loop; raises EngineNotResponding after ``engine_timeout_s``."""

        async def call() -> _T:
            return fn()

        engine_loop = self._engine_loop
        assert engine_loop is not None  # set by start, before the thread
        coro = call()
        try:
            future = asyncio.run_coroutine_threadsafe(coro, engine_loop)
        except RuntimeError:  # the engine's loop is closed
            coro.close()
            raise EngineNotResponding(f"engine not running: {what} cannot be answered") from None
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.engine_timeout_s)
        except TimeoutError:
            raise EngineNotResponding(
                f"engine not responding: {what} not answered within {self.engine_timeout_s:g} s"
            ) from None


async def start_health(
    engine: TradingEngine,
    settings: Settings,
    data_dir: Path,
    lag: LoopLagMonitor | None,
    *,
    engine_timeout_s: float = ENGINE_TIMEOUT_S,
) -> HealthService:
    """Serve ``/health``, ``/status`` and ``/metrics`` for ``engine`` on ``[health] host:port``,
    from a thread of its own. Call on the engine's loop; ``close`` the result on the same loop.

    A port that cannot be bound (in use, no permission) is logged as an error and nothing is
    served (``port`` None): the engine trades on; a scraper sees the target down. The data dir is
    sampled once before the server answers, then every ``SAMPLE_EVERY_S``.
    """
    conf = settings.health
    state = HealthState(engine, conf, data_dir, lag)
    await state.sample()
    metrics = EngineMetrics(engine, lag, failing=state.failing)
    service = HealthService(state, metrics, engine_timeout_s=engine_timeout_s)
    try:
        await service.start(conf.host, conf.port)
    except OSError as exc:
        log.error("health server not started: cannot listen on %s:%s: %s", conf.host, conf.port, exc)
        metrics.close()
        return service
    log.info("health server on %s (/health, /status, /metrics)", service.url)
    return service
