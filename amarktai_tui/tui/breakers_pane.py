"""Breakers pane: every circuit breaker's reading, limit usage, trip history, the exchange APIs' own
breakers (live only) and the latest refusals.

Redrawn by the app's timer like the other panes, and only the parts whose
inputs changed: the readings table touches changed cells only, the trip
history follows ``EngineModel.trips_version``, the refusals are appended to a
tape: first those of earlier runs (read from the ledger once, before the
engine runs: ``load_refusals``), then the live ones. With 45 bots the readings
table holds 3 + 135 rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Label

from amarktai_tui.engine.core import RefusalEntry
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.exchanges.api_breaker import ApiHealth, ApiState
from amarktai_tui.ledger.reader import LedgerDataError, TripRow, refusals
from amarktai_tui.ledger.schema import connect_readonly
from amarktai_tui.risk.breakers import Breaker, Reading
from amarktai_tui.tui import fmt
from amarktai_tui.tui.bots_pane import StyledTable
from amarktai_tui.tui.model import EngineModel
from amarktai_tui.tui.widgets.tape import Column, Tape

FRACTION_BREAKERS = frozenset({Breaker.BOT_DRAWDOWN, Breaker.DAILY_LOSS, Breaker.ACCOUNT_DRAWDOWN})
"""Breakers measured as a fraction of equity (shown in percent); the others count events."""

RULES: dict[Breaker, str] = {
    Breaker.DAILY_LOSS: "daily loss",
    Breaker.ACCOUNT_DRAWDOWN: "account drawdown",
    Breaker.HALT: "emergency stop",
    Breaker.BOT_DRAWDOWN: "bot drawdown",
    Breaker.CONSECUTIVE_LOSSES: "consecutive losses",
    Breaker.ERROR_STORM: "error storm",
}
"""The rule's name as the pane shows it."""

STATUS_ROLE = {"ok": "ok", "warning": "warn", "tripped": "error"}

BREAKER_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("scope", "Scope", 7),
    ("bot", "Bot", 14),
    ("rule", "Rule", 18),
    ("threshold", "Threshold", 9),
    ("value", "Value", 8),
    ("headroom", "Headroom", 8),
    ("status", "Status", 7),
    ("since", "Tripped (UTC)", 16),
)
LIMIT_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("what", "Orders", 16),
    ("used", "Used", 4),
    ("limit", "Limit", 5),
)
HISTORY_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("trip", "Trip", 4),
    ("ts", "Tripped (UTC)", 16),
    ("bot", "Scope", 14),
    ("rule", "Rule", 18),
    ("message", "Message", 37),
    ("reset", "Reset (UTC)", 16),
    ("by", "By", 4),
    ("reason", "Reason", 13),
)
API_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("exchange", "Exchange", 10),
    ("state", "API state", 9),
    ("failures", "Failures", 8),
    ("last_error", "Last error", 60),
    ("retry", "Retry in", 8),
    ("p50", "p50 ms", 7),
    ("p99", "p99 ms", 7),
)
_RIGHT = frozenset(
    {"threshold", "value", "headroom", "used", "limit", "trip", "failures", "retry", "p50", "p99"}
)

API_STATE_ROLE = {ApiState.CLOSED: "ok", ApiState.HALF_OPEN: "warn", ApiState.OPEN: "error"}
PAPER_API_LINE = "paper: no exchange API in use"

REFUSALS_SHOWN = 200
"""Refusals the tape keeps (the engine keeps the latest 200)."""
REFUSALS_PER_FRAME = 20
"""At most this many new refusals are drawn per frame (the tape shows about 16 at 140x45)."""
REFUSAL_COLUMNS = (
    Column("Time (UTC)", 16),
    Column("Bot", 14),
    Column("Gate", 12),
    Column("Reason", 46),
    Column("Figures", 38),
)


def rule_name(breaker: Breaker) -> str:
    return RULES.get(breaker, str(breaker))


