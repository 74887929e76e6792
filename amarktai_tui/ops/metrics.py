"""Prometheus metrics of one engine, in its own ``CollectorRegistry`` (never the global one).

Counted from bus events (``EngineMetrics`` subscribes while it is open):

- ``amarktai_orders_total{result, gate}``: ``result="filled"`` per fill (``OrderFilled``; a
  live order filled in parts counts each part), else the order's end state from
  ``OrderRejected`` (``rejected`` / ``cancelled`` / ``expired``) with the refusing ``gate``
  (a risk gate, ``broker``, or ``""``).
- ``amarktai_event_loop_lag_seconds``: histogram of the loop-lag samples (``ops.looplag``).

Read from the engine's memory at each scrape (``_EngineCollector``; no database query):
equity, realised/unrealised/today's PnL and the unallocated pool (quote currency, label
``currency``), each bot's equity, bots by state, active breaker trips, candles processed, the
newest candle's close time, the feed's state, the trading mode, the loop lag p50/p99 over the
monitor's window, per-exchange API health (breaker state, consecutive failures, calls, errors,
latency p50/p99 in seconds), and the ``/health`` checks (1 = failing). Plus the process
(``process_*``), Python (``python_info``) and build (``amarktai_build_info``) collectors.
Money goes out as floats: metrics are for watching, the ledger holds the exact figures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from amarktai_tui.domain.enums import BotState
from amarktai_tui.engine.events import OrderFilled, OrderRejected
from amarktai_tui.exchanges.api_breaker import ApiHealth, ApiState
from amarktai_tui.market.base import FeedState
from amarktai_tui.ops.looplag import LoopLagMonitor
from amarktai_tui.ops.sysinfo import build_info

if TYPE_CHECKING:
    from amarktai_tui.engine.engine import TradingEngine

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Loop-lag histogram buckets (seconds)."""
HEALTH_CHECKS = ("engine", "feed", "loop", "breaker", "database")
"""The ``/health`` checks, as ``amarktai_health_check_failing{check}`` labels."""

ApiHealthFn = Callable[[], Mapping[str, ApiHealth]]
FailingFn = Callable[[], set[str]]


