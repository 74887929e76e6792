"""The health and metrics server on loopback (port 0) over a real engine: a real SQLite ledger in
tmp_path, the real BTC 1h candles replayed, real HTTP requests (aiohttp's client on the engine's
loop, or http.client in a thread while that loop is blocked), /metrics read back with
prometheus-client's own parser. Waits are on engine events, published snapshots and thread
events, never sleeps."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from amarktai_tui.config import ConfigError, HealthSettings, RiskSettings, Settings, load_settings
from amarktai_tui.domain.enums import BotState
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.engine.events import EngineTick, EventBus
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.exchanges.api_breaker import ApiBreaker
from amarktai_tui.locations import db_path
from amarktai_tui.ops.health import (
    PUBLISH_EVERY_S,
    SWITCH_INTERVAL_S,
    HealthService,
    HealthState,
    start_health,
)
from amarktai_tui.ops.looplag import LoopLagMonitor, start_monitor
from amarktai_tui.ops.metrics import EngineMetrics
from amarktai_tui.ops.services import start_services
from amarktai_tui.ops.sysinfo import data_dir_state

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BTC_1H = DATA / "binance" / "BTC_USDT-1h.json"
TIMEOUT_S = 60  # a guard against a hang, not a wait
CANDLES = len(json.loads(BTC_1H.read_text()))
SLOW = 3600 * 200.0  # replay speed: 200 one-hour candles per second, so the feed is still going


def make_settings(**health: Any) -> Settings:
    """Defaults, the breakers opened wide (the demo bots trade the whole file), the server on port 0."""
    s = load_settings(None)
    s.risk = RiskSettings(
        max_consecutive_losses=1000,
        bot_max_drawdown=Decimal("0.9"),
        account_max_drawdown=Decimal("0.9"),
        account_daily_loss=Decimal("0.9"),
    )
    s.health = HealthSettings(port=0, **health)
    return s


@dataclass
class Running:
    engine: TradingEngine
    service: HealthService
    lag: LoopLagMonitor | None
    run: asyncio.Task[None]
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        assert self.service.url is not None
        return self.service.url

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.url + path) as resp:
            body = await resp.json() if resp.content_type == "application/json" else await resp.text()
            return resp.status, body

    async def fresh(self) -> None:
        """Wait until the engine's loop has published a new snapshot (``/health`` answers from it)."""
        self.service.published.clear()
        await asyncio.wait_for(self.service.published.wait(), TIMEOUT_S)


@pytest.fixture
def start(tmp_path: Path) -> Callable[..., Any]:
    """``async with start(speed=..., until_end=...) as r``: engine + loop-lag monitor + server,
    running; ``lag=False``: no loop-lag monitor; ``engine_timeout_s`` and ``[health]`` keys pass on.
    Afterwards the server thread is gone."""

    @asynccontextmanager
    async def go(
        *,
        speed: float = 0.0,
        until_end: bool = True,
        lag: bool = True,
        engine_timeout_s: float = 2.0,
        **health: Any,
    ) -> AsyncIterator[Running]:
        s = make_settings(**health)
        data_dir = tmp_path / "data"
        engine, feed = await open_engine(
            s, data_dir, ReplayArgs([str(BTC_1H)], speed=speed, until_end=until_end), EventBus()
        )
        monitor = start_monitor(interval_s=0.05) if lag else None
        service = await start_health(engine, s, data_dir, monitor, engine_timeout_s=engine_timeout_s)
        thread = service.thread
        assert thread is not None and thread.is_alive()
        run = asyncio.create_task(engine.run(feed))
        http = aiohttp.ClientSession()
        try:
            yield Running(engine, service, monitor, run, http)
        finally:
            await http.close()
            engine.stop()
            await asyncio.wait_for(run, TIMEOUT_S)
            await service.close()
            if monitor is not None:
                await monitor.stop()
            await engine.close()
        assert not thread.is_alive() and service.thread is None

    return go


async def candles_seen(engine: TradingEngine, n: int) -> None:
    """Wait until the engine has processed at least ``n`` candles."""
    reached = asyncio.Event()

    def on_tick(_e: EngineTick) -> None:
        if engine.candles_seen >= n:
            reached.set()

    unsubscribe = engine.bus.subscribe(EngineTick, on_tick)
    try:
        if engine.candles_seen < n:
            await asyncio.wait_for(reached.wait(), TIMEOUT_S)
    finally:
        unsubscribe()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus exposition, by (name, labels), parsed by prometheus-client."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def one(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return metrics[(name, frozenset(labels.items()))]


