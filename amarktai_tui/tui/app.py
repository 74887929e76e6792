"""AmarktaiApp: the Textual cockpit around one TradingEngine in the same asyncio loop.

The engine runs in the ``engine`` worker; bus events reach ``EngineModel``
(cheap appends), and a timer at ``settings.ui.refresh_rate`` Hz redraws the
header and the visible pane when something changed. Commands (pause, resume,
stop, pause all, resume all, emergency stop, applying a capital allocation) run as
``commands`` workers; one
``Worker.StateChanged`` handler turns any worker error into a message.

The account mode switch (M, ``tui.screens.mode_switch``) stops the engine, records the switch
(``ops.mode.switch_mode``, actor user) and starts a new engine worker, which opens in the new mode.
A start that fails while the account is live (or after such a restart) leaves the app open with
the one-line reason in the header and a notification, so the user can switch back to paper.

The Chat tab's session (``tui.chat_pane``) is opened by the engine worker once the engine runs
and closed before the engine closes; each new engine (a mode switch) gets a new session.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.theme import Theme
from textual.widgets import DataTable, Footer, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from amarktai_tui.config import Settings
from amarktai_tui.domain.enums import BotState, TradingMode
from amarktai_tui.domain.types import split_pair
from amarktai_tui.engine.engine import EngineError, ResetResult, TradingEngine
from amarktai_tui.engine.events import EventBus
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.locations import db_path, lock_path, user_themes_dir
from amarktai_tui.market.base import FeedState, FeedStatus
from amarktai_tui.ops.control import serve_control, socket_path, stop_control
from amarktai_tui.ops.daemon import chat_opener
from amarktai_tui.ops.lock import EngineLock, EngineLockedError
from amarktai_tui.ops.mode import ModeSwitchRefused, current_mode, switch_mode
from amarktai_tui.ops.services import start_services
from amarktai_tui.risk.breakers import Breaker, Trip
from amarktai_tui.tui import fmt
from amarktai_tui.tui.audit_pane import AuditPane
from amarktai_tui.tui.autonomy_pane import AutonomyPane
from amarktai_tui.tui.bots_pane import BotsPane
from amarktai_tui.tui.breakers_pane import BreakersPane, rule_name
from amarktai_tui.tui.chat_pane import ChatPane
from amarktai_tui.tui.header import AppHeader
from amarktai_tui.tui.model import EngineModel
from amarktai_tui.tui.palette import BotCommands
from amarktai_tui.tui.platforms_pane import PlatformsPane
from amarktai_tui.tui.profits_pane import ProfitsPane
from amarktai_tui.tui.screens.allocation import AllocationScreen
from amarktai_tui.tui.screens.bot_detail import BotDetailScreen
from amarktai_tui.tui.screens.confirm import ConfirmScreen
from amarktai_tui.tui.screens.new_bot import NewBotScreen
from amarktai_tui.tui.screens.reset_breaker import ResetBreakerScreen
from amarktai_tui.tui.system_pane import SystemPane
from amarktai_tui.tui.themes import BUILTIN_DIR, THEME_VARIABLES, choose_theme, load_themes
from amarktai_tui.tui.widgets.chat_input import ChatInput
from amarktai_tui.vault.totp import TotpGate

FRAME_BUDGET_SHARE = 5
TAB_FOCUS = {
    "bots": "#bots-table",
    "profits": "#trades-tape RichLog",
    "breakers": "#breakers-table",
    "chat": "#chat-input",
    "audit": "#audit-table",
    "platforms": "#platforms-table",
    "system": "#system-log",
    "autonomy": "#autonomy-proposals",
}
"""The widget that gets the focus when a tab is shown."""
"""A frame that took t seconds to draw is followed by at least (5 - 1) * t without drawing."""


class AmarktaiApp(App[None]):
    """The cockpit: header, Bots, Profits, Breakers and Chat tabs, footer; owns the engine, its lock and its worker."""

    CSS_PATH = "app.tcss"
    TITLE = "Amarktai"
    COMMANDS = App.COMMANDS | {BotCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", id="app.quit"),
        # the tab titles show the tab keys, so the footer leaves them out
        Binding("1", "show_tab('bots')", "Bots", id="app.tab_bots", show=False),
        Binding("2", "show_tab('profits')", "Profits", id="app.tab_profits", show=False),
        Binding("3", "show_tab('breakers')", "Breakers", id="app.tab_breakers", show=False),
        Binding("4", "show_tab('chat')", "Chat", id="app.tab_chat", show=False),
        Binding("5", "show_tab('audit')", "Audit", id="app.tab_audit", show=False),
        Binding("6", "show_tab('platforms')", "Platforms", id="app.tab_platforms", show=False),
        Binding("7", "show_tab('system')", "System", id="app.tab_system", show=False),
        Binding("8", "show_tab('autonomy')", "Autonomy", id="app.tab_autonomy", show=False),
        Binding("n", "new_bot", "New bot", id="app.new_bot"),
        Binding("b", "backtest", "Backtest", id="app.backtest"),
        Binding("O", "optimize", "Optimise", id="app.optimize", key_display="O", show=False),  # palette too
        Binding("P", "pause_all", "Pause all", id="app.pause_all", key_display="P"),
        Binding("R", "resume_all", "Resume all", id="app.resume_all", key_display="R"),
        Binding("H", "halt", "Emergency stop", id="app.halt", key_display="H"),
        Binding("U", "resume_trading", "Resume trading", id="app.resume", key_display="U"),
        Binding("A", "allocate", "Allocate", id="app.allocate", key_display="A"),
        Binding("M", "mode_switch", "Mode", id="app.mode", key_display="M"),
        Binding("K", "keys", "Keys", id="app.keys", key_display="K", show=False),  # also in the palette
        Binding("B", "balances", "Balances", id="app.balances", key_display="B", show=False),  # and here
    ]

    def __init__(
        self,
        settings: Settings,
        data_dir: Path,
        replay: ReplayArgs | None,
        *,
        themes_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.data_dir = data_dir
        self.replay = replay
        self.themes_dir = user_themes_dir() if themes_dir is None else themes_dir
        self.bus = EventBus()
        self.model = EngineModel(self.bus)
        self.engine: TradingEngine | None = None
        self.feed_ended = asyncio.Event()
        """Set once the feed has ended (replay data done) and the final state is drawn."""
        self.engine_done = asyncio.Event()
        """Set when the engine worker has finished (store closed, lock released)."""
        self._engine_started = False
        self._problem: str | None = None
        self._drawn = -1
        self._status: FeedStatus | None = None
        self._next_draw = 0.0
        self._halted = False
        self.account_mode = TradingMode.PAPER
        """The account's mode as the engine worker last read it (the header badge while no engine runs)."""
        self._restarts = 0
        """Engine restarts by a mode switch (after one, a failed start leaves the app open)."""

    # -- start-up ---------------------------------------------------------------
    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(THEME_VARIABLES)

    def compose(self) -> ComposeResult:
        yield AppHeader()
        with TabbedContent(initial="bots", id="tabs"):
            with TabPane("1 Bots", id="bots"):
                yield BotsPane(id="bots-pane")
            with TabPane("2 Profits", id="profits"):
                yield ProfitsPane(id="profits-pane")
            with TabPane("3 Breakers", id="breakers"):
                yield BreakersPane(id="breakers-pane")
            with TabPane("4 Chat", id="chat"):
                yield ChatPane(limit=self.settings.ai.history_messages, id="chat-pane")
            with TabPane("5 Audit", id="audit"):
                yield AuditPane(self.bus, id="audit-pane")
            with TabPane("6 Platforms", id="platforms"):
                yield PlatformsPane(lambda: self.engine, id="platforms-pane")
            with TabPane("7 System", id="system"):
                yield SystemPane(self.data_dir, lambda: self.engine, id="system-pane")
            with TabPane("8 Autonomy", id="autonomy"):
                yield AutonomyPane(self.settings.autonomy, self.bus, lambda: self.engine, id="autonomy-pane")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._load_themes()
        self._apply_keymap()
        self.theme_changed_signal.subscribe(self, self._on_theme_changed)
        self.set_interval(1 / self.settings.ui.refresh_rate, self.redraw, name="redraw")
        self.query_one("#bots-table", DataTable).focus()
        self.call_after_refresh(self._start_engine)  # first frame before the (blocking) file loading

    def _load_themes(self) -> None:
        loaded = load_themes(BUILTIN_DIR, self.themes_dir)
        for theme in loaded.themes.values():
            self.register_theme(theme)
        for error in loaded.errors:
            self.notify(error, title="Theme not loaded", severity="warning", timeout=15)
        name, fallback = choose_theme(self.settings.ui.theme, set(self.available_themes))
        if fallback:
            self.notify(fallback, title="Theme", severity="warning", timeout=15)
        self.theme = name

    def _apply_keymap(self) -> None:
        """``[ui] keymap`` from config: binding id -> keys. Unknown ids are reported, not fatal."""
        keymap = self.settings.ui.keymap
        if not keymap:
            return
        known = {b.id for b in _all_bindings() if b.id}
        unknown = sorted(set(keymap) - known)
        if unknown:
            self.notify(
                f"[ui] keymap: unknown binding id(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                title="Keymap",
                severity="warning",
                timeout=15,
            )
        self.set_keymap({k: v for k, v in keymap.items() if k in known})

    def _on_theme_changed(self, _theme: Theme) -> None:
        if not self.is_running:
            return
        self.query_one(BotsPane).invalidate()
        self.query_one(ProfitsPane).invalidate()
        self.query_one(BreakersPane).invalidate()
        self.query_one(PlatformsPane).invalidate()
        self.query_one(AutonomyPane).invalidate()
        self.redraw(force=True)

    def _start_engine(self) -> None:
        self._engine_started = True
        self._engine_worker()

    # -- the engine worker --------------------------------------------------------
    @work(exclusive=True, group="engine", exit_on_error=False, name="engine")
    async def _engine_worker(self) -> None:
        try:
            await self._run_engine()
        finally:
            self.engine_done.set()

    async def _run_engine(self) -> None:
        lock = EngineLock(lock_path(self.data_dir))
        try:
            lock.acquire()
        except EngineLockedError as exc:
            if self._restarts:  # another process took the data dir while the mode was switched
                self._not_started(str(exc))
            else:
                self.exit(return_code=1, message=f"amarktai: {exc}")
            return
        try:
            with suppress(sqlite3.Error):  # open_engine says what is wrong with the ledger
                self.account_mode = await asyncio.to_thread(current_mode, self.data_dir)
            engine, feed = await open_engine(self.settings, self.data_dir, self.replay, self.bus)
            self.account_mode = engine.mode
            self.engine = engine
            control = await serve_control(  # `amarktai halt`, `amarktai chat` etc.
                engine, socket_path(self.data_dir), chat=chat_opener(engine, self.settings, self.data_dir)
            )
            try:
                services = await start_services(engine, self.settings, self.data_dir, headless=False)
            except BaseException:
                await stop_control(control)
                await engine.close()
                raise
            self.model.load_history(db_path(self.data_dir))
            # refusals of earlier runs, read before this run writes any (the tape shows them first)
            self.query_one(BreakersPane).load_refusals(str(engine.store.path))
            self.query_one(AuditPane).attach(engine)  # the audit log's newest entries, then live ones
            run = asyncio.create_task(engine.run(feed), name="engine.run")
            chat = self.query_one(ChatPane)
            try:
                await chat.open_session(engine, self.settings, self.data_dir)  # commands only if it fails
                await asyncio.shield(run)  # a cancelled worker (app exit) still stops the engine cleanly
            except asyncio.CancelledError:
                engine.stop()
                await run
                raise
            finally:
                await chat.close_session()
                await services.close()
                await stop_control(control)
                await engine.close()
        finally:
            lock.release()

    async def stop_engine(self) -> None:
        """Stop the run (the engine flushes), then wait for the worker to close the ledger."""
        if self.engine is not None:
            self.engine.stop()
        if self._engine_started:
            await self.engine_done.wait()

    @on(Worker.StateChanged)
    def _worker_state(self, event: Worker.StateChanged) -> None:
        """The one place a worker's failure becomes a message (harlequin style)."""
        if event.state is not WorkerState.ERROR:
            return
        error = event.worker.error
        if event.worker.group == "engine":
            text = f"{type(error).__name__}: {error}"
            if self.engine is None and (self._restarts or self.account_mode is TradingMode.LIVE):
                self._not_started(text)  # e.g. LiveSetupError, ReconcileError: switch back to paper (M)
                return
            if self.engine is None:  # failed while starting: nothing to show, say why on exit
                self.exit(return_code=1, message=f"amarktai: engine failed to start: {text}")
                return
            self._problem = "ENGINE FAILED"
            self.notify(f"The engine stopped: {text}", title="Engine error", severity="error", timeout=60)
            self.redraw(force=True)
        elif isinstance(error, EngineError):
            self.notify(str(error), title="Not done", severity="warning")
        else:
            self.notify(f"{type(error).__name__}: {error}", title="Command failed", severity="error")

    # -- redraw -------------------------------------------------------------------
    def redraw(self, force: bool = False) -> None:
        """Redraw header and visible views if the model changed (timer at ``ui.refresh_rate`` Hz)."""
        if not self.is_running:  # shutting down: the screens are gone
            return
        engine = self.engine
        status = engine.feed.status() if engine is not None and engine.feed is not None else None
        if not force and self.model.version == self._drawn and status == self._status:
            return
        started = time.perf_counter()
        if not force and started < self._next_draw:
            return  # frame budget: many bots at full replay speed make a frame costly
        self._drawn, self._status = self.model.version, status
        try:
            with self.batch_update():  # one paint for the whole frame
                self._draw(engine, status)
        finally:
            # the timer asks at ui.refresh_rate Hz; drawing (and the paint after it, of similar
            # cost) takes at most ~1/FRAME_BUDGET_SHARE of the time so the engine keeps the rest
            self._next_draw = started + (time.perf_counter() - started) * FRAME_BUDGET_SHARE

    def _draw(self, engine: TradingEngine | None, status: FeedStatus | None) -> None:
        stopped = self.model.stopped is not None
        halted = engine is not None and (Breaker.HALT, None) in engine.board.active
        if halted != self._halted:
            self._halted = halted
            self.refresh_bindings()  # the footer offers H or U
        self.query_one(AppHeader).show(engine, self._problem, stopped=stopped, mode=self.account_mode)
        while self.model.alerts:
            self.notify(self.model.alerts.popleft(), title="Bot error", severity="error", timeout=30)
        if engine is None:
            return
        active = self.query_one("#tabs", TabbedContent).active
        if active == "profits":
            self.query_one(ProfitsPane).refresh_view(engine, self.model)
        elif active == "breakers":
            self.query_one(BreakersPane).refresh_view(engine, self.model)
        elif active == "audit":
            self.query_one(AuditPane).refresh_view()
        elif active == "platforms":
            self.query_one(PlatformsPane).refresh_view()
        elif active == "autonomy":
            self.query_one(AutonomyPane).refresh_view()
        else:
            self.query_one(BotsPane).refresh_view(engine)
        if isinstance(self.screen, BotDetailScreen) and self.screen.composed:
            self.screen.query_one(AppHeader).show(engine, self._problem, stopped=stopped)
            self.screen.refresh_view()
        if status is not None and status.state is FeedState.ENDED:
            self.feed_ended.set()

    @on(TabbedContent.TabActivated)
    def _tab_changed(self) -> None:
        self.redraw(force=True)

    # -- actions ----------------------------------------------------------------
    async def action_quit(self) -> None:
        await self.stop_engine()
        self.exit(return_code=1 if self._problem else 0)

    async def on_unmount(self) -> None:
        await self.stop_engine()  # the app was closed another way (e.g. by a test harness)
        self.model.close()

    def action_show_tab(self, tab: str) -> None:
        while isinstance(self.screen, BotDetailScreen):
            self.pop_screen()
        self.query_one("#tabs", TabbedContent).active = tab
        self.query_one(TAB_FOCUS[tab]).focus()

    def _live_engine(self) -> TradingEngine | None:
        if self.engine is None:
            self.notify(self._problem or "the engine is still starting", severity="warning")
            return None
        if self.model.stopped is not None or self._problem is not None:
            self.notify("the engine has stopped; restart the app to trade", severity="warning")
            return None
        return self.engine

    def action_pause_all(self) -> None:
        if (engine := self._live_engine()) is not None:
            self._command(engine.pause_all, lambda n: f"paused {n} bot(s)")

    def action_resume_all(self) -> None:
        if (engine := self._live_engine()) is not None:
            self._command(engine.resume_all, lambda n: f"resumed {n} bot(s)")

    def action_new_bot(self) -> None:
        engine = self._live_engine()
        if engine is None:
            return
        streams = engine.feed.streams if engine.feed is not None else []
        self.push_screen(NewBotScreen(engine, self.settings.market.exchange, streams), self._bot_created)

    def _bot_created(self, bot_id: int | None) -> None:
        if bot_id is None or self.engine is None:
            return
        self.action_show_tab("bots")
        self.redraw(force=True)
        self.query_one(BotsPane).select_bot(bot_id)
        self.notify(f"bot {self.engine.runners[bot_id].rec.name} created")

    # -- breakers: reset, emergency stop, resume ------------------------------------
    def scope_name(self, bot_id: int | None) -> str:
        """A bot's name, or "the account" for None (how the breaker messages name a scope)."""
        if bot_id is None:
            return "the account"
        runner = self.engine.runners.get(bot_id) if self.engine is not None else None
        return runner.rec.name if runner is not None else f"bot {bot_id}"

    @on(BreakersPane.ResetAsked)
    def _on_reset_asked(self, message: BreakersPane.ResetAsked) -> None:
        self.reset_breaker(message.breaker, message.bot_id)

    def reset_breaker(self, breaker: Breaker, bot_id: int | None) -> None:
        """Open the reset modal for the trip of ``breaker`` on ``bot_id`` (None: the account).

        The emergency stop (``Breaker.HALT``) opens the resume modal instead.
        """
        if breaker is Breaker.HALT:
            self.action_resume_trading()
            return
        engine = self._live_engine()
        if engine is None:
            return
        rule, who = rule_name(breaker), self.scope_name(bot_id)
        trip = engine.board.active.get((breaker, bot_id))
        if trip is None:
            self.notify(f"{rule} on {who} is not tripped: nothing to reset", severity="warning")
            return
        covered = "every bot" if trip.bot_id is None else who
        why = (
            f"Tripped {fmt.ts(trip.ts)} UTC (trip {trip.id}): {trip.message}.\n"
            f"While tripped, {covered} opens nothing new; exits still run. The reset is checked "
            "at once: if the condition still holds, the breaker trips again."
        )

        def run(reason: str) -> Awaitable[ResetResult]:
            return engine.reset_breaker(trip.id, reason, actor="user")

        self.push_screen(
            ResetBreakerScreen(f"Reset {rule} on {who}?", why, "Reset", run, self.second_factor()),
            lambda result: self._reset_done(result, f"{rule} on {who}", "reset"),
        )

    def second_factor(self) -> TotpGate:
        """The TOTP gate of breaker resets and resuming (a code is asked for only when enabled)."""
        return TotpGate(self.settings, self.data_dir)

    def _reset_done(self, result: ResetResult | None, what: str, done: str) -> None:
        """After the reset modal: say what was done, and if the breaker tripped again at once."""
        if result is None:
            return
        self.notify(f"{what}: {done} (trip {result.trip.id})")
        if result.retripped is not None:
            self._tripped_again(result.retripped, what)
        self.redraw(force=True)

    def _tripped_again(self, trip: Trip, what: str) -> None:
        self.notify(
            f"{what} tripped again at once (trip {trip.id}): {trip.message}",
            title="Breaker tripped again",
            severity="warning",
            timeout=20,
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Emergency stop while trading, resume while halted (the footer shows the one that applies)."""
        if action == "halt":
            return not self._halted
        if action == "resume_trading":
            return self._halted
        return True

    def action_halt(self) -> None:
        engine = self._live_engine()
        if engine is None:
            return
        halt = engine.board.active.get((Breaker.HALT, None))
        if halt is not None:
            self.notify(
                f"trading is already halted since {fmt.ts(halt.ts)} UTC; U resumes", severity="warning"
            )
            return

        def confirmed(ok: bool | None) -> None:
            if ok:
                self._command(
                    lambda: engine.halt("from the TUI", actor="user"),
                    lambda trip: "EMERGENCY STOP: trading halted" if trip else "trading was already halted",
                )

        why = (
            "No bot opens anything new: open and queued entry orders are withdrawn and every "
            "bot stops taking entries. Exits, stop-losses and cancels keep working. Trading "
            "stays halted, across restarts, until you resume it (U) with a reason."
        )
        self.push_screen(ConfirmScreen("Emergency stop: halt all trading?", why, "Halt"), confirmed)

    def action_resume_trading(self) -> None:
        engine = self._live_engine()
        if engine is None:
            return
        halt = engine.board.active.get((Breaker.HALT, None))
        if halt is None:
            self.notify("trading is not halted", severity="warning")
            return

        async def run(reason: str) -> ResetResult:
            result = await engine.resume(reason, actor="user")
            if result is None:
                raise EngineError("trading is not halted any more")
            return result

        why = (
            f"Halted {fmt.ts(halt.ts)} UTC: {halt.message}.\n"
            "Bots stopped by the halt go back to running; breakers tripped on their own stay tripped."
        )
        self.push_screen(
            ResetBreakerScreen("Resume trading?", why, "Resume", run, self.second_factor()),
            lambda result: self._reset_done(result, "emergency stop", "trading resumed"),
        )

    # -- API keys -------------------------------------------------------------------
    def action_keys(self) -> None:
        """Open the Keys screen (API keys in the OS keyring: set, test, delete)."""
        from amarktai_tui.tui.screens.keys import KeysScreen

        if not isinstance(self.screen, KeysScreen):
            self.push_screen(KeysScreen(self.settings, self.data_dir))

    def action_balances(self) -> None:
        """Open the Balances screen (every exchange with a key: free, used, total, value in quote)."""
        from amarktai_tui.tui.screens.balances import BalancesScreen

        if not isinstance(self.screen, BalancesScreen):
            self.push_screen(BalancesScreen(self.settings, self.data_dir))

    # -- backtests --------------------------------------------------------------------------
    def action_backtest(self) -> None:
        """Open the Backtest screen (a strategy over candle files, in a worker, on its own temporary
        ledger); it is kept while the app runs, so the last result is there when it opens again."""
        from amarktai_tui.tui.screens.backtest import BacktestScreen

        if isinstance(self.screen, BacktestScreen):
            return
        if not self.is_screen_installed("backtest"):
            replay = self.replay
            screen = BacktestScreen(
                self.settings,
                replay.files if replay is not None else (),
                pair=replay.pair if replay is not None else None,
                timeframe=replay.timeframe if replay is not None else None,
            )
            self.install_screen(screen, name="backtest")
        self.push_screen("backtest")

    def action_optimize(self) -> None:
        """Open the Optimise screen (an optuna study of a strategy, walk-forward, in a thread); kept
        while the app runs. Its data files start as the running replay's."""
        from amarktai_tui.tui.screens.optimize import OptimizeScreen, show_optimize

        if isinstance(self.screen, OptimizeScreen):
            return
        replay = self.replay
        first = not self.is_screen_installed("optimize")
        show_optimize(
            self,
            self.settings,
            files=replay.files if replay is not None and first else None,
            pair=replay.pair if replay is not None else None,
            timeframe=replay.timeframe if replay is not None else None,
        )

    def action_evolve(self) -> None:
        """Open the Evolve dialog (an evolution run recorded in the ledger; the Autonomy tab shows it)."""
        from amarktai_tui.tui.screens.evolve import EvolveScreen

        if isinstance(self.screen, EvolveScreen):
            return
        files = self.replay.files if self.replay is not None else ()
        self.push_screen(EvolveScreen(self.settings, self.data_dir, lambda: self.engine, files))

    # -- account mode (paper | live) ----------------------------------------------------
    def action_mode_switch(self) -> None:
        """Open the mode modal: to live, the doctor, the phrase and (when enabled) a TOTP code; to
        paper, one confirmation. The modal calls ``_apply_mode`` to make the switch."""
        from amarktai_tui.tui.screens.mode_switch import ModeSwitchScreen

        if isinstance(self.screen, ModeSwitchScreen):
            return
        while isinstance(self.screen, BotDetailScreen):  # it shows the engine that is about to stop
            self.pop_screen()
        self.push_screen(ModeSwitchScreen(self.settings, self.data_dir, self._apply_mode), self._mode_closed)

    def _mode_closed(self, mode: TradingMode | None) -> None:
        self.query_one(TAB_FOCUS[self.query_one("#tabs", TabbedContent).active]).focus()  # panes may be new
        if mode is not None:
            self.notify(f"account switched to {mode.value}: the engine starts again in {mode.value} mode")

    @work(exclusive=True, group="mode", exit_on_error=False, name="mode")
    async def _apply_mode(
        self, target: TradingMode, phrase: str | None, totp_code: str | None
    ) -> ModeSwitchRefused | None:
        """Stop the engine, switch the account (``switch_mode`` runs the gate again, with no lock
        held), then start a new engine worker, which opens in the account's mode: the new one, or the
        old one after a refusal. Returns the refusal, None once switched."""
        if self.engine is None and not self.engine_done.is_set():
            return ModeSwitchRefused("the engine is still starting: try again in a moment")
        await self.stop_engine()
        refused: ModeSwitchRefused | None = None
        restart = True
        try:
            # in a thread with its own loop: the gate's TOTP check blocks (keyring, SQLite)
            switch = switch_mode(self.settings, self.data_dir, target, actor="user",
                                 reason="switched in the TUI", phrase=phrase, totp_code=totp_code)  # fmt: skip
            await asyncio.to_thread(asyncio.run, switch)
        except ModeSwitchRefused as exc:
            refused = exc
        except (sqlite3.Error, OSError) as exc:
            refused = ModeSwitchRefused(f"{type(exc).__name__}: {exc}")
        except asyncio.CancelledError:
            restart = False  # the app is closing
            raise
        finally:
            if restart:
                await self._restart_engine()
        return refused

    async def _restart_engine(self) -> None:
        """A new engine worker on the data dir, with a fresh model and fresh panes (what they drew
        belongs to the stopped engine); the header shows "starting..." until the engine is open."""
        self._restarts += 1
        self.engine = None
        self._problem = None
        self._halted = False
        self._status = None
        self._drawn = -1
        self.engine_done.clear()
        self.feed_ended.clear()
        self.model.close()
        self.model = EngineModel(self.bus)
        for tab, pane in (("bots", BotsPane), ("profits", ProfitsPane), ("breakers", BreakersPane)):
            await self.query_one(pane).remove()
            await self.query_one(f"#{tab}", TabPane).mount(pane(id=f"{tab}-pane"))
        self.refresh_bindings()
        self._start_engine()
        self.redraw(force=True)

    def _not_started(self, reason: str) -> None:
        """The engine did not start (a live start refused, the data dir taken): say why, stay open."""
        self._problem = f"NOT TRADING: {reason}"
        self.notify(
            f"The engine did not start: {reason}. M switches the account mode.",
            title="Engine not started",
            severity="error",
            timeout=60,
        )
        self.redraw(force=True)

    # -- capital allocation -----------------------------------------------------------
    def action_allocate(self) -> None:
        """Preview what the allocator would move now; apply it (a command worker) if the user says so."""
        engine = self._live_engine()
        if engine is None:
            return
        plan = engine.allocation_plan()

        def confirmed(ok: bool | None) -> None:
            if ok:
                self._command(
                    lambda: engine.apply_allocation(plan, actor="user"),
                    lambda done: f"{len(done)} bot{'' if len(done) == 1 else 's'} re-allocated",
                )

        self.push_screen(AllocationScreen(plan, engine.allocator), confirmed)

    @on(BotsPane.BotAction)
    def _on_bot_action(self, message: BotsPane.BotAction) -> None:
        self.bot_action(message.action, message.bot_id)

    def bot_action(self, action: str, bot_id: int) -> None:
        """``action`` (start, pause, stop, details, promote, demote) on bot ``bot_id``; stop, promote and
        demote ask for confirmation first (promote/demote: ``tui.screens.stage_change``, audited)."""
        engine = self.engine
        if engine is None or bot_id not in engine.runners:
            return
        runner = engine.runners[bot_id]
        name = runner.rec.name
        if action == "details":
            self.push_screen(
                BotDetailScreen(
                    engine,
                    self.model,
                    bot_id,
                    settings=self.settings,
                    on_ready=lambda: self.redraw(force=True),
                )
            )
            return
        if self._live_engine() is None:
            return
        if action in ("promote", "demote"):
            from amarktai_tui.tui.screens.stage_change import stage_screen

            self.push_screen(stage_screen(engine, bot_id, action), lambda _: self.redraw(force=True))
        elif action == "start":
            self._command(
                lambda: engine.set_bot_state(bot_id, BotState.RUNNING, "resumed by user"),
                lambda _: f"{name} running",
            )
        elif action == "pause":
            self._command(
                lambda: engine.set_bot_state(bot_id, BotState.PAUSED, "paused by user"),
                lambda _: f"{name} paused",
            )
        elif action == "stop":
            if runner.long:
                base = split_pair(runner.rec.pair)[0]
                why = (
                    f"{name} holds {runner.book.position_qty.normalize():f} {base}. Stopping closes this position "
                    "with a market order at the next candle's open; then the bot opens nothing new "
                    "until you start it again."
                )
            else:
                why = f"{name} holds no position. Stopped, it opens nothing new until you start it again."

            def confirmed(ok: bool | None) -> None:
                if ok:
                    self._command(
                        lambda: engine.set_bot_state(bot_id, BotState.STOPPED, "stopped by user"),
                        lambda _: f"{name} stopped",
                    )

            self.push_screen(ConfirmScreen(f"Stop bot {name}?", why, "Stop bot"), confirmed)

    @work(group="commands", exit_on_error=False)
    async def _command(self, call: Callable[[], Awaitable[Any]], done: Callable[[Any], str]) -> None:
        """Run an engine command; its EngineError reaches ``_worker_state`` (the one error path)."""
        result = await call()
        self.notify(done(result))
        self.redraw(force=True)


def _all_bindings() -> list[Binding]:
    """Every Binding the app and its screens declare (ids are what ``[ui] keymap`` remaps)."""
    from amarktai_tui.tui.bots_pane import BotsPane
    from amarktai_tui.tui.screens.backtest import BacktestScreen
    from amarktai_tui.tui.screens.balances import BalancesScreen
    from amarktai_tui.tui.screens.bot_detail import BotDetailScreen
    from amarktai_tui.tui.screens.confirm import ConfirmScreen
    from amarktai_tui.tui.screens.confirm_action import ConfirmActionScreen
    from amarktai_tui.tui.screens.evolve import EvolveScreen
    from amarktai_tui.tui.screens.keys import KeysScreen
    from amarktai_tui.tui.screens.mode_switch import ModeSwitchScreen
    from amarktai_tui.tui.screens.optimize import OptimizeScreen
    from amarktai_tui.tui.screens.set_key import SetKeyScreen
    from amarktai_tui.tui.screens.stage_change import StageChangeScreen

    out: list[Binding] = []
    for cls in (
        AmarktaiApp,
        BotsPane,
        BreakersPane,
        PlatformsPane,
        ProfitsPane,
        AutonomyPane,
        ChatPane,
        ChatInput,
        ConfirmActionScreen,
        NewBotScreen,
        BotDetailScreen,
        ConfirmScreen,
        ResetBreakerScreen,
        AllocationScreen,
        KeysScreen,
        SetKeyScreen,
        BalancesScreen,
        BacktestScreen,
        OptimizeScreen,
        EvolveScreen,
        StageChangeScreen,
        ModeSwitchScreen,
    ):
        out.extend(b for b in cls.BINDINGS if isinstance(b, Binding))
    return out


def run_tui(settings: Settings, data_dir: Path, replay: ReplayArgs | None) -> int:
    """Run the TUI until the user quits; returns the exit code (0 ok, 1 engine failure or locked data dir)."""
    from amarktai_tui.ops.daemon import setup_logging

    setup_logging(data_dir, stderr=False)  # log lines must never be printed over the screen
    app = AmarktaiApp(settings, data_dir, replay)
    app.run()
    return app.return_code or 0
