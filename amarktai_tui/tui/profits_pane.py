"""Profits pane: big-digit totals, the countdown to the target equity, the account equity curve,
per-bot sparklines, closed trades."""

from __future__ import annotations

import sqlite3
import time
from decimal import Decimal
from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Digits, Label, Sparkline

from amarktai_tui.config import Settings
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.ledger.profits import DEFAULT_TARGET, read_countdown
from amarktai_tui.ledger.schema import connect_readonly
from amarktai_tui.ops.reports import countdown_text
from amarktai_tui.tui import fmt
from amarktai_tui.tui.model import EngineModel
from amarktai_tui.tui.periods import PeriodPnl, RealisedByDay
from amarktai_tui.tui.trades import ClosedTrades
from amarktai_tui.tui.widgets.line_chart import LineChart
from amarktai_tui.tui.widgets.tape import Column, Tape

CLOSED_TRADES_SHOWN = 500
COUNTDOWN_EVERY_S = 30.0
"""Wall-clock seconds between countdown recomputations (from the ledger, in a worker thread)."""
TRADE_COLUMNS = (
    Column("Exit (UTC)", 16),
    Column("Bot", 16),
    Column("Pair", 10),
    Column("Quantity", 12, right=True),
    Column("Entry cost", 11, right=True),
    Column("Exit proceeds", 13, right=True),
    Column("PnL", 10, right=True),
    Column("Fees", 8, right=True),
    Column("Held", 8, right=True),
)


class PnlBox(Vertical):
    """A titled big-digit figure with a caption line under it."""

    def __init__(self, title: str, *, id: str) -> None:
        super().__init__(id=id, classes="pnl-box")
        self._title = title

    def compose(self) -> ComposeResult:
        yield Label(self._title, classes="pnl-title")
        yield Digits("0.00", classes="flat")
        yield Label("", classes="pnl-caption")

    def show(self, value: Decimal, caption: str) -> None:
        digits = self.query_one(Digits)
        digits.update(fmt.money(value, signed=True))
        for cls in ("up", "down", "flat"):
            digits.set_class(cls == fmt.pnl_class(value), cls)
        self.query_one(".pnl-caption", Label).update(caption)


class BotSpark(Horizontal):
    """One bot's name, equity sparkline and latest equity."""

    def __init__(self, bot_id: int, name: str) -> None:
        super().__init__(id=f"spark-{bot_id}", classes="bot-spark")
        self._bot_name = name
        self._data: list[float] = []
        self._equity = ""

    def compose(self) -> ComposeResult:
        yield Label(self._bot_name, classes="spark-name")
        yield Sparkline(self._data, classes="spark-line")
        yield Label(self._equity, classes="spark-value")

    def show(self, data: list[float], equity: Decimal) -> None:
        """Set the data; drawn now if the children exist, else when they are composed."""
        self._data, self._equity = data, fmt.money(equity)
        for line in self.query(Sparkline):
            line.data = data
        for label in self.query(".spark-value").results(Label):
            label.update(self._equity)


def _caption(p: PeriodPnl, previous: str) -> str:
    return f"realised; {previous} {fmt.money(p.previous, signed=True)}"


