"""The Backtest screen: a strategy with its parameters over candle files, run beside the cockpit.

Opened with ``b`` or "Backtest a strategy" in the palette. The form is built from
``strategies.registry.describe()``: a strategy, one field per parameter (its default, the allowed
range beside it), the data files (comma-separated, prefilled from the running replay; each file is
checked as it is typed: exists, pair and timeframe from its name or the Pair/Timeframe fields),
capital per bot. A field the strategy rejects is one line naming the parameter, the field marked.

Run (``ctrl+r``, the button or enter in a field) starts ``ops.backtest.run_backtest`` in an
asyncio worker on the app's loop (the engine yields every few ms, so the UI and the app's own
engine keep going): a fresh ledger in its own temporary directory (``tempfile``), never the
user's data dir, removed when the run ends, fails or is cancelled (``esc``). The run's engine log
lines are kept out of the user's log (a context variable marks the run's tasks). Bad input
(``BacktestUsageError``, ``CandleFileError``) and runtime failures are one line on the screen.
"Optimise…" opens the Optimise screen (``tui.screens.optimize``) with this strategy and data.

The result: key figures (return, max drawdown, trades, win rate, profit factor, Sharpe, then
equity, realised, fees, expectancy, Sortino, Calmar), the account equity curve, open positions and
breaker trips when there are any, and the closed trades (times UTC). Figures are the ledger's
(``ProfitService``), the same as ``amarktai backtest`` prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Footer, Input, Label, ProgressBar, Select, Static

from amarktai_tui.config import BotSettings, Settings
from amarktai_tui.market.errors import CandleFileError
from amarktai_tui.ops.backtest import (
    BacktestRequest,
    BacktestResult,
    BacktestUsageError,
    TradeRow,
    effective_params,
    run_backtest,
)
from amarktai_tui.strategies.base import StrategyParamError
from amarktai_tui.strategies.params import ParamSpec, ParamValue, StrategyInfo
from amarktai_tui.strategies.registry import describe
from amarktai_tui.tui import fmt
from amarktai_tui.tui.bots_pane import StyledTable
from amarktai_tui.tui.screens.new_bot import FormError
from amarktai_tui.tui.screens.run_form import RunForm, screen_text
from amarktai_tui.tui.widgets.line_chart import LineChart

log = logging.getLogger(__name__)

KPIS = ("Return", "Max drawdown", "Trades", "Win rate", "Profit factor", "Sharpe")
"""The big figures, left to right (``BacktestScreen.values`` keys, with the stats below them)."""
TRADE_COLUMNS = (
    ("#", False),
    ("Entry (UTC)", False),
    ("Exit (UTC)", False),
    ("Pair", False),
    ("Qty", True),
    ("Entry price", True),
    ("Exit price", True),
    ("PnL", True),
    ("Return", True),
    ("Fees", True),
    ("Held", True),
)
"""Trade table columns: title, right-aligned."""
_IN_BACKTEST: ContextVar[bool] = ContextVar("amarktai_backtest_run", default=False)


class _NotFromBacktest(logging.Filter):
    """Drops records logged by a backtest's tasks (they inherit the context variable)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _IN_BACKTEST.get()


_FILTER = _NotFromBacktest()


_QUIET_LOCK = threading.Lock()
_QUIET: dict[str, Any] = {"runs": 0, "handlers": []}
"""Runs inside ``_quiet_run`` now (backtests, studies in threads) and the handlers filtered for them."""


@contextlib.contextmanager
def _quiet_run() -> Iterator[None]:
    """Within: this task (or thread) and the tasks it creates log nowhere (the user's log is the
    live engine's). Runs may overlap (a backtest beside an optimisation thread): the root
    handlers are filtered from the first one's start to the last one's end."""
    token = _IN_BACKTEST.set(True)
    with _QUIET_LOCK:
        if not _QUIET["runs"]:
            _QUIET["handlers"] = list(logging.getLogger().handlers)
            for h in _QUIET["handlers"]:
                h.addFilter(_FILTER)
        _QUIET["runs"] += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _QUIET["runs"] -= 1
            if not _QUIET["runs"]:
                for h in _QUIET["handlers"]:
                    h.removeFilter(_FILTER)
                _QUIET["handlers"] = []
        _IN_BACKTEST.reset(token)