def figure(breaker: Breaker, value: Decimal) -> str:
    """A threshold, value or headroom: percent for drawdowns and daily loss (0.2 -> ``20.00%``), else a count."""
    if breaker is Breaker.HALT:
        return "-"
    if breaker in FRACTION_BREAKERS:
        return f"{value * 100:.2f}%"
    return f"{value:.0f}"


def reading_key(breaker: Breaker, bot_id: int | None) -> str:
    """The row key of a breaker in the readings table (``"daily_loss:account"``, ``"bot_drawdown:3"``)."""
    return f"{breaker.value}:{'account' if bot_id is None else bot_id}"


def parse_reading_key(key: str) -> tuple[Breaker, int | None]:
    breaker, _, scope = key.partition(":")
    return Breaker(breaker), None if scope == "account" else int(scope)


def figures_text(figures: Mapping[str, str]) -> str:
    """``{"edge_bps": "4.2", "cost_bps": "30"}`` -> ``"edge_bps=4.2 cost_bps=30"``."""
    return " ".join(f"{k}={v}" for k, v in figures.items())


def _right(t: Text | str) -> Text:
    t = Text(t) if isinstance(t, str) else t
    t.justify = "right"
    return t


def _table(table_id: str, columns: tuple[tuple[str, str, int], ...], *, cursor: bool) -> StyledTable:
    table = StyledTable(id=table_id, cursor_type="row" if cursor else "none", zebra_stripes=True)
    for key, title, width in columns:
        table.add_column(Text(title, justify="right") if key in _RIGHT else title, key=key, width=width)
    return table


def latency(ms: float | None) -> str:
    """A latency in ms: ``-`` when no call was timed yet, one decimal under 10 ms, else whole ms."""
    if ms is None:
        return "-"
    return f"{ms:.1f}" if ms < 10 else f"{ms:.0f}"


