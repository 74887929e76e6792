"""One bot in detail: its settings and figures, its self-learning review, a price chart with its
entries and exits, its fills.

The learning review is what ``amarktai learn BOT`` prints (``ops.learn_commands.learning_review``:
``autonomy.learning.review`` over the bot's closed trades in the ledger, at the ledger's newest
time): win rate, win/loss ratio, best and worst entry hours (UTC) and pairs, and what the learning
job would change now. It is read in a thread when the screen opens and again, at most every
``LEARNING_EVERY_S``, after the bot has new fills (or when the last read was behind the engine).
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from amarktai_tui.autonomy.learning import Bucket, LearningReview, pct
from amarktai_tui.autonomy.views import value_text
from amarktai_tui.config import Settings
from amarktai_tui.domain.enums import Side
from amarktai_tui.domain.types import Candle, Fill
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.engine.runner import BotRunner
from amarktai_tui.ledger.schema import connect_readonly
from amarktai_tui.ops.learn_commands import learning_review
from amarktai_tui.tui import fmt
from amarktai_tui.tui.bots_pane import FILL_COLUMNS, fill_row
from amarktai_tui.tui.header import AppHeader
from amarktai_tui.tui.model import EngineModel
from amarktai_tui.tui.widgets.line_chart import LineChart, Marker
from amarktai_tui.tui.widgets.tape import Tape

FILLS_SHOWN = 300
LEARNING_EVERY_S = 5.0
"""Wall-clock seconds between two reads of the learning review (when the bot has new fills)."""
REVIEW_TICK_S = 1.0
"""How often the screen checks whether a review read is due (and the retry delay of a read that
found the ledger behind the engine)."""
DETAIL_FILL_COLUMNS = FILL_COLUMNS[:1] + FILL_COLUMNS[3:]  # no bot or pair column


def fill_markers(candles: Sequence[Candle], fills: Sequence[Fill]) -> list[Marker]:
    """Markers for the fills that happened within the candles' time span, at the fill price.

    A fill at time ``t`` is placed on the candle whose open time is the last one ``<= t``.
    """
    if not candles:
        return []
    opens = [c.ts for c in candles]
    first, last_close = opens[0], opens[-1] + (opens[-1] - opens[-2] if len(opens) > 1 else 0)
    out: list[Marker] = []
    for f in fills:
        if not first <= f.ts <= last_close:
            continue
        i = bisect_left(opens, f.ts)
        if i == len(opens) or opens[i] != f.ts:
            i -= 1
        out.append(Marker(float(max(i, 0)), float(f.price), "buy" if f.side is Side.BUY else "sell"))
    return out


def regime_line(engine: TradingEngine, r: BotRunner) -> str:
    """The bot's market regime with its figures and what it does to entries, e.g. "regime trending
    up · ADX 31.2 (+DI 28.0 / -DI 12.5) · BBW 4.10% · ATR 1.32% · entries x1.2 (autonomous)"."""
    book = engine.regimes
    if book is None:
        return "regime: off ([autonomy.regime] enabled = false)"
    reading = book.reading_of(r)
    if reading is None:
        return "regime unknown: no candle of its stream yet"
    text = f"regime {reading.regime.replace('_', ' ')} · {reading.figures()}"
    if engine.size_hook is None:
        return text + " · expert mode: sizes untouched"
    scale, why = book.scale_of(r)
    text += f" · entries x{scale} (autonomous)" if scale else f" · {why} (autonomous)"
    refused = [why for _, bot_id, why in book.refusals if bot_id == r.rec.id]
    return text + (f" · {len(refused)} entries refused" if refused else "")


def summary(r: BotRunner, ccy: str) -> str:
    """A few lines about the bot: settings, state, position and results."""
    rec = r.rec
    params = ", ".join(f"{k}={v}" for k, v in rec.params.items()) or "defaults"
    sl = "none" if rec.stop_loss is None else fmt.pct(float(rec.stop_loss))
    state = rec.state.value + (f" ({rec.state_reason})" if rec.state_reason else "")
    if r.long:
        avg = r.book.avg_entry_price
        pos = f"{fmt.qty(r.book.position_qty)} @ {fmt.price(avg) if avg is not None else '-'}"
        pos += f", open PnL {fmt.money(r.unrealised(), signed=True)}"
    else:
        pos = "flat"
    return "\n".join(
        (
            f"{rec.exchange} {rec.pair} {rec.timeframe} | {rec.strategy} ({params}) | risk {rec.risk_mode.value}"
            f" | stop-loss {sl} | stage {rec.stage.value}",
            f"state {state} | position {pos} | mark {fmt.price(r.mark) if r.mark is not None else '-'}",
            f"capital {fmt.money(r.funding)} {ccy} | equity {fmt.money(r.equity())} | realised "
            f"{fmt.money(r.stats.realised, signed=True)} | fees {fmt.money(r.stats.fees)} | trades {r.stats.trades}"
            f" | win rate {fmt.pct(r.win_rate)}",
        )
    )


