"""Bot lifecycle stages: the promotion criteria, the live demotion floors, and the one decision each.

Pure: no I/O, no clock reads. Times are ms UTC passed in by the caller (market
time: the candles' clock in a replay, so a replay can earn eligibility).

Stages (``domain.enums.LifecycleStage``)::

    paper_training -> eligible_for_live -> live        quarantined: from any stage

A bot's *track* is the stretch of market time its figures are measured over
(``Basis``). A track starts when the bot enters paper_training (a new bot: at
the close of the first candle it sees), live or quarantined. Entering
eligible_for_live does not start a track: eligibility is a mark on the paper
track, whose figures keep updating so the user sees them when asked to promote.

Figures of a track (``StageTally`` -> ``StageFigures``), all since ``since``:

- days: (close of the latest candle the bot saw - since) / 86,400,000 ms.
- trades: round trips closed in the track (flat to flat, as
  ``ledger.pnl.trades_from_fills`` builds them: exit fill ts >= since).
- win rate: wins / trades, a win is ``pnl > 0`` (``ledger.metrics.win_rate``).
- profit factor: gross profit / gross loss of those trades
  (``ledger.metrics.profit_factor``); None without a losing trade (then a
  track with a gross profit passes: the ratio is unbounded, not undefined).
- return: (pnl now - pnl at the start) / capital; pnl = realised + unrealised
  = equity - funding (quote), so funding and allocations are not profit;
  capital = the bot's capital (quote).
- max drawdown: max over the track's equity points of (peak - E) / peak, the
  peak starting at the equity at the start of the track (the formula of
  ``ledger.metrics.drawdowns``). The points are the equity snapshots
  (``[engine] snapshot_interval``), as in the reports.

Units: every ratio is a fraction (0.52 = 52%), never a percentage; money is
Decimal in quote currency. All comparisons are exact Decimal comparisons, so
a figure exactly at its target passes (``>=`` / ``<=``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any

from amarktai_tui.ledger.pnl import Trade

DAY_MS = 86_400_000
_ZERO = Decimal(0)
_D = Decimal


@dataclass(frozen=True, slots=True)
class PromotionCriteria:
    """What a paper_training bot must show to become eligible_for_live (config ``[promotion]``).

    ``min_days``: days of market time in the track; ``min_trades``: closed round
    trips; ``min_win_rate``, ``min_return``, ``max_drawdown``: fractions;
    ``min_profit_factor``: a ratio (gross profit / gross loss).
    """

    min_days: Decimal = Decimal(7)
    min_trades: int = 25
    min_win_rate: Decimal = Decimal("0.52")
    min_return: Decimal = Decimal("0.03")
    max_drawdown: Decimal = Decimal("0.15")
    min_profit_factor: Decimal = Decimal("1.2")


@dataclass(frozen=True, slots=True)
class DemotionFloors:
    """Where a live bot goes back to paper_training (config ``[promotion] live_*``). Fractions.

    Demoted when its drawdown since going live exceeds ``max_drawdown``, or its
    return since going live falls below ``min_return`` (negative: a loss).
    """

    max_drawdown: Decimal = Decimal("0.15")
    min_return: Decimal = Decimal("-0.05")


@dataclass(frozen=True, slots=True)
class Basis:
    """Where a track starts: ``since`` (ms UTC, market time), the bot's ``pnl`` then
    (realised + unrealised, quote) and its ``equity`` then (quote; None = unknown:
    the first equity point sets the drawdown peak)."""

    since: int
    pnl: Decimal = _ZERO
    equity: Decimal | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "pnl": str(self.pnl),
            "equity": None if self.equity is None else str(self.equity),
        }

    @classmethod
    def from_json(cls, data: Any) -> Basis | None:
        """The basis stored in a stage change's figures (``figures["basis"]``); None when absent or malformed."""
        if not isinstance(data, Mapping):
            return None
        try:
            eq = data.get("equity")
            return cls(int(data["since"]), _D(str(data.get("pnl", "0"))), None if eq is None else _D(str(eq)))
        except (KeyError, TypeError, ValueError, ArithmeticError):
            return None


@dataclass(frozen=True, slots=True)
class StageFigures:
    """A track's figures at one moment (see the module docstring). Money quote; ratios fractions."""

    since: int
    elapsed_ms: int
    trades: int
    wins: int
    gross_profit: Decimal
    gross_loss: Decimal
    pnl: Decimal
    capital: Decimal
    max_drawdown: Decimal

    @property
    def days(self) -> Decimal:
        """Days of market time in the track."""
        return _D(self.elapsed_ms) / DAY_MS

    @property
    def win_rate(self) -> Decimal | None:
        """wins / trades; None without trades."""
        return _D(self.wins) / self.trades if self.trades else None

    @property
    def profit_factor(self) -> Decimal | None:
        """gross profit / gross loss; None without a losing trade."""
        return self.gross_profit / self.gross_loss if self.gross_loss > 0 else None

    @property
    def ret(self) -> Decimal | None:
        """pnl / capital (fraction); None when the capital is not positive."""
        return self.pnl / self.capital if self.capital > 0 else None