def parse_param(strategy: str, spec: ParamSpec, text: str, field: str) -> ParamValue:
    """A parameter field's text as its value (empty = the default). Raises FormError naming it."""
    raw = text.strip()
    if not raw:
        return spec.default
    value: ParamValue
    if spec.kind == "choice":
        value = raw
    else:
        try:
            number = float(raw)
        except ValueError:
            what = "an integer" if spec.kind == "int" else "a number"
            raise FormError(field, f"{spec.name}: {raw!r} is not {what}") from None
        value = (
            int(number) if spec.kind == "int" and math.isfinite(number) and number.is_integer() else number
        )
    try:
        return spec.coerce(strategy, value)
    except StrategyParamError as exc:
        raise FormError(field, str(exc)) from None


def return_of(result: BacktestResult) -> float | None:
    """Total PnL (realised + unrealised) over the capital, a fraction; None without capital."""
    f = result.figures
    return float(f.total / f.capital) if f.capital else None


def figure_values(result: BacktestResult) -> dict[str, str]:
    """Every figure the screen shows, by label (the KPI boxes first)."""
    f, s = result.figures, result.figures.stats
    ret = return_of(result)
    return {
        "Return": "-" if ret is None else f"{ret * 100:+.2f}%",
        "Max drawdown": fmt.pct(s.max_drawdown),
        "Trades": str(s.trades),
        "Win rate": fmt.pct(s.win_rate),
        "Profit factor": _ratio(s.profit_factor),
        "Sharpe": _ratio(s.sharpe),
        "Equity": fmt.money(f.equity),
        "Capital": fmt.money(f.capital),
        "Realised": fmt.money(f.realised, signed=True),
        "Unrealised": fmt.money(f.unrealised, signed=True),
        "Fees": fmt.money(f.fees),
        "Expectancy": "-" if s.expectancy is None else fmt.money(s.expectancy, signed=True),
        "Sortino": _ratio(s.sortino),
        "Calmar": _ratio(s.calmar),
    }


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _role(text: str) -> str:
    if text.startswith("+"):
        return "up"
    return "down" if text.startswith("-") and text != "-" else ""


