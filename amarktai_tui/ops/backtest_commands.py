"""``amarktai backtest --strategy NAME [--params JSON] --data FILE[,FILE] [--pair P] [--timeframe T]
[--capital Q] [--keep DIR] [--json] [--html FILE]``: a strategy over candle files (``ops.backtest``).

The run writes a fresh ledger into a temporary directory (removed afterwards), never the user's
data dir; ``--keep DIR`` (a new or empty directory) keeps that ledger and its log there for
``amarktai ledger verify --data-dir DIR`` or ``amarktai report --data-dir DIR``. Engine logs go
to the run's ``logs/amarktai.log``, never to the terminal. While it runs, a progress bar is drawn
on stderr when stderr is a terminal. stdout carries only the result: a compact table (the
default) or, with ``--json``, one JSON object. ``--html FILE`` also writes a self-contained page
(metrics, an inline SVG equity curve, the bots, the trades).

JSON keys (money and quantities are exact decimal strings in the quote currency or base units;
ratios and fractions are floats, 0.25 = 25 %; undefined figures are null; times are ms UTC, with
an ISO 8601 twin where named ``*_time``/``start``/``end``):

- ``strategy``, ``params`` (effective, defaults filled in), ``exchange``, ``quote``,
  ``capital_per_bot``;
- ``data``: one object per file: ``file``, ``bot``, ``pair``, ``timeframe``;
- ``start_ms``, ``end_ms``, ``start``, ``end``: the first candle's open, the last candle's close;
- ``candles`` (all files), ``fills``, ``elapsed_s`` (wall seconds of the engine run),
  ``bot_candles_per_s``, ``kept`` (the ``--keep`` directory or null);
- ``figures``: ``capital``, ``equity``, ``realised``, ``unrealised``, ``total`` (realised +
  unrealised), ``fees``, ``return`` (total / capital, a fraction);
- ``stats`` (``ledger.metrics.Metrics`` over the closed trades and the account equity curve):
  ``trades``, ``win_rate``, ``profit_factor``, ``expectancy``, ``avg_win``, ``avg_loss``,
  ``drawdown`` (at the end), ``max_drawdown``, ``returns`` (daily returns counted),
  ``annual_return``, ``sharpe``, ``sortino``, ``calmar``;
- ``bots``: per bot ``name``, ``pair``, ``capital``, ``equity``, ``realised``, ``unrealised``,
  ``total``, ``fees``, ``trades``, ``wins``, ``win_rate``;
- ``trades``: closed trades by exit time: ``bot``, ``pair``, ``side`` (``long``), ``entry_ts``,
  ``entry_time``, ``exit_ts``, ``exit_time``, ``qty``, ``entry_price``, ``exit_price`` (average
  fill prices), ``pnl`` (realised, fees included), ``fees``, ``return`` (pnl / entry cost);
- ``open_positions``: ``bot``, ``pair``, ``entry_ts``, ``entry_time``, ``qty``,
  ``entry_price``, ``mark``, ``unrealised``;
- ``breaker_trips``: ``ts``, ``time``, ``scope`` (bot or account), ``bot``, ``breaker``,
  ``message``: the circuit breakers that tripped during the run (a tripped bot stops opening);
- ``equity_curve``: ``[[ts_ms, "equity"], ...]`` (the account's snapshots, oldest first).

Exit codes: 0 done; 2 bad usage (unknown strategy, bad ``--params`` JSON or value, a missing or
malformed data file, a ``--keep`` directory that already holds a ledger), one line on stderr;
1 a runtime failure, one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Any

from amarktai_tui.config import Settings
from amarktai_tui.ledger.export import iso_ms
from amarktai_tui.ledger.pnl import canonical
from amarktai_tui.ledger.reader import TripRow
from amarktai_tui.ledger.report import json_ready
from amarktai_tui.locations import db_path
from amarktai_tui.market.errors import CandleFileError
from amarktai_tui.ops.backtest import (
    BacktestRequest,
    BacktestResult,
    BacktestUsageError,
    ProgressFn,
    parse_params,
    run_backtest,
)
from amarktai_tui.ops.progress import BarUpdate, progress_bar, quiet_logs
from amarktai_tui.ops.reports import equity_svg, money, pct, ratio

PROG = "amarktai backtest"


def run_backtest_command(args: argparse.Namespace, settings: Settings, data_dir: Path) -> int:
    """Run ``amarktai backtest``; returns the exit code (module doc). ``data_dir`` is not touched."""
    try:
        request = BacktestRequest(
            strategy=args.strategy,
            files=tuple(f for f in args.data.split(",") if f.strip()),
            params=parse_params(args.params),
            pair=args.bt_pair,
            timeframe=args.bt_timeframe,
            capital=args.capital,
        )
        if not request.files:
            raise BacktestUsageError("--data needs at least one candle file")
        keep: Path | None = args.keep
        if keep is not None and ((keep.exists() and not keep.is_dir()) or db_path(keep).exists()):
            raise BacktestUsageError(f"--keep {keep}: not a directory, or it already holds a ledger")
        html_dir = Path(args.html).parent if args.html else None
        if html_dir is not None and not html_dir.is_dir():
            raise BacktestUsageError(f"--html {args.html}: no such directory {html_dir}")
        with tempfile.TemporaryDirectory(prefix="amarktai-backtest-") as tmp:
            run_dir = Path(tmp)
            with quiet_logs(run_dir), progress_bar("backtest", "candles") as bar:
                progress = _candle_progress(bar)
                result = asyncio.run(run_backtest(settings, request, run_dir, on_progress=progress))
            if keep is not None:
                _move_ledger(run_dir, keep)
    except (BacktestUsageError, CandleFileError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a runtime failure: one line, no traceback
        print(
            f"{PROG}: failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            file=sys.stderr,
        )
        return 1
    if args.html:
        try:
            Path(args.html).write_text(to_html(result), encoding="utf-8")
        except OSError as exc:
            print(f"{PROG}: cannot write --html {args.html}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    if args.json:
        json.dump(to_json(result, keep), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write("\n".join(table_lines(result, keep)) + "\n")
    return 0


def _candle_progress(bar: BarUpdate | None) -> ProgressFn | None:
    """The backtest reports (fraction done, candles in all): the bar counts candles."""
    if bar is None:
        return None

    def update(fraction: float, total: int) -> None:
        bar(round(fraction * (total or 1)), total or 1)

    return update


def _move_ledger(run_dir: Path, keep: Path) -> None:
    """The finished ledger (and its log) into ``keep``: nothing lands there unless the run succeeded."""
    keep.mkdir(parents=True, exist_ok=True)
    for item in run_dir.iterdir():
        # the lock is this run's; -shm is rebuilt by SQLite; the -wal is empty after a clean close
        if item.name.endswith((".lock", "-shm")) or (item.name.endswith("-wal") and not item.stat().st_size):
            continue
        target = keep / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target)


# -- JSON ------------------------------------------------------------------------------------


def _return(r: BacktestResult) -> float | None:
    cap = r.figures.capital
    return float(r.figures.total / cap) if cap else None


def to_json(r: BacktestResult, kept: Path | None = None) -> dict[str, Any]:
    """The result as one JSON-ready object (keys in the module doc)."""
    f = r.figures
    return {
        "strategy": r.strategy,
        "params": r.params,
        "exchange": r.exchange,
        "quote": r.quote,
        "capital_per_bot": json_ready(r.capital_per_bot),
        "data": [asdict(s) for s in r.streams],
        "start_ms": r.start_ms,
        "end_ms": r.end_ms,
        "start": iso_ms(r.start_ms),
        "end": iso_ms(r.end_ms),
        "candles": r.candles,
        "fills": r.fills,
        "elapsed_s": r.elapsed_s,
        "bot_candles_per_s": r.bot_candles_per_s,
        "kept": None if kept is None else str(kept),
        "figures": json_ready(
            {
                "capital": f.capital,
                "equity": f.equity,
                "realised": f.realised,
                "unrealised": f.unrealised,
                "total": f.total,
                "fees": f.fees,
            }
        )
        | {"return": _return(r)},
        "stats": json_ready(asdict(f.stats)),
        "bots": [
            json_ready(
                {
                    "name": b.name,
                    "pair": b.pair,
                    "capital": b.capital,
                    "equity": b.equity,
                    "realised": b.realised,
                    "unrealised": b.unrealised,
                    "total": b.total,
                    "fees": b.fees,
                    "trades": b.trades,
                    "wins": b.wins,
                    "win_rate": b.win_rate,
                }
            )
            for b in r.bots
        ],
        "trades": [
            json_ready(
                {
                    "bot": t.bot,
                    "pair": t.pair,
                    "side": t.side,
                    "entry_ts": t.entry_ts,
                    "entry_time": iso_ms(t.entry_ts),
                    "exit_ts": t.exit_ts,
                    "exit_time": iso_ms(t.exit_ts),
                    "qty": t.qty,
                    "entry_price": t.entry_price,
                    "exit_price": t.exit_price,
                    "pnl": t.pnl,
                    "fees": t.fees,
                    "return": t.return_,
                }
            )
            for t in r.trades
        ],
        "open_positions": [
            json_ready(asdict(p)) | {"entry_time": iso_ms(p.entry_ts) if p.entry_ts else None}
            for p in r.open_positions
        ],
        "breaker_trips": [
            {"ts": t.ts, "time": iso_ms(t.ts), "scope": t.scope, "bot": t.bot, "breaker": t.breaker}
            | {"message": t.message}
            for t in r.trips
        ],
        "equity_curve": [[ts, json_ready(v)] for ts, v in r.equity],
    }


# -- text --------------------------------------------------------------------------------------


def _utc(ms: int) -> str:
    return iso_ms(ms)[:16].replace("T", " ")


def price(value: Decimal | None) -> str:
    """A price with at least 4 significant digits and 2 decimals (``19,565.47``, ``0.00001234``)."""
    if value is None:
        return "-"
    places = min(12, max(2, 4 - value.adjusted()))
    return f"{value:,.{places}f}"


def qty(value: Decimal) -> str:
    """A quantity, exact, without trailing zeros."""
    return format(canonical(value), "f")


def _metrics(r: BacktestResult) -> list[tuple[str, str, str, str]]:
    f, s, q = r.figures, r.figures.stats, r.quote
    ret = _return(r)
    return [
        ("Capital", f"{money(f.capital)} {q}", "Trades", str(s.trades)),
        ("Equity", f"{money(f.equity)} {q}", "Win rate", pct(s.win_rate)),
        ("Return", "-" if ret is None else f"{ret * 100:+.2f} %", "Profit factor", ratio(s.profit_factor)),
        ("Realised", money(f.realised, signed=True), "Expectancy", money(s.expectancy, signed=True)),
        ("Unrealised", money(f.unrealised, signed=True), "Sharpe", ratio(s.sharpe)),
        ("Fees", money(f.fees), "Sortino", ratio(s.sortino)),
        ("Max drawdown", pct(s.max_drawdown), "Calmar", ratio(s.calmar)),
    ]


TRADE_HEAD = (
    "BOT",
    "PAIR",
    "ENTRY (UTC)",
    "EXIT (UTC)",
    "QTY",
    "ENTRY PRICE",
    "EXIT PRICE",
    "PNL",
    "FEES",
    "RETURN",
)
BOT_HEAD = ("BOT", "PAIR", "CAPITAL", "EQUITY", "REALISED", "UNREALISED", "FEES", "TRADES", "WIN RATE")
OPEN_HEAD = ("BOT", "PAIR", "SINCE (UTC)", "QTY", "ENTRY PRICE", "MARK", "UNREALISED")
_TRADE_RIGHT = (4, 5, 6, 7, 8, 9)


def _trade_row(t: Any) -> tuple[str, ...]:
    ret = "-" if t.return_ is None else f"{t.return_ * 100:+.2f} %"
    return (
        t.bot,
        t.pair,
        _utc(t.entry_ts),
        _utc(t.exit_ts),
        qty(t.qty),
        price(t.entry_price),
        price(t.exit_price),
        money(t.pnl, signed=True),
        money(t.fees),
        ret,
    )


def _rows(r: BacktestResult) -> dict[str, list[tuple[str, ...]]]:
    return {
        "bots": [
            (
                b.name,
                b.pair,
                money(b.capital),
                money(b.equity),
                money(b.realised, signed=True),
                money(b.unrealised, signed=True),
                money(b.fees),
                str(b.trades),
                pct(b.win_rate),
            )
            for b in r.bots
        ],
        "trades": [_trade_row(t) for t in r.trades],
        "open": [
            (
                p.bot,
                p.pair,
                _utc(p.entry_ts) if p.entry_ts else "-",
                qty(p.qty),
                price(p.entry_price),
                price(p.mark),
                money(p.unrealised, signed=True),
            )
            for p in r.open_positions
        ],
    }


def _text_table(head: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int]) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(head), *(line(r) for r in rows)]


def _trip_line(t: TripRow) -> str:
    return f"{_utc(t.ts)}  {t.bot or 'account'}: {t.message}"


def _headline(r: BacktestResult) -> list[str]:
    params = ", ".join(f"{k}={v}" for k, v in r.params.items())
    data = "; ".join(f"{s.pair} {s.timeframe} ({s.file})" for s in r.streams)
    return [
        f"Backtest {r.strategy} ({params}) on {r.exchange} paper, {money(r.capital_per_bot)} {r.quote} per bot",
        f"Data: {data}",
        f"{_utc(r.start_ms)} to {_utc(r.end_ms)} UTC: {r.candles:,} candles, {r.fills:,} fills "
        f"in {r.elapsed_s:.2f} s ({r.bot_candles_per_s:,.0f} bot-candles/s)",
    ]


def table_lines(r: BacktestResult, kept: Path | None = None) -> list[str]:
    """The human-readable report: headline, metrics, bots (when several), trades, open positions."""
    out = [*_headline(r), ""]
    metrics = _metrics(r)
    w = [max(len(m[i]) for m in metrics) for i in range(4)]
    out += [f"{a:<{w[0]}}  {b:>{w[1]}}    {c:<{w[2]}}  {d:>{w[3]}}" for a, b, c, d in metrics]
    rows = _rows(r)
    if len(r.bots) > 1:
        out += ["", *_text_table(BOT_HEAD, rows["bots"], (2, 3, 4, 5, 6, 7, 8))]
    out += ["", f"Trades ({len(r.trades)})"]
    out += _text_table(TRADE_HEAD, rows["trades"], _TRADE_RIGHT) if r.trades else ["None."]
    if r.open_positions:
        out += ["", "Open positions at the end", *_text_table(OPEN_HEAD, rows["open"], (3, 4, 5, 6))]
    if r.trips:
        out += ["", f"Breaker trips ({len(r.trips)})", *(_trip_line(t) for t in r.trips)]
    if kept is not None:
        out += ["", f"Ledger kept in {kept} (amarktai ledger verify --data-dir {kept})"]
    return out


# -- HTML --------------------------------------------------------------------------------------

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#1b1f24;max-width:1000px;
margin:24px auto;padding:0 16px}
h1{font-size:22px}h2{font-size:16px;margin-top:24px;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid #eaeef2;text-align:left}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#1a7f37}.down{color:#cf222e}.muted{color:#656d76}
"""


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    def cell(tag: str, i: int, text: str) -> str:
        sign = "up" if text.startswith("+") else "down" if text.startswith("-") and text != "-" else ""
        classes = " ".join(c for c in ("num" if i in right else "", sign if tag == "td" else "") if c)
        attr = f' class="{classes}"' if classes else ""
        return f"<{tag}{attr}>{html.escape(text)}</{tag}>"

    parts = ["<table><tr>" + "".join(cell("th", i, h) for i, h in enumerate(head)) + "</tr>"]
    parts += ["<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows]
    return "\n".join(parts) + "</table>"


def to_html(r: BacktestResult) -> str:
    """The result as one self-contained HTML page (inline CSS and SVG; no scripts, no fetches)."""
    title = f"Amarktai backtest: {r.strategy}"
    metrics = [(a, b) for a, b, _, _ in _metrics(r)] + [(c, d) for _, _, c, d in _metrics(r)]
    rows = _rows(r)
    body = [
        f"<h1>{html.escape(title)}</h1>",
        *(f'<p class="muted">{html.escape(line)}</p>' for line in _headline(r)),
        "<h2>Metrics</h2>",
        _html_table(("Figure", "Value"), metrics, right=(1,)),
        "<h2>Equity</h2>",
        equity_svg(r.equity, r.quote),
        "<h2>Bots</h2>",
        _html_table(BOT_HEAD, rows["bots"], right=(2, 3, 4, 5, 6, 7, 8)),
        f"<h2>Trades ({len(r.trades)})</h2>",
        _html_table(TRADE_HEAD, rows["trades"], right=_TRADE_RIGHT) if r.trades else "<p>None.</p>",
    ]
    if r.open_positions:
        body += [
            "<h2>Open positions at the end</h2>",
            _html_table(OPEN_HEAD, rows["open"], right=(3, 4, 5, 6)),
        ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