class ApiHealthView(Vertical):
    """Each exchange API's breaker (``TradingEngine.api_health``): a table when a live broker is in use,
    else one dim line. ``health`` given at construction is drawn on mount."""

    DEFAULT_CSS = """
    ApiHealthView { height: auto; }
    ApiHealthView > #api-paper { color: $text-muted; padding: 0 1; }
    ApiHealthView > #api-table { height: auto; max-height: 7; }
    """

    def __init__(self, health: Mapping[str, ApiHealth] | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._initial = dict(health or {})
        self._rows: dict[str, tuple[object, ...]] = {}
        self._live: bool | None = None

    def compose(self) -> ComposeResult:
        yield Label(PAPER_API_LINE, id="api-paper")
        yield Label("Exchange APIs", id="api-title", classes="section-title")
        yield _table("api-table", API_COLUMNS, cursor=False)

    def on_mount(self) -> None:
        self.show(self._initial)

    def show(self, health: Mapping[str, ApiHealth]) -> None:
        """Draw ``health`` (exchange id -> ApiHealth); empty: the paper line. Only changed cells are drawn."""
        live = bool(health)
        if live != self._live:
            self._live = live
            self.query_one("#api-paper").display = not live
            self.query_one("#api-title").display = live
            self.query_one("#api-table").display = live
        table = self.query_one("#api-table", StyledTable)
        for gone in [ex for ex in self._rows if ex not in health]:
            table.remove_row(gone)
            del self._rows[gone]
        for ex in sorted(health):
            cells = self.cells(table, health[ex])
            old = self._rows.get(ex)
            if old is None:
                table.add_row(*cells, key=ex)
            elif old != cells:
                for (col, _, _), new, was in zip(API_COLUMNS, cells, old, strict=True):
                    if new != was:
                        table.update_cell(ex, col, new)
            self._rows[ex] = cells

    @staticmethod
    def cells(table: StyledTable, h: ApiHealth) -> tuple[Text | str, ...]:
        """One exchange's row, in ``API_COLUMNS`` order; the state in its theme colour."""
        failing = h.consecutive_failures > 0
        retry = f"{h.retry_in_s:.0f} s" if h.state is ApiState.OPEN else "-"
        return (
            h.exchange,
            table.styled(h.state.value, API_STATE_ROLE[h.state]),
            _right(table.styled(str(h.consecutive_failures), "warn" if failing else "")),
            table.styled(h.last_error or "-", "" if failing else "muted"),
            _right(retry),
            _right(latency(h.latency_p50_ms)),
            _right(latency(h.latency_p99_ms)),
        )

    def invalidate(self) -> None:
        """Forget the drawn cells and colours (after a theme change)."""
        self.query_one("#api-table", StyledTable).reset_styles()
        self._rows = {k: (None,) * len(API_COLUMNS) for k in self._rows}


class BreakersPane(Vertical):
    """Readings (cursor = the selected breaker), limit usage, trip history and refusals."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "reset_breaker", "Reset breaker", id="breakers.reset"),
    ]

    class ResetAsked(Message):
        """The user asked to reset ``breaker`` of ``bot_id`` (None: the account)."""

        def __init__(self, breaker: Breaker, bot_id: int | None) -> None:
            super().__init__()
            self.breaker = breaker
            self.bot_id = bot_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._rows: dict[str, tuple[object, ...]] = {}
        self._seen: dict[str, tuple[Reading, int | None, str | None]] = {}
        self._limit_rows: dict[str, tuple[object, ...]] = {}
        self._history: dict[int, tuple[object, ...]] = {}
        self._history_version = -1
        self._last_refusal: RefusalEntry | None = None
        self._refusals_drawn = False
        self._past: list[tuple[int, str, str, str, Mapping[str, str]]] = []
        """Refusals of earlier runs, oldest first: (ms UTC, bot, gate, reason, figures)."""

    def compose(self) -> ComposeResult:
        with Horizontal(id="breakers-top"):
            with Vertical(id="breakers-box"):
                yield Label("Breakers (r resets the selected trip)", classes="section-title")
                yield _table("breakers-table", BREAKER_COLUMNS, cursor=True)
            with Vertical(id="limits-box"):
                yield Label("Limit usage", id="limits-title", classes="section-title")
                yield _table("limits-table", LIMIT_COLUMNS, cursor=False)
        yield Label("Trip history (newest at the bottom)", classes="section-title")
        yield _table("trips-table", HISTORY_COLUMNS, cursor=False)
        yield ApiHealthView(id="api-health")
        yield Label("Latest refusals (newest at the bottom)", classes="section-title")
        yield Tape(REFUSAL_COLUMNS, max_rows=REFUSALS_SHOWN, id="refusals-tape")

    # -- selection -------------------------------------------------------------
    @property
    def selected(self) -> tuple[Breaker, int | None] | None:
        """The breaker under the readings table's cursor: (breaker, bot id or None for the account)."""
        table = self.query_one("#breakers-table", StyledTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return None if key is None else parse_reading_key(key)

    def select(self, breaker: Breaker, bot_id: int | None) -> None:
        table = self.query_one("#breakers-table", StyledTable)
        table.move_cursor(row=table.get_row_index(reading_key(breaker, bot_id)))

    def action_reset_breaker(self) -> None:
        selected = self.selected
        if selected is None:
            self.notify("no breaker selected", severity="warning")
            return
        self.post_message(self.ResetAsked(*selected))

    # -- drawing ---------------------------------------------------------------
    def refresh_view(self, engine: TradingEngine, model: EngineModel) -> None:
        """Bring every part up to date (only changed cells and new rows are drawn)."""
        names = {i: r.rec.name for i, r in engine.runners.items()}
        self._show_readings(engine, names)
        self._show_limits(engine)
        self.query_one(ApiHealthView).show(engine.api_health())
        if model.trips_version != self._history_version:
            self._show_history(model, names)
            self._history_version = model.trips_version
        if (engine.refusals and engine.refusals[-1] is not self._last_refusal) or (
            self._past and not self._refusals_drawn
        ):
            self._show_refusals(engine)

    def load_refusals(self, db: str) -> None:
        """Read the refusals of earlier runs from the ledger at ``db`` (read-only; call it once, before the run).

        ``engine.refusals`` holds this run's only; these go above them on the tape.
        No ledger, or one that cannot be read, leaves the tape to the live refusals.
        """
        try:
            conn = connect_readonly(db)
        except (FileNotFoundError, sqlite3.Error):
            return
        try:
            rows = refusals(conn, REFUSALS_SHOWN)
        except (sqlite3.Error, LedgerDataError):
            return
        finally:
            conn.close()
        self._past = [(r.updated_ts, r.bot, r.gate, r.reject_reason, r.figures) for r in reversed(rows)]

    def _show_readings(self, engine: TradingEngine, names: dict[int, str]) -> None:
        table = self.query_one("#breakers-table", StyledTable)
        active = engine.board.active
        for r in engine.breaker_readings():
            key = reading_key(r.breaker, r.bot_id)
            trip = active.get((r.breaker, r.bot_id))
            seen = (r, None if trip is None else trip.ts, names.get(r.bot_id or 0))
            if self._seen.get(key) == seen:
                continue  # most rows: nothing moved since the last frame
            self._seen[key] = seen
            cells = self._reading_cells(table, r, names, seen[1])
            old = self._rows.get(key)
            if old is None:
                table.add_row(*cells, key=key)
            elif old != cells:
                for (col, _, _), new, was in zip(BREAKER_COLUMNS, cells, old, strict=True):
                    if new != was:
                        table.update_cell(key, col, new)
            self._rows[key] = cells

    @staticmethod
    def _reading_cells(
        table: StyledTable, r: Reading, names: dict[int, str], since: int | None
    ) -> tuple[Text | str, ...]:
        role = STATUS_ROLE.get(r.status, "")
        if r.breaker is Breaker.HALT:
            value = table.styled("halted", "error") if r.status == "tripped" else Text("-")
        else:
            value = table.styled(figure(r.breaker, r.value), role if r.status != "ok" else "")
        bot = "-" if r.bot_id is None else names.get(r.bot_id, str(r.bot_id))
        return (
            r.scope.value,
            bot,
            rule_name(r.breaker),
            _right(figure(r.breaker, r.threshold)),
            _right(value),
            _right(figure(r.breaker, r.headroom)),
            table.styled(r.status, role),
            fmt.ts(since) if since is not None else "",
        )

    def _show_limits(self, engine: TradingEngine) -> None:
        table = self.query_one("#limits-table", StyledTable)
        rows = list(self._limit_cells(table, engine))
        if [k for k, _ in rows] != list(self._limit_rows):  # a bot was added: rebuild in order
            table.clear()
            self._limit_rows = {}
            for key, cells in rows:
                table.add_row(*cells, key=key)
                self._limit_rows[key] = cells
            return
        for key, cells in rows:
            old = self._limit_rows[key]
            if old != cells:
                for (col, _, _), new, was in zip(LIMIT_COLUMNS, cells, old, strict=True):
                    if new != was:
                        table.update_cell(key, col, new)
                self._limit_rows[key] = cells

    @staticmethod
    def _limit_cells(
        table: StyledTable, engine: TradingEngine
    ) -> Iterable[tuple[str, tuple[Text | str, ...]]]:
        """(row key, cells): the account and each bot today (UTC day), each exchange's burst window, the queue."""
        u = engine.limit_usage()

        def used(n: int, limit: int) -> tuple[Text, Text]:
            role = "error" if limit and n >= limit else "warn" if limit and n > limit * 0.8 else ""
            return _right(table.styled(str(n), role)), _right(str(limit))

        yield (
            "account",
            ("account today", *used(cast(int, u["account_orders_today"]), cast(int, u["account_limit"]))),
        )
        bot_limit = cast(int, u["bot_limit"])
        for name, n in cast(dict[str, int], u["bots"]).items():
            yield f"bot:{name}", (f"  {name}", *used(n, bot_limit))
        burst_limit = cast(int, u["burst_limit"])
        window_s = cast(int, u["burst_window_ms"]) / 1000
        exchanges = {r.rec.exchange for r in engine.runners.values()}
        for ex, n in cast(dict[str, int], u["burst"]).items():
            if ex in exchanges or n:
                yield f"burst:{ex}", (f"{ex} per {window_s:g}s", *used(n, burst_limit))
        yield "queued", ("queued", _right(str(u["queued"])), _right("-"))

    def _show_history(self, model: EngineModel, names: dict[int, str]) -> None:
        table = self.query_one("#trips-table", StyledTable)
        for trip_id in [i for i in self._history if i not in model.trips]:  # dropped from the kept history
            table.remove_row(str(trip_id))
            del self._history[trip_id]
        added = False
        for trip_id in sorted(model.trips):
            cells = self._history_cells(table, model.trips[trip_id], names)
            old = self._history.get(trip_id)
            if old is None:
                table.add_row(*cells, key=str(trip_id))
                added = True
            elif old != cells:
                for (col, _, _), new, was in zip(HISTORY_COLUMNS, cells, old, strict=True):
                    if new != was:
                        table.update_cell(str(trip_id), col, new)
            self._history[trip_id] = cells
        if added:
            table.scroll_end(animate=False, immediate=False)

    @staticmethod
    def _history_cells(table: StyledTable, t: TripRow, names: dict[int, str]) -> tuple[Text | str, ...]:
        bot = "account" if t.bot_id is None else names.get(t.bot_id) or t.bot or str(t.bot_id)
        try:
            rule = rule_name(Breaker(t.breaker))
        except ValueError:
            rule = t.breaker
        reset = t.reset
        return (
            _right(str(t.id)),
            fmt.ts(t.ts),
            bot,
            table.styled(rule, "error" if reset is None else ""),
            t.message,
            fmt.ts(reset.ts) if reset is not None else table.styled("active", "error"),
            reset.actor if reset is not None else "",
            reset.reason if reset is not None else "",
        )

    def _show_refusals(self, engine: TradingEngine) -> None:
        """Append the refusals made since the last frame.

        The first frame draws the earlier runs' refusals from the ledger, then all the
        engine keeps (at most ``REFUSALS_SHOWN`` in all, the newest). Later frames draw
        at most ``REFUSALS_PER_FRAME``: in a refusal storm (many bots tripped at full
        replay speed) drawing every row of every frame would cost more than the rest of
        the pane; the tape then restarts with the newest rows.
        """
        tape = self.query_one("#refusals-tape", Tape)
        new: list[RefusalEntry] = []
        for entry in reversed(engine.refusals):  # newest first, back to the last one drawn
            if entry is self._last_refusal:
                break
            new.append(entry)
        self._last_refusal = engine.refusals[-1] if engine.refusals else None
        rows = [(ts, bot, r.gate.value, r.reason, r.figures) for ts, bot, _intent, r in reversed(new)]
        if not self._refusals_drawn:
            tape.clear()
            rows = (self._past + rows)[-REFUSALS_SHOWN:]
        elif len(rows) > REFUSALS_PER_FRAME:
            tape.clear()
            rows = rows[-REFUSALS_PER_FRAME:]
        self._refusals_drawn = True
        tape.add_rows(
            (
                fmt.ts(ts),
                bot,
                tape.cell(gate, "warn"),
                reason,
                tape.cell(figures_text(figures), "muted"),
            )
            for ts, bot, gate, reason, figures in rows
        )

    def invalidate(self) -> None:
        """Forget what was drawn (colours changed with the theme): the next refresh redraws every cell."""
        for table_id in ("#breakers-table", "#limits-table", "#trips-table"):
            self.query_one(table_id, StyledTable).reset_styles()
        self.query_one(ApiHealthView).invalidate()
        self._rows = {k: (None,) * len(BREAKER_COLUMNS) for k in self._rows}
        self._seen.clear()
        self._limit_rows = {k: (None,) * len(LIMIT_COLUMNS) for k in self._limit_rows}
        self._history = {k: (None,) * len(HISTORY_COLUMNS) for k in self._history}
        self._history_version = -1
        self._last_refusal = None
        self._refusals_drawn = False
