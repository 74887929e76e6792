"""Platforms pane (tab 6): one row per exchange of the registry, and the bots of one of them.

Per exchange (``ops.platforms``): bots on it against its cap (``6/10``; Luno ``x/5``), active ones
(running), profit today and total, closed trades today and the win rate (from the ledger through
the profit service), the API's breaker state, latency p50/p99 and last error (a live broker's
``api_health``; a paper engine calls no API and says so).

Enter (or a click on the highlighted row) on an exchange opens its bots in a table under it; Enter (or ``d``) on a bot opens
the bot's detail screen; esc closes the bots table. Bots and API health are read from memory at
every redraw and every ``REFRESH_S`` while the pane is on screen; the ledger is read in a thread
when the pane is shown and then every ``LEDGER_EVERY_S`` (the figures say as of when).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Label

from amarktai_tui.domain.enums import BotState
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.exchanges.api_breaker import ApiHealth, ApiState
from amarktai_tui.exchanges.registry import TOTAL_BOT_CAP
from amarktai_tui.ops.platforms import (
    BotLine,
    LedgerRead,
    PlatformRow,
    as_of_ms,
    exchange_bots,
    platform_rows,
    read_ledger,
)
from amarktai_tui.tui import fmt
from amarktai_tui.tui.bots_pane import BotsPane, StyledTable, stage_cell
from amarktai_tui.tui.breakers_pane import API_STATE_ROLE, latency

REFRESH_S = 1.0
LEDGER_EVERY_S = 15.0
"""Wall-clock seconds between two reads of the ledger's figures while the pane is on screen."""
PAPER_API = "paper (no API calls)"
NOT_IN_USE = "not in use"

Columns = tuple[tuple[str, str, int], ...]
Drawn = dict[str, tuple[object, ...]]
EXCHANGE_COLUMNS: Columns = (
    ("exchange", "Exchange", 8),
    ("bots", "Bots", 5),
    ("active", "Active", 6),
    ("today", "Profit today", 12),
    ("total", "Profit total", 12),
    ("trades_today", "Trades today", 12),
    ("win", "Win rate", 8),
    ("api", "API", 20),
    ("latency", "p50/p99 ms", 10),
    ("error", "Last error", 22),
)
BOT_COLUMNS: Columns = (
    ("name", "Bot", 16),
    ("pair", "Pair", 10),
    ("strategy", "Strategy", 22),
    ("state", "State", 8),
    ("stage", "Stage", 9),
    ("realised", "Realised", 11),
    ("trades", "Trades", 6),
    ("win", "Win", 6),
)
_RIGHT = frozenset(
    {"bots", "active", "today", "total", "trades_today", "win", "latency", "realised", "trades"}
)
_STATE_ROLE = {BotState.RUNNING: "ok", BotState.PAUSED: "warn", BotState.STOPPED: "muted"}


def _table(table_id: str, columns: Columns) -> StyledTable:
    table = StyledTable(id=table_id, cursor_type="row", zebra_stripes=True)
    for key, title, width in columns:
        table.add_column(Text(title, justify="right") if key in _RIGHT else title, key=key, width=width)
    return table


def _r(t: Text | str) -> Text:
    t = Text(t) if isinstance(t, str) else t
    t.justify = "right"
    return t


def api_cells(table: StyledTable, h: ApiHealth | None, paper: bool) -> tuple[Text, Text, Text]:
    """The API state, ``p50/p99`` latency (ms) and last error of one exchange."""
    if h is None:
        return table.styled(PAPER_API if paper else NOT_IN_USE, "muted"), _r("-"), Text("-")
    state = h.state.value
    if h.state is ApiState.OPEN:
        state += f", retry {h.retry_in_s:.0f} s"
    elif h.consecutive_failures:
        state += f", {h.consecutive_failures} failed"
    failing = h.consecutive_failures > 0
    return (
        table.styled(state, API_STATE_ROLE[h.state]),
        _r(f"{latency(h.latency_p50_ms)}/{latency(h.latency_p99_ms)}"),
        table.styled(h.last_error or "-", "warn" if failing else "muted"),
    )


