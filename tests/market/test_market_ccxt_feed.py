"""CcxtFeed against a real loopback HTTP server speaking Binance's REST API, with real ccxt.

The server serves the real Binance candles from ../shared/data as ``GET /api/v3/klines``
up to a fake "now" (including the still-forming candle, as Binance does); the feed and the
server share that fake clock, and the feed's sleep advances it, so hours of market pass in
milliseconds without any real sleeping.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt_async
import pytest
from aiohttp import web
from ccxt.base.errors import BadSymbol

from amarktai_tui.domain.types import Candle, timeframe_to_ms
from amarktai_tui.market import CcxtFeed, FeedState, FeedStatus

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FILES = {
    ("BTCUSDT", "5m"): DATA / "binance" / "BTC_USDT-5m.json",
    ("ETHUSDT", "5m"): DATA / "binance" / "ETH_USDT-5m.json",
    ("BTCUSDT", "1h"): DATA / "binance" / "BTC_USDT-1h.json",
}
EXCHANGE_INFO = DATA / "ccxt_static" / "binance-exchangeInfo.json"
PAIRS = {"BTCUSDT": "BTC/USDT", "ETHUSDT": "ETH/USDT"}


@cache
def rows(symbol: str, interval: str) -> list[list[float]]:
    return json.loads(FILES[(symbol, interval)].read_text())  # type: ignore[no-any-return]


@cache
def stamps_of(symbol: str, interval: str) -> list[int]:
    return [int(r[0]) for r in rows(symbol, interval)]


@cache
def candles_of(pair: str, timeframe: str) -> list[Candle]:
    symbol = pair.replace("/", "")
    return [Candle(pair, timeframe, int(r[0]), *r[1:6]) for r in rows(symbol, timeframe)]


class FakeClock:
    """Epoch seconds that only move when the feed sleeps."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@dataclass
class FakeBinance:
    """Just enough of Binance's public REST API for ccxt's load_markets and fetch_ohlcv."""

    clock: FakeClock
    fail_next: int = 0  # answer this many requests with 503
    publish_lag: dict[str, float] = field(default_factory=dict)  # symbol -> seconds after close
    klines: list[dict[str, str]] = field(default_factory=list)  # query of each klines request
    forming_served: int = 0
    failures_served: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.fail_next > 0:
            self.fail_next -= 1
            self.failures_served += 1
            return web.Response(status=503, text="Service Unavailable")
        if request.path == "/api/v3/exchangeInfo":
            return web.Response(body=EXCHANGE_INFO.read_bytes(), content_type="application/json")
        if request.path == "/api/v3/klines":
            return self._klines(dict(request.query))
        return web.json_response({"code": -1, "msg": f"no route {request.path}"}, status=404)

    def _klines(self, q: dict[str, str]) -> web.Response:
        self.klines.append(q)
        symbol, interval = q["symbol"], q["interval"]
        if (symbol, interval) not in FILES:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        data = rows(symbol, interval)
        step = timeframe_to_ms(interval)
        now = int(self.clock.now * 1000)
        lag = int(self.publish_lag.get(symbol, 0) * 1000)
        limit = min(int(q.get("limit", 500)), 1000)
        stamps = stamps_of(symbol, interval)
        # closed candles once published; the forming one only from an exchange without lag
        visible_end = (
            bisect.bisect_right(stamps, now - lag - step) if lag else bisect.bisect_right(stamps, now)
        )
        if "endTime" in q:
            visible_end = min(visible_end, bisect.bisect_right(stamps, int(q["endTime"])))
        if "startTime" in q:
            lo = bisect.bisect_left(stamps, int(q["startTime"]))
            chosen = data[lo : min(lo + limit, visible_end)]
        else:
            chosen = data[max(0, visible_end - limit) : visible_end]
        if chosen and chosen[-1][0] + step > now:
            self.forming_served += 1
        body = [
            [int(r[0]), *(f"{x:.8f}" for x in r[1:6]), int(r[0]) + step - 1, "0", 1, "0", "0", "0"]
            for r in chosen
        ]
        return web.json_response(body)