class Kpi(Static):
    """A bordered box: the figure's name (muted) over its value (bold, coloured by ``role``)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"bt-kpi--label"}

    def __init__(self, title: str) -> None:
        super().__init__("", classes="bt-kpi", id=f"bt-kpi-{_slug(title)}")
        self.title = title
        self.value = "-"

    def on_mount(self) -> None:
        self.show("-")

    def show(self, value: str, role: str = "") -> None:
        self.value = value
        text = Text()
        text.append(self.title + "\n", style=self.get_component_rich_style("bt-kpi--label", partial=True))
        text.append(value, style="bold")
        self.update(text)
        for cls in ("up", "down"):
            self.set_class(cls == role, cls)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class BacktestScreen(RunForm[BacktestRequest]):
    """Pick, run, read (module doc). ``result`` is the last finished run; ``values`` its figures as
    shown; ``run_dir`` the last run's temporary directory (gone once the run is over);
    ``progressed`` is set at a run's first progress report."""

    PREFIX = "bt"
    WORKER_GROUP = "backtest"
    BUSY_TEXT = "a backtest is running: esc cancels it"
    STARTING = "loading the candles…"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "run", "Run", id="backtest.run", priority=True),
        Binding("escape", "escape", "Cancel run / back", id="backtest.back"),
    ]
    DEFAULT_CSS = """
    BacktestScreen #bt-title { margin-top: 0; }
    BacktestScreen #bt-top { height: 26; }
    BacktestScreen #bt-setup {
        width: 52; border: round $panel-lighten-2; border-title-color: $text-accent;
        border-title-style: bold; padding: 0 1;
    }
    BacktestScreen #bt-result {
        width: 1fr; border: round $panel-lighten-2; border-title-color: $text-accent;
        border-title-style: bold; padding: 0 1;
    }
    BacktestScreen #bt-summary { color: $text-muted; height: auto; margin-bottom: 1; }
    BacktestScreen .bt-row { height: 1; }
    BacktestScreen .bt-label { width: 13; color: $text-muted; }
    BacktestScreen .bt-hint { width: 1fr; color: $text-muted; padding-left: 1; }
    BacktestScreen .bt-param { width: 10; }
    BacktestScreen #bt-strategy { width: 1fr; }
    BacktestScreen #bt-files { width: 1fr; }
    BacktestScreen #bt-capital { width: 10; }
    BacktestScreen #bt-pair { width: 10; margin-right: 1; }
    BacktestScreen #bt-timeframe { width: 5; }
    BacktestScreen #bt-params { height: auto; margin-bottom: 1; }
    BacktestScreen #bt-file-check { height: auto; max-height: 3; color: $text-muted; }
    BacktestScreen #bt-file-check.bt-bad { color: $error; }
    BacktestScreen #bt-buttons { height: 1; margin-top: 1; }
    BacktestScreen #bt-buttons Button { margin-right: 2; }
    BacktestScreen #bt-progress-row { height: 1; margin-top: 1; }
    BacktestScreen #bt-progress { width: auto; }
    BacktestScreen #bt-progress Bar { width: 20; }
    BacktestScreen #bt-progress-text { width: 1fr; color: $text-muted; padding-left: 1; }
    BacktestScreen #bt-error { color: $error; text-style: bold; height: auto; }
    BacktestScreen Input.bt-invalid { background: $error 35%; text-style: bold; }
    BacktestScreen #bt-kpis { height: 4; }
    BacktestScreen .bt-kpi {
        width: 1fr; height: 4; border: round $panel-lighten-2; text-align: center;
    }
    BacktestScreen .bt-kpi > .bt-kpi--label { color: $text-muted; text-style: not bold; }
    BacktestScreen .bt-kpi.up { color: $pnl-up; }
    BacktestScreen .bt-kpi.down { color: $pnl-down; }
    BacktestScreen #bt-what { height: 2; color: $text-muted; }
    BacktestScreen #bt-elapsed { height: 1; color: $text-muted; }
    BacktestScreen #bt-stats { height: 2; }
    BacktestScreen #bt-kpi-max-drawdown, BacktestScreen #bt-kpi-profit-factor { width: 1.3fr; }
    BacktestScreen #bt-notes { height: auto; max-height: 2; color: $warning; }
    BacktestScreen #bt-chart-title { margin-top: 0; }
    BacktestScreen #bt-chart { height: 1fr; min-height: 5; }
    BacktestScreen #bt-trades { height: 1fr; margin: 0 1; }
    """

    def __init__(
        self,
        settings: Settings,
        files: Sequence[str] = (),
        *,
        pair: str | None = None,
        timeframe: str | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self._files = list(files)
        self._pair = pair
        self._timeframe = timeframe
        self._strategies = describe()
        self._param_gen = 0  # ids of a rebuilt parameter form never collide with the removed one
        self.result: BacktestResult | None = None
        self.values: dict[str, str] = {}
        self.run_dir: Path | None = None

    # -- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        first = next(iter(self._strategies))
        quote = self.settings.general.quote_currency
        yield Label(
            "Backtest · one bot per data file through the replay engine at full speed, on a fresh "
            "ledger in a temporary directory (never yours)",
            classes="section-title",
            id="bt-title",
        )
        with Horizontal(id="bt-top"):
            with Vertical(id="bt-setup") as setup:
                setup.border_title = "Setup"
                with Horizontal(classes="bt-row"):
                    yield Label("Strategy", classes="bt-label")
                    yield Select(
                        [(n, n) for n in self._strategies],
                        value=first,
                        allow_blank=False,
                        compact=True,
                        id="bt-strategy",
                    )
                yield Static("", id="bt-summary")
                yield Vertical(id="bt-params")
                with Horizontal(classes="bt-row"):
                    yield Label("Data files", classes="bt-label")
                    yield Input(
                        ", ".join(self._files),
                        placeholder="BTC_USDT-1h.json, ETH_USDT-1h.json",
                        compact=True,
                        id="bt-files",
                    )
                yield Static("", id="bt-file-check")
                with Horizontal(classes="bt-row"):
                    yield Label(f"Capital ({quote})", classes="bt-label")
                    yield Input(placeholder="1000", compact=True, id="bt-capital")
                    yield Label(f"per bot; empty = {_default_capital()}", classes="bt-hint")
                with Horizontal(classes="bt-row"):
                    yield Label("Pair / TF", classes="bt-label")
                    yield Input(self._pair or "", placeholder="auto", compact=True, id="bt-pair")
                    yield Input(self._timeframe or "", placeholder="auto", compact=True, id="bt-timeframe")
                    yield Label("auto: file names", classes="bt-hint")
                with Horizontal(id="bt-buttons"):
                    yield Button("Run  ctrl+r", id="bt-run", variant="primary", compact=True)
                    yield Button("Cancel  esc", id="bt-cancel", compact=True, disabled=True)
                    yield Button("Optimise…", id="bt-optimise", compact=True)
                with Horizontal(id="bt-progress-row"):
                    yield ProgressBar(total=1, show_eta=False, id="bt-progress")
                    yield Label("not run yet", id="bt-progress-text")
                yield Label("", id="bt-elapsed")
                yield Static("", id="bt-error")
            with Vertical(id="bt-result") as result:
                result.border_title = "Result"
                with Horizontal(id="bt-kpis"):
                    for title in KPIS:
                        yield Kpi(title)
                yield Static("Pick a strategy and data files, then Run (ctrl+r).", id="bt-what")
                yield Static("", id="bt-stats")
                yield Static("", id="bt-notes")
                yield Label(f"Account equity ({quote})", id="bt-chart-title", classes="section-title")
                yield LineChart("no run yet", id="bt-chart")
        yield Label("Closed trades", id="bt-trades-title", classes="section-title")
        table = StyledTable(id="bt-trades", cursor_type="row", zebra_stripes=True)
        for title, right in TRADE_COLUMNS:
            table.add_column(Text(title, justify="right" if right else "left"), key=title)
        yield table
        yield Footer()

    async def on_mount(self) -> None:
        await self._strategy_changed(str(self.query_one("#bt-strategy", Select).value))
        self._check_files()
        self.query_one("#bt-strategy", Select).focus()
        self.app.theme_changed_signal.subscribe(self, self._on_theme_changed)

    def _on_theme_changed(self, _theme: object) -> None:
        """Colours resolved from the old theme (KPI labels, table cells) are drawn again."""
        self.query_one("#bt-trades", StyledTable).reset_styles()
        if self.result is not None:
            self._show(self.result)
        else:
            for kpi in self.query(Kpi):
                kpi.show("-")

    # -- the form ---------------------------------------------------------------------------
    def strategy(self) -> StrategyInfo:
        return self._strategies[str(self.query_one("#bt-strategy", Select).value)]

    def param_field(self, name: str) -> str:
        """The id of parameter ``name``'s input (or select, for a choice)."""
        return f"bt-param-{self._param_gen}-{name}"

    @on(Select.Changed, "#bt-strategy")
    async def _on_strategy(self, event: Select.Changed) -> None:
        await self._strategy_changed(str(event.value))

    async def _strategy_changed(self, name: str) -> None:
        info = self._strategies.get(name)
        if info is None:
            return
        rules = f" Rule: {'; '.join(info.constraints)}." if info.constraints else ""
        self.query_one("#bt-summary", Static).update(info.summary + rules)
        box = self.query_one("#bt-params", Vertical)
        await box.remove_children()
        self._param_gen += 1
        rows = []
        for p in info.params:
            field = self.param_field(p.name)
            widget: Input | Select[str]
            if p.kind == "choice":
                widget = Select([(c, c) for c in p.choices], value=str(p.default), allow_blank=False,
                                compact=True, id=field, classes="bt-param")  # fmt: skip
            else:
                widget = Input(str(p.default), compact=True, id=field, classes="bt-param")
            hint = Label(_hint(p), classes="bt-hint")
            hint.tooltip = p.help
            rows.append(Horizontal(Label(p.name, classes="bt-label"), widget, hint, classes="bt-row"))
        await box.mount_all(rows)
        self.query_one("#bt-error", Static).update("")

    def request(self) -> BacktestRequest:
        """The form as a BacktestRequest; raises FormError naming the field (None: no one field)."""
        info = self.strategy()
        params: dict[str, ParamValue] = {}
        for p in info.params:
            field = self.param_field(p.name)
            if p.kind == "choice":
                params[p.name] = str(self.query_one(f"#{field}", Select).value)
            else:
                params[p.name] = parse_param(info.name, p, self.query_one(f"#{field}", Input).value, field)
        try:
            effective_params(info.name, params)  # the cross-parameter rules
        except BacktestUsageError as exc:
            raise FormError("", str(exc)) from None
        files, pair, timeframe = self.checked_files()
        capital_text = self.query_one("#bt-capital", Input).value.strip()
        capital: Decimal | None = None
        if capital_text:
            try:
                capital = Decimal(capital_text)
            except InvalidOperation:
                raise FormError("bt-capital", f"capital: {capital_text!r} is not a number") from None
            if not capital.is_finite() or capital <= 0:
                raise FormError("bt-capital", f"capital must be > 0 (quote currency), got {capital_text}")
        return BacktestRequest(
            strategy=info.name,
            files=tuple(files),
            params=params,
            pair=pair,
            timeframe=timeframe,
            capital=capital,
        )

    # -- actions ------------------------------------------------------------------------------
    def _start(self, request: BacktestRequest) -> None:
        self._run(request)

    @on(Button.Pressed, "#bt-optimise")
    def _optimise(self) -> None:
        """The Optimise screen with this form's strategy, data files and pair/timeframe."""
        from amarktai_tui.tui.screens.optimize import show_optimize

        show_optimize(
            self.app,
            self.settings,
            strategy=self.strategy().name,
            files=self.files(),
            pair=self.pair_timeframe()[0],
            timeframe=self.pair_timeframe()[1],
        )

    def _progress(self, fraction: float, total: int) -> None:
        bar = self.query_one("#bt-progress", ProgressBar)
        bar.update(total=max(total, 1), progress=round(fraction * max(total, 1)))
        done = round(fraction * total)
        self.query_one("#bt-progress-text", Label).update(f"{done:,} / {total:,} candles")
        self.progressed.set()

    @work(exclusive=True, group="backtest", exit_on_error=False, name="backtest")
    async def _run(self, request: BacktestRequest) -> None:
        run_dir = self.run_dir = Path(tempfile.mkdtemp(prefix="amarktai-backtest-"))
        outcome = "failed"
        try:
            with _quiet_run():
                result = await run_backtest(self.settings, request, run_dir, on_progress=self._progress)
        except (BacktestUsageError, CandleFileError) as exc:
            self._show_error(screen_text(str(exc)))
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception as exc:  # a runtime failure: one line here, the traceback in the log
            log.exception("backtest of %s failed", request.strategy)
            self._show_error(f"backtest failed: {type(exc).__name__}: {screen_text(str(exc))}")
        else:
            outcome = "done"
            self.result = result
            self._show(result)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)  # at once, also when cancelled by the app's exit
            self.running = False
            if self.is_mounted:
                self._set_running(False)
                if outcome != "done":
                    self._stop_progress(f"{outcome}; nothing kept")

    # -- the result -----------------------------------------------------------------------------
    def _show(self, r: BacktestResult) -> None:
        self.values = values = figure_values(r)
        for title in KPIS:
            text = values[title]
            self.query_one(f"#bt-kpi-{_slug(title)}", Kpi).show(
                text, _role(text) if title == "Return" else ""
            )
        params = ", ".join(f"{k}={v}" for k, v in r.params.items())
        streams = ", ".join(f"{s.pair} {s.timeframe}" for s in r.streams)
        self.query_one("#bt-what", Static).update(
            f"{r.strategy} ({params}) on {r.exchange} paper · {streams}\n"
            f"{fmt.ts(r.start_ms)} → {fmt.ts(r.end_ms)} UTC · {r.candles:,} candles · {r.fills:,} fills"
        )
        self.query_one("#bt-elapsed", Label).update(
            f"ran in {r.elapsed_s:.2f} s ({r.bot_candles_per_s:,.0f} bot-candles/s)"
        )
        self.query_one("#bt-stats", Static).update(self._stats(values))
        self.query_one("#bt-notes", Static).update(_notes(r))
        self.query_one("#bt-progress-text", Label).update(f"done: {r.candles:,} candles")
        chart = self.query_one("#bt-chart", LineChart)
        chart.set_series([float(e) for _, e in r.equity], (), (fmt.ts(r.start_ms), fmt.ts(r.end_ms)))
        self.query_one("#bt-chart-title", Label).update(
            f"Account equity ({r.quote}), {len(r.equity):,} snapshots; {fmt.money(r.capital_per_bot)} per bot"
        )
        self._fill_trades(r.trades)

    def _stats(self, values: dict[str, str]) -> Table:
        """Two rows of label/value pairs under the big figures (PnL-coloured like the tables)."""
        table = self.query_one("#bt-trades", StyledTable)
        grid = Table.grid(padding=(0, 1), collapse_padding=True)
        rows = (("Equity", "Realised", "Fees", "Sortino"), ("Capital", "Unrealised", "Expectancy", "Calmar"))
        for _ in rows[0]:
            grid.add_column(no_wrap=True, style="dim")
            grid.add_column(justify="right", no_wrap=True)
            grid.add_column(width=1)
        for row in rows:
            cells: list[Text] = []
            for label in row:
                text = values[label]
                role = "" if label in ("Equity", "Capital", "Fees") else _role(text)
                cells += [Text(label), table.styled(text, role), Text("")]
            grid.add_row(*cells)
        return grid

    def _fill_trades(self, trades: Sequence[TradeRow]) -> None:
        table = self.query_one("#bt-trades", StyledTable)
        table.clear()
        for i, t in enumerate(trades, 1):
            table.add_row(*self._trade_cells(table, i, t), key=str(i))
        self.query_one("#bt-trades-title", Label).update(
            f"Closed trades ({len(trades)}, by exit time)" if trades else "Closed trades: none"
        )

    @staticmethod
    def _trade_cells(table: StyledTable, i: int, t: TradeRow) -> list[Text | str]:
        ret = "-" if t.return_ is None else f"{t.return_ * 100:+.2f}%"
        cells: list[Text | str] = [
            str(i),
            fmt.ts(t.entry_ts),
            fmt.ts(t.exit_ts),
            t.pair,
            fmt.qty(t.qty),
            fmt.price(t.entry_price),
            fmt.price(t.exit_price),
            table.pnl(t.pnl, fmt.money(t.pnl, signed=True)),
            table.pnl(t.pnl, ret),
            fmt.money(t.fees),
            fmt.duration(t.exit_ts - t.entry_ts),
        ]
        out: list[Text | str] = []
        for cell, (_, right) in zip(cells, TRADE_COLUMNS, strict=True):
            if right:
                cell = cell.copy() if isinstance(cell, Text) else Text(cell)
                cell.justify = "right"
            out.append(cell)
        return out