# -- /health -----------------------------------------------------------------------------
async def test_health_is_ok_while_trading_then_503_when_halted_and_ok_again_after_resume(
    start: Callable[..., Any],
) -> None:
    async with start(speed=SLOW, until_end=False) as r:
        await candles_seen(r.engine, 30)
        await r.fresh()
        status, body = await r.get("/health")
        assert (status, body) == (200, {"status": "ok"})

        trip = await r.engine.halt("health test", actor="user")
        assert trip is not None
        await r.fresh()
        status, body = await r.get("/health")
        assert status == 503
        assert body["status"] == "unhealthy"
        assert body["reasons"] == [f"breaker: halt tripped (account, trip {trip.id}): {trip.message}"]
        assert trip.message.endswith("health test (by user)")

        await r.engine.resume("checked", actor="user")
        await r.fresh()
        status, body = await r.get("/health")
        assert (status, body) == (200, {"status": "ok"})


async def test_health_names_a_stopped_engine_and_an_ended_feed(start: Callable[..., Any]) -> None:
    async with start(speed=0, until_end=True) as r:
        await asyncio.wait_for(r.run, TIMEOUT_S)  # the replay ran to its end
        await r.fresh()
        status, body = await r.get("/health")
        total = CANDLES
        assert status == 503
        assert body["reasons"][0] == "engine: not running"
        assert body["reasons"][1].startswith(f"feed: replay feed ended ({total:,}/{total:,} candles, at ")
        assert r.engine.candles_seen == total


async def test_health_answers_while_a_replay_runs_at_full_speed(start: Callable[..., Any]) -> None:
    """Every request is answered, with the status JSON, while the engine replays at full speed,
    and the replay is not held up by them. How fast: the latency
    target (under 10 ms) is measured by ``bench/health_latency.py`` against floor servers in the
    same run, not timed here (a loaded machine would make a timed assertion flaky)."""
    async with start(speed=0, until_end=False) as r:
        await candles_seen(r.engine, 1)
        seen_before = r.engine.candles_seen
        answers = []
        for _ in range(100):
            async with r.http.get(r.url + "/health") as resp:
                answers.append((resp.status, await resp.json()))
        assert all(status in (200, 503) and "status" in body for status, body in answers)
        await candles_seen(r.engine, seen_before + 1)  # the replay goes on


# -- the server thread: the engine's loop blocked ---------------------------------------------
def http_get(url: str, path: str) -> tuple[int, str]:
    """One GET with http.client (blocking: for a thread), status and body text."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT_S)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def block_loop_until(done: threading.Event, blocked: threading.Event) -> asyncio.Task[float]:
    """A task that blocks the running loop synchronously (as a stuck engine would) until ``done``
    is set by another thread; returns ``time.monotonic()`` when it lets go."""

    async def block() -> float:
        blocked.set()
        assert done.wait(TIMEOUT_S), "the client thread never finished"
        return time.monotonic()

    return asyncio.get_running_loop().create_task(block())


POLL_S = 0.005
"""The probe's pace between two requests (a scraper polling), not a wait for anything."""


