"""Profits pane (tab 2): the profit service's figures, the countdown, the equity curve, per-bot
sparklines, closed trades.

The money figures (total = realised + unrealised, today / yesterday, this / last week and month,
fees, trade and equity-curve stats) and the countdown are ``ledger.profits.ProfitService``'s, the
same as ``amarktai report`` prints: the ledger is read in a thread (``read_figures``, a few tenths
of a second on a long ledger) when the tab is shown, every ``LEDGER_EVERY_S`` while it is on screen
and something changed, and once when the feed ends (also with the tab hidden, so it opens
complete). "Now" is the engine's clock (``engine.now_ms``: the newest candle close). A read is
*behind* while the ledger lacks fills or snapshots the engine has made (its write batch not yet
committed); it is then repeated after ``BEHIND_RETRY_S``. ``v`` switches the figures between all,
paper and live fills.

The equity curve, the sparklines and the closed-trades tape follow the engine's memory (the
model's equity samples, ``engine.fill_log``) at every redraw: they move with each candle and cost
no ledger read.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Digits, Label, Sparkline, Static

from amarktai_tui.config import Settings
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.ledger.profits import DEFAULT_TARGET, VENUES, ProfitFigures, ProfitService, Venue
from amarktai_tui.ledger.schema import connect_readonly
from amarktai_tui.market.base import FeedState
from amarktai_tui.ops.reports import countdown_text
from amarktai_tui.tui import fmt
from amarktai_tui.tui.model import EngineModel
from amarktai_tui.tui.trades import ClosedTrades
from amarktai_tui.tui.widgets.line_chart import LineChart
from amarktai_tui.tui.widgets.tape import Column, Tape

CLOSED_TRADES_SHOWN = 500
LEDGER_EVERY_S = 3.0
"""Wall-clock seconds between two ledger reads while the tab is on screen and the engine moved;
at least ``READ_SHARE`` times the last read's duration (the read shares the GIL with the engine)."""
READ_SHARE = 5
BEHIND_RETRY_S = 0.5
"""Wall-clock seconds before reading again a ledger that lacked the engine's latest writes (the
engine commits within about half a second); after ``BEHIND_RETRIES`` such reads, ``LEDGER_EVERY_S``."""
BEHIND_RETRIES = 10
TICK_S = 0.5
"""The pane's own timer: ledger reads are due even when nothing redraws (a replay that ended)."""
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
VENUE_TEXT: dict[Venue, str] = {"all": "All fills", "paper": "Paper fills", "live": "Live fills"}


# -- the ledger read (blocking; runs in a thread) -----------------------------------------


@dataclass(frozen=True, slots=True)
class Wanted:
    """What the engine had when a read was asked for: ``fills`` (count of ``engine.fill_log``, the
    ledger's fills plus the unwritten ones), ``snapshot_ms`` (newest account equity sample, ms UTC,
    or None), engine time ``now_ms``, whether the feed had ``ended``, the ``venue`` shown."""

    fills: int
    snapshot_ms: int | None
    now_ms: int
    ended: bool
    venue: Venue


@dataclass(frozen=True, slots=True)
class LedgerFigures:
    """One read of the ledger through the profit service.

    ``figures``: the account's figures for ``venue`` at ``as_of_ms`` (None when the read failed:
    ``error`` says why); ``countdown``: the countdown line; ``fills``: fills in the ledger (every
    venue); ``snapshot_ms``: its newest account snapshot (ms UTC) or None.
    """

    as_of_ms: int
    venue: Venue
    figures: ProfitFigures | None
    countdown: str
    fills: int = 0
    snapshot_ms: int | None = None
    error: str | None = None

    def covers(self, want: Wanted) -> bool:
        """True when the ledger held everything ``want`` asked for (else the read is behind)."""
        return (
            self.error is None
            and self.fills >= want.fills
            and (want.snapshot_ms is None or (self.snapshot_ms or 0) >= want.snapshot_ms)
        )


