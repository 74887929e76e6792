"""``amarktai report --json`` and ``amarktai status --json``: figures from the ledger.

The figures come from the profit service's per-bot recomputation
(``ledger.profits``: ``load``, ``account``, ``equity_series``). Both take
``now_ms`` explicitly (ms UTC): the wall clock for a live/paper account, the
last candle or fill time after a replay or backtest.

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
from dataclasses import asdict
from decimal import Decimal, localcontext
from typing import Any

from amarktai_tui.ledger import metrics, reader
from amarktai_tui.ledger.export import iso_ms
from amarktai_tui.ledger.pnl import ZERO, canonical
from amarktai_tui.ledger.profits import Figures, Point, ProfitService, equity_series, period_starts

__all__ = ["account_report", "period_starts", "status_report"]


def json_ready(value: Any) -> Any:
    """``value`` with every Decimal as its exact string (``canonical``), through dicts, lists and
    tuples (tuples become lists): what ``json.dumps`` takes."""
    if isinstance(value, Decimal):
        return str(canonical(value))
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def _stats(fig: Figures, series: list[Point], flows: list[Point], now_ms: int) -> dict[str, Any]:
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


def account_report(
    conn: sqlite3.Connection, now_ms: int, *, service: ProfitService | None = None
) -> dict[str, Any]:
    """The full report (``amarktai report --json``): account stats plus a ``bots`` list.

    Keys: as_of_ms, as_of, quote_currencies, equity, funding, realised,
    unrealised, fees (quote, strings), pnl_today/week/month (quote),
    drawdown, max_drawdown (fractions), trades, win_rate (fraction),
    profit_factor, expectancy, avg_win, avg_loss (quote), returns (number
    of daily returns), annual_return (fraction), sharpe, sortino, calmar,
    and ``bots``: the same keys per bot plus id, name, exchange, pair,
    timeframe, strategy, state, stage, position_qty, avg_entry_price,
    mark_price, marked_at_ms.

    ``service``: the profit service already read from ``conn`` (else it is read here).
    """
    with localcontext() as ctx:
        ctx.prec = 60
        svc = service if service is not None else ProfitService.read(conn)
        loaded, acc = svc.bots, svc.account
        series, flows = svc.equity_curve("all", now_ms)
        out: dict[str, Any] = {
            "as_of_ms": now_ms,
            "as_of": iso_ms(now_ms),
            "quote_currencies": sorted({b.pair.partition("/")[2] for b, _ in loaded}),
        }
        out.update(_stats(acc, series, flows, now_ms))
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
            entry.update(_stats(f, equity_series(f.opening, f.snaps, cur), f.flows, now_ms))
            bots.append(entry)
        out["bots"] = bots
        return dict(json_ready(out))


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
        svc = ProfitService.read(conn)
        loaded, acc = svc.bots, svc.account
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
        return dict(json_ready(out))