async def test_health_answers_503_while_the_engine_loop_is_blocked_and_200_after(
    start: Callable[..., Any],
) -> None:
    # no loop-lag monitor: its p99 would (rightly) stay over the limit for a minute after the block
    async with start(speed=SLOW, until_end=False, lag=False, max_loop_lag_ms=100) as r:
        await candles_seen(r.engine, 5)
        await r.fresh()
        assert r.service.stale_after_s == pytest.approx(PUBLISH_EVERY_S + 0.1)
        blocked, saw_503, unblocked = threading.Event(), threading.Event(), threading.Event()
        seen: list[tuple[float, int, Any]] = []  # (time.monotonic() at the answer, status, body)

        def probe() -> None:
            blocked.wait(TIMEOUT_S)
            deadline = time.monotonic() + TIMEOUT_S
            while time.monotonic() < deadline:
                code, text = http_get(r.url, "/health")
                seen.append((time.monotonic(), code, json.loads(text)))
                if code == 503:
                    saw_503.set()
                elif saw_503.is_set() and unblocked.is_set():
                    return
                time.sleep(POLL_S)

        client = threading.Thread(target=probe, name="test-probe")
        client.start()
        last = r.service.snapshot.taken  # the loop publishes nothing more until the block ends
        released = await block_loop_until(saw_503, blocked)
        unblocked.set()
        await asyncio.to_thread(client.join, TIMEOUT_S)
        assert not client.is_alive()

    stale_at = last + r.service.stale_after_s
    codes = [code for _, code, _ in seen]
    runs = [c for i, c in enumerate(codes) if i == 0 or codes[i - 1] != c]
    assert runs == [200, 503, 200], runs  # ok, then "not responding" while blocked, then ok again
    bad = [(t, body) for t, code, body in seen if code == 503]
    assert all(t >= stale_at for t, _ in bad)  # never before the limit passed
    # and the 503 came while the loop was still blocked: it was released only once one was seen
    body = bad[0][1]
    assert body["status"] == "unhealthy" and len(body["reasons"]) == 1
    m = re.fullmatch(r"loop: engine not responding for (\d+) ms \(limit 350 ms\)", body["reasons"][0])
    assert m is not None, body
    assert int(m[1]) >= 350
    assert seen[-1][0] >= released and seen[-1][2] == {"status": "ok"}


async def test_status_and_metrics_answer_503_while_the_engine_loop_is_blocked(
    start: Callable[..., Any],
) -> None:
    async with start(speed=SLOW, until_end=False, lag=False, engine_timeout_s=0.2) as r:
        await candles_seen(r.engine, 5)
        blocked, done = threading.Event(), threading.Event()
        answers: dict[str, tuple[float, int, str]] = {}

        def ask() -> None:
            blocked.wait(TIMEOUT_S)
            try:
                for path in ("/status", "/metrics"):
                    t0 = time.monotonic()
                    code, text = http_get(r.url, path)
                    answers[path] = (time.monotonic() - t0, code, text)
            finally:
                done.set()

        client = threading.Thread(target=ask, name="test-ask")
        client.start()
        await block_loop_until(done, blocked)
        await asyncio.to_thread(client.join, TIMEOUT_S)

        # each answered after its 0.2 s wait for the engine, while the loop was still blocked (it is
        # released only once both answers are in: a server waiting for the loop would hang here)
        took, code, text = answers["/status"]
        assert code == 503 and took >= 0.2, (code, took)
        assert json.loads(text) == {
            "status": "unhealthy",
            "reasons": ["loop: engine not responding: /status not answered within 0.2 s"],
        }
        took, code, text = answers["/metrics"]
        assert code == 503 and took >= 0.2, (code, took)
        assert text == "engine not responding: /metrics not answered within 0.2 s\n"

        # the loop runs again: /status reads the engine's state on its loop
        trip = await r.engine.halt("status test", actor="user")
        assert trip is not None
        before = r.engine.candles_seen
        status, st = await r.get("/status")
        assert status == 200
        assert st["running"] is True
        assert [(b["id"], b["breaker"]) for b in st["breakers"]] == [(trip.id, "halt")]
        assert st["reasons"] == [f"breaker: halt tripped (account, trip {trip.id}): {trip.message}"]
        assert before <= st["candles"] <= r.engine.candles_seen


async def test_status_and_metrics_read_the_engine_on_its_own_loop(start: Callable[..., Any]) -> None:
    """Nothing in the server thread reads engine objects: /status and the metric collectors run
    on the engine's loop's thread."""
    async with start(speed=SLOW, until_end=False) as r:
        await candles_seen(r.engine, 5)
        engine_thread = threading.get_ident()
        server_thread = r.service.thread
        assert server_thread is not None and server_thread.ident != engine_thread
        threads: dict[str, int] = {}
        status_json = r.service.state.status_json

        def spy_status() -> Any:
            threads["status"] = threading.get_ident()
            return status_json()

        class SpyCollector:
            def collect(self) -> list[Any]:
                threads["metrics"] = threading.get_ident()
                return []

        r.service.state.status_json = spy_status
        r.service.metrics.registry.register(SpyCollector())
        assert (await r.get("/status"))[0] == 200
        assert (await r.get("/metrics"))[0] == 200
        assert threads == {"status": engine_thread, "metrics": engine_thread}