class EngineMetrics:
    """The registry of one engine: event counters, the lag histogram and the engine collector.

    ``api_health`` defaults to ``engine.api_health``; ``failing`` returns the names of the
    failing ``/health`` checks (``HEALTH_CHECKS``). ``close`` unsubscribes from the bus.
    """

    def __init__(
        self,
        engine: TradingEngine,
        lag: LoopLagMonitor | None = None,
        *,
        api_health: ApiHealthFn | None = None,
        failing: FailingFn | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.orders = Counter(
            "amarktai_orders", "Orders by result (filled: per fill) and refusing gate", ["result", "gate"],
            registry=reg,
        )  # fmt: skip
        self.loop_lag = Histogram(
            "amarktai_event_loop_lag_seconds", "How late the event loop woke a sleeping task",
            buckets=LAG_BUCKETS, registry=reg,
        )  # fmt: skip
        build = build_info()
        Info("amarktai_build", "The running build", registry=reg).info(
            {"version": build.version, "commit": build.commit or "", "python": build.python}
        )
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        reg.register(_EngineCollector(engine, lag, api_health or engine.api_health, failing))
        self._unsubscribe = [
            engine.bus.subscribe(OrderFilled, self._on_filled),
            engine.bus.subscribe(OrderRejected, self._on_rejected),
        ]
        if lag is not None:
            self._unsubscribe.append(lag.observe(self.loop_lag.observe))

    def _on_filled(self, _event: OrderFilled) -> None:
        self.orders.labels("filled", "").inc()

    def _on_rejected(self, event: OrderRejected) -> None:
        self.orders.labels(event.state.value, event.gate).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()


def _f(x: Decimal) -> float:
    return float(x)


class _EngineCollector(Collector):
    """Gauges read from the engine at scrape time."""

    def __init__(
        self,
        engine: TradingEngine,
        lag: LoopLagMonitor | None,
        api_health: ApiHealthFn,
        failing: FailingFn | None,
    ) -> None:
        self.engine = engine
        self.lag = lag
        self.api_health = api_health
        self.failing = failing

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected lazily: nothing is read from the engine at registration

    def collect(self) -> Iterator[Metric]:
        e = self.engine
        runners = list(e.runners.values())
        ccy = e.quote_currency
        yield _gauge("amarktai_engine_running", "1 while the engine's loop runs", 1 if e.running else 0)
        mode = GaugeMetricFamily("amarktai_trading_mode", "The engine's trading mode (1)", labels=["mode"])
        mode.add_metric([e.mode.value], 1)
        yield mode

        money = [
            ("amarktai_account_equity", "Account equity: funding + realised + unrealised",
             e.account_equity()),
            ("amarktai_realised_pnl", "Realised PnL (FIFO) over all bots",
             sum((r.stats.realised for r in runners), Decimal(0))),
            ("amarktai_unrealised_pnl", "Unrealised PnL at the last prices",
             sum((r.unrealised() for r in runners), Decimal(0))),
            ("amarktai_today_pnl", "Equity change since the start of the UTC day (engine time)",
             e.today_pnl()),
            ("amarktai_capital_pool", "Account capital not allocated to any bot", e.pool),
        ]  # fmt: skip
        for name, doc, value in money:
            g = GaugeMetricFamily(name, f"{doc} (quote currency)", labels=["currency"])
            g.add_metric([ccy], _f(value))
            yield g
        bot_eq = GaugeMetricFamily(
            "amarktai_bot_equity", "A bot's equity (quote currency)", labels=["bot", "currency"]
        )
        states = dict.fromkeys((s.value for s in BotState), 0)
        for r in runners:
            bot_eq.add_metric([r.rec.name, ccy], _f(r.equity()))
            states[r.rec.state.value] += 1
        yield bot_eq
        bots = GaugeMetricFamily("amarktai_bots", "Bots by run state", labels=["state"])
        for state, n in states.items():
            bots.add_metric([state], n)
        yield bots

        trips = GaugeMetricFamily(
            "amarktai_breaker_tripped", "Active breaker trips (1 each)", labels=["breaker", "scope", "bot"]
        )
        for trip in list(e.board.active.values()):
            runner = e.runners.get(trip.bot_id) if trip.bot_id is not None else None
            trips.add_metric([trip.breaker.value, trip.scope.value, runner.rec.name if runner else ""], 1)
        yield trips
        yield _gauge("amarktai_breakers_tripped", "Number of active breaker trips", len(e.board.active))

        yield CounterMetricFamily("amarktai_candles", "Candles processed since start", value=e.candles_seen)
        yield _gauge(
            "amarktai_last_candle_close_timestamp_seconds",
            "Close time of the newest candle processed (engine time, Unix seconds; 0 before the first)",
            e.now_ms / 1000,
        )
        feed = GaugeMetricFamily(
            "amarktai_feed_state", "The market feed's state (1)", labels=["source", "state"]
        )
        if e.feed is not None:
            st = e.feed.status()
            for s in FeedState:
                feed.add_metric([st.source, s.value], 1 if st.state is s else 0)
        yield feed

        if self.lag is not None:
            stats = self.lag.stats()
            window = GaugeMetricFamily(
                "amarktai_event_loop_lag_window_seconds",
                "Event-loop lag over the last minute of samples",
                labels=["quantile"],
            )
            for q, ms in (("0.5", stats.p50_ms), ("0.99", stats.p99_ms), ("1", stats.max_ms)):
                if ms is not None:
                    window.add_metric([q], ms / 1000)
            yield window

        yield from _api_metrics(self.api_health())

        if self.failing is not None:
            failing = self.failing()
            checks = GaugeMetricFamily(
                "amarktai_health_check_failing", "1 when a /health check fails", labels=["check"]
            )
            for check in HEALTH_CHECKS:
                checks.add_metric([check], 1 if check in failing else 0)
            yield checks
            yield _gauge("amarktai_healthy", "1 when /health answers 200", 0 if failing else 1)


def _api_metrics(health: Mapping[str, ApiHealth]) -> Iterator[Metric]:
    state = GaugeMetricFamily(
        "amarktai_exchange_api_breaker_state",
        "An exchange API breaker's state (1)",
        labels=["exchange", "state"],
    )
    failures = GaugeMetricFamily(
        "amarktai_exchange_api_consecutive_failures", "Consecutive failed API calls", labels=["exchange"]
    )
    calls = CounterMetricFamily("amarktai_exchange_api_calls", "Exchange API calls", labels=["exchange"])
    errors = CounterMetricFamily(
        "amarktai_exchange_api_errors", "Exchange API calls that failed", labels=["exchange"]
    )
    latency = GaugeMetricFamily(
        "amarktai_exchange_api_latency_seconds",
        "Exchange API call latency over the last 512 calls",
        labels=["exchange", "quantile"],
    )
    for ex, h in sorted(health.items()):
        for s in ApiState:
            state.add_metric([ex, s.value], 1 if h.state is s else 0)
        failures.add_metric([ex], h.consecutive_failures)
        calls.add_metric([ex], h.calls)
        errors.add_metric([ex], h.errors)
        for q, ms in (("0.5", h.latency_p50_ms), ("0.99", h.latency_p99_ms)):
            if ms is not None:
                latency.add_metric([ex, q], ms / 1000)
    yield from (state, failures, calls, errors, latency)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)
