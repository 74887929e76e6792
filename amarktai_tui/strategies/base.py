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
    - Work per call is O(1) (incremental indicators), so 45 bots stay cheap;
      HOLD is returned as the shared ``domain.types.HOLD`` constant.
    - ``warmup`` counts candles including the one decided on: calls 1 to
      ``warmup - 1`` always return HOLD, call ``warmup`` is the first that
      may return ENTER/EXIT. A runner that feeds ``warmup - 1`` candles of
      history first can act on the next live candle.
    - Strategies are position-agnostic: they emit ENTER/EXIT on the event
      (a crossing, a breakout), once, regardless of position; the runner
      ignores an ENTER while long and an EXIT while flat. Protective exits
      (stop-loss, take-profit, trailing stop) are ``strategies.exits``,
      tracked by the runner per position.
    - ``params`` are the effective parameters, defaults included. Built-ins
      take them as keyword arguments and raise StrategyParamError on an
      unknown name or a bad value (``strategies.registry.make_strategy``).
    """

    name: ClassVar[str]

    @property
    def warmup(self) -> int: ...

    @property
    def params(self) -> Mapping[str, Any]: ...

    def on_candle(self, candle: Candle) -> Signal: ...
