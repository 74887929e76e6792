"""The Optimise screen: an optuna study of one strategy's parameters over candle files, walk-forward.

Opened with ``O``, "Optimise a strategy" in the palette, or "Optimise…" on the Backtest screen
(which carries its strategy, data files and pair/timeframe over). The form: a strategy (the
ranges it searches beside it, ``autonomy.search_space.search_space``), the data files (comma-separated,
prefilled from the running replay, checked as typed exactly as on the Backtest screen), pair and
timeframe (empty: from the file names), trials, sampler (``tpe``: the best mean in-sample return;
``nsga2``: return up and max drawdown down, a Pareto front), seed and walk-forward folds (defaults
from ``[autonomy.optimize]``), and SL / TP: the bot's own stop-loss and take-profit, or searched too
within ``[autonomy.bounds]`` (``amarktai optimize --exits``). Several worker processes are the
CLI's (``--workers``).

Run (``ctrl+r``) calls ``autonomy.optimize.optimize`` in a thread (it runs its own event loop per
trial), one worker process, with its data slices in a temporary directory of its own, removed when
the run ends. The optuna storage is a temporary SQLite file in that directory, unless
``[autonomy.optimize] storage`` names one (then the study stays there, under the study name shown,
and other machines may join it with ``amarktai optimize --study``). The run and its trials are
appended to the ledger of the app's data dir (``optimization_runs``/``optimization_trials``), as
``amarktai optimize`` does. ``esc`` cancels: the trial running then finishes, the run is recorded
as interrupted and what it found is shown (it cannot be applied). The backtests' log lines stay out
of the user's log. Bad input is one line naming the field; a runtime failure is one line too.

The result: the best trial's parameters with its mean in-sample (train windows) and out-of-sample
(the following test windows, never seen by the sampler) return and max drawdown, one row per fold,
this run's ten best trials, and for NSGA-II the Pareto front. "Apply…" submits the best parameters
to a running bot of the same strategy as ``Change(bot, "optimizer", "params", ...)`` (then the
stop-loss and take-profit changes, when searched: ``autonomy.optimize.result_changes``) through the
engine's ``Adjuster`` (``autonomy.changes.adjuster_for``), after a confirmation: in expert mode it
becomes a proposal in the Autonomy tab, in autonomous mode it is applied within the bounds; one
line says which (or why it was refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Footer, Input, Label, ProgressBar, Select, Static

from amarktai_tui.autonomy.changes import Adjustment, Change, adjuster_for
from amarktai_tui.autonomy.optimize import (
    STORAGE_FILE,
    OptimizeRequest,
    OptimizeResult,
    Sampler,
    TrialResult,
    mask_url,
    optimize,
    result_changes,
)
from amarktai_tui.autonomy.search_space import (
    EXITS,
    Dim,
    OptimizeUsageError,
    search_space,
)
from amarktai_tui.autonomy.views import change_text
from amarktai_tui.config import Settings
from amarktai_tui.domain.enums import BotState
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.market.errors import CandleFileError
from amarktai_tui.ops.optimize_commands import top_trials
from amarktai_tui.strategies.registry import describe
from amarktai_tui.tui import fmt
from amarktai_tui.tui.bots_pane import StyledTable
from amarktai_tui.tui.screens.backtest import Kpi, _quiet_run, _slug
from amarktai_tui.tui.screens.confirm import ConfirmScreen
from amarktai_tui.tui.screens.new_bot import FormError
from amarktai_tui.tui.screens.run_form import RunForm, screen_text

if TYPE_CHECKING:
    from textual.app import App

log = logging.getLogger(__name__)

SCREEN_NAME = "optimize"
"""The name the screen is installed under (kept while the app runs: the last result stays)."""
KPIS = ("IS return", "IS max DD", "OOS return", "OOS max DD", "Trials")
"""The big figures of the best trial: IS in-sample (train windows), OOS out-of-sample (test windows)."""
TOP_SHOWN = 10
"""Rows of the top trials table (this run's best by in-sample return)."""
SAMPLERS = (("tpe: best return", "tpe"), ("nsga2: return vs drawdown", "nsga2"))
EXIT_CHOICES = (("the bot's own", "off"), ("searched too", "on"))
"""Stop-loss and take-profit: kept as the bot has them, or searched within ``[autonomy.bounds]``."""
FOLD_COLUMNS = (
    ("Fold", False),
    ("Train (UTC)", False),
    ("IS ret", True),
    ("IS DD", True),
    ("Test (UTC)", False),
    ("OOS ret", True),
    ("OOS DD", True),
    ("Trades", True),
)
"""Fold table columns: title, right-aligned (Trades: train / test)."""
TRIAL_COLUMNS = (
    ("#", True),
    ("IS ret", True),
    ("IS DD", True),
    ("OOS ret", True),
    ("OOS DD", True),
    ("Params", False),
)
"""Trial table columns; the last one is titled with the strategy's parameter names."""
_FLAGS = (
    ("--strategy", "strategy"),
    ("--trials", "trials"),
    ("--folds", "folds"),
    ("--sampler", "sampler"),
    ("--workers", "workers"),
    ("--storage", "storage ([autonomy.optimize])"),
    ("--study", "study"),
)


def op_text(message: str) -> str:
    """An optimisation error as one line in the screen's words (the CLI's flags become field names)."""
    line = screen_text(message)
    for flag, field in _FLAGS:
        line = line.replace(flag, field)
    return line


def signed(x: float | None) -> str:
    """A fraction as a signed percentage, ``+1.23%``; None: ``-``."""
    return "-" if x is None else f"{x * 100:+.2f}%"


def values_text(params: dict[str, Any]) -> str:
    """The values only, in order: ``12 · 40 · ema`` (floats to 4 significant digits)."""
    return " · ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in params.values())


def params_text(params: dict[str, Any]) -> str:
    """``fast=12, slow=40, kind=ema`` (floats to 4 significant digits)."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def space_text(dims: Sequence[Dim]) -> str:
    """The searched ranges: ``fast 2–60, slow 5–300 (> fast), kind sma|ema``."""
    parts = []
    for d in dims:
        if d.kind == "choice":
            parts.append(f"{d.name} {'|'.join(d.choices)}")
        else:
            above = f" (> {d.above})" if d.above else ""
            parts.append(f"{d.name} {d.low:g}–{d.high:g}{above}")
    return ", ".join(parts)


def reason_of(r: OptimizeResult) -> str:
    """The reason an applied result carries: the study, the trial and its walk-forward scores."""
    b = r.best
    assert b is not None
    streams = ", ".join(f"{p} {tf}" for p, tf in r.streams)
    return (
        f"TUI optimisation run {r.run_id}, trial {b.number} of {len(r.trials)} ({r.sampler}, seed "
        f"{r.seed}) on {streams}: walk-forward in-sample return {signed(b.train_return)}, "
        f"out-of-sample {signed(b.test_return)} over {len(r.windows)} folds"
    )


def outcome_text(a: Adjustment) -> str:
    """What became of an applied result, in one line (proposed, applied or refused)."""
    if a.status == "proposed":
        return f"#{a.id} proposed for {a.bot}: nothing changes until it is accepted in the Autonomy tab (8)"
    if a.status == "applied":
        return f"#{a.id} applied to {a.bot} within the bounds: {change_text(a.field, a.before, a.after)}"
    _, _, why = a.reason.rpartition("[refused: ")
    return f"#{a.id} refused for {a.bot}: {why.rstrip(']') or a.reason}"


def show_optimize(
    app: App[Any],
    settings: Settings,
    *,
    strategy: str | None = None,
    files: Sequence[str] | None = None,
    pair: str | None = None,
    timeframe: str | None = None,
) -> None:
    """Show the Optimise screen (installed once, kept), with the given strategy and data when given
    and no run is going on."""
    if not app.is_screen_installed(SCREEN_NAME):
        app.install_screen(
            OptimizeScreen(settings, files or (), pair=pair, timeframe=timeframe, strategy=strategy),
            name=SCREEN_NAME,
        )
        app.push_screen(SCREEN_NAME)
        return
    screen = app.get_screen(SCREEN_NAME)
    assert isinstance(screen, OptimizeScreen)
    if not screen.is_current:
        app.push_screen(SCREEN_NAME)
    if files is not None or strategy is not None:
        screen.call_after_refresh(screen.prefill, strategy, files, pair, timeframe)


class OptimizeScreen(RunForm[OptimizeRequest]):
    """Set up, run, read, apply (module doc). ``result`` is the last finished run (done or
    interrupted); ``applied`` the last adjustment made from it; ``run_dir`` the last run's temporary
    directory (gone once the run is over); ``progressed`` is set at a run's first finished trial."""

    PREFIX = "op"
    WORKER_GROUP = "optimize"
    BUSY_TEXT = "an optimisation is running: esc cancels it"
    STARTING = "slicing the walk-forward windows…"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "run", "Run", id="optimize.run", priority=True),
        Binding("escape", "escape", "Cancel run / back", id="optimize.back"),
    ]
    DEFAULT_CSS = """
    OptimizeScreen #op-title { margin-top: 0; }
    OptimizeScreen #op-top { height: 25; }
    OptimizeScreen #op-setup, OptimizeScreen #op-result {
        border: round $panel-lighten-2; border-title-color: $text-accent; border-title-style: bold;
        padding: 0 1;
    }
    OptimizeScreen #op-setup { width: 52; }
    OptimizeScreen #op-result { width: 1fr; }
    OptimizeScreen #op-summary { color: $text-muted; height: auto; margin-bottom: 1; }
    OptimizeScreen .op-row { height: 1; }
    OptimizeScreen .op-label { width: 13; color: $text-muted; }
    OptimizeScreen .op-hint { width: 1fr; color: $text-muted; padding-left: 1; }
    OptimizeScreen .op-num { width: 8; }
    OptimizeScreen #op-strategy, OptimizeScreen #op-files { width: 1fr; }
    OptimizeScreen #op-sampler { width: 30; }
    OptimizeScreen #op-exits { width: 30; }
    OptimizeScreen #op-pair { width: 10; margin-right: 1; }
    OptimizeScreen #op-timeframe { width: 5; }
    OptimizeScreen #op-file-check { height: auto; max-height: 3; color: $text-muted; }
    OptimizeScreen #op-file-check.op-bad { color: $error; }
    OptimizeScreen #op-storage { height: auto; color: $text-muted; margin-top: 1; }
    OptimizeScreen #op-buttons { height: 1; margin-top: 1; }
    OptimizeScreen #op-buttons Button { margin-right: 2; }
    OptimizeScreen #op-progress-row { height: 1; margin-top: 1; }
    OptimizeScreen #op-progress { width: auto; }
    OptimizeScreen #op-progress Bar { width: 20; }
    OptimizeScreen #op-progress-text { width: 1fr; color: $text-muted; padding-left: 1; }
    OptimizeScreen #op-elapsed { height: 1; color: $text-muted; }
    OptimizeScreen #op-error { color: $error; text-style: bold; height: auto; }
    OptimizeScreen Input.op-invalid { background: $error 35%; text-style: bold; }
    OptimizeScreen #op-kpis { height: 4; }
    OptimizeScreen .bt-kpi { width: 1fr; height: 4; border: round $panel-lighten-2; text-align: center; }
    OptimizeScreen .bt-kpi > .bt-kpi--label { color: $text-muted; text-style: not bold; }
    OptimizeScreen .bt-kpi.up { color: $pnl-up; }
    OptimizeScreen .bt-kpi.down { color: $pnl-down; }
    OptimizeScreen #bt-kpi-trials { width: 12; }
    OptimizeScreen #op-what { height: auto; max-height: 4; color: $text-muted; }
    OptimizeScreen #op-best { height: auto; max-height: 2; }
    OptimizeScreen #op-fold-table { height: 1fr; min-height: 4; }
    OptimizeScreen #op-apply-row { height: 1; }
    OptimizeScreen #op-bot { width: 36; margin-right: 1; }
    OptimizeScreen #op-applied { height: auto; max-height: 2; color: $text-muted; }
    OptimizeScreen #op-bottom { height: 1fr; }
    OptimizeScreen #op-top-box, OptimizeScreen #op-pareto-box { width: 1fr; }
    OptimizeScreen #op-pareto-box { display: none; margin-left: 1; }
    OptimizeScreen #op-pareto-box.shown { display: block; }
    OptimizeScreen #op-top-trials, OptimizeScreen #op-pareto { height: 1fr; }
    """

    def __init__(
        self,
        settings: Settings,
        files: Sequence[str] = (),
        *,
        pair: str | None = None,
        timeframe: str | None = None,
        strategy: str | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self._files = list(files)
        self._pair = pair
        self._timeframe = timeframe
        self._strategies = describe()
        self._first = strategy if strategy in self._strategies else next(iter(self._strategies))
        self._stop = threading.Event()
        self.result: OptimizeResult | None = None
        self.applied: Adjustment | None = None
        """The row of the last Apply's params change."""
        self.applied_rows: list[Adjustment] = []
        """Every row of the last Apply (params, then stop-loss and take-profit when searched)."""
        self.run_dir: Path | None = None

    # -- layout ----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        conf = self.settings.autonomy.optimize
        yield Label(
            "Optimise · an optuna study of a strategy's parameters, each trial backtested on walk-forward "
            "windows: trained on one, scored on the next",
            classes="section-title",
            id="op-title",
        )
        with Horizontal(id="op-top"):
            with Vertical(id="op-setup") as setup:
                setup.border_title = "Setup"
                with Horizontal(classes="op-row"):
                    yield Label("Strategy", classes="op-label")
                    yield Select(
                        [(n, n) for n in self._strategies],
                        value=self._first,
                        allow_blank=False,
                        compact=True,
                        id="op-strategy",
                    )
                yield Static("", id="op-summary")
                with Horizontal(classes="op-row"):
                    yield Label("Data files", classes="op-label")
                    yield Input(
                        ", ".join(self._files),
                        placeholder="BTC_USDT-1h.json, ETH_USDT-1h.json",
                        compact=True,
                        id="op-files",
                    )
                yield Static("", id="op-file-check")
                with Horizontal(classes="op-row"):
                    yield Label("Pair / TF", classes="op-label")
                    yield Input(self._pair or "", placeholder="auto", compact=True, id="op-pair")
                    yield Input(self._timeframe or "", placeholder="auto", compact=True, id="op-timeframe")
                    yield Label("auto: file names", classes="op-hint")
                for field, label, value, hint in (
                    ("op-trials", "Trials", conf.trials, "backtests: 2 x folds each"),
                    ("op-seed", "Seed", conf.seed, "same seed, same trials"),
                    (
                        "op-folds",
                        "Folds",
                        conf.folds,
                        f"1-20; train {(conf.train_fraction * 100).normalize():f}% of each",
                    ),
                ):
                    with Horizontal(classes="op-row"):
                        yield Label(label, classes="op-label")
                        yield Input(str(value), compact=True, id=field, classes="op-num")
                        yield Label(hint, classes="op-hint")
                with Horizontal(classes="op-row"):
                    yield Label("Sampler", classes="op-label")
                    yield Select(SAMPLERS, value="tpe", allow_blank=False, compact=True, id="op-sampler")
                with Horizontal(classes="op-row"):
                    yield Label("SL / TP", classes="op-label")
                    yield Select(EXIT_CHOICES, value="off", allow_blank=False, compact=True, id="op-exits")
                yield Static(self._storage_text(), id="op-storage")
                with Horizontal(id="op-buttons"):
                    yield Button("Run  ctrl+r", id="op-run", variant="primary", compact=True)
                    yield Button("Cancel  esc", id="op-cancel", compact=True, disabled=True)
                with Horizontal(id="op-progress-row"):
                    yield ProgressBar(total=None, show_eta=False, id="op-progress")
                    yield Label("no run yet", id="op-progress-text")
                yield Label("", id="op-elapsed")
                yield Static("", id="op-error")
            with Vertical(id="op-result") as result:
                result.border_title = "Best trial"
                with Horizontal(id="op-kpis"):
                    for title in KPIS:
                        yield Kpi(title)
                yield Static("Pick a strategy and data files, then Run (ctrl+r).", id="op-what")
                yield Static("", id="op-best")
                yield _table("op-fold-table", FOLD_COLUMNS)
                with Horizontal(id="op-apply-row"):
                    yield Label("Apply to", classes="op-label")
                    yield Select([], prompt="no result yet", compact=True, id="op-bot")
                    yield Button("Apply…", id="op-apply", compact=True, disabled=True)
                yield Static("", id="op-applied")
        with Horizontal(id="op-bottom"):
            with Vertical(id="op-top-box"):
                yield Label("Top trials", id="op-top-title", classes="section-title")
                yield _table("op-top-trials", TRIAL_COLUMNS)
            with Vertical(id="op-pareto-box"):
                yield Label("Pareto front", id="op-pareto-title", classes="section-title")
                yield _table("op-pareto", TRIAL_COLUMNS)
        yield Footer()

    def on_mount(self) -> None:
        self._strategy_changed(self._first)
        self._check_files()
        self.query_one("#op-strategy", Select).focus()
        self.app.theme_changed_signal.subscribe(self, self._on_theme_changed)

    def on_screen_resume(self) -> None:
        self._update_bots()

    def _on_theme_changed(self, _theme: object) -> None:
        for table in self.query(StyledTable):
            table.reset_styles()
        if self.result is not None:
            self._show(self.result)
        else:
            for kpi in self.query(Kpi):
                kpi.show("-")

    def _storage_text(self) -> str:
        url = self.settings.autonomy.optimize.storage
        if url:
            return f"Storage: {mask_url(url)} ([autonomy.optimize] storage; the study stays there)"
        return "Storage: a temporary SQLite file, removed after the run; the run is recorded in the ledger"

    # -- the form ------------------------------------------------------------------------------
    def prefill(
        self, strategy: str | None, files: Sequence[str] | None, pair: str | None, timeframe: str | None
    ) -> None:
        """Put a strategy and data in the form (from the Backtest screen); ignored while a run goes on."""
        if self.running:
            self.notify("an optimisation is running: the form keeps its values", severity="warning")
            return
        if strategy in self._strategies:
            self.query_one("#op-strategy", Select).value = strategy
        if files is not None:
            self.query_one("#op-files", Input).value = ", ".join(files)
            self.query_one("#op-pair", Input).value = pair or ""
            self.query_one("#op-timeframe", Input).value = timeframe or ""

    @on(Select.Changed, "#op-strategy")
    def _on_strategy(self, event: Select.Changed) -> None:
        self._strategy_changed(str(event.value))

    @on(Select.Changed, "#op-exits")
    def _on_exits(self) -> None:
        self._strategy_changed(str(self.query_one("#op-strategy", Select).value))

    def _exits(self) -> bool:
        return self.query_one("#op-exits", Select).value == "on"

    def _strategy_changed(self, name: str) -> None:
        info = self._strategies.get(name)
        if info is None:
            return
        bounds = self.settings.autonomy.bounds if self._exits() else None
        self.query_one("#op-summary", Static).update(
            f"{info.summary}\nSearches {space_text(search_space(name, bounds))}."
        )
        self.query_one("#op-error", Static).update("")

    def _int(self, field: str, name: str, low: int, high: int | None = None) -> int:
        text = self.query_one(f"#{field}", Input).value.strip()
        try:
            value = int(text)
        except ValueError:
            raise FormError(field, f"{name}: {text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            span = f"{low} to {high}" if high is not None else f"at least {low}"
            raise FormError(field, f"{name} must be {span}, got {value}")
        return value

    def request(self) -> OptimizeRequest:
        """The form as an OptimizeRequest (storage and study filled at the run); raises FormError
        naming the field."""
        strategy = str(self.query_one("#op-strategy", Select).value)
        files, pair, timeframe = self.checked_files()
        trials = self._int("op-trials", "trials", 1)
        seed = self._int("op-seed", "seed", -(2**31), 2**32 - 1)
        folds = self._int("op-folds", "folds", 1, 20)
        sampler: Sampler = "nsga2" if self.query_one("#op-sampler", Select).value == "nsga2" else "tpe"
        return OptimizeRequest(
            strategy=strategy,
            files=tuple(files),
            pair=pair,
            timeframe=timeframe,
            trials=trials,
            sampler=sampler,
            seed=seed,
            folds=folds,
            train_fraction=self.settings.autonomy.optimize.train_fraction,
            workers=1,
            exits=self._exits(),
        )

    # -- the run -------------------------------------------------------------------------------
    def _start(self, request: OptimizeRequest) -> None:
        self._stop = threading.Event()
        self._run(request)

    def action_cancel_run(self) -> None:
        """Stop after the running trial (a backtest in a thread cannot be cut short)."""
        if self.running and not self._stop.is_set():
            self._stop.set()
            self.query_one("#op-progress-text", Label).update("cancelling after the running trial…")

    def _progress(self, done: int, total: int, best: float | None) -> None:
        if not self.is_attached:
            return
        self.query_one("#op-progress", ProgressBar).update(total=max(total, 1), progress=done)
        if not self._stop.is_set():
            self.query_one("#op-progress-text", Label).update(
                f"{done:,} / {total:,} trials · best in-sample {signed(best)}"
            )
        self.progressed.set()

    def _study(
        self, request: OptimizeRequest, run_dir: Path, loop: asyncio.AbstractEventLoop
    ) -> OptimizeResult:
        """In a thread: the whole study; the run directory is removed here, whatever happens (also
        when the app has gone: a cancelled run stops after its trial and is recorded)."""
        stop = self._stop

        def progress(done: int, total: int, best: float | None) -> None:
            with contextlib.suppress(RuntimeError):  # the app's loop is closed: nobody to tell
                loop.call_soon_threadsafe(self._progress, done, total, best)
            if stop.is_set():
                raise KeyboardInterrupt  # optimize() records the run as interrupted

        import optuna

        optuna.logging.disable_default_handler()  # its lines on stderr would be drawn over the screen
        optuna.logging.enable_propagation()  # to the root logger: kept out of the user's log by _quiet_run
        try:
            work_dir = run_dir / "work"
            work_dir.mkdir()
            with _quiet_run():
                return optimize(
                    self.settings, self._data_dir(), request, work_dir=work_dir, on_progress=progress
                )
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)

    def _data_dir(self) -> Path:
        data_dir = getattr(self.app, "data_dir", None)
        assert isinstance(data_dir, Path), "the Optimise screen runs in the Amarktai app"
        return data_dir

    @work(exclusive=True, group="optimize", exit_on_error=False, name="optimize")
    async def _run(self, request: OptimizeRequest) -> None:
        run_dir = self.run_dir = Path(tempfile.mkdtemp(prefix="amarktai-optimize-"))
        if not self.settings.autonomy.optimize.storage:
            request = replace(request, storage=f"sqlite:///{run_dir / STORAGE_FILE}")
        outcome = "failed"
        study = asyncio.ensure_future(
            asyncio.to_thread(self._study, request, run_dir, asyncio.get_running_loop())
        )
        try:
            result = await asyncio.shield(study)
        except (OptimizeUsageError, CandleFileError) as exc:
            self._show_error(op_text(str(exc)))
        except asyncio.CancelledError:  # the app is closing: the thread stops after its trial
            self._stop.set()
            outcome = "cancelled"
            raise
        except Exception as exc:  # a runtime failure: one line here, the traceback in the log
            log.exception("optimisation of %s failed", request.strategy)
            self._show_error(f"optimisation failed: {op_text(str(exc)) or type(exc).__name__}")
        else:
            outcome = "done" if result.status == "done" else "cancelled"
            self.result = result
            self.applied = None
            self._show(result)
            if not self.is_current:
                self.app.notify(f"optimisation of {result.strategy} {result.status}: O shows the result")
        finally:
            self.running = False
            if self.is_attached:
                self._set_running(False)
                if outcome == "failed":
                    self._stop_progress("failed; nothing kept")

    # -- the result ----------------------------------------------------------------------------
    def _show(self, r: OptimizeResult) -> None:
        b = r.best
        complete = sum(1 for t in r.trials if t.state == "complete")
        figures: dict[str, tuple[str, str]] = {
            "IS return": (signed(b.train_return), _role(b.train_return)) if b else ("-", ""),
            "IS max DD": (fmt.pct(b.train_max_drawdown), "") if b else ("-", ""),
            "OOS return": (signed(b.test_return), _role(b.test_return)) if b else ("-", ""),
            "OOS max DD": (fmt.pct(b.test_max_drawdown), "") if b else ("-", ""),
            "Trials": (f"{complete}/{len(r.trials)}", ""),
        }
        for title in KPIS:
            self.query_one(f"#bt-kpi-{_slug(title)}", Kpi).show(*figures[title])
        streams = ", ".join(f"{p} {tf}" for p, tf in r.streams)
        study = f" · study {r.study_name}" if self.settings.autonomy.optimize.storage else ""
        status = "" if r.status == "done" else f" · {r.status.upper()} after {len(r.trials)} trials"
        span = f"{fmt.ts(r.windows[0].train_start)[:10]} → {fmt.ts(r.windows[-1].test_end)[:10]} UTC"
        self.query_one("#op-what", Static).update(
            f"{r.strategy} on {streams}, {span} · {r.sampler}, seed {r.seed} · {len(r.windows)} folds after "
            f"{r.warmup} warm-up candles{status}\nIS in-sample (train windows) · OOS out-of-sample (the "
            f"next windows, unseen by the search) · recorded as optimisation run {r.run_id}{study}"
        )
        best = Text()
        if b is None:
            best.append("No trial completed.", style="bold")
        else:
            best.append(f"Trial {b.number}: ", style="bold")
            best.append(params_text(b.params))
            if r.sampler == "nsga2":
                best.append("\nchosen from the Pareto front: the best return − max drawdown", style="dim")
        self.query_one("#op-best", Static).update(best)
        self._fill_folds(b)
        done = self.query_one("#op-progress-text", Label)
        if r.status == "done":
            done.update(f"done: {len(r.trials):,} trials")
        else:
            done.update(f"cancelled after {len(r.trials):,} trials (recorded as interrupted)")
        rate = f" ({len(r.trials) / r.elapsed_s:.2f} trials/s)" if r.elapsed_s > 0 else ""
        self.query_one("#op-elapsed", Label).update(f"ran in {r.elapsed_s:.1f} s{rate}")
        top = top_trials(r, TOP_SHOWN)
        searched = [k for k in EXITS if any(k in t.params for t in r.trials)]  # exits, when searched
        names = [*(d.name for d in search_space(r.strategy) if d.name not in EXITS), *searched]
        self._fill_trials("op-top-trials", top, names)
        self.query_one("#op-top-title", Label).update(
            f"Top trials of this run ({len(top)} of {complete} complete, by in-sample return)"
        )
        box = self.query_one("#op-pareto-box")
        box.set_class(r.sampler == "nsga2", "shown")
        self._fill_trials("op-pareto", r.pareto, names)
        self.query_one("#op-pareto-title", Label).update(
            f"Pareto front ({len(r.pareto)}: in-sample return up, max drawdown down)"
        )
        self.query_one("#op-applied", Static).update(
            "" if r.status == "done" else "An interrupted run is not applied: run it to the end."
        )
        self._update_bots()

    def _fill_folds(self, b: TrialResult | None) -> None:
        table = self.query_one("#op-fold-table", StyledTable)
        table.clear()
        r = self.result
        if b is None or r is None:
            return
        for i, (w, tr, te) in enumerate(zip(r.windows, b.train, b.test, strict=False), 1):
            cells: list[str | Text] = [
                str(i),
                _span(w.train_start, w.train_end),
                table.styled(signed(tr.return_), _role(tr.return_)),
                fmt.pct(tr.max_drawdown),
                _span(w.test_start, w.test_end),
                table.styled(signed(te.return_), _role(te.return_)),
                fmt.pct(te.max_drawdown),
                f"{tr.trades} / {te.trades}",
            ]
            table.add_row(*_justified(cells, FOLD_COLUMNS), key=str(i))
        mean: list[str | Text] = [
            Text("mean", style="bold"),
            "",
            table.styled(signed(b.train_return), _role(b.train_return)),
            fmt.pct(b.train_max_drawdown),
            "",
            table.styled(signed(b.test_return), _role(b.test_return)),
            fmt.pct(b.test_max_drawdown),
            f"{sum(s.trades for s in b.train)} / {sum(s.trades for s in b.test)}",
        ]
        table.add_row(*_justified(mean, FOLD_COLUMNS), key="mean")

    def _fill_trials(self, table_id: str, trials: Sequence[TrialResult], names: Sequence[str]) -> None:
        table = self.query_one(f"#{table_id}", StyledTable)
        table.clear(columns=True)
        titles = [*(t for t, _ in TRIAL_COLUMNS[:-1]), " · ".join(names) or "Params"]
        for title, (key, right) in zip(titles, TRIAL_COLUMNS, strict=True):
            table.add_column(Text(title, justify="right" if right else "left"), key=key)
        for t in trials:
            cells: list[str | Text] = [
                str(t.number),
                table.styled(signed(t.train_return), _role(t.train_return)),
                fmt.pct(t.train_max_drawdown),
                table.styled(signed(t.test_return), _role(t.test_return)),
                fmt.pct(t.test_max_drawdown),
                values_text(t.params),
            ]
            table.add_row(*_justified(cells, TRIAL_COLUMNS), key=str(t.number))

    # -- applying the result -------------------------------------------------------------------
    def _engine(self) -> TradingEngine | None:
        engine = getattr(self.app, "engine", None)
        return engine if isinstance(engine, TradingEngine) else None

    def _update_bots(self) -> None:
        """The bots the result may go to: running bots of its strategy in the engine."""
        select: Select[int] = self.query_one("#op-bot", Select)
        button = self.query_one("#op-apply", Button)
        r = self.result
        engine = self._engine()
        bots = []
        if r is not None and engine is not None:
            bots = [
                (f"{x.rec.name} · {x.rec.pair} {x.rec.timeframe}", x.rec.id)
                for _id, x in sorted(engine.runners.items())
                if x.rec.strategy == r.strategy and x.rec.state is BotState.RUNNING
            ]
        if r is None:
            select.prompt = "no result yet"
        else:
            select.prompt = f"no running {r.strategy} bot" if not bots else "pick a bot"
        current = select.value
        with select.prevent(Select.Changed):
            select.set_options(bots)
            if bots:
                ids = {v for _, v in bots}
                select.value = current if current in ids else bots[0][1]
        button.disabled = not (bots and r is not None and r.best is not None and r.status == "done")

    @on(Button.Pressed, "#op-apply")
    def action_apply(self) -> None:
        """Ask, then submit the best parameters to the chosen bot through the engine's Adjuster."""
        r = self.result
        engine = self._engine()
        select: Select[int] = self.query_one("#op-bot", Select)
        if r is None or r.best is None or r.status != "done" or engine is None:
            self.notify("nothing to apply: run an optimisation to the end first", severity="warning")
            return
        bot_id = select.value
        runner = engine.runners.get(bot_id) if isinstance(bot_id, int) else None
        if runner is None:
            self.notify(f"no running {r.strategy} bot to apply it to", severity="warning")
            return
        adjuster = adjuster_for(engine)
        if adjuster is None:
            self._show_applied("autonomy is not running beside the engine: nothing can be applied now")
            return
        changes = result_changes(runner.rec.id, r.best, reason_of(r))
        rec = runner.rec
        now = {"params": dict(rec.params), "stop_loss": rec.stop_loss, "take_profit": rec.take_profit}
        what = "; ".join(change_text(c.field, now[c.field], c.after) for c in changes)
        if adjuster.mode == "expert":
            how = "Expert mode: this makes a proposal; nothing changes until you accept it in the Autonomy tab (8)."
        else:
            how = "Autonomous mode: the parameters are applied now, brought within the bounds; r in the Autonomy tab reverts them."
        why = f"{runner.rec.name}: {what}.\nReason: {changes[0].reason}\n\n{how}"

        def confirmed(ok: bool | None) -> None:
            if ok:
                self._submit(changes)

        self.app.push_screen(
            ConfirmScreen(f"Apply trial {r.best.number} to {runner.rec.name}?", why, "Apply"), confirmed
        )

    @work(group="optimize-apply", exit_on_error=False)
    async def _submit(self, changes: list[Change]) -> None:
        """Submit the params change, then the exits (when searched); the first row is shown, with
        how many more rows the exits made."""
        engine = self._engine()
        adjuster = adjuster_for(engine) if engine is not None else None
        if adjuster is None:
            self._show_applied("autonomy is not running beside the engine: nothing can be applied now")
            return
        rows: list[Adjustment] = []
        try:
            for change in changes:
                rows.append(await adjuster.submit(change, actor="user"))
        except Exception as exc:  # e.g. the bot is gone: one line
            self._show_applied(f"not applied: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            return
        self.applied, self.applied_rows = rows[0], rows
        more = f" (+{len(rows) - 1} for stop-loss/take-profit: see the Autonomy tab)" if len(rows) > 1 else ""
        self._show_applied(outcome_text(rows[0]) + more, rows[0].status)

    def _show_applied(self, line: str, status: str = "refused") -> None:
        widget = self.query_one("#op-applied", Static)
        style = {"proposed": "bold", "applied": "bold"}.get(status, "bold red")
        widget.update(Text(line, style=style))
        self.notify(line, severity="information" if status in ("proposed", "applied") else "warning")


def _span(start: int, end: int) -> str:
    """A window as ``12-02→12-16`` (month-day, UTC; the years are in the line above the table)."""
    return f"{fmt.ts(start)[5:10]}→{fmt.ts(end)[5:10]}"


def _role(x: float | None) -> str:
    return "" if x is None or x == 0 else ("up" if x > 0 else "down")


def _table(table_id: str, columns: Sequence[tuple[str, bool]]) -> StyledTable:
    table = StyledTable(id=table_id, cursor_type="row", zebra_stripes=True)
    for title, right in columns:
        table.add_column(Text(title.strip(), justify="right" if right else "left"), key=title)
    return table


def _justified(cells: Sequence[str | Text], columns: Sequence[tuple[str, bool]]) -> list[str | Text]:
    out: list[str | Text] = []
    for cell, (_, right) in zip(cells, columns, strict=True):
        if right:
            cell = cell.copy() if isinstance(cell, Text) else Text(cell)
            cell.justify = "right"
        out.append(cell)
    return out
