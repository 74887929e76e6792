"""``rsi_reversion``: buy the turn out of oversold, sell into overbought (mean reversion)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from amarktai_tui.domain.enums import SignalAction
from amarktai_tui.domain.types import HOLD, Candle, Signal
from amarktai_tui.strategies._fmt import fmt_price
from amarktai_tui.strategies.base import StrategyParamError
from amarktai_tui.strategies.params import ParamSpec, ParamValue, SearchRange, validate_params

__all__ = ["RsiReversion"]


class RsiReversion:
    """RSI mean reversion on closes.

    Params (keyword only; see ``PARAMS``): ``period`` (int, default 14, in
    [2, 10000]), ``oversold`` (number, default 30, in (0, 100)),
    ``overbought`` (number, default 70, in (0, 100)); ``oversold <
    overbought``. Raises StrategyParamError for an unknown name, a bad value
    or ``oversold >= overbought``.

    Rule (Wilder, *New Concepts in Technical Trading Systems*, 1978: the
    30/70 levels): ENTER on the candle where RSI(period) crosses up through
    ``oversold`` (previous RSI < oversold <= this RSI); EXIT on the candle
    where it rises above ``overbought`` (previous RSI <= overbought < this
    RSI). Entering on the turn rather than while RSI is below the level waits
    for selling to exhaust instead of buying a falling market, and makes the
    signal an event (one ENTER per excursion below the level). A jump from
    below oversold to above overbought in one candle is an ENTER only. RSI
    is Wilder's, seeded as TA-Lib does, inlined with the same arithmetic as
    ``indicators.RSI`` (50 in a perfectly flat market) and ``indicators.SMA``.

    ``edge_bps``: distance to the mean, the size of the reversion the trade
    bets on. ENTER: ``(SMA(period) - close) / close * 1e4``, floored at 0;
    EXIT: ``(close - SMA(period)) / close * 1e4``, floored at 0 (a close
    already on the wrong side of the mean offers no reversion edge, so the fee
    gate can refuse it).

    ``warmup`` = ``period + 2``: RSI needs ``period + 1`` closes and a
    crossing needs its previous value.
    """

    name: ClassVar[str] = "rsi_reversion"
    SUMMARY: ClassVar[str] = (
        "Enter when RSI turns up through the oversold level; exit when it rises above overbought."
    )
    PARAMS: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec("period", "int", 14, "RSI length (candles, Wilder smoothing)", minimum=2, maximum=10_000),
        ParamSpec(
            "oversold", "float", 30.0, "RSI level to buy the turn up through", 0.0, 100.0, exclusive=True
        ),
        ParamSpec("overbought", "float", 70.0, "RSI level above which to sell", 0.0, 100.0, exclusive=True),
    )
    CONSTRAINTS: ClassVar[tuple[str, ...]] = ("oversold < overbought",)
    SEARCH: ClassVar[Mapping[str, SearchRange]] = MappingProxyType(
        {
            "period": SearchRange(5, 40),
            "oversold": SearchRange(10, 45),
            "overbought": SearchRange(55, 90, above="oversold"),
        }
    )
    EDGE: ClassVar[str] = "distance from the close to SMA(period) in bps of the close, floored at 0"

    __slots__ = (
        "_avg_gain",
        "_avg_loss",
        "_k",
        "_n",
        "_ob",
        "_os",
        "_params",
        "_prev",
        "_prev_rsi",
        "_ring",
        "_sum",
    )

    def __init__(self, **params: Any) -> None:
        p = validate_params(self.name, self.PARAMS, params)
        period, oversold, overbought = int(p["period"]), float(p["oversold"]), float(p["overbought"])
        if oversold >= overbought:
            raise StrategyParamError(
                f"{self.name}: oversold={oversold:g} must be less than overbought={overbought:g}"
            )
        self._params: Mapping[str, ParamValue] = MappingProxyType(p)
        self._n = period
        self._os = oversold
        self._ob = overbought
        # RSI and SMA are inlined (same arithmetic as indicators.RSI/SMA) to keep on_candle
        # near 1 us. Closes live in a ring of `period` slots (slot k % period for candle k),
        # in time order when k % period == period - 1, when the sum is recomputed exactly.
        self._ring = [0.0] * period
        self._sum = 0.0
        self._k = 0  # candles seen
        self._prev = 0.0  # previous close
        self._avg_gain = 0.0  # sum of gains during the seed, then Wilder's average
        self._avg_loss = 0.0
        self._prev_rsi = 0.0

    @property
    def warmup(self) -> int:
        """Candles (including the deciding one) before the first possible ENTER/EXIT: ``period + 2``."""
        return self._n + 2

    @property
    def params(self) -> Mapping[str, Any]:
        """Effective params (read-only): ``{"period": int, "oversold": float, "overbought": float}``."""
        return self._params

    def on_candle(self, candle: Candle) -> Signal:
        """Feed one closed candle; return ENTER/EXIT on an RSI level crossing, else HOLD."""
        c = candle.close
        k = self._k
        self._k = k + 1
        n = self._n
        prev = self._prev
        self._prev = c
        # SMA(period) of closes
        i = k % n
        ring = self._ring
        s = self._sum + (c - ring[i])
        ring[i] = c
        if i == n - 1:
            s = math.fsum(ring)
        self._sum = s
        if k <= n:
            self._warm(c, k, prev)
            return HOLD
        # Wilder smoothing, as TA-Lib: avg = (avg * (n - 1) + x) / n
        d = c - prev
        if d > 0.0:
            g = (self._avg_gain * (n - 1) + d) / n
            lo = self._avg_loss * (n - 1) / n
        else:
            g = self._avg_gain * (n - 1) / n
            lo = (self._avg_loss * (n - 1) - d) / n
        self._avg_gain = g
        self._avg_loss = lo
        t = g + lo
        r = 100.0 - 100.0 * (lo / t) if t > 0.0 else 50.0
        pr = self._prev_rsi
        self._prev_rsi = r
        lvl = self._os
        if pr < lvl <= r:
            edge = (s / n - c) / c * 1e4 if c > 0.0 else 0.0
            return Signal(
                SignalAction.ENTER,
                edge if edge > 0.0 else 0.0,
                f"RSI{n} crossed up through {lvl:g} ({pr:.1f} -> {r:.1f}, close {fmt_price(c)})",
            )
        lvl = self._ob
        if pr <= lvl < r:
            edge = (c - s / n) / c * 1e4 if c > 0.0 else 0.0
            return Signal(
                SignalAction.EXIT,
                edge if edge > 0.0 else 0.0,
                f"RSI{n} rose above {lvl:g} ({pr:.1f} -> {r:.1f}, close {fmt_price(c)})",
            )
        return HOLD

    def _warm(self, c: float, k: int, prev: float) -> None:
        """Candle number k <= period: sum the first gains/losses; at k == period seed RSI."""
        if k == 0:
            return
        d = c - prev
        if d > 0.0:
            self._avg_gain += d
        else:
            self._avg_loss -= d
        n = self._n
        if k == n:
            g = self._avg_gain = self._avg_gain / n
            lo = self._avg_loss = self._avg_loss / n
            t = g + lo
            self._prev_rsi = 100.0 - 100.0 * (lo / t) if t > 0.0 else 50.0
