"""``amarktai report --json`` and ``amarktai status --json``: figures from the ledger.

Both take ``now_ms`` explicitly (ms UTC): the wall clock for a live/paper
account, the last candle or fill time after a replay or backtest.

Per bot, figures are recomputed from the raw rows (run ``ledger verify`` to
check them against what the engine stored):

- ``funding``: the sum of the bot's ledger events (quote);
- ``realised``: the sum of its fills' stored ``realised_pnl``;
- position and cost basis: its fills replayed through ``pnl.FifoBook``;
- ``fees``: the sum of its fees in quote (``pnl.fee_in_quote``);
- ``mark_price``: the most recent known price, the later of its latest equity
  snapshot's ``mark_price`` and its last fill price (snapshot wins a tie);
- ``unrealised = position * mark - cost_basis``;
  ``equity = funding + realised + unrealised``.

Account figures are sums over bots (DESIGN.md "Money"; they only make sense
when every bot quotes in the same currency: see ``quote_currencies``).
``pnl_today``/``pnl_week``/``pnl_month``: realised PnL of fills with
``start <= ts <= now_ms`` where start is 00:00 UTC of now's day, of its ISO
week's Monday, of its month's 1st. Ratios follow ``ledger.metrics``: the
equity series is the stored snapshots (account rows for the account),
preceded by the opening capital at the earliest known time and followed by
the current equity when it is newer than the last snapshot; funding after
the opening is a cash flow, not a return.

Output: JSON-ready dicts; Decimals as strings (exact), ratios/fractions as
floats, undefined figures as null. Raises ``reader.LedgerDataError`` on an
unparseable money value and ValueError on a fill the FIFO cannot book.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from amarktai_tui.domain.types import split_pair
from amarktai_tui.ledger import metrics, reader
from amarktai_tui.ledger.export import iso_ms
from amarktai_tui.ledger.pnl import ZERO, FifoBook, Trade, canonical, fee_in_quote, trades_from_fills
from amarktai_tui.ledger.reader import BotRow, EquitySnapshot, FillRow

Point = tuple[int, Decimal]


def period_starts(now_ms: int) -> tuple[int, int, int]:
    """``(day, week, month)`` starts in ms UTC for ``now_ms``: today 00:00, Monday 00:00, the 1st 00:00."""
    now = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=now_ms)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week = day - timedelta(days=day.weekday())
    month = day.replace(day=1)
    return _ms(day), _ms(week), _ms(month)


def _ms(d: datetime) -> int:
    return (d - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(canonical(value))
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


@dataclass(slots=True)
class _Figures:
    """One bot's (or the account's) recomputed state."""

    funding: Decimal = ZERO
    realised: Decimal = ZERO
    unrealised: Decimal = ZERO
    fees: Decimal = ZERO
    position: Decimal = ZERO
    avg_entry: Decimal | None = None
    mark: Decimal | None = None
    marked_at: int | None = None
    fills: list[FillRow] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    snaps: list[EquitySnapshot] = field(default_factory=list)
    opening: Point | None = None  # (earliest known ts, opening capital)
    flows: list[Point] = field(default_factory=list)

    @property
    def equity(self) -> Decimal:
        return self.funding + self.realised + self.unrealised

    @property
    def last_ts(self) -> int | None:
        times = [t for t in (self.marked_at, self.snaps[-1].ts if self.snaps else None) if t is not None]
        return max(times) if times else None


def _bot_figures(
    bot: BotRow,
    fills: list[FillRow],
    snaps: list[EquitySnapshot],
    sched: list[tuple[int, Decimal]],
    first_event_ts: int | None,
) -> _Figures:
    fig = _Figures(fills=fills, snaps=snaps)
    books: dict[tuple[str, str], FifoBook] = defaultdict(FifoBook)
    for f in fills:
        fee = fee_in_quote(f.fee, f.fee_currency, *split_pair(f.pair), f.price)
        book = books[(f.exchange, f.pair)]
        if f.side == "buy":
            book.buy(f.quantity, f.price, fee, f.ts)
        else:
            book.sell(f.quantity, f.price, fee)
        fig.realised += f.realised_pnl
        fig.fees += fee
    fig.trades = trades_from_fills(fills)
    fig.position = sum((b.position_qty for b in books.values()), ZERO)
    fig.avg_entry = books[(bot.exchange, bot.pair)].avg_entry_price if len(books) <= 1 else None
    snap = snaps[-1] if snaps else None
    last_fill = max(fills, key=lambda f: (f.ts, f.id)) if fills else None
    if snap is not None and snap.mark_price is not None:
        fig.mark, fig.marked_at = snap.mark_price, snap.ts
    if last_fill is not None and (fig.marked_at is None or last_fill.ts > fig.marked_at):
        fig.mark, fig.marked_at = last_fill.price, last_fill.ts
    if fig.mark is not None:
        fig.unrealised = sum((b.unrealised(fig.mark) for b in books.values()), ZERO)
    fig.funding = sum((a for _, a in sched), ZERO)
    first_fill = min((f.ts for f in fills), default=None)
    times = [t for t in (snaps[0].ts if snaps else None, first_fill, first_event_ts) if t is not None]
    opening = sum((a for t, a in sched if t == reader.OPENING_TS), ZERO)
    if times:
        fig.opening = (min(times), opening)
    fig.flows = [(t, a) for t, a in sched if t != reader.OPENING_TS]
    return fig


def _series(opening: Point | None, snaps: Sequence[EquitySnapshot], current: Point | None) -> list[Point]:
    pts: list[Point] = [opening] if opening is not None else []
    pts += [(s.ts, s.equity) for s in snaps]
    if current is not None and (not snaps or current[0] > snaps[-1].ts):
        pts.append(current)
    return sorted(pts, key=lambda p: p[0])


def _stats(fig: _Figures, series: list[Point], flows: list[Point], now_ms: int) -> dict[str, Any]:
    starts = period_starts(now_ms)
    buckets = [sum((f.realised_pnl for f in fig.fills if start <= f.ts <= now_ms), ZERO) for start in starts]
    m = metrics.compute(fig.trades, series, flows)
    out: dict[str, Any] = {
        "equity": fig.equity,
        "funding": fig.funding,
        "realised": fig.realised,
        "unrealised": fig.unrealised,
        "fees": fig.fees,
        "pnl_today": buckets[0],
        "pnl_week": buckets[1],
        "pnl_month": buckets[2],
    }
    out.update(asdict(m))
    return out


def _load(conn: sqlite3.Connection) -> list[tuple[BotRow, _Figures]]:
    bots = reader.bots(conn)
    fills_by: dict[int, list[FillRow]] = defaultdict(list)
    for f in reader.fills(conn):
        fills_by[f.bot_id].append(f)
    snaps_by: dict[int, list[EquitySnapshot]] = defaultdict(list)
    for s in sorted(reader.all_snapshots(conn), key=lambda s: (s.ts, s.id)):
        if s.bot_id is not None:
            snaps_by[s.bot_id].append(s)
    events = reader.ledger_events(conn)
    sched = reader.capital_schedule(events)
    first: dict[int, int] = {}
    for e in events:
        if e.bot_id is not None:
            first[e.bot_id] = min(e.ts, first.get(e.bot_id, e.ts))
    return [
        (b, _bot_figures(b, fills_by[b.id], snaps_by[b.id], sched.get(b.id, []), first.get(b.id)))
        for b in bots
    ]


def _account(figs: list[_Figures]) -> _Figures:
    acc = _Figures()
    for f in figs:
        acc.funding += f.funding
        acc.realised += f.realised
        acc.unrealised += f.unrealised
        acc.fees += f.fees
        acc.fills += f.fills
        acc.trades += f.trades
    acc.trades.sort(key=lambda t: t.exit_ts)
    openings = [f.opening for f in figs if f.opening is not None]
    if openings:
        first = min(t for t, _ in openings)
        acc.opening = (first, sum((a for t, a in openings if t == first), ZERO))
        acc.flows = [(t, a) for t, a in openings if t != first] + [x for f in figs for x in f.flows]
    times = [t for t in (f.last_ts for f in figs) if t is not None]
    acc.marked_at = max(times) if times else None
    return acc


def account_report(conn: sqlite3.Connection, now_ms: int) -> dict[str, Any]:
    """The full report (``amarktai report --json``): account stats plus a ``bots`` list.

    Keys: as_of_ms, as_of, quote_currencies, equity, funding, realised,
    unrealised, fees (quote, strings), pnl_today/week/month (quote),
    drawdown, max_drawdown (fractions), trades, win_rate (fraction),
    profit_factor, expectancy, avg_win, avg_loss (quote), returns (number
    of daily returns), annual_return (fraction), sharpe, sortino, calmar,
    and ``bots``: the same keys per bot plus id, name, exchange, pair,
    timeframe, strategy, state, stage, position_qty, avg_entry_price,
    mark_price, marked_at_ms.
    """
    with localcontext() as ctx:
        ctx.prec = 60
        loaded = _load(conn)
        acc = _account([f for _, f in loaded])
        acc_snaps = reader.snapshots(conn, None)
        current = (acc.last_ts, acc.equity) if acc.last_ts is not None else None
        out: dict[str, Any] = {
            "as_of_ms": now_ms,
            "as_of": iso_ms(now_ms),
            "quote_currencies": sorted({b.pair.partition("/")[2] for b, _ in loaded}),
        }
        out.update(_stats(acc, _series(acc.opening, acc_snaps, current), acc.flows, now_ms))
        bots = []
        for b, f in loaded:
            cur = (f.last_ts, f.equity) if f.last_ts is not None else None
            entry: dict[str, Any] = {
                "id": b.id,
                "name": b.name,
                "exchange": b.exchange,
                "pair": b.pair,
                "timeframe": b.timeframe,
                "strategy": b.strategy,
                "state": b.state,
                "stage": b.stage,
                "position_qty": f.position,
                "avg_entry_price": f.avg_entry,
                "mark_price": f.mark,
                "marked_at_ms": f.marked_at,
            }
            entry.update(_stats(f, _series(f.opening, f.snaps, cur), f.flows, now_ms))
            bots.append(entry)
        out["bots"] = bots
        return dict(_json(out))


def status_report(conn: sqlite3.Connection, now_ms: int) -> dict[str, Any]:
    """The light status (``amarktai status --json``): no time series, no ratios.

    Keys: mode (kv ``trading_mode``, default ``paper``), as_of_ms, as_of,
    equity, funding, realised, unrealised, fees (quote strings),
    open_orders (pending + open), last_fill_ts (ms or null),
    last_fill_time (ISO or null), and ``bots``: id, name, exchange, pair,
    strategy, state, stage, position_qty, mark_price, equity, realised,
    unrealised.
    """
    with localcontext() as ctx:
        ctx.prec = 60
        loaded = _load(conn)
        acc = _account([f for _, f in loaded])
        last = reader.last_fill_ts(conn)
        out: dict[str, Any] = {
            "mode": reader.kv_get(conn, "trading_mode", "paper"),
            "as_of_ms": now_ms,
            "as_of": iso_ms(now_ms),
            "equity": acc.equity,
            "funding": acc.funding,
            "realised": acc.realised,
            "unrealised": acc.unrealised,
            "fees": acc.fees,
            "open_orders": reader.open_orders_count(conn),
            "last_fill_ts": last,
            "last_fill_time": None if last is None else iso_ms(last),
            "bots": [
                {
                    "id": b.id,
                    "name": b.name,
                    "exchange": b.exchange,
                    "pair": b.pair,
                    "strategy": b.strategy,
                    "state": b.state,
                    "stage": b.stage,
                    "position_qty": f.position,
                    "mark_price": f.mark,
                    "equity": f.equity,
                    "realised": f.realised,
                    "unrealised": f.unrealised,
                }
                for b, f in loaded
            ],
        }
        return dict(_json(out))
