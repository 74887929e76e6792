"""The Breakers tab, driven by keys: the default thresholds, the real BTC 1h replay, a real ledger.

With the default ``[risk]`` settings the demo bots trip breakers on the real
2021 data (losing streaks), so every test starts from real trips.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.widgets import DataTable, Label, RichLog, Static
from tui_helpers import SIZE, commands_done, replay_done, spy_notify, workers_done

from amarktai_tui.config import load_settings
from amarktai_tui.domain.enums import BotState
from amarktai_tui.engine.events import BreakerReset, BreakerTripped, Event, EventBus
from amarktai_tui.exchanges.api_breaker import ApiHealth, ApiState
from amarktai_tui.ledger.schema import connect_readonly
from amarktai_tui.risk.breakers import Breaker, Trip
from amarktai_tui.tui import breakers_pane, fmt
from amarktai_tui.tui.app import AmarktaiApp, _all_bindings
from amarktai_tui.tui.bots_pane import StyledTable
from amarktai_tui.tui.breakers_pane import PAPER_API_LINE, ApiHealthView, BreakersPane, figure, reading_key
from amarktai_tui.tui.header import AppHeader
from amarktai_tui.tui.screens.confirm import ConfirmScreen
from amarktai_tui.tui.screens.reset_breaker import ResetBreakerScreen
from amarktai_tui.tui.themes import THEME_VARIABLES
from amarktai_tui.tui.widgets.tape import Tape

MakeApp = Callable[..., AmarktaiApp]
DATA_START_MS = 1_577_836_800_000  # 2020-01-01, the first candle of BTC_USDT-1h.json


def default_app(make_app: MakeApp) -> AmarktaiApp:
    """The app with the default breaker thresholds (the shared fixture opens them wide)."""
    return make_app(settings_=load_settings(None))


def next_event(bus: EventBus, kind: type[Event]) -> asyncio.Future[Event]:
    fut: asyncio.Future[Event] = asyncio.get_running_loop().create_future()

    def handler(event: Event) -> None:
        if not fut.done():
            fut.set_result(event)

    unsubscribe = bus.subscribe(kind, handler)
    fut.add_done_callback(lambda _: unsubscribe())
    return fut


def cell(app: AmarktaiApp, table_id: str, row: str, column: str) -> str:
    return str(app.query_one(table_id, DataTable).get_cell(row, column))


def resets(app: AmarktaiApp) -> list[tuple[int, str, str]]:
    """(trip id, actor, reason) of every reset in the ledger, oldest first."""
    assert app.engine is not None
    conn = connect_readonly(str(app.engine.store.path))
    try:
        rows = conn.execute("SELECT trip_id, actor, reason FROM breaker_resets ORDER BY id").fetchall()
    finally:
        conn.close()
    return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]


async def open_breakers(app: AmarktaiApp, pilot: Any) -> list[Trip]:
    """Wait for the replay, press 3, return the trips active at the end (oldest first)."""
    await replay_done(app, pilot)
    await pilot.press("3")
    await pilot.pause()
    assert app.engine is not None
    return sorted(app.engine.board.active.values(), key=lambda t: t.id)


async def test_replay_trips_breakers_and_the_pane_shows_every_reading(make_app: MakeApp) -> None:
    app = default_app(make_app)
    async with app.run_test(size=SIZE) as pilot:
        trips = await open_breakers(app, pilot)
        engine = app.engine
        assert engine is not None
        assert app.query_one("#tabs").active == "breakers"  # type: ignore[attr-defined]
        assert app.focused is app.query_one("#breakers-table")
        assert trips, "the default thresholds trip at least one breaker on the 2020-2021 data"
        assert all(t.ts > DATA_START_MS and t.bot_id in engine.runners for t in trips)  # bot trips

        readings = engine.breaker_readings()
        assert app.query_one("#breakers-table", DataTable).row_count == len(readings) == 3 + 3 * 3
        for r in readings:
            key = reading_key(r.breaker, r.bot_id)
            assert cell(app, "#breakers-table", key, "status") == r.status
            if r.breaker is not Breaker.HALT:
                assert cell(app, "#breakers-table", key, "value") == figure(r.breaker, r.value)
                assert cell(app, "#breakers-table", key, "threshold") == figure(r.breaker, r.threshold)
        drawdown = reading_key(Breaker.ACCOUNT_DRAWDOWN, None)
        assert cell(app, "#breakers-table", drawdown, "threshold") == "15.00%"  # a fraction shown in percent
        for t in trips:
            key = reading_key(t.breaker, t.bot_id)
            assert cell(app, "#breakers-table", key, "status") == "tripped"
            assert cell(app, "#breakers-table", key, "since") == fmt.ts(t.ts)
            assert cell(app, "#breakers-table", key, "bot") == engine.runners[t.bot_id or 0].rec.name
            assert engine.runners[t.bot_id or 0].rec.state is BotState.CIRCUIT_TRIPPED
            assert cell(app, "#trips-table", str(t.id), "reset") == "active"
            assert cell(app, "#trips-table", str(t.id), "message") == t.message
        assert f"{len(trips)} breaker" in app.query_one(AppHeader).text
        assert "HALTED" not in app.query_one(AppHeader).text

        await pilot.press("1")  # the bots it covers read "tripped" on the Bots tab
        await pilot.pause()
        bots = app.query_one("#bots-table", DataTable)
        assert str(bots.get_cell(str(trips[0].bot_id), "state")) == "tripped"


async def test_reset_asks_for_a_reason_and_records_it(make_app: MakeApp) -> None:
    app = default_app(make_app)
    messages = spy_notify(app)
    async with app.run_test(size=SIZE) as pilot:
        trips = await open_breakers(app, pilot)
        engine = app.engine
        assert engine is not None and trips
        pane = app.query_one(BreakersPane)

        pane.select(Breaker.DAILY_LOSS, None)  # not tripped: nothing to reset
        await pilot.press("r")
        await pilot.pause()
        assert not isinstance(app.screen, ResetBreakerScreen)
        assert "daily loss on the account is not tripped: nothing to reset" in messages

        trip = trips[0]
        name = engine.runners[trip.bot_id or 0].rec.name
        pane.select(trip.breaker, trip.bot_id)
        await pilot.press("r")
        modal = app.screen
        assert isinstance(modal, ResetBreakerScreen)
        assert trip.message in str(modal.query_one("#reset-explanation", Static).content)

        await pilot.press("enter")  # an empty reason is refused, with the engine's message
        await workers_done(app, "reset")
        await pilot.pause()
        assert app.screen is modal
        assert str(modal.query_one("#reset-error", Static).content) == "a reset needs a reason"
        assert (trip.breaker, trip.bot_id) in engine.board.active
        assert resets(app) == []

        reset = next_event(app.bus, BreakerReset)
        await pilot.press(*"losing streak reviewed", "enter")
        await asyncio.wait_for(reset, 10)
        await pilot.pause()
        assert not isinstance(app.screen, ResetBreakerScreen)
        assert resets(app) == [(trip.id, "user", "losing streak reviewed")]
        rule = "consecutive losses" if trip.breaker is Breaker.CONSECUTIVE_LOSSES else str(trip.breaker)
        assert f"{rule} on {name}: reset (trip {trip.id})" in messages
        key = reading_key(trip.breaker, trip.bot_id)
        again = engine.board.active.get((trip.breaker, trip.bot_id))
        if again is None:
            assert cell(app, "#breakers-table", key, "status") != "tripped"
        else:  # the condition still held: it tripped again, and the user is told so
            assert any(m.startswith(f"{rule} on {name} tripped again") for m in messages)
        assert cell(app, "#trips-table", str(trip.id), "by") == "user"
        assert cell(app, "#trips-table", str(trip.id), "reason") == "losing streak reviewed"


async def test_emergency_stop_and_resume(make_app: MakeApp) -> None:
    app = default_app(make_app)
    messages = spy_notify(app)
    async with app.run_test(size=SIZE) as pilot:
        await open_breakers(app, pilot)
        engine = app.engine
        assert engine is not None
        header = app.query_one(AppHeader)

        await pilot.press("H")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # cancelled: nothing happens
        assert not isinstance(app.screen, ConfirmScreen)
        assert (Breaker.HALT, None) not in engine.board.active
        assert not app.check_action("resume_trading", ())  # U is offered only while halted

        tripped = next_event(app.bus, BreakerTripped)
        await pilot.press("H", "y")
        event = await asyncio.wait_for(tripped, 10)
        await commands_done(app, pilot)
        assert isinstance(event, BreakerTripped) and event.trip.breaker is Breaker.HALT
        assert engine.board.active[(Breaker.HALT, None)].id == event.trip.id
        assert "HALTED" in header.text
        assert "EMERGENCY STOP: trading halted" in messages
        assert cell(app, "#breakers-table", reading_key(Breaker.HALT, None), "value") == "halted"
        assert {r.rec.state for r in engine.runners.values()} == {BotState.CIRCUIT_TRIPPED}
        assert app.check_action("resume_trading", ()) and not app.check_action("halt", ())

        await pilot.press("U")
        assert isinstance(app.screen, ResetBreakerScreen)
        reset = next_event(app.bus, BreakerReset)
        await pilot.press(*"drill over", "enter")
        await asyncio.wait_for(reset, 10)
        await pilot.pause()
        assert (Breaker.HALT, None) not in engine.board.active
        assert "HALTED" not in header.text
        assert resets(app)[-1] == (event.trip.id, "user", "drill over")
        assert f"emergency stop: trading resumed (trip {event.trip.id})" in messages
        assert cell(app, "#breakers-table", reading_key(Breaker.HALT, None), "status") == "ok"
        # bots whose own breaker is still tripped stay tripped; the others trade again
        for bot_id, runner in engine.runners.items():
            own = engine.board.covering(bot_id)
            assert runner.rec.state is (BotState.CIRCUIT_TRIPPED if own else BotState.RUNNING)


async def test_refusals_and_limit_usage(make_app: MakeApp) -> None:
    app = default_app(make_app)
    async with app.run_test(size=SIZE) as pilot:
        await open_breakers(app, pilot)
        engine = app.engine
        assert engine is not None
        tape = app.query_one("#refusals-tape", Tape)
        assert tape.rows == min(len(engine.refusals), 200) > 0
        lines = [strip.text for strip in tape.query_one(RichLog).lines]
        ts, bot, _intent, refusal = engine.refusals[-1]
        assert lines[-1].startswith(f"{fmt.ts(ts)}  {bot}")
        assert refusal.gate.value in lines[-1]
        assert any(" breaker " in line for line in lines)  # gate D refused entries of tripped bots

        usage = engine.limit_usage()
        assert cell(app, "#limits-table", "account", "used") == str(usage["account_orders_today"])
        assert cell(app, "#limits-table", "account", "limit") == str(usage["account_limit"])
        for name in ("btc-ema", "btc-rsi", "btc-donchian"):
            assert cell(app, "#limits-table", f"bot:{name}", "limit") == str(usage["bot_limit"])
        assert cell(app, "#limits-table", "burst:binance", "limit") == str(usage["burst_limit"])


async def test_trip_history_survives_a_restart(make_app: MakeApp) -> None:
    first = default_app(make_app)
    async with first.run_test(size=SIZE) as pilot:
        trips = await open_breakers(first, pilot)
        first.query_one(BreakersPane).select(trips[0].breaker, trips[0].bot_id)
        await pilot.press("r", *"checked", "enter")
        await workers_done(first, "reset")
        await pilot.pause()
        await pilot.press("q")
    second = default_app(make_app)
    async with second.run_test(size=SIZE) as pilot:
        await open_breakers(second, pilot)
        for t in trips:  # read from the ledger at start-up
            assert cell(second, "#trips-table", str(t.id), "message") == t.message
        assert cell(second, "#trips-table", str(trips[0].id), "reason") == "checked"


def test_new_bindings_have_ids_the_keymap_knows() -> None:
    for cls in (BreakersPane, ResetBreakerScreen):
        for binding in cls.BINDINGS:
            assert not isinstance(binding, tuple) and binding.id, f"{cls.__name__}: {binding}"
    ids = {b.id for b in _all_bindings()}
    assert {"app.tab_breakers", "app.halt", "app.resume", "breakers.reset", "reset.cancel"} <= ids


def test_breakers_tab_snapshot(snap_compare: Any, make_app: MakeApp) -> None:
    app = default_app(make_app)

    async def run_before(pilot: Any) -> None:
        await replay_done(app, pilot)
        await pilot.press("3")
        log = app.query_one("#refusals-tape RichLog", RichLog)
        for _ in range(100):  # the tape's first rows are written once it has a size, then it scrolls
            await pilot.pause()
            if log.lines and log.max_scroll_y and log.scroll_y == log.max_scroll_y:
                break

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def test_a_paper_app_says_no_exchange_api_is_in_use(make_app: MakeApp) -> None:
    app = default_app(make_app)
    async with app.run_test(size=SIZE) as pilot:
        await open_breakers(app, pilot)
        assert app.engine is not None and app.engine.api_health() == {}  # a paper broker
        line = app.query_one("#api-paper", Label)
        assert line.display and str(line.content) == PAPER_API_LINE == "paper: no exchange API in use"
        assert line.region.height == 1
        assert line.styles.auto_color and line.styles.color.a < 1  # dim: the theme's $text-muted
        assert not app.query_one("#api-title").display and not app.query_one("#api-table").display


class ApiHost(App[None]):
    """The pane's API table alone, with the app's stylesheet and theme variables."""

    CSS_PATH = str(Path(breakers_pane.__file__).with_name("app.tcss"))

    def __init__(self, health: Mapping[str, ApiHealth]) -> None:
        super().__init__()
        self.health = health

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(THEME_VARIABLES)

    def compose(self) -> ComposeResult:
        yield ApiHealthView(self.health, id="api-health")


def health(
    ex: str,
    state: ApiState,
    failures: int = 0,
    error: str = "",
    retry_in_s: float = 0.0,
    p50: float | None = None,
    p99: float | None = None,
) -> ApiHealth:
    return ApiHealth(ex, state, failures, error, retry_in_s, p50, p99, calls=100, errors=failures)


LIVE_HEALTH = {
    "binance": health(
        "binance", ApiState.OPEN, 5, "ExchangeNotAvailable: binance GET /api/v3/order 503", 42.4, 12.3, 250.0
    ),
    "valr": health("valr", ApiState.CLOSED, p50=3.4, p99=None),
    "kucoin": health("kucoin", ApiState.HALF_OPEN, 6, "RequestTimeout: kucoin GET /api/v1/orders", 0.0),
}


async def test_the_exchange_api_table_shows_each_breaker_in_its_colour() -> None:
    host = ApiHost(LIVE_HEALTH)
    async with host.run_test(size=SIZE) as pilot:
        view = host.query_one(ApiHealthView)
        table = host.query_one("#api-table", StyledTable)
        assert not host.query_one("#api-paper").display and table.display
        assert host.query_one("#api-title", Label).display

        def row(ex: str) -> list[str]:
            return [str(c) for c in table.get_row(ex)]

        assert [table.get_row_at(i)[0] for i in range(table.row_count)] == ["binance", "kucoin", "valr"]
        assert row("binance") == [
            "binance",
            "open",
            "5",
            "ExchangeNotAvailable: binance GET /api/v3/order 503",
            "42 s",
            "12",
            "250",
        ]
        assert row("kucoin") == [
            "kucoin",
            "half_open",
            "6",
            "RequestTimeout: kucoin GET /api/v1/orders",
            "-",  # half open: the probe may go now
            "-",  # no call timed yet
            "-",
        ]
        assert row("valr") == ["valr", "closed", "0", "-", "-", "3.4", "-"]

        def colour(ex: str) -> Any:
            return table.get_cell(ex, "state").style.color  # type: ignore[union-attr]

        theme = host.current_theme.to_color_system().generate()
        assert colour("binance").name == THEME_VARIABLES["breaker-tripped"]  # open: the tripped colour
        assert colour("kucoin").name == theme["warning"].lower()
        assert colour("valr").name == theme["success"].lower()

        # the next frame: binance's probe went through, VALR is gone (only changed cells are drawn)
        view.show({"binance": health("binance", ApiState.CLOSED, p50=11.0, p99=30.0)})
        await pilot.pause()
        assert table.row_count == 1
        assert row("binance") == ["binance", "closed", "0", "-", "-", "11", "30"]
        assert colour("binance").name == theme["success"].lower()

        view.show({})  # no live broker any more: the paper line
        await pilot.pause()
        assert host.query_one("#api-paper").display and not table.display