class ProfitsPane(Vertical):
    """Totals, equity curve, sparklines and closed trades; ``refresh_view`` redraws from the engine."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._by_day = RealisedByDay()
        self._closed_trades = ClosedTrades()
        self._trades_shown = -1
        self._equity_len = -1
        self._sparks: set[int] = set()
        self._countdown_due: float | None = None  # monotonic s of the next recomputation; None: never ran
        self._countdown_busy = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="totals"):
            yield PnlBox("Total PnL", id="pnl-total")
            yield PnlBox("Today", id="pnl-today")
            yield PnlBox("This week", id="pnl-week")
            yield PnlBox("This month", id="pnl-month")
        yield Label("Countdown: waiting for the engine", id="countdown")
        with Horizontal(id="profit-charts"):
            with Vertical(id="equity-box"):
                yield Label("Account equity", id="equity-title", classes="section-title")
                yield LineChart("no equity samples yet", id="equity-chart")
            with VerticalScroll(id="sparks"):
                yield Label("Bot equity", classes="section-title")
        yield Label("Closed trades (newest at the bottom)", classes="section-title")
        yield Tape(TRADE_COLUMNS, max_rows=CLOSED_TRADES_SHOWN, id="trades-tape")

    def refresh_view(self, engine: TradingEngine, model: EngineModel) -> None:
        """Redraw every part from the engine's in-memory state and the model's samples."""
        self._by_day.update(engine.fill_log)
        now = engine.now_ms
        funding = sum((r.funding for r in engine.runners.values()), Decimal(0))
        total = engine.account_equity() - funding
        ccy = engine.quote_currency
        self.query_one("#pnl-total", PnlBox).show(total, f"equity - funding ({ccy})")
        if now:
            day = self._by_day.day(now)
            self.query_one("#pnl-today", PnlBox).show(day.current, _caption(day, "yesterday"))
            week = self._by_day.week(now)
            self.query_one("#pnl-week", PnlBox).show(week.current, _caption(week, "last week"))
            month = self._by_day.month(now)
            self.query_one("#pnl-month", PnlBox).show(month.current, _caption(month, "last month"))
        self._show_equity(model, ccy)
        self._update_countdown(engine, now, ccy)
        self._show_sparks(engine, model)
        self._closed_trades.update(engine.fill_log)
        if len(self._closed_trades.trades) != self._trades_shown:
            self._show_trades(engine)

    def _update_countdown(self, engine: TradingEngine, now: int, ccy: str) -> None:
        """Days to the target equity (``[reports] target_equity``) from the ledger, at engine time.

        The profit service reads the ledger: the first time here (so the pane opens complete),
        then every ``COUNTDOWN_EVERY_S`` in a worker thread.
        """
        clock = time.monotonic()
        if (
            not now
            or self._countdown_busy
            or (self._countdown_due is not None and clock < self._countdown_due)
        ):
            return
        settings = getattr(self.app, "settings", None)
        target = settings.reports.target_equity if isinstance(settings, Settings) else DEFAULT_TARGET
        path = engine.store.path
        first = self._countdown_due is None
        self._countdown_due = clock + COUNTDOWN_EVERY_S
        if first:
            self._show_countdown(_countdown_line(path, now, target, ccy))
            return
        self._countdown_busy = True

        def work() -> None:
            try:
                line = _countdown_line(path, now, target, ccy)
            except Exception as exc:  # the pane keeps working; the next try comes in 30 s
                line = f"Countdown unavailable: {exc}"
            self.app.call_from_thread(self._show_countdown, line)

        self.run_worker(work, thread=True, exclusive=True, group="countdown", exit_on_error=False)

    def _show_countdown(self, line: str) -> None:
        self._countdown_busy = False
        self.query_one("#countdown", Label).update(line)

    def _show_equity(self, model: EngineModel, ccy: str) -> None:
        if len(model.equity) == self._equity_len:
            return
        self._equity_len = len(model.equity)
        points = list(model.equity)
        if not points:
            return
        self.query_one("#equity-title", Label).update(f"Account equity ({ccy}), {len(points):,} samples")
        self.query_one("#equity-chart", LineChart).set_series(
            [v for _, v in points], x_labels=(fmt.ts(points[0][0]), fmt.ts(points[-1][0]))
        )

    def _show_sparks(self, engine: TradingEngine, model: EngineModel) -> None:
        box = self.query_one("#sparks", VerticalScroll)
        for bot_id in sorted(engine.runners):
            if bot_id not in self._sparks:
                box.mount(BotSpark(bot_id, engine.runners[bot_id].rec.name))
                self._sparks.add(bot_id)
        for spark in box.query(BotSpark):
            bot_id = int(str(spark.id).removeprefix("spark-"))
            runner = engine.runners.get(bot_id)
            if runner is not None:
                spark.show(list(model.bot_equity.get(bot_id, ())), runner.equity())

    def _show_trades(self, engine: TradingEngine) -> None:
        tape = self.query_one("#trades-tape", Tape)
        trades = self._closed_trades.trades
        if self._trades_shown < 0:
            tape.clear()
            self._trades_shown = 0
        names = {i: r.rec.name for i, r in engine.runners.items()}
        new = trades[max(self._trades_shown, len(trades) - CLOSED_TRADES_SHOWN) :]
        tape.add_rows(
            (
                fmt.ts(t.exit_ts),
                names.get(t.bot_id, str(t.bot_id)),
                t.pair,
                fmt.qty(t.qty),
                fmt.money(t.entry_cost),
                fmt.money(t.exit_proceeds),
                tape.cell(fmt.money(t.pnl, signed=True), fmt.pnl_class(t.pnl)),
                fmt.money(t.fees),
                fmt.duration(t.exit_ts - t.entry_ts),
            )
            for t in new
        )
        self._trades_shown = len(trades)

    def invalidate(self) -> None:
        """Redraw everything at the next refresh (after a theme change)."""
        self._trades_shown = -1
        self._equity_len = -1


def _countdown_line(db: Path, now: int, target: Decimal, ccy: str) -> str:
    """``Countdown to 1,000,000.00 USDT: ...`` from the ledger at ``db`` (read-only), one line."""
    try:
        conn = connect_readonly(str(db))
    except (FileNotFoundError, sqlite3.Error) as exc:
        return f"Countdown: no ledger yet ({exc})"
    try:
        return f"Countdown to {countdown_text(read_countdown(conn, now, target), ccy)}"
    except (sqlite3.Error, ValueError) as exc:  # LedgerDataError is a ValueError
        return f"Countdown unavailable: {exc}"
    finally:
        conn.close()