@dataclass(slots=True)
class StageTally:
    """Running figures of one track, fed trade by trade and point by point (O(1) each).

    ``add_trade(pnl)`` for every round trip closed in the track; ``mark(equity)``
    for every equity point (quote) in time order; ``figures(...)`` any time.
    """

    basis: Basis
    trades: int = 0
    wins: int = 0
    gross_profit: Decimal = _ZERO
    gross_loss: Decimal = _ZERO
    peak: Decimal | None = None
    max_drawdown: Decimal = _ZERO

    def __post_init__(self) -> None:
        if self.peak is None:
            self.peak = self.basis.equity

    @property
    def since(self) -> int:
        return self.basis.since

    def add_trade(self, pnl: Decimal) -> None:
        """A round trip closed with ``pnl`` (quote, fees included)."""
        self.trades += 1
        if pnl > 0:
            self.wins += 1
            self.gross_profit += pnl
        elif pnl < 0:
            self.gross_loss -= pnl

    def mark(self, equity: Decimal) -> None:
        """An equity point (quote): updates the peak and the max drawdown (``ledger.metrics.drawdowns``)."""
        if self.peak is None or equity > self.peak:
            self.peak = equity
        if self.peak > 0:
            dd = (self.peak - equity) / self.peak
            if dd > self.max_drawdown:
                self.max_drawdown = dd

    def figures(self, *, last_close_ts: int | None, pnl: Decimal, capital: Decimal) -> StageFigures:
        """The figures now: ``last_close_ts`` = close (ms UTC) of the latest candle the bot saw
        (None: none yet), ``pnl`` = the bot's realised + unrealised now, ``capital`` its capital (quote)."""
        elapsed = 0 if last_close_ts is None else max(0, last_close_ts - self.basis.since)
        return StageFigures(
            since=self.basis.since,
            elapsed_ms=elapsed,
            trades=self.trades,
            wins=self.wins,
            gross_profit=self.gross_profit,
            gross_loss=self.gross_loss,
            pnl=pnl - self.basis.pnl,
            capital=capital,
            max_drawdown=self.max_drawdown,
        )


def tally_from_history(
    basis: Basis, trades: Iterable[Trade], equity: Iterable[tuple[int, Decimal]]
) -> StageTally:
    """A track's tally rebuilt from the ledger: ``trades`` (``ledger.pnl.trades_from_fills`` of
    the bot, any order) with ``exit_ts >= basis.since``, and equity points ``(ts, equity)``
    with ``ts >= basis.since`` in time order. The engine's running tally reaches the same figures."""
    tally = StageTally(basis)
    for t in sorted((t for t in trades if t.exit_ts >= basis.since), key=lambda t: t.exit_ts):
        tally.add_trade(t.pnl)
    for ts, e in sorted(equity, key=lambda p: p[0]):
        if ts >= basis.since:
            tally.mark(e)
    return tally


# -- the decisions --------------------------------------------------------------------------------

_LABELS: dict[str, tuple[str, str]] = {
    "trades": ("trades", "trades"),
    "win_rate": ("win rate", "win"),
    "days": ("days", "days"),
    "return": ("return", "ret"),
    "max_drawdown": ("max drawdown", "dd"),
    "profit_factor": ("profit factor", "pf"),
    "live_drawdown": ("live drawdown", "dd"),
    "live_return": ("live return", "ret"),
}
"""Check name -> (label, short label)."""
_AT_MOST = frozenset({"max_drawdown", "live_drawdown"})  # the others are minimums