def read_figures(db: Path, now_ms: int, venue: Venue, target: Decimal, ccy: str) -> LedgerFigures:
    """Blocking: the profit service's figures and countdown of the ledger at ``db`` (read-only) at
    ``now_ms`` (ms UTC) for ``venue``; ``target`` equity and ``ccy`` (quote) for the countdown line.
    Never raises for a missing or unreadable ledger: ``error`` says what was wrong."""
    try:
        conn = connect_readonly(str(db))
    except (FileNotFoundError, sqlite3.Error) as exc:
        return LedgerFigures(now_ms, venue, None, "Countdown: no ledger yet", error=f"no ledger yet ({exc})")
    try:
        service = ProfitService.read(conn)
        figures = service.figures(now_ms, venue)
        line = f"Countdown to {countdown_text(service.countdown(now_ms, target, venue), ccy)}"
    except (sqlite3.Error, ValueError) as exc:  # LedgerDataError is a ValueError
        return LedgerFigures(
            now_ms, venue, None, f"Countdown unavailable: {exc}", error=f"ledger not read: {exc}"
        )
    finally:
        conn.close()
    snaps = service.account_snaps
    return LedgerFigures(
        now_ms, venue, figures, line, len(service.account.fills), snaps[-1].ts if snaps else None
    )


def _signed(value: Decimal | None) -> str:
    return "-" if value is None else fmt.money(value, signed=True)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _role(text: str) -> str:
    """``up`` for a shown figure with a ``+``, ``down`` for a negative one, else ``""``."""
    if text.startswith("+"):
        return "up"
    return "down" if text.startswith("-") and text != "-" else ""


# -- widgets ---------------------------------------------------------------------------------


class PnlBox(Vertical):
    """A titled big-digit figure with a caption line under it."""

    def __init__(self, title: str, *, id: str) -> None:
        super().__init__(id=id, classes="pnl-box")
        self._title = title

    def compose(self) -> ComposeResult:
        yield Label(self._title, classes="pnl-title")
        yield Digits("0.00", classes="flat")
        yield Label("reading the ledger…", classes="pnl-caption")

    def show(self, value: Decimal, caption: str) -> None:
        digits = self.query_one(Digits)
        digits.update(fmt.money(value, signed=True))
        for cls in ("up", "down", "flat"):
            digits.set_class(cls == fmt.pnl_class(value), cls)
        self.query_one(".pnl-caption", Label).update(caption)