def read_review(db: Path, bot_name: str, bot_id: int, settings: Settings) -> tuple[LearningReview, int]:
    """In a thread: the bot's learning review as ``amarktai learn`` computes it, and how many fills of
    the bot the ledger held for it (one read transaction). Raises sqlite3.Error, FileNotFoundError."""
    with closing(connect_readonly(str(db))) as conn:
        conn.execute("BEGIN")  # one snapshot for both reads
        review = learning_review(conn, bot_name, settings)
        (fills,) = conn.execute("SELECT COUNT(*) FROM fills WHERE bot_id = ?", (bot_id,)).fetchone()
        conn.rollback()
    return review, int(fills)


def _money(x: Decimal) -> str:
    return fmt.money(x, signed=True)


def _bucket(what: str, b: Bucket | None, unit: str = "") -> str:
    if b is None:
        return f"{what} -"
    return f"{what} {b.key}{unit} {_money(b.pnl)} ({b.trades} trade{'' if b.trades == 1 else 's'})"


def _value(field: str, v: Any) -> str:
    return value_text(field, getattr(v, "value", v))


def review_text(rv: LearningReview, mode: str) -> Text:
    """The review in a few lines: figures, best and worst hours and pairs, what learning would change."""
    text = Text()
    text.append("Self-learning ", style="bold")
    since = f" since {fmt.ts(rv.window_start_ms)} UTC" if rv.window_start_ms is not None else ""
    text.append(f"at {fmt.ts(rv.now_ms)} UTC · {rv.trades} closed trades{since}")
    if not rv.trades or rv.win_rate is None:
        text.append(" · nothing to review yet", style="dim")
    else:
        ratio = "-" if rv.wl_ratio is None else f"{rv.wl_ratio:.2f}"
        avg_win = "-" if rv.avg_win is None else _money(rv.avg_win)
        avg_loss = "-" if rv.avg_loss is None else _money(-rv.avg_loss)
        text.append(f" · win rate {pct(rv.win_rate)} ({rv.wins} won, {rv.losses} lost)")
        text.append(f" · win/loss {ratio} (avg win {avg_win}, avg loss {avg_loss})")
        text.append(f" · net {_money(rv.net_pnl)}")
        text.append(
            "\n"
            + " · ".join(
                (
                    _bucket("best hour", rv.best_hour, " UTC"),
                    _bucket("worst hour", rv.worst_hour, " UTC"),
                    _bucket("best pair", rv.best_pair),
                    _bucket("worst pair", rv.worst_pair),
                )
            )
        )
    how = "proposals to accept in the Autonomy tab" if mode == "expert" else "applied within the bounds"
    if rv.changes:
        text.append(f"\nLearning would change ({mode} mode: {how}):", style="bold")
        for c in rv.changes:
            text.append(f"\n  {c.field} {_value(c.field, c.before)} → {_value(c.field, c.after)}: {c.reason}")
    else:
        text.append("\nLearning would change nothing", style="bold")
    for note in rv.notes:
        text.append(f"\n  note: {note}", style="dim")
    return text


