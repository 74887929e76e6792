"""The Strategy protocol: incremental, O(1) per candle, closed candles only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

from amarktai_tui.domain.types import Candle, Signal


class StrategyParamError(ValueError):
    """A strategy parameter is missing, unknown or out of range (message names it)."""


@runtime_checkable
class Strategy(Protocol):
    """A trading rule fed one closed candle at a time.

    Contract:
    - ``on_candle(candle)`` is called once per closed candle of the bot's pair
      and timeframe, oldest first, and returns a Signal using candles up to and
      including ``candle`` only (no lookahead). Fills happen later, at the next
      candle's open, outside the strategy.
    - Work per call is O(1) (incremental indicators), so 45 bots stay cheap.
    - Until ``warmup`` candles have been seen it returns HOLD.
    - ``in_position`` is told by the runner so the strategy may phrase exits;
      strategies emit ENTER/EXIT regardless and the runner ignores an ENTER
      while long and an EXIT while flat.
    """

    name: ClassVar[str]

    @property
    def warmup(self) -> int: ...

    @property
    def params(self) -> Mapping[str, Any]: ...

    def on_candle(self, candle: Candle) -> Signal: ...