@dataclass
class Env:
    server: FakeBinance
    clock: FakeClock
    base_url: str

    def exchange(self) -> Any:
        ex = ccxt_async.binance({"enableRateLimit": False})
        ex.urls["api"] = {key: self.urls()[key] for key in ex.urls["api"]}
        ex.options["fetchMarkets"] = {"types": ["spot"]}
        return ex

    def urls(self) -> dict[str, str]:
        template = ccxt_async.binance().urls["api"]
        return {key: self.base_url + "/" + url.split("/", 3)[3] for key, url in template.items()}


START_INDEX = 20_000  # well inside the BTC 5m data, away from the gaps


def start_time() -> float:
    """Two and a half minutes into BTC 5m candle #20000 (epoch seconds)."""
    return (candles_of("BTC/USDT", "5m")[START_INDEX].ts + 150_000) / 1000


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    clock = FakeClock(start_time())
    server = FakeBinance(clock)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield Env(server, clock, f"http://127.0.0.1:{port}")
    await runner.cleanup()


def make_feed(env: Env, streams: list[tuple[str, str]], **kw: Any) -> tuple[CcxtFeed, Any, list[int]]:
    ex = env.exchange()
    closed: list[int] = []
    original_close = ex.close

    async def close() -> None:
        closed.append(1)
        await original_close()

    ex.close = close
    kw.setdefault("jitter", lambda: 0.5)
    feed = CcxtFeed("binance", streams, exchange=ex, clock=env.clock, sleep=env.clock.sleep, **kw)
    return feed, ex, closed


async def take(feed: CcxtFeed, clock: FakeClock, n: int) -> list[tuple[Candle, float]]:
    """The first ``n`` candles with the fake time each was yielded at; then stop()."""
    got: list[tuple[Candle, float]] = []
    async for candle in feed.candles():
        got.append((candle, clock.now))
        if len(got) == n:
            feed.stop()
    return got


def close_of(c: Candle) -> int:
    return c.ts + timeframe_to_ms(c.timeframe)


def expected_between(pair: str, timeframe: str, after_ms: int, until_ms: int) -> list[Candle]:
    """The file's candles closing in (after_ms, until_ms]."""
    return [c for c in candles_of(pair, timeframe) if after_ms < close_of(c) <= until_ms]


# -- the tests -----------------------------------------------------------------------------


async def test_only_closed_candles_once_in_close_time_order(env: Env) -> None:
    streams = [("BTC/USDT", "5m"), ("ETH/USDT", "5m"), ("BTC/USDT", "1h")]
    feed, _, closed = make_feed(env, streams)
    start_ms = int(env.clock.now * 1000)
    got = await asyncio.wait_for(take(feed, env.clock, 150), 30)
    candles = [c for c, _ in got]
    assert all(close_of(c) <= now * 1000 for c, now in got)  # nothing still forming
    assert env.server.forming_served > 0  # ... although the server did hand out forming candles
    keys = [(close_of(c), c.pair, timeframe_to_ms(c.timeframe)) for c in candles]
    assert keys == sorted(set(keys))  # strictly increasing: ordered, no duplicates
    last_close = max(close_of(c) for c in candles)
    for pair, tf in streams:
        mine = [c for c in candles if (c.pair, c.timeframe) == (pair, tf)]
        assert mine == expected_between(pair, tf, start_ms, last_close), (pair, tf)
    assert {(c.pair, c.timeframe) for c in candles} == set(streams)
    # polled shortly after each close, not in a busy loop: ~one request per stream per candle
    span = last_close - start_ms
    expected_polls = span // 300_000 * 2 + span // 3_600_000 + 3
    assert len(env.server.klines) <= expected_polls + 5
    # yielded soon after the close (the settle delay), not a whole candle later
    assert all(now * 1000 - close_of(c) <= 2_000 for c, now in got)
    assert feed.status() == FeedStatus("binance", FeedState.ENDED)
    assert closed == [1]