class BotDetailScreen(Screen[None]):
    """Opened from the bots pane; the app draws it (``refresh_view``) when mounted and on its redraw
    timer. ``review`` is the last learning review read (``review_read`` is set after each read)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "app.pop_screen", "Back", id="detail.back"),
    ]
    DEFAULT_CSS = """
    BotDetailScreen #detail-learning { height: auto; max-height: 8; margin-bottom: 1; }
    """

    def __init__(
        self,
        engine: TradingEngine,
        model: EngineModel,
        bot_id: int,
        *,
        settings: Settings,
        on_ready: Callable[[], None],
    ) -> None:
        super().__init__()
        self._engine = engine
        self._settings = settings
        self.review: LearningReview | None = None
        self.review_read = asyncio.Event()
        self._review_for: int | None = None  # the bot's fills in the engine when the shown review was asked
        self.review_synced = False
        """The shown review covers every fill of the bot the engine had when it was asked for."""
        self._review_busy = False
        self._review_due = 0.0
        self._model = model
        self.bot_id = bot_id
        self._on_ready = on_ready
        self.composed = False
        """True once the widgets exist (``refresh_view`` may be called)."""
        self._fills_shown = 0
        self._candles_seen: tuple[int, int] = (-1, -1)

    def compose(self) -> ComposeResult:
        yield AppHeader()
        with Vertical(id="detail"):
            yield Label("", id="detail-title", classes="dialog-title")
            yield Static("", id="detail-summary")
            yield Static("Self-learning: reading the ledger…", id="detail-learning")
            with Horizontal(id="detail-body"):
                with Vertical(id="detail-chart-box"):
                    yield Label(
                        "Price (last candles), ▲ buy ▼ sell", id="detail-chart-title", classes="section-title"
                    )
                    yield LineChart("no candles seen yet in this run", id="detail-chart")
                with Vertical(id="detail-fills-box"):
                    yield Label("Fills", classes="section-title")
                    yield Tape(DETAIL_FILL_COLUMNS, max_rows=FILLS_SHOWN, id="detail-fills")
        yield Footer()

    def on_mount(self) -> None:
        self.composed = True
        self._on_ready()  # the app draws this screen (and its header) now, then on its timer
        self.set_interval(REVIEW_TICK_S, self._review_tick, name="detail-learning")

    def _review_tick(self) -> None:
        """The app redraws only when the engine moves: the ledger catching up is checked here."""
        runner = self._engine.runners.get(self.bot_id)
        if runner is not None:
            self._maybe_review(
                runner.rec.name, sum(1 for f in self._engine.fill_log if f.bot_id == self.bot_id)
            )

    def refresh_view(self) -> None:
        """Redraw from the engine (figures, fills) and the model (candles)."""
        engine, model = self._engine, self._model
        runner = engine.runners.get(self.bot_id)
        if runner is None:
            return
        rec = runner.rec
        self.query_one("#detail-title", Label).update(f"Bot {rec.name} (#{rec.id})")
        self.query_one("#detail-summary", Static).update(
            summary(runner, engine.quote_currency) + "\n" + regime_line(engine, runner)
        )
        fills = [f for f in engine.fill_log if f.bot_id == self.bot_id]
        candles = list(model.candles.get((rec.pair, rec.timeframe), ()))
        seen = (candles[-1].ts if candles else 0, len(fills))
        if seen != self._candles_seen:
            self._candles_seen = seen
            chart = self.query_one("#detail-chart", LineChart)
            chart.set_series(
                [c.close for c in candles],
                fill_markers(candles, fills),
                (fmt.ts(candles[0].ts), fmt.ts(candles[-1].ts)) if candles else ("", ""),
            )
            self.query_one("#detail-chart-title", Label).update(
                f"{rec.pair} {rec.timeframe} close, last {len(candles)} candles; ▲ buy ▼ sell"
            )
        if len(fills) != self._fills_shown:
            self._show_fills(fills)
        self._maybe_review(rec.name, len(fills))

    def _maybe_review(self, name: str, fills: int) -> None:
        """Start a learning review read when the bot has fills the shown one did not cover."""
        if self._review_busy or (self._review_for == fills and self.review_synced):
            return
        clock = time.monotonic()
        if self._review_for is not None and clock < self._review_due:
            return
        self._review_busy = True
        self._review_due = clock + LEARNING_EVERY_S
        self._read_review(name, fills)

    @work(group="detail-learning", exit_on_error=False)
    async def _read_review(self, name: str, fills: int) -> None:
        widget = self.query_one("#detail-learning", Static)
        try:
            rv, in_ledger = await asyncio.to_thread(
                read_review, self._engine.store.path, name, self.bot_id, self._settings
            )
        except Exception as exc:  # an unreadable ledger, the bot not in it yet: one line, tried again
            self._review_for, self.review_synced = fills, False
            widget.update(Text(f"Self-learning review unreadable: {exc}".splitlines()[0], style="bold"))
            return
        finally:
            self._review_busy = False
        self.review = rv
        self._review_for, self.review_synced = fills, in_ledger >= fills
        if not self.review_synced:  # the ledger is behind the engine: read again soon
            self._review_due = min(self._review_due, time.monotonic() + REVIEW_TICK_S)
        widget.update(review_text(rv, self._settings.autonomy.mode))
        self.query_one("#detail-fills", Tape).follow()  # the review's height moved the fills' box
        self.review_read.set()

    def _show_fills(self, fills: list[Fill]) -> None:
        tape = self.query_one("#detail-fills", Tape)
        new = fills[max(self._fills_shown, len(fills) - FILLS_SHOWN, 0) :]
        tape.add_rows(fill_row(tape, f, "")[:1] + fill_row(tape, f, "")[3:] for f in new)
        self._fills_shown = len(fills)
