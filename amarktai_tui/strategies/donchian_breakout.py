"""``donchian_breakout``: channel breakout (trend following, the Turtle rule)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from amarktai_tui.domain.enums import SignalAction
from amarktai_tui.domain.types import HOLD, Candle, Signal
from amarktai_tui.strategies._fmt import fmt_price
from amarktai_tui.strategies.params import ParamSpec, ParamValue, SearchRange, validate_params

__all__ = ["DonchianBreakout"]


class DonchianBreakout:
    """Donchian channel breakout on closes against previous highs/lows.

    Params (keyword only; see ``PARAMS``): ``entry_period`` (int, default 20,
    in [1, 10000]), ``exit_period`` (int, default 10, in [1, 10000]). Raises
    StrategyParamError for an unknown name or a bad value.

    Rule (R. Donchian; the Turtle system 1, Faith, *Way of the Turtle*, 2007):
    ENTER when the close breaks above the highest high of the previous
    ``entry_period`` candles (the current candle excluded); EXIT when the
    close breaks below the lowest low of the previous ``exit_period``
    candles. Signals fire on the breakout event: the candle whose close is
    beyond the channel when the previous candle's close was not beyond its
    own channel on that side. A run of closes above the channel gives one
    ENTER; a pull-back inside and a new break gives another.

    ``edge_bps`` (ENTER and EXIT): the height of the entry channel, highest
    high minus lowest low of the previous ``entry_period`` candles, in bps of
    this close: the classic "measured move" target of a breakout from that
    range (for an EXIT, the size of the move being stepped aside from).

    ``warmup`` = ``max(entry_period, exit_period) + 2``: both channels are
    complete from candle number ``max + 1`` on, and an event also needs the
    previous candle's state against its own complete channels.
    """

    name: ClassVar[str] = "donchian_breakout"
    SUMMARY: ClassVar[str] = (
        "Enter when the close breaks above the previous N-candle high; exit below the previous M-candle low."
    )
    PARAMS: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec(
            "entry_period", "int", 20, "candles in the breakout (upper) channel", minimum=1, maximum=10_000
        ),
        ParamSpec("exit_period", "int", 10, "candles in the exit (lower) channel", minimum=1, maximum=10_000),
    )
    CONSTRAINTS: ClassVar[tuple[str, ...]] = ()
    SEARCH: ClassVar[Mapping[str, SearchRange]] = MappingProxyType(
        {"entry_period": SearchRange(5, 200, log=True), "exit_period": SearchRange(3, 100, log=True)}
    )
    EDGE: ClassVar[str] = (
        "entry channel height (highest high - lowest low, previous entry_period candles) in bps"
    )

    __slots__ = (
        "_entry_n",
        "_exit_n",
        "_hi_idx",
        "_hi_val",
        "_k",
        "_lo_idx",
        "_lo_val",
        "_params",
        "_ready_at",
        "_state",
        "_xlo_idx",
        "_xlo_val",
    )

    def __init__(self, **params: Any) -> None:
        p = validate_params(self.name, self.PARAMS, params)
        entry, exit_ = int(p["entry_period"]), int(p["exit_period"])
        self._params: Mapping[str, ParamValue] = MappingProxyType(p)
        self._entry_n = entry
        self._exit_n = exit_
        self._ready_at = max(entry, exit_)  # candle number whose channels are first complete
        # Rolling max/min inlined (same monotonic-deque method as indicators.RollingMax/Min):
        # values and candle numbers in parallel deques; the front is the channel's extreme.
        # The sentinel index -inf is dropped by the first expiry check.
        self._hi_val: deque[float] = deque([0.0])
        self._hi_idx: deque[float] = deque([-math.inf])
        self._lo_val: deque[float] = deque([0.0])  # lows, entry window (for the edge)
        self._lo_idx: deque[float] = deque([-math.inf])
        self._xlo_val: deque[float] = deque([0.0])  # lows, exit window
        self._xlo_idx: deque[float] = deque([-math.inf])
        self._k = 0  # candles seen
        self._state = 2  # previous candle: +1 above, -1 below, 0 inside; 2 unknown

    @property
    def warmup(self) -> int:
        """Candles (including the deciding one) before the first possible ENTER/EXIT."""
        return self._ready_at + 2

    @property
    def params(self) -> Mapping[str, Any]:
        """Effective params (read-only): ``{"entry_period": int, "exit_period": int}``."""
        return self._params

    def on_candle(self, candle: Candle) -> Signal:
        """Feed one closed candle; return ENTER/EXIT on a breakout event, else HOLD."""
        k = self._k
        self._k = k + 1
        h = candle.high
        low = candle.low
        # Drop what left the windows of the previous n candles, read the channels of the
        # previous candles (this one excluded), then push this candle.
        hv = self._hi_val
        hx = self._hi_idx
        if hx[0] < k - self._entry_n:
            hx.popleft()
            hv.popleft()
        xv = self._xlo_val
        xx = self._xlo_idx
        if xx[0] < k - self._exit_n:
            xx.popleft()
            xv.popleft()
        lv = self._lo_val
        lx = self._lo_idx
        if lx[0] < k - self._entry_n:
            lx.popleft()
            lv.popleft()
        ready = k >= self._ready_at
        if ready:
            hi = hv[0]
            lo_exit = xv[0]
            lo_entry = lv[0]
        while hv and hv[-1] <= h:
            hv.pop()
            hx.pop()
        hv.append(h)
        hx.append(k)
        while xv and xv[-1] >= low:
            xv.pop()
            xx.pop()
        xv.append(low)
        xx.append(k)
        while lv and lv[-1] >= low:
            lv.pop()
            lx.pop()
        lv.append(low)
        lx.append(k)
        if not ready:
            return HOLD
        c = candle.close
        if c > hi:
            state = 1
        elif c < lo_exit:
            state = -1
        else:
            self._state = 0
            return HOLD
        last = self._state
        self._state = state
        if last == state or last == 2:
            return HOLD
        edge = (hi - lo_entry) / c * 1e4 if c > 0.0 else 0.0
        if state > 0:
            return Signal(
                SignalAction.ENTER,
                edge,
                f"close {fmt_price(c)} broke above {self._entry_n}-candle high {fmt_price(hi)}",
            )
        return Signal(
            SignalAction.EXIT,
            edge,
            f"close {fmt_price(c)} broke below {self._exit_n}-candle low {fmt_price(lo_exit)}",
        )