async def test_close_stops_the_server_thread_and_frees_the_port(tmp_path: Path) -> None:
    s = make_settings()
    engine, _feed = await open_engine(s, tmp_path / "data", ReplayArgs([str(BTC_1H)]), EventBus())
    switch = sys.getswitchinterval()
    assert switch > SWITCH_INTERVAL_S  # Python's default, 5 ms
    try:
        service = await start_health(engine, s, tmp_path / "data", None)
        thread, url = service.thread, service.url
        assert thread is not None and thread.is_alive() and url is not None
        assert sys.getswitchinterval() == SWITCH_INTERVAL_S
        code, text = await asyncio.to_thread(http_get, url, "/health")
        assert code == 503 and json.loads(text)["reasons"] == ["engine: not running"]
        await service.close()
        assert not thread.is_alive() and service.thread is None and service.url is None
        assert sys.getswitchinterval() == switch
        with pytest.raises(ConnectionRefusedError):
            await asyncio.to_thread(http_get, url, "/health")
        assert not [t for t in threading.enumerate() if t.name == "health-http"]
    finally:
        await engine.close()


async def test_a_lagging_loop_fails_the_loop_check(tmp_path: Path) -> None:
    s = make_settings(max_loop_lag_ms=100)
    engine, _feed = await open_engine(s, tmp_path / "data", ReplayArgs([str(BTC_1H)]), EventBus())
    lag = LoopLagMonitor(interval_s=0.02, window=3)
    lag.start()
    try:
        state = HealthState(engine, s.health, tmp_path / "data", lag)
        await asyncio.wait_for(lag.sampled.wait(), TIMEOUT_S)
        before = lag.stats().p99_ms
        assert before is not None
        assert bool([r for r in state.reasons() if r.startswith("loop:")]) is (before > 100)
        lag.sampled.clear()
        time.sleep(0.3)  # the loop blocked: what the monitor is there to see
        await asyncio.wait_for(lag.sampled.wait(), TIMEOUT_S)
        stats = lag.stats()
        assert stats.max_ms is not None and stats.max_ms >= 250
        assert [r for r in state.reasons() if r.startswith("loop:")] == [
            f"loop: event-loop lag p99 {stats.p99_ms:.0f} ms over the last {stats.samples} samples"
            " (limit 100 ms)"
        ]
    finally:
        await lag.stop()
        await engine.close()


async def test_feed_staleness_follows_the_wall_clock_for_a_real_time_feed(tmp_path: Path) -> None:
    s = make_settings(stale_candles=3)
    data_dir = tmp_path / "data"
    engine, feed = await open_engine(s, data_dir, ReplayArgs([str(BTC_1H)], until_end=False), EventBus())
    run = asyncio.create_task(engine.run(feed))
    try:
        await candles_seen(engine, 1)
        engine.realtime = True  # as if the candles came from an exchange: their age counts
        hour = 3_600_000
        wall = [engine.now_ms + 3 * hour]
        state = HealthState(engine, s.health, data_dir, None, wall_ms=lambda: wall[0])
        fresh = [r for r in state.reasons() if r.startswith("feed:")]  # 3 timeframes: the limit itself
        wall[0] += 1000
        stale = [r for r in state.reasons() if r.startswith("feed:")]
        assert fresh == []
        assert stale == ["feed: replay feed stale: newest candle closed 10801 s ago (limit 10800 s)"]
    finally:
        engine.stop()
        await asyncio.wait_for(run, TIMEOUT_S)
        await engine.close()


async def test_the_database_check_reports_low_disk_and_an_unwritable_dir(tmp_path: Path) -> None:
    s = make_settings(min_free_mb=10**12)  # an exabyte: more than any test machine has free
    data_dir = tmp_path / "data"
    engine, _feed = await open_engine(s, data_dir, ReplayArgs([str(BTC_1H)]), EventBus())
    try:
        state = HealthState(engine, s.health, data_dir, None)
        await state.sample()
        db_reasons = [r for r in state.reasons() if r.startswith("database:")]
        assert len(db_reasons) == 1 and "MB free in the data dir (minimum 1000000000000 MB)" in db_reasons[0]
    finally:
        await engine.close()
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    bad = data_dir_state(not_a_dir, not_a_dir / "amarktai.sqlite3")
    assert not bad.writable and bad.error.startswith(f"cannot write in {not_a_dir}")
    good = data_dir_state(data_dir, db_path(data_dir))
    assert good.writable and good.free_bytes is not None and good.free_bytes > 0