async def test_history_backfills_up_to_the_first_live_candle(env: Env) -> None:
    feed, _, _ = make_feed(env, [("BTC/USDT", "5m")])
    data = candles_of("BTC/USDT", "5m")
    warm = await feed.history("BTC/USDT", "5m", 100)
    assert warm == data[START_INDEX - 100 : START_INDEX]
    assert feed.status().state is FeedState.CONNECTING
    big = await feed.history("BTC/USDT", "5m", 1_500)  # more than one page (server max 1000)
    assert big == data[START_INDEX - 1_500 : START_INDEX]
    assert len(env.server.klines) >= 3
    got: list[Candle] = []
    async for candle in feed.candles():
        got.append(candle)
        if len(got) == 3:
            # asked while live, after candles were yielded: still the ones before the first yielded
            assert await feed.history("BTC/USDT", "5m", 10) == data[START_INDEX - 10 : START_INDEX]
            assert feed.status().state is FeedState.LIVE
            feed.stop()
    assert got == data[START_INDEX : START_INDEX + 3]  # no gap, no overlap with the warm-up
    assert await feed.history("BTC/USDT", "5m", 0) == []


async def test_history_keeps_gaps_and_other_streams(env: Env) -> None:
    feed, _, _ = make_feed(env, [("BTC/USDT", "5m")])
    hours = await feed.history("ETH/USDT", "5m", 2_000)
    eth = candles_of("ETH/USDT", "5m")
    start_ms = int(env.clock.now * 1000)
    assert hours == [c for c in eth if close_of(c) <= start_ms][-2_000:]
    # BTC 5m reaching back over the 2021-02-11 maintenance gap: fewer candles, none made up
    data = candles_of("BTC/USDT", "5m")
    env.clock.now = (data[START_INDEX].ts + 10_000) / 1000
    feed2, _, _ = make_feed(env, [("BTC/USDT", "5m")])
    back = await feed2.history("BTC/USDT", "5m", 20_000)
    assert back == data[:START_INDEX][-len(back) :]
    first_ts = data[START_INDEX - 1].ts - 20_000 * 300_000 + 300_000
    assert back == [c for c in data if first_ts <= c.ts < data[START_INDEX].ts]
    assert len(back) < 20_000
    await feed.close()
    await feed2.close()


async def test_503s_mean_retrying_with_backoff_then_recovery(env: Env) -> None:
    seen: list[tuple[float, FeedStatus]] = []
    clock = env.clock

    async def sleep(seconds: float) -> None:
        seen.append((seconds, feed.status()))
        await clock.sleep(seconds)

    env.server.fail_next = 3
    ex = env.exchange()
    feed = CcxtFeed(
        "binance",
        [("BTC/USDT", "5m")],
        exchange=ex,
        clock=clock,
        sleep=sleep,
        backoff_base=0.5,
        jitter=lambda: 1.0,
    )
    got = await asyncio.wait_for(take(feed, clock, 2), 10)
    assert env.server.failures_served == 3
    retries = [(d, s) for d, s in seen if s.state is FeedState.RETRYING]
    assert [d for d, _ in retries] == [0.5, 1.0, 2.0]  # doubling from the base
    assert [s.detail for _, s in retries] == [
        "retry in 1s: ExchangeNotAvailable",
        "retry in 1s: ExchangeNotAvailable",
        "retry in 2s: ExchangeNotAvailable",
    ]
    assert all(s.state is FeedState.LIVE and s.detail == "" for _, s in seen[len(retries) :])
    data = candles_of("BTC/USDT", "5m")
    assert [c for c, _ in got] == data[START_INDEX : START_INDEX + 2]