class ProfitStats(Static):
    """The figures under the big digits: realised / unrealised, fees, equity, trade and curve stats.

    ``values`` maps each shown label to its text (what tests read).
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {"profit-stats--label", "profit-stats--up", "profit-stats--down"}
    DEFAULT_CSS = """
    ProfitStats { height: 4; padding: 0 1; }
    ProfitStats > .profit-stats--label { color: $text-muted; }
    ProfitStats > .profit-stats--up { color: $pnl-up; }
    ProfitStats > .profit-stats--down { color: $pnl-down; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.values: dict[str, str] = {}
        self._figures: ProfitFigures | None = None

    def show(self, f: ProfitFigures | None) -> None:
        self._figures = f
        if f is None:
            self.values = {}
            self.update("")
            return
        s = f.stats
        signed, ratio = _signed, _ratio
        columns: list[list[tuple[str, str]]] = [
            [
                ("Realised", signed(f.realised)),
                ("Unrealised", signed(f.unrealised)),
                ("Fees", fmt.money(f.fees)),
            ],
            [
                ("Trades", str(s.trades)),
                ("Trades today", str(f.trades_today)),
                ("Win rate", fmt.pct(s.win_rate)),
            ],
            [
                ("Profit factor", ratio(s.profit_factor)),
                ("Expectancy", signed(s.expectancy)),
                ("Avg win", signed(s.avg_win)),
                ("Avg loss", signed(s.avg_loss)),
            ],
            [("Sharpe", ratio(s.sharpe)), ("Sortino", ratio(s.sortino)), ("Calmar", ratio(s.calmar))],
            [
                ("Max drawdown", fmt.pct(s.max_drawdown)),
                ("Drawdown now", fmt.pct(s.drawdown)),
                ("Equity", fmt.money(f.equity)),
                ("Capital", fmt.money(f.capital)),
            ],
        ]
        self.values = {k: v for col in columns for k, v in col}
        self.update(self._render_grid(columns))

    def _render_grid(self, columns: list[list[tuple[str, str]]]) -> Table:
        style = self.get_component_rich_style
        grid = Table.grid(padding=(0, 1), collapse_padding=True)
        for _ in columns:
            grid.add_column(no_wrap=True)
            grid.add_column(justify="right", no_wrap=True)
            grid.add_column(width=2)
        rows = max(len(c) for c in columns)
        for i in range(rows):
            cells: list[Text] = []
            for col in columns:
                label, value = col[i] if i < len(col) else ("", "")
                role = _role(value)
                cells += [
                    Text(label, style("profit-stats--label")),
                    Text(value, style(f"profit-stats--{role}") if role else ""),
                    Text(""),
                ]
            grid.add_row(*cells)
        return grid

    def restyle(self) -> None:
        """Render again with the current theme's colours."""
        self.show(self._figures)


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


class ProfitsPane(Vertical):
    """The profit service's figures (read in a thread) over the engine's live curve and trades.

    ``ledger`` is the latest read; ``in_sync`` is set while it covers everything the engine has
    made (same fills, snapshots, engine time, venue), cleared when the engine moves on.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("v", "cycle_venue", "Paper/live", id="profits.venue"),
    ]
    DEFAULT_CSS = """
    ProfitsPane #profit-source { height: 1; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.venue: Venue = "all"
        self.ledger: LedgerFigures | None = None
        self.in_sync = asyncio.Event()
        self._read_for: Wanted | None = None  # what the shown read was asked for
        self._behind = 0  # reads in a row that were behind the engine
        self._busy = False
        self._due = 0.0  # monotonic s before which no read starts unless urgent
        self._hold = 0.0  # monotonic s before which no read starts at all (after a failed one)
        self._closed_trades = ClosedTrades()
        self._trades_shown = -1
        self._equity_len = -1
        self._sparks: set[int] = set()

    def compose(self) -> ComposeResult:
        with Horizontal(id="totals"):
            yield PnlBox("Total PnL", id="pnl-total")
            yield PnlBox("Today", id="pnl-today")
            yield PnlBox("This week", id="pnl-week")
            yield PnlBox("This month", id="pnl-month")
        yield Label("Profit figures: reading the ledger…", id="profit-source")
        yield ProfitStats(id="profit-stats")
        yield Label("Countdown: waiting for the engine", id="countdown")
        with Horizontal(id="profit-charts"):
            with Vertical(id="equity-box"):
                yield Label("Account equity", id="equity-title", classes="section-title")
                yield LineChart("no equity samples yet", id="equity-chart")
            with VerticalScroll(id="sparks"):
                yield Label("Bot equity", classes="section-title")
        yield Label("Closed trades (newest at the bottom)", classes="section-title")
        yield Tape(TRADE_COLUMNS, max_rows=CLOSED_TRADES_SHOWN, id="trades-tape")

    def on_mount(self) -> None:
        self.set_interval(TICK_S, self._tick, name="profits-ledger")

    def on_show(self) -> None:
        self._due = 0.0
        self._tick()

    # -- the engine's side: drawn at every redraw ---------------------------------------
    def refresh_view(self, engine: TradingEngine, model: EngineModel) -> None:
        """Redraw the live parts from the engine's memory; start a ledger read when one is due."""
        ccy = engine.quote_currency
        self._show_equity(model, ccy)
        self._show_sparks(engine, model)
        self._closed_trades.update(engine.fill_log)
        if len(self._closed_trades.trades) != self._trades_shown:
            self._show_trades(engine)
        self.refresh_ledger(engine, model)

    def _tick(self) -> None:
        engine, model = getattr(self.app, "engine", None), getattr(self.app, "model", None)
        if isinstance(engine, TradingEngine) and isinstance(model, EngineModel):
            self.refresh_ledger(engine, model, hidden=not self.is_on_screen)

    # -- the ledger's side: read in a thread ----------------------------------------------
    def wanted(self, engine: TradingEngine, model: EngineModel) -> Wanted:
        """The engine's state a read must cover (see ``Wanted``)."""
        status = engine.feed.status() if engine.feed is not None else None
        ended = model.stopped is not None or (status is not None and status.state is FeedState.ENDED)
        snap = model.equity[-1][0] if model.equity else None
        return Wanted(len(engine.fill_log), snap, engine.now_ms, ended, self.venue)

    def refresh_ledger(self, engine: TradingEngine, model: EngineModel, *, hidden: bool = False) -> None:
        """Start a ledger read if the figures shown miss something the engine has and one is due.

        Due: at once for a new venue, a feed that ended or a tab just shown; every
        ``LEDGER_EVERY_S`` while the engine moves; ``BEHIND_RETRY_S`` after a read that was behind.
        ``hidden``: the tab is not on screen: only the read at the feed's end is made.
        """
        if not engine.now_ms:
            return
        want = self.wanted(engine, model)
        last = self._read_for
        if last == want and not self._behind:
            self.in_sync.set()
            return
        self.in_sync.clear()
        clock = time.monotonic()
        if self._busy or clock < self._hold:
            return
        urgent = last is None or want.venue != last.venue or (want.ended and not last.ended)
        retrying = 0 < self._behind <= BEHIND_RETRIES
        if hidden and not (want.ended and (last is None or not last.ended or retrying)):
            return
        if not urgent and clock < self._due:
            return
        self._busy = True
        settings = getattr(self.app, "settings", None)
        target = settings.reports.target_equity if isinstance(settings, Settings) else DEFAULT_TARGET
        self._read(engine.store.path, want, target, engine.quote_currency)

    @work(group="profits", exit_on_error=False)
    async def _read(self, db: Path, want: Wanted, target: Decimal, ccy: str) -> None:
        started = time.monotonic()
        try:
            read = await asyncio.to_thread(read_figures, db, want.now_ms, want.venue, target, ccy)
        except BaseException:  # the app's worker handler says what failed; no retry storm
            self._hold = time.monotonic() + LEDGER_EVERY_S
            raise
        finally:
            self._busy = False
        if want.venue != self.venue:  # switched while reading: read again for the new one
            self._tick()
            return
        self._behind = 0 if read.covers(want) else self._behind + 1
        self._read_for = want
        finished = time.monotonic()
        if 0 < self._behind <= BEHIND_RETRIES:
            self._due = finished + BEHIND_RETRY_S
        else:
            self._due = started + max(LEDGER_EVERY_S, READ_SHARE * (finished - started))
        self.ledger = read
        self._show_ledger(read)
        self._tick()  # in sync now, or the next read if the engine moved meanwhile

    def _show_ledger(self, read: LedgerFigures) -> None:
        f = read.figures
        self.query_one("#countdown", Label).update(read.countdown)
        self.query_one(ProfitStats).show(f)
        source = self.query_one("#profit-source", Label)
        if f is None:
            source.update(f"Profit figures: {read.error}")
            return
        source.update(
            f"{VENUE_TEXT[read.venue]} from the ledger as of {fmt.ts(read.as_of_ms)} UTC; UTC periods, "
            "PnL realised at the closing fill; v: all / paper / live"
        )
        self.query_one("#pnl-total", PnlBox).show(f.total, "realised + unrealised")
        self.query_one("#pnl-today", PnlBox).show(
            f.today, f"realised; yesterday {fmt.money(f.yesterday, signed=True)}"
        )
        self.query_one("#pnl-week", PnlBox).show(
            f.this_week, f"realised; last week {fmt.money(f.last_week, signed=True)}"
        )
        self.query_one("#pnl-month", PnlBox).show(
            f.this_month, f"realised; last month {fmt.money(f.last_month, signed=True)}"
        )

    def action_cycle_venue(self) -> None:
        """All fills -> paper -> live -> all; the figures are read again at once."""
        self.venue = VENUES[(VENUES.index(self.venue) + 1) % len(VENUES)]
        self.query_one("#profit-source", Label).update(f"{VENUE_TEXT[self.venue]}: reading the ledger…")
        self._tick()

    # -- the live parts --------------------------------------------------------------------
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
        self.query_one(ProfitStats).restyle()