@dataclass(frozen=True, slots=True)
class Check:
    """One criterion: ``value`` measured (None = not measurable yet) against ``target``, ``ok`` or not.

    Values and targets are fractions for rates, returns and drawdowns, days for
    ``days``, a count for ``trades``, a ratio for ``profit_factor``.
    ``progress`` is a short text for people (``"trades 18/25"``, ``"win rate 55% ok"``,
    ``"days 4.2/7"``); ``short`` the same for a narrow column, with a check mark when ok.
    A missed target's figure is shown rounded towards failing, so it never reads as a pass.
    """

    name: str
    value: Decimal | int | None
    target: Decimal | int
    ok: bool
    unbounded: bool = False  # a profit factor without any losing trade

    def _texts(self) -> tuple[str, str]:
        """(value, target) as shown."""
        v, t, n = self.value, self.target, self.name
        if n == "trades":
            return str(v), str(t)
        if n == "days":
            return _num(_floor(_D(v or 0), 1)), _num(_D(t))
        if n == "profit_factor":
            if v is None:
                return ("∞" if self.unbounded else "-"), _num(_D(t))
            return _num(_D(v).quantize(_D("0.01"), rounding=ROUND_FLOOR)), _num(_D(t))
        # a miss is rounded towards failing, so it never reads as reaching its target
        rounding = ROUND_HALF_EVEN if self.ok else ROUND_CEILING if n in _AT_MOST else ROUND_FLOOR
        return _pct(None if v is None else _D(v), rounding), _pct(_D(t))

    @property
    def progress(self) -> str:
        shown, goal = self._texts()
        label = _LABELS.get(self.name, (self.name, self.name))[0]
        return f"{label} {shown} ok" if self.ok else f"{label} {shown}/{goal}"

    @property
    def short(self) -> str:
        shown, goal = self._texts()
        label = _LABELS.get(self.name, (self.name, self.name))[1]
        return f"{label} {shown} ✓" if self.ok else f"{label} {shown}/{goal}"

    def as_json(self) -> dict[str, Any]:
        """``{"name", "value" (str|null), "target" (str), "ok", "progress"}``."""
        value = None if self.value is None else str(self.value)
        return {
            "name": self.name,
            "value": value,
            "target": str(self.target),
            "ok": self.ok,
            "progress": self.progress,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """The checks of one decision; ``ok`` when every check passes; ``figures`` measured."""

    checks: tuple[Check, ...]
    figures: StageFigures | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def met(self) -> int:
        """How many checks pass."""
        return sum(1 for c in self.checks if c.ok)

    @property
    def failing(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok)

    def summary(self, *, short: bool = False, sep: str = ", ") -> str:
        """Every check's progress joined, e.g. ``"trades 18/25, win rate 55% ok, days 4.2/7, ..."``."""
        return sep.join(c.short if short else c.progress for c in self.checks)

    def as_json(self) -> list[dict[str, Any]]:
        return [c.as_json() for c in self.checks]


def evaluate_promotion(fig: StageFigures, crit: PromotionCriteria) -> Verdict:
    """THE promotion decision: ``verdict.ok`` iff every criterion of ``crit`` holds on ``fig``.

    Checks, in this order: trades >= min_trades, win rate >= min_win_rate, days
    >= min_days, return >= min_return, max drawdown <= max_drawdown, profit
    factor >= min_profit_factor (without a losing trade: ok when there is a gross
    profit). A rate that cannot be measured yet (no trade, no capital) fails.
    """
    win, pf, ret = fig.win_rate, fig.profit_factor, fig.ret
    unbounded = pf is None and fig.gross_profit > 0
    return Verdict(
        (
            Check("trades", fig.trades, crit.min_trades, fig.trades >= crit.min_trades),
            Check("win_rate", win, crit.min_win_rate, win is not None and win >= crit.min_win_rate),
            Check("days", _floor(fig.days, 4), crit.min_days, fig.elapsed_ms >= crit.min_days * DAY_MS),
            Check("return", ret, crit.min_return, ret is not None and ret >= crit.min_return),
            Check("max_drawdown", fig.max_drawdown, crit.max_drawdown, fig.max_drawdown <= crit.max_drawdown),
            Check(
                "profit_factor",
                pf,
                crit.min_profit_factor,
                unbounded if pf is None else pf >= crit.min_profit_factor,
                unbounded,
            ),
        ),
        fig,
    )


def evaluate_demotion(fig: StageFigures, floors: DemotionFloors) -> Verdict:
    """THE live demotion decision: ``verdict.ok`` while a live bot is within its floors; demote when not.

    Checks: drawdown since going live <= ``floors.max_drawdown``, return since
    going live >= ``floors.min_return`` (no capital: not measurable, ok).
    """
    ret = fig.ret
    return Verdict(
        (
            Check(
                "live_drawdown",
                fig.max_drawdown,
                floors.max_drawdown,
                fig.max_drawdown <= floors.max_drawdown,
            ),
            Check("live_return", ret, floors.min_return, ret is None or ret >= floors.min_return),
        ),
        fig,
    )


def _floor(x: Decimal, places: int) -> Decimal:
    return x.quantize(_D(1).scaleb(-places), rounding=ROUND_FLOOR)


def _num(x: Decimal) -> str:
    """``7`` -> "7", ``4.20`` -> "4.2", ``1E+2`` -> "100" (never exponent form)."""
    return f"{x.normalize():f}"


def _pct(x: Decimal | None, rounding: str = ROUND_HALF_EVEN) -> str:
    """A fraction as a percentage with at most one decimal: 0.5523 -> "55.2%", 0.03 -> "3%", None -> "-"."""
    if x is None:
        return "-"
    return f"{_num((x * 100).quantize(_D('0.1'), rounding=rounding))}%"
