"""CcxtFeed: closed candles from an exchange's public REST API (ccxt ``fetch_ohlcv``, no keys)."""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ccxt.async_support as ccxt_async
from ccxt.base.errors import NetworkError

from amarktai_tui.domain.types import Candle, timeframe_to_ms
from amarktai_tui.market._wait import SleepFn, sleep_unless_stopped
from amarktai_tui.market.base import FeedState, FeedStatus

log = logging.getLogger(__name__)

_DAY_MS = 86_400_000
_RECHECK_MS = 1_000  # first re-ask for a late candle; doubles per miss
_RECHECK_CAP_MS = 60_000


@dataclass(slots=True)
class _Stream:
    pair: str
    timeframe: str
    tf_ms: int
    cursor: int = 0  # open time (ms) of the last candle taken; later ones are new
    known: int = 0  # every candle closing at or before this (ms) has been fetched
    due: int = 0  # next poll (ms, feed clock)
    misses: int = 0  # polls in a row that found the expected candle missing
    first_ts: int | None = None  # open time of the first candle yielded


class CcxtFeed:
    """A MarketFeed polling ``fetch_ohlcv`` of a ccxt exchange for closed candles.

    Only closed candles are yielded: a candle whose ``ts + timeframe`` (ms UTC) is later than
    ``clock()`` is still forming and is skipped. The feed yields the candles that close after
    it started (the first ``candles()``/``history()`` call), each once, in order of close
    time then pair; ``history()`` gives the closed candles before those. Each stream is
    polled ``settle`` seconds after its next expected close (or every ``poll_interval``
    seconds if given); a candle that is late is asked for again with growing pauses.
    A stream whose candle is late holds back other streams' later candles for at most
    ``max_lag`` seconds, so close-time order survives a slow exchange.

    Network trouble (ccxt NetworkError: ExchangeNotAvailable, RequestTimeout,
    DDoSProtection, ...) is retried with exponential backoff (``backoff_base`` s doubling,
    capped at ``backoff_cap`` s, equal jitter) in state RETRYING, detail
    ``"retry in Ns: <error class>"``; any other ccxt error (BadSymbol, ...) is raised from
    ``candles()``/``history()``. The ccxt exchange (``exchange``, or one created from
    ``exchange_id`` with ``urls_api`` merged into ``urls['api']``) is closed on ``stop()``.

    ``clock`` returns epoch seconds; ``sleep(seconds)`` waits; both injectable for tests.
    """

    def __init__(
        self,
        exchange_id: str,
        streams: Sequence[tuple[str, str]],
        *,
        exchange: Any = None,
        poll_interval: float | None = None,
        clock: Callable[[], float] = time.time,
        sleep: SleepFn = asyncio.sleep,
        urls_api: dict[str, str] | None = None,
        settle: float = 2.0,
        max_lag: float = 10.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        page_limit: int = 500,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if exchange is None and exchange_id not in ccxt_async.exchanges:
            raise ValueError(f"unknown exchange {exchange_id!r} (not a ccxt exchange id)")
        if not streams:
            raise ValueError("CcxtFeed needs at least one (pair, timeframe) stream")
        if len(set(streams)) != len(streams):
            raise ValueError(f"duplicate streams in {list(streams)}")
        if poll_interval is not None and poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0 seconds, got {poll_interval}")
        self.exchange_id = exchange_id
        self._streams = [_Stream(p, tf, timeframe_to_ms(tf)) for p, tf in streams]
        self._exchange = exchange
        self._urls_api = dict(urls_api) if urls_api else None
        self._poll_ms = None if poll_interval is None else round(poll_interval * 1000)
        self._clock = clock
        self._sleep = sleep
        self._settle_ms = round(settle * 1000)
        self._max_lag_ms = round(max_lag * 1000)
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._page_limit = page_limit
        self._jitter = jitter
        self._start_ms: int | None = None
        self._buffer: list[tuple[int, str, int, Candle]] = []  # heap by (close ms, pair, tf ms)
        self._state = FeedState.CONNECTING
        self._detail = ""
        self._stop = asyncio.Event()
        self._iterating = False
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None

    # -- MarketFeed -------------------------------------------------------------------

    @property
    def streams(self) -> list[tuple[str, str]]:
        """The (pair, timeframe) streams polled."""
        return [(s.pair, s.timeframe) for s in self._streams]

    def status(self) -> FeedStatus:
        """``FeedStatus(exchange_id, CONNECTING|BACKFILLING|LIVE|RETRYING|ENDED, detail=...)``."""
        return FeedStatus(source=self.exchange_id, state=self._state, detail=self._detail)

    async def candles(self) -> AsyncIterator[Candle]:
        """Closed candles as they close, oldest close first, until ``stop()`` (iterate once)."""
        if self._iterating:
            raise RuntimeError("CcxtFeed.candles() is already being iterated")
        self._iterating = True
        self._begin()
        try:
            while not self._stop.is_set():
                now = self._now_ms()
                for s in self._streams:
                    if s.due <= now and not await self._poll(s):
                        return
                for candle in self._release(self._now_ms()):
                    if self._stop.is_set():
                        return
                    yield candle
                wake = min(s.due for s in self._streams)
                if self._buffer:
                    wake = min(wake, self._buffer[0][0] + self._max_lag_ms)
                now = self._now_ms()
                if wake > now and await sleep_unless_stopped(self._sleep, (wake - now) / 1000, self._stop):
                    return
        finally:
            self._iterating = False
            self._state = FeedState.ENDED
            await self.close()

    async def history(self, pair: str, timeframe: str, limit: int) -> list[Candle]:
        """Up to ``limit`` closed candles (oldest first) before the feed's first yielded one.

        Before anything is yielded that means the candles closed when the feed started.
        Pages through ``fetch_ohlcv`` as needed; gaps stay gaps, so fewer may come back.
        """
        tf_ms = timeframe_to_ms(timeframe)
        if limit <= 0:
            return []
        start = self._begin()
        stream = next((s for s in self._streams if (s.pair, s.timeframe) == (pair, timeframe)), None)
        last_ts = start - tf_ms if stream is None or stream.first_ts is None else stream.first_ts - 1
        cursor = last_ts - limit * tf_ms + 1
        out: list[Candle] = []
        if self._state is FeedState.CONNECTING:
            self._state = FeedState.BACKFILLING
        try:
            while True:
                rows = await self._fetch(pair, timeframe, cursor, self._page_limit)
                if rows is None:
                    break
                new = [c for c in _to_candles(pair, timeframe, rows) if cursor <= c.ts <= last_ts]
                out.extend(new)
                if not new or not rows or rows[-1][0] >= last_ts:
                    break
                cursor = new[-1].ts + 1
        finally:
            if self._state is FeedState.BACKFILLING:
                self._state = FeedState.LIVE if self._iterating else FeedState.CONNECTING
        return out[-limit:]

    def stop(self) -> None:
        """End ``candles()`` (waking any wait) and close the exchange."""
        self._stop.set()
        self._state = FeedState.ENDED
        if not self._iterating and not self._closed:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._close_task = loop.create_task(self.close())

    async def close(self) -> None:
        """Close the ccxt exchange's HTTP session (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._exchange is not None:
            await self._exchange.close()

    # -- internals --------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _begin(self) -> int:
        if self._start_ms is None:
            self._start_ms = self._now_ms()
            for s in self._streams:
                # candles closing after the start are live; exchanges align candles up to 1d
                # to the epoch, so the last candle closed at the start opened one step before
                # the start's grid line
                if s.tf_ms <= _DAY_MS:
                    s.cursor = self._start_ms // s.tf_ms * s.tf_ms - s.tf_ms
                else:
                    s.cursor = self._start_ms - s.tf_ms
                s.known = s.due = self._start_ms
        return self._start_ms

    def _ensure_exchange(self) -> Any:
        if self._exchange is None:
            ex = getattr(ccxt_async, self.exchange_id)({"enableRateLimit": True})
            _spot_only(ex)
            self._exchange = ex
            if self._urls_api:
                api = self._exchange.urls.get("api")
                merged = {**api, **self._urls_api} if isinstance(api, dict) else dict(self._urls_api)
                self._exchange.urls["api"] = merged
        return self._exchange

    def _backoff(self, attempt: int) -> float:
        full = min(self._backoff_cap, self._backoff_base * 2.0 ** (attempt - 1))
        return full / 2 + self._jitter() * full / 2

    async def _fetch(self, pair: str, timeframe: str, since: int, limit: int) -> list[list[Any]] | None:
        """``fetch_ohlcv`` retried on network errors; None if stopped meanwhile."""
        attempt = 0
        while not self._stop.is_set():
            try:
                rows = await self._ensure_exchange().fetch_ohlcv(pair, timeframe, since=since, limit=limit)
            except NetworkError as e:
                attempt += 1
                delay = self._backoff(attempt)
                self._state = FeedState.RETRYING
                self._detail = f"retry in {math.ceil(delay)}s: {type(e).__name__}"
                log.warning(
                    "%s %s %s: %s; %s", self.exchange_id, pair, timeframe, type(e).__name__, self._detail
                )
                if await sleep_unless_stopped(self._sleep, delay, self._stop):
                    return None
                continue
            if self._state is FeedState.RETRYING:
                self._state = FeedState.LIVE if self._iterating else FeedState.BACKFILLING
            self._detail = ""
            return sorted(rows, key=lambda r: r[0])
        return None

    async def _poll(self, s: _Stream) -> bool:
        """Fetch ``s``'s new closed candles into the buffer and schedule its next poll."""
        rows = await self._fetch(s.pair, s.timeframe, s.cursor + 1, self._page_limit)
        if rows is None:
            return False
        if self._state is not FeedState.ENDED:
            self._state = FeedState.LIVE
        now = self._now_ms()
        forming_close: int | None = None
        for candle in _to_candles(s.pair, s.timeframe, rows):
            if candle.ts <= s.cursor:
                continue
            if candle.ts + s.tf_ms > now:
                forming_close = candle.ts + s.tf_ms
                break
            heapq.heappush(self._buffer, (candle.ts + s.tf_ms, s.pair, s.tf_ms, candle))
            s.cursor = candle.ts
            if s.first_ts is None:
                s.first_ts = candle.ts
        if forming_close is None and len(rows) >= self._page_limit:  # a full page: more are waiting
            s.known = max(s.known, s.cursor + s.tf_ms)
            s.due = now
            return True
        if forming_close is not None:
            s.known = forming_close - 1  # nothing else closes before the forming candle
            next_close, late = forming_close, False
        else:
            last_close = s.cursor + s.tf_ms
            s.known = max(s.known, last_close)
            behind = (now - last_close) // s.tf_ms  # candles that should have closed since
            next_close, late = last_close + s.tf_ms * (behind + 1), behind > 0
        if self._poll_ms is not None:
            s.due = now + self._poll_ms
            return True
        natural = next_close + self._settle_ms
        if late:  # (or no trades, on exchanges that skip empty candles): ask again soon, then less
            s.misses += 1
            recheck = now + min(_RECHECK_MS * 2 ** (s.misses - 1), _RECHECK_CAP_MS)
            if recheck < natural:
                s.due = recheck
                return True
        s.misses = 0
        s.due = natural
        return True

    def _release(self, now: int) -> list[Candle]:
        """Buffered candles whose close every stream has caught up with (or ``max_lag`` ago)."""
        mark = min(max(s.known, now - self._max_lag_ms) for s in self._streams)
        out: list[Candle] = []
        while self._buffer and self._buffer[0][0] <= mark:
            out.append(heapq.heappop(self._buffer)[3])
        return out


def _spot_only(exchange: Any) -> None:
    """Make ccxt load spot markets only (the app trades spot): fewer requests at start, and no
    failure where derivatives endpoints are blocked (e.g. Binance futures in some regions)."""
    options = exchange.options
    options["defaultType"] = "spot"
    fetch_markets = options.get("fetchMarkets")
    if isinstance(fetch_markets, dict) and "spot" in fetch_markets.get("types", ()):
        options["fetchMarkets"] = {**fetch_markets, "types": ["spot"]}
    elif isinstance(fetch_markets, list) and "spot" in fetch_markets:
        options["fetchMarkets"] = ["spot"]


def _to_candles(pair: str, timeframe: str, rows: list[list[Any]]) -> list[Candle]:
    """ccxt OHLCV rows ``[ts_ms, o, h, l, c, v]`` -> Candles (rows with a missing price are dropped)."""
    out: list[Candle] = []
    for row in rows:
        ts, o, h, lo, c, v = row[:6]
        if ts is None or None in (o, h, lo, c):
            continue
        out.append(Candle(pair, timeframe, int(ts), float(o), float(h), float(lo), float(c), float(v or 0.0)))
    return out
