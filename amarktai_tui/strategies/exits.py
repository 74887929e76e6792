"""Protective exits (stop-loss, take-profit, trailing stop) for one long position.

Timing, the same in paper, backtest and live: an exit is *decided* on the
closed candle t from its high and low, and *filled* by the broker at the
open of candle t+1 (like every strategy signal). The thresholds are
therefore triggers, not fill prices: a gap through the stop fills at the
next open, wherever that is. Nothing here reads a clock or does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from amarktai_tui.domain.enums import SignalAction
from amarktai_tui.domain.types import Candle, Signal
from amarktai_tui.strategies._fmt import fmt_price

__all__ = ["ExitRules", "PositionExitTracker"]


def _pct(x: Decimal) -> str:
    return f"{x * 100:.1f}%"


@dataclass(frozen=True, slots=True)
class ExitRules:
    """Protective exit thresholds as fractions of price (``Decimal("0.05")`` = 5%).

    ``stop_loss``: exit when the low reaches ``entry * (1 - stop_loss)``.
    ``take_profit``: exit when the high reaches ``entry * (1 + take_profit)``.
    ``trailing_stop``: exit when the low reaches ``peak * (1 - trailing_stop)``,
    ``peak`` being the highest high since entry (see ``PositionExitTracker``).
    Each is None (off) or a Decimal with ``0 < x < 1``; anything else raises
    ValueError naming the field (ints, floats and strings are refused so that
    ``0.05`` cannot silently become ``0.05000000000000000277``).
    """

    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    trailing_stop: Decimal | None = None

    def __post_init__(self) -> None:
        for field in ("stop_loss", "take_profit", "trailing_stop"):
            v = getattr(self, field)
            if v is None:
                continue
            if not isinstance(v, Decimal) or not v.is_finite() or not (0 < v < 1):
                raise ValueError(
                    f"{field}={v!r}: must be a Decimal fraction with 0 < x < 1 (0.05 = 5%), or None"
                )

    @classmethod
    def parse(
        cls,
        stop_loss: Decimal | float | str | None = None,
        take_profit: Decimal | float | str | None = None,
        trailing_stop: Decimal | float | str | None = None,
    ) -> ExitRules:
        """Build from config values: floats go through their shortest repr (``0.05`` -> ``Decimal("0.05")``).

        Raises ValueError naming the field for a non-number or a value outside ``0 < x < 1``.
        """
        vals: dict[str, Decimal | None] = {}
        for field, v in (
            ("stop_loss", stop_loss),
            ("take_profit", take_profit),
            ("trailing_stop", trailing_stop),
        ):
            if v is None or isinstance(v, Decimal):
                vals[field] = v
            elif isinstance(v, bool) or not isinstance(v, int | float | str):
                raise ValueError(f"{field}={v!r}: must be a fraction with 0 < x < 1 (0.05 = 5%), or None")
            else:
                try:
                    vals[field] = Decimal(repr(v) if isinstance(v, float) else str(v).strip())
                except ArithmeticError:
                    raise ValueError(
                        f"{field}={v!r}: must be a fraction with 0 < x < 1 (0.05 = 5%), or None"
                    ) from None
        return cls(vals["stop_loss"], vals["take_profit"], vals["trailing_stop"])

    @property
    def active(self) -> bool:
        """True if at least one rule is set."""
        return self.stop_loss is not None or self.take_profit is not None or self.trailing_stop is not None


class PositionExitTracker:
    """Per-position state for ``ExitRules``: entry price, highest high, trigger levels.

    Use: ``on_entry(fill_price)`` when the position opens, then
    ``check(candle)`` on every closed candle from the fill candle on (the
    candle whose open was the fill); it returns an EXIT Signal
    (``edge_bps`` 0: a protective exit, not a bet) or None. ``on_exit()``
    when the position is closed; while flat ``check`` returns None.

    Trigger levels are computed in Decimal from the exact entry price and
    rounded once to float, then compared with the candle's float high/low
    (inclusive: touching the level triggers):

    - stop-loss: ``low <= entry * (1 - stop_loss)``
    - take-profit: ``high >= entry * (1 + take_profit)``
    - trailing stop: ``low <= peak * (1 - trailing_stop)`` where ``peak`` is
      the max of the entry price, the highs of the earlier candles since
      entry *and this candle's high* (the peak is raised before the check).
      This is the conservative convention for risk: it never fires later
      than a tick-level trailing stop would (if one fires inside candle t,
      the running peak then is <= this peak and the price then is >= low_t),
      at the cost of sometimes firing when, inside the candle, the low came
      before the high.

    When several trigger on one candle, the order inside the candle is
    unknowable, so the report is the pessimistic one: stop-loss, then
    trailing stop, then take-profit. The fill price is the next open either
    way.
    """

    __slots__ = ("_entry", "_peak", "_rules", "_sl_level", "_tp_level", "_trail_factor", "_trail_level")

    def __init__(self, rules: ExitRules) -> None:
        self._rules = rules
        self._trail_factor = None if rules.trailing_stop is None else 1 - rules.trailing_stop
        self._entry: Decimal | None = None
        self._peak = 0.0
        self._sl_level: float | None = None
        self._tp_level: float | None = None
        self._trail_level: float | None = None

    @property
    def rules(self) -> ExitRules:
        return self._rules

    @property
    def in_position(self) -> bool:
        """True between ``on_entry`` and ``on_exit``."""
        return self._entry is not None

    @property
    def peak(self) -> float | None:
        """Highest price since entry (entry price, then candle highs); None while flat."""
        return None if self._entry is None else self._peak

    @property
    def stop_loss_price(self) -> float | None:
        """Current stop-loss trigger (quote per base), None if off or flat."""
        return self._sl_level

    @property
    def take_profit_price(self) -> float | None:
        """Current take-profit trigger (quote per base), None if off or flat."""
        return self._tp_level

    @property
    def trailing_stop_price(self) -> float | None:
        """Trailing trigger for the peak so far (quote per base), None if off or flat."""
        return self._trail_level

    def on_entry(self, entry_price: float | Decimal) -> None:
        """Start tracking a position filled at ``entry_price`` (> 0; ValueError otherwise)."""
        entry = Decimal(entry_price)
        if not entry.is_finite() or entry <= 0:
            raise ValueError(f"entry_price={entry_price!r}: must be a positive finite price")
        r = self._rules
        self._entry = entry
        self._peak = float(entry)
        self._sl_level = None if r.stop_loss is None else float(entry * (1 - r.stop_loss))
        self._tp_level = None if r.take_profit is None else float(entry * (1 + r.take_profit))
        self._trail_level = None if self._trail_factor is None else float(entry * self._trail_factor)

    def on_exit(self) -> None:
        """Forget the position (flat again)."""
        self._entry = None
        self._peak = 0.0
        self._sl_level = self._tp_level = self._trail_level = None

    def check(self, candle: Candle) -> Signal | None:
        """An EXIT Signal if a rule triggers on this closed candle, else None (also None while flat)."""
        if self._entry is None:
            return None
        high = candle.high
        low = candle.low
        if high > self._peak:
            self._peak = high
            if self._trail_factor is not None:
                self._trail_level = float(Decimal(high) * self._trail_factor)
        r = self._rules
        lvl = self._sl_level
        if lvl is not None and low <= lvl:
            assert r.stop_loss is not None
            return Signal(
                SignalAction.EXIT,
                0.0,
                f"stop-loss {_pct(r.stop_loss)} hit (low {fmt_price(low)} <= {fmt_price(lvl)})",
            )
        lvl = self._trail_level
        if lvl is not None and low <= lvl:
            assert r.trailing_stop is not None
            return Signal(
                SignalAction.EXIT,
                0.0,
                f"trailing stop {_pct(r.trailing_stop)} hit "
                f"(low {fmt_price(low)} <= {fmt_price(lvl)}, peak {fmt_price(self._peak)})",
            )
        lvl = self._tp_level
        if lvl is not None and high >= lvl:
            assert r.take_profit is not None
            return Signal(
                SignalAction.EXIT,
                0.0,
                f"take-profit {_pct(r.take_profit)} hit (high {fmt_price(high)} >= {fmt_price(lvl)})",
            )
        return None