def exchange_cells(table: StyledTable, row: PlatformRow, paper: bool) -> tuple[Text | str, ...]:
    """One exchange's row in ``EXCHANGE_COLUMNS`` order ("…" until the ledger was read)."""
    f = row.figures
    full = row.cap is not None and row.bots >= row.cap
    money: tuple[Text | str, ...] = ("…", "…", "…", "…")
    if f is not None:
        money = (
            table.pnl(f.today, fmt.money(f.today, signed=True)),
            table.pnl(f.total, fmt.money(f.total, signed=True)),
            str(f.trades_today),
            fmt.pct(f.win_rate),
        )
    return (
        row.name,
        _r(table.styled(row.cap_usage, "warn" if full else "" if row.bots else "muted")),
        _r(table.styled(str(row.active), "ok" if row.active else "muted")),
        *(_r(c) for c in money),
        *api_cells(table, row.api, paper),
    )


def bot_cells(table: StyledTable, b: BotLine) -> tuple[Text | str, ...]:
    """One bot of the drill-down in ``BOT_COLUMNS`` order."""
    state = "tripped" if b.state is BotState.CIRCUIT_TRIPPED else b.state.value
    return (
        b.name,
        b.pair,
        f"{b.strategy} {b.timeframe}",
        table.styled(state, _STATE_ROLE.get(b.state, "error")),
        stage_cell(table, b.stage, None),
        _r(table.pnl(b.realised, fmt.money(b.realised, signed=True))),
        _r(str(b.trades)),
        _r(fmt.pct(b.win_rate)),
    )


def sync(table: StyledTable, columns: Columns, drawn: Drawn, rows: dict[str, tuple[Text | str, ...]]) -> None:
    """Make ``table`` show ``rows`` (key -> cells, in order): only changed cells are touched."""
    if list(drawn) != list(rows):
        table.clear()
        drawn.clear()
    for key, cells in rows.items():
        old = drawn.get(key)
        if old is None:
            table.add_row(*cells, key=key)
        elif old != cells:
            for (col, _, _), new, was in zip(columns, cells, old, strict=True):
                if new != was:
                    table.update_cell(key, col, new)
        drawn[key] = cells


