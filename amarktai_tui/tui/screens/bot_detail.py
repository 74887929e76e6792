"""One bot in detail: its settings and figures, a price chart with its entries and exits, its fills."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from amarktai_tui.domain.enums import Side
from amarktai_tui.domain.types import Candle, Fill
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.engine.runner import BotRunner
from amarktai_tui.tui import fmt
from amarktai_tui.tui.bots_pane import FILL_COLUMNS, fill_row
from amarktai_tui.tui.header import AppHeader
from amarktai_tui.tui.model import EngineModel
from amarktai_tui.tui.widgets.line_chart import LineChart, Marker
from amarktai_tui.tui.widgets.tape import Tape

FILLS_SHOWN = 300
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


class BotDetailScreen(Screen[None]):
    """Opened from the bots pane; the app draws it (``refresh_view``) when mounted and on its redraw timer."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "app.pop_screen", "Back", id="detail.back"),
    ]

    def __init__(
        self, engine: TradingEngine, model: EngineModel, bot_id: int, *, on_ready: Callable[[], None]
    ) -> None:
        super().__init__()
        self._engine = engine
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

    def _show_fills(self, fills: list[Fill]) -> None:
        tape = self.query_one("#detail-fills", Tape)
        new = fills[max(self._fills_shown, len(fills) - FILLS_SHOWN, 0) :]
        tape.add_rows(fill_row(tape, f, "")[:1] + fill_row(tape, f, "")[3:] for f in new)
        self._fills_shown = len(fills)