def _default_capital() -> str:
    default = BotSettings.model_fields["capital"].default
    return f"{default:f}" if isinstance(default, Decimal) else str(default)


def _hint(p: ParamSpec) -> str:
    if p.kind == "choice":
        return f"default {p.default}"
    lo = "-∞" if p.minimum is None else f"{p.minimum:g}"
    hi = "∞" if p.maximum is None else f"{p.maximum:g}"
    left, right = ("(", ")") if p.exclusive else ("[", "]")
    return f"{left}{lo}, {hi}{right}, default {p.default:g}"


def _notes(r: BacktestResult) -> Text:
    out = Text()
    if r.open_positions:
        parts = [
            f"{o.pair} {fmt.qty(o.qty)} @ {fmt.price(o.entry_price) if o.entry_price is not None else '-'}"
            f" ({fmt.money(o.unrealised, signed=True)})"
            for o in r.open_positions
        ]
        out.append("Open at the end: " + "; ".join(parts))
    if r.trips:
        if out:
            out.append("\n")
        first = r.trips[0]
        more = f" (+{len(r.trips) - 1} more)" if len(r.trips) > 1 else ""
        out.append(f"Breaker tripped {fmt.ts(first.ts)} UTC: {first.message}{more}; the bot stopped opening")
    return out