# -- /status and /metrics ------------------------------------------------------------------------
async def test_status_and_metrics_match_the_engine(start: Callable[..., Any], tmp_path: Path) -> None:
    async with start(speed=0, until_end=True) as r:
        await asyncio.wait_for(r.run, TIMEOUT_S)
        e = r.engine
        trip = await e.halt("metrics test", actor="user")
        assert trip is not None
        assert e.fills_seen > 0

        status, st = await r.get("/status")
        assert status == 200
        runners = list(e.runners.values())
        assert st["status"] == "unhealthy" and st["reasons"][0] == "engine: not running"
        assert st["mode"] == "paper" and st["running"] is False
        assert Decimal(st["equity"]) == e.account_equity()
        assert Decimal(st["realised_pnl"]) == sum((x.stats.realised for x in runners), Decimal(0))
        assert st["bots"]["total"] == len(runners) == 3
        assert st["bots"]["by_state"]["running"] == sum(x.rec.state is BotState.RUNNING for x in runners)
        assert st["candles"] == e.candles_seen == CANDLES
        assert st["fills"] == e.fills_seen
        assert st["last_candle_close_ms"] == e.now_ms
        assert st["last_trade"]["ts"] == e.fill_log[-1].ts
        assert st["last_trade"]["price"] == str(e.fill_log[-1].price)
        assert st["feed"]["state"] == "ended"
        assert [b["breaker"] for b in st["breakers"]] == ["halt"]
        assert st["breakers"][0]["id"] == trip.id
        assert st["exchanges"] == {}  # a paper broker calls no exchange API
        assert st["data_dir"]["writable"] is True
        assert st["process"]["rss_bytes"] > 0
        assert st["build"]["version"]

        status, text = await r.get("/metrics")
        assert status == 200
        m = samples(text)
        assert one(m, "amarktai_account_equity", currency="USDT") == pytest.approx(float(e.account_equity()))
        assert one(m, "amarktai_realised_pnl", currency="USDT") == pytest.approx(float(st["realised_pnl"]))
        for state in BotState:
            n = sum(x.rec.state is state for x in runners)
            assert one(m, "amarktai_bots", state=state.value) == n
        for x in runners:
            assert one(m, "amarktai_bot_equity", bot=x.rec.name, currency="USDT") == pytest.approx(
                float(x.equity())
            )
        assert one(m, "amarktai_orders_total", result="filled", gate="") == e.fills_seen
        conn = sqlite3.connect(db_path(tmp_path / "data"))
        try:
            refused = dict(
                conn.execute(
                    "SELECT gate, COUNT(*) FROM orders WHERE state = 'rejected' GROUP BY gate"
                ).fetchall()
            )
        finally:
            conn.close()
        assert refused, "the wide-open breakers still leave gate refusals in a full replay"
        for gate, n in refused.items():
            assert one(m, "amarktai_orders_total", result="rejected", gate=gate) == n
        assert one(m, "amarktai_breaker_tripped", breaker="halt", scope="account", bot="") == 1
        assert one(m, "amarktai_breakers_tripped") == 1
        assert one(m, "amarktai_candles_total") == e.candles_seen
        assert one(m, "amarktai_last_candle_close_timestamp_seconds") == e.now_ms / 1000
        assert one(m, "amarktai_feed_state", source="replay", state="ended") == 1
        assert one(m, "amarktai_trading_mode", mode="paper") == 1
        assert one(m, "amarktai_engine_running") == 0
        assert one(m, "amarktai_healthy") == 0
        assert one(m, "amarktai_health_check_failing", check="breaker") == 1
        assert one(m, "amarktai_health_check_failing", check="database") == 0
        assert r.lag is not None
        lag_count = one(m, "amarktai_event_loop_lag_seconds_count")
        # the monitor keeps sampling: read after the scrape, its count can only have grown
        assert 0 < lag_count <= r.lag.stats().total
        assert one(m, "amarktai_event_loop_lag_seconds_bucket", le="+Inf") == lag_count
        assert one(m, "amarktai_build_info", version=st["build"]["version"],
                   commit=st["build"]["commit"] or "", python=st["build"]["python"]) == 1  # fmt: skip
        assert one(m, "process_resident_memory_bytes") > 0


