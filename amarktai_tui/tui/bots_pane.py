"""Bots pane: one row per bot with its figures, the bot keys, and the latest fills."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Label, Static

from amarktai_tui.autonomy.regime import short_label
from amarktai_tui.domain.enums import BotState, LifecycleStage, Side
from amarktai_tui.domain.types import Fill, Order
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.engine.promotion import Verdict
from amarktai_tui.engine.runner import BotRunner
from amarktai_tui.tui import fmt
from amarktai_tui.tui.widgets.tape import Column, Tape, foreground

RECENT_FILLS = 200

BOT_COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    # key, title, width (None = fit the content: these never change while a bot lives)
    ("name", "Bot", None),
    ("exchange", "Exchange", None),
    ("pair", "Pair", None),
    ("strategy", "Strategy", None),
    ("regime", "Regime", 7),
    ("state", "State", 8),
    ("stage", "Stage", 9),
    ("position", "Position", 20),
    ("open", "Open PnL", 10),
    ("realised", "Realised", 11),
    ("trades", "Trades", 6),
    ("win", "Win", 6),
)
"""Fixed widths for the figures, so the layout never depends on values seen mid-run."""
_RIGHT_ALIGNED = frozenset({"open", "realised", "trades", "win"})


class StyledTable(DataTable[Text | str]):
    """A DataTable whose PnL and state colours come from TCSS (theme variables) via component classes."""

    COMPONENT_CLASSES: ClassVar[set[str]] = DataTable.COMPONENT_CLASSES | {
        "styled--up",
        "styled--down",
        "styled--muted",
        "styled--warn",
        "styled--error",
        "styled--ok",
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._role_styles: dict[str, Style] = {}

    def styled(self, text: str, role: str) -> Text:
        """``text`` in the colour of ``role`` (up, down, muted, warn, error, ok; anything else: plain)."""
        if role not in ("up", "down", "muted", "warn", "error", "ok"):
            return Text(text)
        style = self._role_styles.get(role)
        if style is None:  # resolving a component style is slow: once per role until reset_styles()
            style = self._role_styles[role] = foreground(self.get_component_rich_style(f"styled--{role}"))
        return Text(text, style=style)

    def reset_styles(self) -> None:
        """Forget the resolved colours (after a theme change)."""
        self._role_styles.clear()

    def pnl(self, value: Decimal, text: str) -> Text:
        """``text`` coloured by the sign of ``value``."""
        return self.styled(text, fmt.pnl_class(value))


_STATE_ROLE = {
    BotState.RUNNING: "ok",
    BotState.PAUSED: "warn",
    BotState.STOPPED: "muted",
    BotState.ERROR: "error",
    BotState.CIRCUIT_TRIPPED: "error",
}


_STAGE_ROLE = {
    LifecycleStage.PAPER_TRAINING: "muted",
    LifecycleStage.ELIGIBLE_FOR_LIVE: "ok",
    LifecycleStage.LIVE: "warn",
    LifecycleStage.QUARANTINED: "error",
}
_STAGE_WORDS = {
    LifecycleStage.PAPER_TRAINING: "paper training",
    LifecycleStage.ELIGIBLE_FOR_LIVE: "eligible for live: L promotes it (asks first), D demotes it",
    LifecycleStage.LIVE: "live: D demotes it to paper",
    LifecycleStage.QUARANTINED: "quarantined until its breaker trip is reset (Breakers tab)",
}


_STAGE_SHORT = {
    LifecycleStage.ELIGIBLE_FOR_LIVE: "eligible",
    LifecycleStage.LIVE: "live",
    LifecycleStage.QUARANTINED: "quarant.",  # the column is 9 wide; the stage line spells it out
}


def stage_cell(table: StyledTable, stage: LifecycleStage, verdict: Verdict | None) -> Text:
    """The Stage column: "paper 4/6" (promotion criteria met), "eligible", "live", "quarant."."""
    if stage is LifecycleStage.PAPER_TRAINING:
        text = "paper" if verdict is None else f"paper {verdict.met}/{len(verdict.checks)}"
    else:
        text = _STAGE_SHORT[stage]
    return table.styled(text, _STAGE_ROLE[stage])


def stage_progress(name: str, stage: LifecycleStage, verdict: Verdict | None) -> str:
    """The line under the table for the selected bot: its stage and its progress on every criterion,
    e.g. "btc-rsi: paper training · trades 18/25 · win 55% ✓ · days 4.2/7 · ..."."""
    checks = "" if verdict is None else " · " + verdict.summary(short=True, sep=" · ")
    return f"{name}: {_STAGE_WORDS[stage]}{checks}"


_REGIME_ROLE = {
    "trending_up": "up",
    "trending_down": "down",
    "ranging": "",
    "volatile": "warn",
    "squeeze": "warn",
}


def regime_cell(table: StyledTable, regime: str | None) -> Text:
    """The Regime column: "trend↑", "trend↓", "range", "volat", "squeeze", or "—" (unknown, off)."""
    return table.styled(short_label(regime), _REGIME_ROLE.get(regime or "unknown", "muted"))


def bot_cells(
    table: StyledTable,
    r: BotRunner,
    order: Order | None = None,
    verdict: Verdict | None = None,
    regime: str | None = None,
) -> tuple[Text | str, ...]:
    """The row of one bot, in ``BOT_COLUMNS`` order (``verdict``: its stage's, for the Stage column;
    ``regime``: its stream's market regime, None when regimes are off)."""
    rec = r.rec
    state = rec.state.value
    if r.exit_requested is not None and r.long:
        state = "stopping"  # stopped, its position closes at the next candle's open
    elif rec.state is BotState.CIRCUIT_TRIPPED:
        state = "tripped"  # a breaker covering it tripped ("circuit_tripped" does not fit the column)
    if r.long:
        avg = r.book.avg_entry_price
        position = f"{fmt.qty(r.book.position_qty)} @ {fmt.price(avg) if avg is not None else '-'}"
    else:
        position = "flat"
    if order is not None:
        position += f", {order.side.value} order open"
    unreal = r.unrealised()
    return (
        rec.name,
        rec.exchange,
        rec.pair,
        f"{rec.strategy} {rec.timeframe}",
        regime_cell(table, regime),
        table.styled(state, _STATE_ROLE.get(rec.state, "")),
        stage_cell(table, rec.stage, verdict),
        position,
        _right(table.pnl(unreal, fmt.money(unreal, signed=True)) if r.long else table.styled("-", "muted")),
        _right(table.pnl(r.stats.realised, fmt.money(r.stats.realised, signed=True))),
        _right(Text(str(r.stats.trades))),
        _right(Text(fmt.pct(r.win_rate))),
    )


def _right(t: Text) -> Text:
    t.justify = "right"
    return t


FILL_COLUMNS = (
    Column("Time (UTC)", 16),
    Column("Bot", 16),
    Column("Pair", 10),
    Column("Side", 4),
    Column("Quantity", 12, right=True),
    Column("Price", 12, right=True),
    Column("Fee", 9, right=True),
    Column("Realised", 11, right=True),
)


def fill_row(tape: Tape, f: Fill, bot: str) -> tuple[str | Text, ...]:
    """One fill in ``FILL_COLUMNS`` order (realised PnL only on sells)."""
    buy = f.side is Side.BUY
    return (
        fmt.ts(f.ts),
        bot,
        f.pair,
        tape.cell(f.side.value, "ok" if buy else "warn"),
        fmt.qty(f.quantity),
        fmt.price(f.price),
        fmt.money(f.fee, places=4),
        "" if buy else tape.cell(fmt.money(f.realised_pnl, signed=True), fmt.pnl_class(f.realised_pnl)),
    )


class BotsPane(Vertical):
    """The bots table (cursor = the selected bot) and the most recent fills of all bots."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "start_bot", "Start/resume", id="bots.start"),
        Binding("p", "pause_bot", "Pause", id="bots.pause"),
        Binding("x", "stop_bot", "Stop", id="bots.stop"),
        Binding("d", "bot_details", "Details", id="bots.details"),
        # lifecycle stages: shown in the stage line under the table and in the palette
        Binding("L", "promote_bot", "Promote to live", id="bots.promote", key_display="L", show=False),
        Binding("D", "demote_bot", "Demote to paper", id="bots.demote", key_display="D", show=False),
    ]

    class BotAction(Message):
        """The user asked for ``action`` (start, pause, stop, details, promote, demote) on bot ``bot_id``."""

        def __init__(self, action: str, bot_id: int) -> None:
            super().__init__()
            self.action = action
            self.bot_id = bot_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._rows: dict[int, tuple[object, ...]] = {}
        self._fills_shown = -1
        self._engine: TradingEngine | None = None

    def compose(self) -> ComposeResult:
        table = StyledTable(id="bots-table", cursor_type="row", zebra_stripes=True)
        for key, label, width in BOT_COLUMNS:
            title = Text(label, justify="right") if key in _RIGHT_ALIGNED else label
            table.add_column(title, key=key, width=width)
        yield table
        yield Static("", id="stage-progress")
        yield Label("Latest fills (newest at the bottom)", classes="section-title")
        yield Tape(FILL_COLUMNS, max_rows=RECENT_FILLS, id="fills-tape")

    @property
    def selected_bot(self) -> int | None:
        """The id of the bot under the table cursor."""
        table = self.query_one("#bots-table", StyledTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return None if key.value is None else int(key.value)

    def select_bot(self, bot_id: int) -> None:
        table = self.query_one("#bots-table", StyledTable)
        table.move_cursor(row=table.get_row_index(str(bot_id)))

    def refresh_view(self, engine: TradingEngine) -> None:
        """Bring both tables up to date with the engine (only changed cells are touched)."""
        self._engine = engine
        table = self.query_one("#bots-table", StyledTable)
        book = engine.regimes
        for bot_id in sorted(engine.runners):
            runner = engine.runners[bot_id]
            paper = runner.rec.stage is LifecycleStage.PAPER_TRAINING
            verdict = engine.stages.verdict(bot_id) if paper else None
            regime = None if book is None else book.regime_of(runner)
            cells = bot_cells(table, runner, engine.open_order(bot_id), verdict, regime)
            old = self._rows.get(bot_id)
            if old is None:
                table.add_row(*cells, key=str(bot_id))
            elif old != cells:
                for (col, _, _), new, was in zip(BOT_COLUMNS, cells, old, strict=True):
                    if new != was:
                        table.update_cell(str(bot_id), col, new)
            self._rows[bot_id] = cells
        self._show_stage()
        if len(engine.fill_log) != self._fills_shown:
            self._show_fills(engine)

    def _show_stage(self) -> None:
        """The selected bot's stage and its progress on every criterion, under the table."""
        engine, bot_id = self._engine, self.selected_bot
        runner = None if engine is None or bot_id is None else engine.runners.get(bot_id)
        text = ""
        if engine is not None and runner is not None:
            text = stage_progress(runner.rec.name, runner.rec.stage, engine.stages.verdict(runner.rec.id))
        self.query_one("#stage-progress", Static).update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "bots-table":
            self._show_stage()

    def _show_fills(self, engine: TradingEngine) -> None:
        tape = self.query_one("#fills-tape", Tape)
        if self._fills_shown < 0:
            tape.clear()
            self._fills_shown = max(0, len(engine.fill_log) - RECENT_FILLS)
        names = {i: r.rec.name for i, r in engine.runners.items()}
        new = engine.fill_log[max(self._fills_shown, len(engine.fill_log) - RECENT_FILLS) :]
        tape.add_rows(fill_row(tape, f, names.get(f.bot_id, str(f.bot_id))) for f in new)
        self._fills_shown = len(engine.fill_log)

    def invalidate(self) -> None:
        """Forget what was drawn (colours changed with the theme): the next refresh redraws every cell."""
        self.query_one("#bots-table", StyledTable).reset_styles()
        self._rows = {bot_id: (None,) * len(BOT_COLUMNS) for bot_id in self._rows}
        self._fills_shown = -1

    def _ask(self, action: str) -> None:
        bot_id = self.selected_bot
        if bot_id is None:
            self.notify("no bot selected", severity="warning")
            return
        self.post_message(self.BotAction(action, bot_id))

    def action_start_bot(self) -> None:
        self._ask("start")

    def action_pause_bot(self) -> None:
        self._ask("pause")

    def action_stop_bot(self) -> None:
        self._ask("stop")

    def action_bot_details(self) -> None:
        self._ask("details")

    def action_promote_bot(self) -> None:
        self._ask("promote")

    def action_demote_bot(self) -> None:
        self._ask("demote")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "bots-table":
            event.stop()
            self._ask("details")
