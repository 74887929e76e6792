"""Market data: the MarketFeed protocol, candle-file loaders, replay and exchange feeds.

``CcxtFeed`` is imported lazily (importing ccxt takes a while and replay does not need it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amarktai_tui.market.base import FeedState, FeedStatus, MarketFeed
from amarktai_tui.market.errors import CandleFileError
from amarktai_tui.market.loaders import load_candles
from amarktai_tui.market.names import pair_timeframe_from_name
from amarktai_tui.market.replay import ReplayFeed

if TYPE_CHECKING:
    from amarktai_tui.market.ccxt_feed import CcxtFeed

__all__ = [
    "CandleFileError",
    "CcxtFeed",
    "FeedState",
    "FeedStatus",
    "MarketFeed",
    "ReplayFeed",
    "load_candles",
    "pair_timeframe_from_name",
]


def __getattr__(name: str) -> Any:
    if name == "CcxtFeed":
        from amarktai_tui.market.ccxt_feed import CcxtFeed

        return CcxtFeed
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