async def test_metrics_report_exchange_api_health(tmp_path: Path) -> None:
    """The per-exchange figures come from ``engine.api_health()`` (a live broker's ApiBreakers):
    real breakers fed calls and failures here stand in for the live broker's."""
    s = make_settings()
    engine, _feed = await open_engine(s, tmp_path / "data", ReplayArgs([str(BTC_1H)]), EventBus())
    try:
        kucoin = ApiBreaker("kucoin", failures=2, cooldown_s=60)
        luno = ApiBreaker("luno", failures=2, cooldown_s=60)
        for ms in (10, 20, 30, 40):
            kucoin.success(ms / 1000)
        luno.success(0.2)
        luno.failure("timeout")
        luno.failure("HTTP 503")
        metrics = EngineMetrics(
            engine, None, api_health=lambda: {b.exchange: b.health() for b in (kucoin, luno)}
        )
        m = samples(metrics.render().decode())
        metrics.close()
    finally:
        await engine.close()
    assert one(m, "amarktai_exchange_api_breaker_state", exchange="kucoin", state="closed") == 1
    assert one(m, "amarktai_exchange_api_breaker_state", exchange="luno", state="open") == 1
    assert one(m, "amarktai_exchange_api_breaker_state", exchange="luno", state="closed") == 0
    assert one(m, "amarktai_exchange_api_calls_total", exchange="kucoin") == 4
    assert one(m, "amarktai_exchange_api_errors_total", exchange="luno") == 2
    assert one(m, "amarktai_exchange_api_consecutive_failures", exchange="luno") == 2
    h = kucoin.health()
    assert h.latency_p50_ms is not None and h.latency_p99_ms is not None
    assert one(
        m, "amarktai_exchange_api_latency_seconds", exchange="kucoin", quantile="0.5"
    ) == pytest.approx(h.latency_p50_ms / 1000)
    assert one(
        m, "amarktai_exchange_api_latency_seconds", exchange="kucoin", quantile="0.99"
    ) == pytest.approx(h.latency_p99_ms / 1000)


# -- configuration and wiring ------------------------------------------------------------------
@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_a_non_loopback_host_is_refused_without_allow_remote(tmp_path: Path, host: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[health]\nhost = "{host}"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, required=True)
    assert str(err.value) == (
        f"config error: {cfg}: health.host: not a loopback address; set allow_remote = true to serve on it"
        f" (got {host!r})"
    )
    cfg.write_text(f'[health]\nhost = "{host}"\nallow_remote = true\n')
    assert load_settings(cfg, required=True).health.host == host


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_hosts_need_no_permission(host: str) -> None:
    assert HealthSettings(host=host).host == host


def test_the_cli_exits_2_with_one_line_for_a_remote_host(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AMARKTAI_HEALTH__HOST": "0.0.0.0"}
    proc = subprocess.run(
        [sys.executable, "-c", "from amarktai_tui.cli import main; main()", "status",
         "--data-dir", str(tmp_path / "data")],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "health.host: not a loopback address" in lines[0], proc.stderr


async def test_a_port_in_use_is_logged_and_the_engine_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        s = make_settings()
        s.health = HealthSettings(port=port)
        engine, _feed = await open_engine(s, tmp_path / "data", ReplayArgs([str(BTC_1H)]), EventBus())
        try:
            with caplog.at_level(logging.ERROR, logger="amarktai.health"):
                service = await start_health(engine, s, tmp_path / "data", None)
            assert service.port is None and service.url is None
            assert f"health server not started: cannot listen on 127.0.0.1:{port}" in caplog.text
            assert service.thread is None  # the thread that tried to listen has ended
            await service.close()
        finally:
            await engine.close()


@pytest.mark.parametrize(
    ("enabled", "tui", "headless", "served"),
    [
        (True, False, True, True),
        (True, False, False, False),
        (True, True, False, True),
        (False, True, True, False),
    ],
)
async def test_start_services_serves_when_enabled_for_the_daemon_or_the_tui(
    tmp_path: Path, enabled: bool, tui: bool, headless: bool, served: bool
) -> None:
    s = make_settings(enabled=enabled, tui=tui)
    s.backup.daily = False
    engine, _feed = await open_engine(s, tmp_path / "data", ReplayArgs([str(BTC_1H)]), EventBus())
    try:
        services = await start_services(engine, s, tmp_path / "data", headless=headless)
        names = [name for name, _ in services.closers]
        await services.close()
    finally:
        await engine.close()
    assert "loop lag" in names
    assert ("health" in names) is served