class PlatformsPane(Vertical):
    """The exchanges table and, after Enter on one, its bots. ``engine`` returns the running engine.

    ``ledger`` is the newest ledger read (None before the first); ``ledger_read`` is set after each
    read (tests wait on it); ``exchange`` is the exchange whose bots are shown (None: closed).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close_bots", "Back", id="platforms.back"),
        Binding("d", "bot_details", "Details", id="platforms.details"),
    ]
    DEFAULT_CSS = """
    PlatformsPane #platforms-table { height: auto; max-height: 9; }
    PlatformsPane #platforms-summary, PlatformsPane #platforms-note { padding: 0 1; }
    PlatformsPane #platforms-note { color: $text-muted; }
    PlatformsPane #platform-bots-table { height: 1fr; }
    """

    def __init__(self, engine: Callable[[], TradingEngine | None], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._engine = engine
        self.ledger: LedgerRead | None = None
        self.ledger_read = asyncio.Event()
        self.exchange: str | None = None
        self._busy = False
        self._due = 0.0  # monotonic s of the next ledger read
        self._drawn: Drawn = {}
        self._bots_drawn: Drawn = {}

    def compose(self) -> ComposeResult:
        yield Label("", id="platforms-summary")
        yield _table("platforms-table", EXCHANGE_COLUMNS)
        yield Label("Enter: the exchange's bots", id="platforms-note")
        yield Label("", id="platform-bots-title", classes="section-title")
        yield _table("platform-bots-table", BOT_COLUMNS)

    def on_mount(self) -> None:
        self._show_bots(None)
        self.set_interval(REFRESH_S, self._tick, name="platforms-refresh")

    def on_show(self) -> None:
        self._due = 0.0
        self.refresh_view()

    def _tick(self) -> None:
        if self.is_on_screen:
            self.refresh_view()

    def refresh_view(self) -> None:
        """Redraw from the engine's memory; start a ledger read when one is due."""
        engine = self._engine()
        if engine is None:
            return
        if time.monotonic() >= self._due:
            self.refresh_ledger()
        health = engine.api_health()
        rows = platform_rows(engine.runners.values(), self.ledger, health)
        table = self.query_one("#platforms-table", StyledTable)
        cells = {r.exchange: exchange_cells(table, r, not health) for r in rows}
        sync(table, EXCHANGE_COLUMNS, self._drawn, cells)
        bots, active = sum(r.bots for r in rows), sum(r.active for r in rows)
        summary = f"Bots: {bots} (at most {TOTAL_BOT_CAP} in all), {active} active (running)"
        summary += ". Paper trading: no exchange API is called" if not health else ""
        summary += ". Enter: an exchange's bots"
        self.query_one("#platforms-summary", Label).update(summary)
        self.query_one("#platforms-note", Label).update(self._note())
        if self.exchange is not None:
            row = next(r for r in rows if r.exchange == self.exchange)
            self._show_bots(row, engine)

    def _note(self) -> str:
        led = self.ledger
        if led is None:
            return "Reading the ledger…"
        if led.error:
            return led.error
        return (
            f"Ledger figures as of {fmt.ts(led.as_of_ms)} UTC, re-read every {LEDGER_EVERY_S:g} s; "
            "today = realised since 00:00 UTC, total = realised + open"
        )

    def refresh_ledger(self) -> None:
        """Read the ledger's figures now (in a thread) unless a read is under way."""
        engine = self._engine()
        if engine is None or self._busy:
            return
        self._busy = True
        self._due = time.monotonic() + LEDGER_EVERY_S
        self._read(engine)

    @work(group="platforms", exit_on_error=False)
    async def _read(self, engine: TradingEngine) -> None:
        try:
            self.ledger = await asyncio.to_thread(read_ledger, engine.store.path, as_of_ms(engine))
        finally:
            self._busy = False
        self.ledger_read.set()
        if self.is_attached:  # not when the app is closing
            self.refresh_view()

    # -- the drill-down ---------------------------------------------------------------
    def _show_bots(self, row: PlatformRow | None, engine: TradingEngine | None = None) -> None:
        open_ = row is not None and engine is not None
        for widget in ("#platform-bots-title", "#platform-bots-table"):
            self.query_one(widget).display = open_
        if row is None or engine is None:
            return
        self.query_one("#platform-bots-title", Label).update(
            f"Bots on {row.name}: {row.cap_usage}, {row.active} active. Enter or d: details, esc: back"
        )
        table = self.query_one("#platform-bots-table", StyledTable)
        lines = exchange_bots(engine.runners.values(), row.exchange)
        sync(table, BOT_COLUMNS, self._bots_drawn, {str(b.id): bot_cells(table, b) for b in lines})

    def open_exchange(self, exchange: str) -> None:
        """Show the bots of ``exchange`` under the table and move the focus there."""
        self.exchange = exchange
        self.refresh_view()
        self.query_one("#platform-bots-table", StyledTable).focus()

    def action_close_bots(self) -> None:
        self.exchange = None
        self._show_bots(None)
        self.query_one("#platforms-table", StyledTable).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("close_bots", "bot_details"):
            return self.exchange is not None
        return True

    def action_bot_details(self) -> None:
        table = self.query_one("#platform-bots-table", StyledTable)
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            if key is not None:
                self.post_message(BotsPane.BotAction("details", int(key)))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.data_table.id == "platforms-table" and event.row_key.value is not None:
            self.open_exchange(event.row_key.value)
        elif event.data_table.id == "platform-bots-table":
            self.action_bot_details()

    def invalidate(self) -> None:
        """Redraw every cell at the next refresh (colours changed with the theme)."""
        for table in self.query(StyledTable).results(StyledTable):
            table.reset_styles()
        for drawn, columns in ((self._drawn, EXCHANGE_COLUMNS), (self._bots_drawn, BOT_COLUMNS)):
            drawn.update({key: (None,) * len(columns) for key in drawn})  # every cell is redrawn
