"""The health and metrics HTTP server: ``/health``, ``/status``, ``/metrics`` (aiohttp).

Every answer is computed from memory (the engine's state, the loop-lag monitor, the last
data-dir sample): no database query and no system call in a handler, so ``/health`` answers in
well under 10 ms even while a replay runs at full speed on the same loop.

``/health``: 200 ``{"status": "ok"}``, or 503 ``{"status": "unhealthy", "reasons": [...]}``,
one reason per failing check, each starting with the check's name:

- ``engine``: the engine's loop is not running (starting, stopped, or failed);
- ``feed``: the feed ended or is retrying, or (exchange feeds) its newest candle closed more
  than ``[health] stale_candles`` timeframes of its fastest stream ago;
- ``loop``: the event loop's lag p99 over the last minute is above ``max_loop_lag_ms``;
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
import contextlib
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

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
_NO_STORE = {"Cache-Control": "no-store"}


def make_app(state: HealthState, metrics: EngineMetrics) -> web.Application:
    """The aiohttp application: GET (and HEAD) ``/health``, ``/status``, ``/metrics``."""

    async def health(_request: web.Request) -> web.Response:
        reasons = state.reasons()
        if reasons:
            return web.json_response(
                {"status": "unhealthy", "reasons": reasons}, status=503, headers=_NO_STORE
            )
        return web.json_response({"status": "ok"}, headers=_NO_STORE)

    async def status(_request: web.Request) -> web.Response:
        return web.json_response(state.status_json(), headers=_NO_STORE)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    return app


class HealthService:
    """A running server (``port`` is None when it could not listen) and its sampler task."""

    def __init__(self, state: HealthState, metrics: EngineMetrics) -> None:
        self.state = state
        self.metrics = metrics
        self.host: str | None = None
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._sampler: asyncio.Task[None] | None = None

    @property
    def url(self) -> str | None:
        """``http://host:port`` while serving."""
        if self.port is None or self.host is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (0: any free port), then sample in the background. Raises OSError."""
        runner = web.AppRunner(make_app(self.state, self.metrics), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, reuse_address=True)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound = runner.addresses[0]
        self.host, self.port = str(bound[0]), int(bound[1])
        self._sampler = asyncio.get_running_loop().create_task(
            self.state.run_sampler(), name="health-sampler"
        )

    async def close(self) -> None:
        """Stop serving and sampling, and unsubscribe the metrics."""
        sampler, self._sampler = self._sampler, None
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self.metrics.close()
        self.port = None


async def start_health(
    engine: TradingEngine, settings: Settings, data_dir: Path, lag: LoopLagMonitor | None
) -> HealthService:
    """Serve ``/health``, ``/status`` and ``/metrics`` for ``engine`` on ``[health] host:port``.

    A port that cannot be bound (in use, no permission) is logged as an error and nothing is
    served (``port`` None): the engine trades on; a scraper sees the target down. The data dir is
    sampled once before the server answers, then every ``SAMPLE_EVERY_S``.
    """
    conf = settings.health
    state = HealthState(engine, conf, data_dir, lag)
    await state.sample()
    metrics = EngineMetrics(engine, lag, failing=state.failing)
    service = HealthService(state, metrics)
    try:
        await service.start(conf.host, conf.port)
    except OSError as exc:
        log.error("health server not started: cannot listen on %s:%s: %s", conf.host, conf.port, exc)
        metrics.close()
        return service
    log.info("health server on %s (/health, /status, /metrics)", service.url)
    return service