async def test_unreachable_exchange_retries_until_stopped(env: Env) -> None:
    statuses: list[FeedStatus] = []
    clock = env.clock

    async def sleep(seconds: float) -> None:
        statuses.append(feed.status())
        if len(statuses) == 4:
            feed.stop()
        await clock.sleep(seconds)

    ex = ccxt_async.binance({"enableRateLimit": False, "timeout": 2000})
    ex.urls["api"] = {key: "http://127.0.0.1:9/api/v3" for key in ex.urls["api"]}  # discard port: refused
    ex.options["fetchMarkets"] = {"types": ["spot"]}
    feed = CcxtFeed("binance", [("BTC/USDT", "5m")], exchange=ex, clock=clock, sleep=sleep, backoff_base=1.0)
    got = await asyncio.wait_for(take(feed, clock, 1), 20)
    assert got == []
    assert all(s.state is FeedState.RETRYING and s.detail.startswith("retry in ") for s in statuses)
    assert "ExchangeNotAvailable" in statuses[0].detail or "NetworkError" in statuses[0].detail
    assert feed.status().state is FeedState.ENDED


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    for jitter in (0.0, 0.5, 0.999):
        feed = CcxtFeed(
            "binance", [("BTC/USDT", "5m")], backoff_base=1.0, jitter=functools.partial(float, jitter)
        )
        delays = [feed._backoff(n) for n in range(1, 12)]
        for n, d in enumerate(delays, 1):
            full = min(60.0, 2.0 ** (n - 1))
            assert full / 2 <= d <= full
        assert max(delays) <= 60.0


async def test_bad_symbol_raises_and_closes(env: Env) -> None:
    feed, _, closed = make_feed(env, [("FOO/BAR", "5m")])
    with pytest.raises(BadSymbol):
        await asyncio.wait_for(take(feed, env.clock, 1), 10)
    assert closed == [1]


async def test_late_stream_does_not_break_close_time_order(env: Env) -> None:
    env.server.publish_lag["BTCUSDT"] = 5.0  # BTC candles appear 5 s after their close
    feed, _, _ = make_feed(env, [("BTC/USDT", "5m"), ("ETH/USDT", "5m")], max_lag=10.0)
    got = await asyncio.wait_for(take(feed, env.clock, 40), 20)
    keys = [(close_of(c), c.pair) for c, _ in got]
    assert keys == sorted(set(keys))
    assert [k[1] for k in keys[:4]] == ["BTC/USDT", "ETH/USDT", "BTC/USDT", "ETH/USDT"]
    # ETH was on time but waited for the late BTC candle of the same close
    assert all(now * 1000 >= close_of(c) + 5_000 for c, now in got)


async def test_stop_wakes_the_wait_and_closes(env: Env) -> None:
    sleeping = asyncio.Event()

    async def forever(seconds: float) -> None:
        sleeping.set()
        await asyncio.Event().wait()

    ex = env.exchange()
    feed = CcxtFeed("binance", [("BTC/USDT", "5m")], exchange=ex, clock=env.clock, sleep=forever)
    got: list[Candle] = []

    async def consume() -> None:
        async for c in feed.candles():
            got.append(c)

    task = asyncio.create_task(consume())
    await asyncio.wait_for(sleeping.wait(), 10)  # polled once, nothing closed yet: waiting
    feed.stop()
    await asyncio.wait_for(task, 5)
    assert got == [] and ex.session is None  # ccxt's close() drops the session


async def test_created_from_id_with_url_override(env: Env) -> None:
    feed = CcxtFeed(
        "binance", [("BTC/USDT", "5m")], urls_api=env.urls(), clock=env.clock, sleep=env.clock.sleep
    )
    warm = await feed.history("BTC/USDT", "5m", 5)  # spot markets only: no futures exchangeInfo asked
    assert warm == candles_of("BTC/USDT", "5m")[START_INDEX - 5 : START_INDEX]
    feed.stop()  # not iterating: closes in the background
    assert feed._close_task is not None
    await feed._close_task


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="unknown exchange"):
        CcxtFeed("nosuchexchange", [("BTC/USDT", "5m")])
    with pytest.raises(ValueError, match="duplicate"):
        CcxtFeed("binance", [("BTC/USDT", "5m"), ("BTC/USDT", "5m")])
    with pytest.raises(ValueError, match="timeframe"):
        CcxtFeed("binance", [("BTC/USDT", "5 minutes")])
