"""The MarketFeed protocol: a source of closed candles for the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from amarktai_tui.domain.types import Candle


class FeedState(StrEnum):
    CONNECTING = "connecting"
    BACKFILLING = "backfilling"
    LIVE = "live"
    RETRYING = "retrying"  # network error, backing off
    REPLAYING = "replaying"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """What the header shows about the data source.

    ``source`` is the exchange id or ``"replay"``; ``progress`` is 0..1 for a
    replay (None for an exchange feed); ``speed`` the replay speed factor
    (0 = as fast as possible); ``detail`` a short human string (last error,
    next retry in N s, ...).
    """

    source: str
    state: FeedState
    progress: float | None = None
    speed: float | None = None
    detail: str = ""


class MarketFeed(Protocol):
    """Yields closed candles for a set of (pair, timeframe) streams.

    Candles of several streams are yielded in timestamp order of their close
    time; within one stream strictly increasing ``ts``; a gap in the data is a
    gap (no synthetic candles). ``candles()`` ends only for a finite source
    (replay with until-end) or when ``stop()`` is called.
    """

    @property
    def streams(self) -> list[tuple[str, str]]:
        """The (pair, timeframe) streams this feed produces."""
        ...

    def status(self) -> FeedStatus: ...

    def candles(self) -> AsyncIterator[Candle]: ...

    async def history(self, pair: str, timeframe: str, limit: int) -> list[Candle]:
        """Up to ``limit`` closed candles before the feed's first yielded one (warm-up)."""
        ...

    def stop(self) -> None: ...
