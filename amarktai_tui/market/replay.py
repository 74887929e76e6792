"""ReplayFeed: candles from files, as if they were arriving from an exchange."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence

from amarktai_tui.domain.types import Candle, timeframe_to_ms
from amarktai_tui.market._wait import SleepFn, sleep_unless_stopped
from amarktai_tui.market.base import FeedState, FeedStatus
from amarktai_tui.market.errors import CandleFileError
from amarktai_tui.market.loaders import gc_paused, load_candles
from amarktai_tui.market.timestamps import ms_to_iso


class ReplayFeed:
    """A MarketFeed over candle files (``--replay FILE[,FILE...]``).

    All files are loaded (and validated) in the constructor, so a bad file raises
    CandleFileError before anything runs. Candles of all files are merged in order of
    close time (``ts + timeframe`` ms UTC), ties broken by pair name then timeframe, so
    several pairs interleave as they would live. Each file must be a different
    (pair, timeframe) stream.

    ``speed``: X times real time between consecutive close times (1.0 = real time,
    60 = one minute of market per second); 0 = as fast as possible, yielding to the
    event loop (``sleep(0)``) every ``yield_every`` candles and never sleeping otherwise.
    ``until_end``: True = ``candles()`` ends after the last candle; False = the feed
    stays ENDED and ``candles()`` waits until ``stop()`` (a UI keeps showing results).
    ``sleep`` is the sleep function (injectable for tests).
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        pair: str | None = None,
        timeframe: str | None = None,
        speed: float = 0.0,
        until_end: bool = True,
        *,
        sleep: SleepFn = asyncio.sleep,
        yield_every: int = 256,
    ) -> None:
        if isinstance(paths, str | os.PathLike):
            paths = [paths]
        if not paths:
            raise ValueError("ReplayFeed needs at least one candle file")
        if yield_every < 1:
            raise ValueError(f"yield_every must be >= 1, got {yield_every}")
        self.speed = speed
        self._until_end = until_end
        self._sleep = sleep
        self._yield_every = yield_every
        sources: dict[tuple[str, str], str] = {}
        loaded: list[list[Candle]] = []
        for path in paths:
            candles = load_candles(path, pair, timeframe)
            key = (candles[0].pair, candles[0].timeframe)
            if key in sources:
                raise CandleFileError(path, f"{key[0]} {key[1]} is already replayed from {sources[key]}")
            sources[key] = os.fspath(path)
            loaded.append(candles)
        self._streams = list(sources)
        self._candles, self._closes = _merge(loaded)
        self._yielded = 0
        self._started = False
        self._state = FeedState.REPLAYING
        self._stop = asyncio.Event()

    @property
    def streams(self) -> list[tuple[str, str]]:
        """The (pair, timeframe) streams, in the order of the files."""
        return list(self._streams)

    @property
    def total(self) -> int:
        """Number of candles in all files."""
        return len(self._candles)

    @property
    def yielded(self) -> int:
        """Number of candles handed out so far."""
        return self._yielded

    @property
    def speed(self) -> float:
        """Replay speed factor (0 = as fast as possible); may be changed while running."""
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        if not value >= 0.0 or value == float("inf"):
            raise ValueError(f"replay speed must be >= 0 (0 = as fast as possible), got {value}")
        self._speed = float(value)

    def status(self) -> FeedStatus:
        """``FeedStatus("replay", REPLAYING|ENDED, progress=yielded/total, speed=speed)``."""
        detail = f"{self._yielded:,}/{self.total:,} candles"
        if self._yielded:
            detail += f", at {ms_to_iso(self._closes[self._yielded - 1])}"
        return FeedStatus(
            source="replay",
            state=self._state,
            progress=self._yielded / self.total,
            speed=self._speed,
            detail=detail,
        )

    async def candles(self) -> AsyncIterator[Candle]:
        """The merged candles, oldest close first (an async generator; iterate it once)."""
        if self._started:
            raise RuntimeError("ReplayFeed.candles() can only be iterated once")
        self._started = True
        data, closes, stop = self._candles, self._closes, self._stop
        every = self._yield_every
        prev_close = closes[0]
        try:
            for i, candle in enumerate(data):
                if stop.is_set():
                    return
                if self._speed > 0.0:
                    close = closes[i]
                    if close > prev_close:
                        delay = (close - prev_close) / 1000.0 / self._speed
                        if await sleep_unless_stopped(self._sleep, delay, stop):
                            return
                elif i and i % every == 0:
                    await self._sleep(0)
                    if stop.is_set():
                        return
                prev_close = closes[i]
                self._yielded = i + 1
                yield candle
            self._state = FeedState.ENDED
            if not self._until_end:
                await stop.wait()
        finally:
            self._state = FeedState.ENDED

    async def history(self, pair: str, timeframe: str, limit: int) -> list[Candle]:
        """Always ``[]``: a replay has no data before its first candle."""
        return []

    def stop(self) -> None:
        """End ``candles()`` at its next step (also wakes a speed>0 sleep or an until_end=False wait)."""
        self._stop.set()
        self._state = FeedState.ENDED


def _merge(streams: list[list[Candle]]) -> tuple[list[Candle], list[int]]:
    """All candles ordered by (close ms, pair, timeframe ms), and their close times."""
    steps = [timeframe_to_ms(s[0].timeframe) for s in streams]
    if len(streams) == 1:
        return streams[0], [c.ts + steps[0] for c in streams[0]]
    # one int key per candle: close * n + rank of its stream in (pair, timeframe ms) order
    n = len(streams)
    ranks = sorted(range(n), key=lambda i: (streams[i][0].pair, steps[i]))
    keyed: list[tuple[int, Candle]] = []
    with gc_paused():
        for rank, i in enumerate(ranks):
            step = steps[i]
            keyed += [((c.ts + step) * n + rank, c) for c in streams[i]]
        keyed.sort(key=lambda k: k[0])
        return [k[1] for k in keyed], [k[0] // n for k in keyed]
