"""Trade and equity-curve metrics (pure: no I/O, no clock).

Conventions follow empyrical (quantopian/empyrical ``stats.py``) and
quantstats (``stats.py``), as DESIGN.md "Money" asks:

- returns are simple period returns ``r = E_t / E_{t-1} - 1`` over UTC days;
- Sharpe ``= mean(r) / std(r, ddof=1) * sqrt(P)`` with risk-free rate 0
  (empyrical ``sharpe_ratio``);
- Sortino ``= mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(P)`` with the mean of
  the squared clipped returns taken over *all* periods and target 0
  (empyrical ``downside_risk`` / ``sortino_ratio``);
- max drawdown ``= max_t (peak_t - E_t) / peak_t`` as a positive fraction
  (0.25 = 25 %; empyrical returns it negative);
- Calmar ``= CAGR / max drawdown`` (empyrical ``calmar_ratio``), with CAGR
  over the equity series' time span rather than ``len(returns) / P`` years.

``P`` = ``PERIODS_PER_YEAR`` = 365 (crypto trades every day). Every metric
returns None (never 0 or NaN) where it is undefined. Money figures are
Decimal (quote currency); ratios and fractions are float.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

from amarktai_tui.ledger.pnl import ZERO, Trade, canonical

PERIODS_PER_YEAR = 365
DAY_MS = 86_400_000
YEAR_MS = 365 * DAY_MS

EquityPoint = tuple[int, Decimal]  # (ts ms UTC, equity in quote)


def _mean(values: Sequence[Decimal]) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 34
        return canonical(sum(values, ZERO) / len(values))


def win_rate(trades: Sequence[Trade]) -> float | None:
    """Fraction of closed trades with ``pnl > 0`` (a break-even trade is not a win).

    None when there are no trades.
    """
    if not trades:
        return None
    return sum(1 for t in trades if t.pnl > 0) / len(trades)


def profit_factor(trades: Sequence[Trade]) -> float | None:
    """Gross profit / gross loss (both positive sums of trade PnL).

    None when there are no losing trades (the ratio is undefined, not
    infinite). Source: the usual definition (freqtrade, quantstats
    ``profit_factor`` on trades).
    """
    gross_loss = -sum((t.pnl for t in trades if t.pnl < 0), ZERO)
    if gross_loss == 0:
        return None
    gross_profit = sum((t.pnl for t in trades if t.pnl > 0), ZERO)
    return float(gross_profit / gross_loss)


def expectancy(trades: Sequence[Trade]) -> Decimal | None:
    """Mean PnL per closed trade, quote (34 significant digits); None without trades."""
    return _mean([t.pnl for t in trades]) if trades else None


def avg_win(trades: Sequence[Trade]) -> Decimal | None:
    """Mean PnL of the winning trades (``pnl > 0``), quote; None without wins."""
    wins = [t.pnl for t in trades if t.pnl > 0]
    return _mean(wins) if wins else None


def avg_loss(trades: Sequence[Trade]) -> Decimal | None:
    """Mean PnL of the losing trades (``pnl < 0``), quote, negative; None without losses."""
    losses = [t.pnl for t in trades if t.pnl < 0]
    return _mean(losses) if losses else None


def drawdowns(equity: Iterable[EquityPoint]) -> tuple[float | None, float | None]:
    """``(current, maximum)`` drawdown of an equity series, fractions in [0, 1+].

    ``equity``: ``(ts_ms, equity)`` points in time order (every point is used,
    not only daily closes). Drawdown at t is ``(peak - E_t) / peak`` with
    ``peak`` the running maximum; points while the peak is not positive are
    skipped. Both None for an empty series (or no positive peak).
    """
    peak: Decimal | None = None
    current: float | None = None
    worst: float | None = None
    for _, e in equity:
        if peak is None or e > peak:
            peak = e
        if peak <= 0:
            continue
        current = float((peak - e) / peak)
        worst = current if worst is None else max(worst, current)
    return current, worst


def max_drawdown(equity: Iterable[EquityPoint]) -> float | None:
    """Maximum drawdown, fraction (0.25 = 25 %); see ``drawdowns``."""
    return drawdowns(equity)[1]


def daily_returns(equity: Sequence[EquityPoint], flows: Iterable[EquityPoint] = ()) -> list[float]:
    """Daily simple returns from an equity series (time-weighted, flow-neutral).

    - The series is sorted by ts (stable). Its first point is the *opening*
      value; the *close* of a UTC day is the last point with ts in that day.
    - One return per UTC day from the first close to the last; a day without
      a point carries the previous close (return 0).
    - ``flows`` are external cash flows ``(ts_ms, amount)`` (funding, top-ups:
      positive in, negative out) already contained in the equity points after
      their ts. A flow with ts after the opening point is treated as arriving
      at the start of the period whose close first includes it:
      ``r = close_t / (close_{t-1} + flows) - 1`` (time-weighted return, so a
      top-up is not a profit). Flows at or before the opening are part of it.
    - A first day whose only point is the opening yields no return; a period
      whose denominator is not positive is skipped.

    Returns floats (fractions: 0.01 = +1 %), one per day, oldest first.
    """
    pts = sorted(equity, key=lambda p: p[0])
    if len(pts) < 2:
        return []
    closes: list[tuple[int, int, Decimal]] = []  # (day, ts, equity)
    for ts, e in pts[1:]:
        day = ts // DAY_MS
        if closes and closes[-1][0] == day:
            closes[-1] = (day, ts, e)
        else:
            closes.append((day, ts, e))
    pending = sorted((f for f in flows if f[0] > pts[0][0]), key=lambda f: f[0])
    out: list[float] = []
    prev_day, prev_e = pts[0][0] // DAY_MS, pts[0][1]
    i = 0
    for day, ts, e in closes:
        out.extend([0.0] * max(0, day - prev_day - 1))
        flow = ZERO
        while i < len(pending) and pending[i][0] <= ts:
            flow += pending[i][1]
            i += 1
        base = prev_e + flow
        if base > 0:
            out.append(float(e / base - 1))
        prev_day, prev_e = day, e
    return out


def sharpe(returns: Sequence[float], periods_per_year: int = PERIODS_PER_YEAR) -> float | None:
    """Annualised Sharpe ratio, risk-free rate 0: ``mean / stdev(ddof=1) * sqrt(P)``.

    Source: empyrical ``sharpe_ratio``. None with fewer than 2 returns or a
    zero standard deviation.
    """
    if len(returns) < 2:
        return None
    sd = statistics.stdev(returns)
    if sd == 0:
        return None
    return statistics.fmean(returns) / sd * math.sqrt(periods_per_year)


def sortino(returns: Sequence[float], periods_per_year: int = PERIODS_PER_YEAR) -> float | None:
    """Annualised Sortino ratio, target 0: ``mean / sqrt(mean(min(r,0)^2)) * sqrt(P)``.

    The downside mean is over all periods (empyrical ``downside_risk`` /
    ``sortino_ratio``; quantstats ``sortino``). None with fewer than 2
    returns or no negative return (zero downside).
    """
    if len(returns) < 2:
        return None
    downside = math.sqrt(statistics.fmean([min(r, 0.0) ** 2 for r in returns]))
    if downside == 0:
        return None
    return statistics.fmean(returns) / downside * math.sqrt(periods_per_year)


def annualised_return(returns: Sequence[float], span_ms: int) -> float | None:
    """CAGR: ``prod(1 + r) ** (YEAR_MS / span_ms) - 1``, fraction per year.

    ``span_ms`` is the equity series' span (last ts - first ts). Growth is
    compounded from the (flow-neutral) period returns. None with fewer than
    2 returns, a non-positive span or a non-positive growth (total loss).
    """
    if len(returns) < 2 or span_ms <= 0:
        return None
    growth = math.prod(1.0 + r for r in returns)
    if growth <= 0:
        return None
    try:
        return float(growth ** (YEAR_MS / span_ms) - 1.0)
    except OverflowError:
        return None


def calmar(annual_return: float | None, max_dd: float | None) -> float | None:
    """Calmar ratio ``= CAGR / max drawdown`` (empyrical ``calmar_ratio``).

    None when either is undefined or the max drawdown is 0.
    """
    if annual_return is None or max_dd is None or max_dd == 0:
        return None
    return annual_return / max_dd


@dataclass(frozen=True, slots=True)
class Metrics:
    """All metrics of one bot or the account. Money quote, ratios float, fractions."""

    trades: int
    win_rate: float | None
    profit_factor: float | None
    expectancy: Decimal | None
    avg_win: Decimal | None
    avg_loss: Decimal | None
    drawdown: float | None  # current
    max_drawdown: float | None
    returns: int  # number of daily returns
    annual_return: float | None
    sharpe: float | None
    sortino: float | None
    calmar: float | None


def compute(
    trades: Sequence[Trade], equity: Sequence[EquityPoint], flows: Iterable[EquityPoint] = ()
) -> Metrics:
    """Every metric from closed trades and an equity series (see the functions above)."""
    pts = sorted(equity, key=lambda p: p[0])
    cur_dd, max_dd = drawdowns(pts)
    rets = daily_returns(pts, flows)
    span = pts[-1][0] - pts[0][0] if pts else 0
    ann = annualised_return(rets, span)
    return Metrics(
        trades=len(trades),
        win_rate=win_rate(trades),
        profit_factor=profit_factor(trades),
        expectancy=expectancy(trades),
        avg_win=avg_win(trades),
        avg_loss=avg_loss(trades),
        drawdown=cur_dd,
        max_drawdown=max_dd,
        returns=len(rets),
        annual_return=ann,
        sharpe=sharpe(rets),
        sortino=sortino(rets),
        calmar=calmar(ann, max_dd),
    )
