"""Pilot-driven tests: the real app, a real engine, real Binance candles, a real ledger in a tmp dir."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Digits, Input, Label, Static
from tui_helpers import SIZE, commands_done, profits_read, replay_done, spy_notify, workers_done

from amarktai_tui.domain.enums import BotState, Side
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.engine.events import BotCreated, BotStateChanged, Event, EventBus
from amarktai_tui.engine.runner import BotRunner
from amarktai_tui.engine.setup import ReplayArgs
from amarktai_tui.ledger.pnl import trades_from_fills
from amarktai_tui.ledger.profits import ProfitService
from amarktai_tui.ledger.schema import connect_readonly
from amarktai_tui.locations import lock_path
from amarktai_tui.ops.lock import EngineLock
from amarktai_tui.tui import fmt
from amarktai_tui.tui.app import AmarktaiApp, _all_bindings
from amarktai_tui.tui.header import AppHeader
from amarktai_tui.tui.palette import BotCommands
from amarktai_tui.tui.profits_pane import ProfitsPane, ProfitStats
from amarktai_tui.tui.screens.bot_detail import BotDetailScreen, fill_markers
from amarktai_tui.tui.screens.confirm import ConfirmScreen
from amarktai_tui.tui.screens.new_bot import NewBotScreen
from amarktai_tui.tui.widgets.line_chart import LineChart
from amarktai_tui.tui.widgets.tape import Tape

MakeApp = Callable[..., AmarktaiApp]


def next_events(
    bus: EventBus, kind: type[Event], count: int = 1, **match: Any
) -> asyncio.Future[list[Event]]:
    """A future resolved with the first ``count`` events of ``kind`` whose attributes equal ``match``."""
    fut: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
    seen: list[Event] = []

    def handler(event: Event) -> None:
        if all(getattr(event, k) == v for k, v in match.items()) and not fut.done():
            seen.append(event)
            if len(seen) == count:
                fut.set_result(seen)

    unsubscribe = bus.subscribe(kind, handler)
    fut.add_done_callback(lambda _: unsubscribe())
    return fut


def cell(table: DataTable[Any], bot_id: int, column: str) -> str:
    return str(table.get_cell(str(bot_id), column))


def select_bot(app: AmarktaiApp, name: str) -> int:
    assert app.engine is not None
    bot_id = app.engine.runner_by_name(name).rec.id
    table = app.query_one("#bots-table", DataTable)
    table.focus()
    table.move_cursor(row=table.get_row_index(str(bot_id)))
    return bot_id


async def test_replay_fills_the_bots_table_and_header(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        engine = app.engine
        assert engine is not None and engine.candles_seen == 5482
        table = app.query_one("#bots-table", DataTable)
        assert table.row_count == 3
        for bot_id, runner in engine.runners.items():
            assert runner.stats.trades > 0
            assert cell(table, bot_id, "trades") == str(runner.stats.trades)
            assert cell(table, bot_id, "realised") == fmt.money(runner.stats.realised, signed=True)
            assert cell(table, bot_id, "win") == fmt.pct(runner.win_rate)
        header = app.query_one(AppHeader).text
        assert " PAPER " in header
        assert "REPLAY ended 100%" in header
        assert f"Equity {fmt.money(engine.account_equity())} USDT" in header
        assert header.rstrip().endswith("2021-07-17 21:00 UTC")  # engine time, not the wall clock
        assert app.query_one("#fills-tape", Tape).rows == min(len(engine.fill_log), 200)


def box(app: AmarktaiApp, box_id: str) -> tuple[str, str]:
    """A big-digit box's figure and caption as shown."""
    pane = app.query_one(ProfitsPane)
    digits = pane.query_one(f"#{box_id} Digits", Digits)
    return str(digits.value), str(pane.query_one(f"#{box_id} .pnl-caption", Label).content)


def realised_between(rows: list[Any], start: int, end: int) -> Decimal:
    return sum((Decimal(r["realised_pnl"]) for r in rows if start <= r["ts"] < end), Decimal(0))


async def test_profits_pane_shows_the_profit_service_figures(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        engine = app.engine
        assert engine is not None
        pane = app.query_one(ProfitsPane)
        # read once at the feed's end although the tab is hidden, so it opens complete
        await profits_read(app, pilot)
        await pilot.press("2")
        await pilot.pause()
        assert pane.in_sync.is_set()  # showing the tab needed no new read
        now = engine.now_ms
        conn = connect_readonly(str(engine.store.path))
        conn.row_factory = sqlite3.Row
        try:
            expected = ProfitService.read(conn).figures(now)
            rows = conn.execute("SELECT ts, realised_pnl, fee, fee_currency FROM fills").fetchall()
        finally:
            conn.close()
        assert pane.ledger is not None and pane.ledger.as_of_ms == now
        assert pane.ledger.fills == len(rows) == len(engine.fill_log) > 0  # the engine's batch is in

        # the figures are the profit service's
        f = expected
        money = partial(fmt.money, signed=True)
        shown = app.query_one(ProfitStats).values
        assert box(app, "pnl-total") == (money(f.total), "realised + unrealised")
        assert (shown["Realised"], shown["Unrealised"]) == (money(f.realised), money(f.unrealised))
        assert box(app, "pnl-today") == (money(f.today), f"realised; yesterday {money(f.yesterday)}")
        assert box(app, "pnl-week") == (money(f.this_week), f"realised; last week {money(f.last_week)}")
        assert box(app, "pnl-month") == (money(f.this_month), f"realised; last month {money(f.last_month)}")
        s = f.stats
        assert shown["Sharpe"] == f"{s.sharpe:.2f}" and shown["Sortino"] == f"{s.sortino:.2f}"
        assert shown["Calmar"] == f"{s.calmar:.2f}" and shown["Max drawdown"] == fmt.pct(s.max_drawdown)
        assert shown["Equity"] == fmt.money(f.equity) and shown["Capital"] == fmt.money(f.capital)
        assert f.unrealised != 0  # btc-rsi holds a position at the end of the data

        # ... and they agree with an independent computation from the raw ledger rows
        day = datetime.fromtimestamp(now / 1000, tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        monday = day - timedelta(days=day.weekday())
        first = day.replace(day=1)
        prev_first = (first - timedelta(days=1)).replace(day=1)
        d, w, m, pm = (int(x.timestamp() * 1000) for x in (day, monday, first, prev_first))
        week = 7 * 86_400_000
        assert box(app, "pnl-month")[0] == money(realised_between(rows, m, now + 1)) != "0.00"
        assert box(app, "pnl-month")[1].endswith(money(realised_between(rows, pm, m)))
        assert box(app, "pnl-week") == (
            money(realised_between(rows, w, now + 1)),
            f"realised; last week {money(realised_between(rows, w - week, w))}",
        )
        assert box(app, "pnl-today") == (
            money(realised_between(rows, d, now + 1)),
            f"realised; yesterday {money(realised_between(rows, d - 86_400_000, d))}",
        )
        realised = realised_between(rows, 0, now + 1)
        assert shown["Realised"] == money(realised)
        assert box(app, "pnl-total")[0] == money(realised + f.unrealised)
        assert {r["fee_currency"] for r in rows} == {engine.quote_currency}
        assert shown["Fees"] == fmt.money(sum((Decimal(r["fee"]) for r in rows), Decimal(0)))
        # the trade stats against the round trips of the engine's own fill log
        trades = trades_from_fills(engine.fill_log)
        wins = [t.pnl for t in trades if t.pnl > 0]
        losses = [t.pnl for t in trades if t.pnl < 0]
        assert shown["Trades"] == str(len(trades)) and shown["Win rate"] == fmt.pct(len(wins) / len(trades))
        assert shown["Profit factor"] == f"{float(sum(wins) / -sum(losses)):.2f}"
        assert shown["Expectancy"] == money(sum(t.pnl for t in trades) / len(trades))
        assert shown["Avg win"] == money(sum(wins) / len(wins))
        assert shown["Avg loss"] == money(sum(losses) / len(losses))
        assert str(pane.query_one("#countdown", Label).content).startswith("Countdown to 1,000,000.00 USDT: ")

        # the live parts follow the engine's memory
        assert app.query_one("#trades-tape", Tape).rows == len(trades) > 0
        chart = app.query_one("#equity-chart", LineChart)
        assert len(chart.values) == len(app.model.equity) > 1000


async def test_profits_pane_paper_and_live_figures(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        await pilot.press("2")
        await profits_read(app, pilot)  # the engine's last batch is in the ledger
        engine = app.engine
        assert engine is not None
        pane = app.query_one(ProfitsPane)
        conn = connect_readonly(str(engine.store.path))
        try:
            service = ProfitService.read(conn)
        finally:
            conn.close()
        assert "profits.venue" in {b.id for b in _all_bindings()}  # [ui] keymap can remap v
        for venue in ("paper", "live", "all"):
            await pilot.press("v")
            assert pane.venue == venue
            await profits_read(app, pilot)
            f = service.figures(engine.now_ms, venue)
            assert pane.ledger is not None and pane.ledger.venue == venue
            assert box(app, "pnl-total")[0] == fmt.money(f.total, signed=True)
            shown = app.query_one(ProfitStats).values
            assert shown["Trades"] == str(f.stats.trades) and shown["Win rate"] == fmt.pct(f.stats.win_rate)
            assert str(pane.query_one("#profit-source", Label).content).startswith(f"{venue.title()} fills ")
            if venue == "live":  # a paper replay made no live fill
                assert (f.total, f.stats.trades, shown["Win rate"], shown["Sharpe"]) == (0, 0, "-", "-")
            else:
                assert f.stats.trades > 0


async def test_pause_and_resume_a_bot_with_keys(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        assert app.engine is not None
        bot_id = select_bot(app, "btc-donchian")
        paused = next_events(app.bus, BotStateChanged, bot_id=bot_id, new=BotState.PAUSED)
        await pilot.press("p")
        await asyncio.wait_for(paused, 10)
        await commands_done(app, pilot)
        assert app.engine.runners[bot_id].rec.state is BotState.PAUSED
        assert cell(app.query_one("#bots-table", DataTable), bot_id, "state") == "paused"
        others = [r.rec.state for r in app.engine.runners.values() if r.rec.id != bot_id]
        assert others == [BotState.RUNNING, BotState.RUNNING]

        resumed = next_events(app.bus, BotStateChanged, bot_id=bot_id, new=BotState.RUNNING)
        await pilot.press("s")
        await asyncio.wait_for(resumed, 10)
        await commands_done(app, pilot)
        assert cell(app.query_one("#bots-table", DataTable), bot_id, "state") == "running"


async def test_stop_asks_first_cancel_keeps_it_running_confirm_stops_it(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        engine = app.engine
        assert engine is not None
        runner = engine.runner_by_name("btc-rsi")  # holds a position when the data ends
        assert runner.long
        select_bot(app, "btc-rsi")

        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        text = str(app.screen.query_one("#confirm-explanation", Static).content)
        assert "closes this position" in text and "next candle's open" in text
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen)
        assert [w for w in app.workers if w.group == "commands"] == []
        assert runner.rec.state is BotState.RUNNING

        stopped = next_events(app.bus, BotStateChanged, bot_id=runner.rec.id, new=BotState.STOPPED)
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await asyncio.wait_for(stopped, 10)
        await commands_done(app, pilot)
        assert runner.rec.state is BotState.STOPPED
        assert runner.exit_requested  # the engine sells at the next candle's open
        assert cell(app.query_one("#bots-table", DataTable), runner.rec.id, "state") == "stopping"


async def test_pause_all_and_resume_all(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        assert app.engine is not None
        paused = next_events(app.bus, BotStateChanged, count=3, new=BotState.PAUSED)
        await pilot.press("P")
        await asyncio.wait_for(paused, 10)
        await commands_done(app, pilot)
        assert {r.rec.state for r in app.engine.runners.values()} == {BotState.PAUSED}
        resumed = next_events(app.bus, BotStateChanged, count=3, new=BotState.RUNNING)
        await pilot.press("R")
        await asyncio.wait_for(resumed, 10)
        await commands_done(app, pilot)
        assert {r.rec.state for r in app.engine.runners.values()} == {BotState.RUNNING}


async def test_new_bot_form_validates_then_creates(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, NewBotScreen)

        async def submit() -> str:
            await pilot.press("ctrl+s")
            await workers_done(app, "new-bot")
            await pilot.pause()
            return str(form.query_one("#nb-error", Static).content)

        def set_field(field: str, value: str) -> None:
            form.query_one(f"#{field}", Input).value = value

        await pilot.press(*"btc-fast")  # the name field has the focus
        set_field("nb-capital", "lots")
        assert "capital: 'lots' is not a number" in await submit()
        assert form.query_one("#nb-capital", Input).has_class("field-error")
        set_field("nb-capital", "-5")
        assert "capital must be > 0" in await submit()
        set_field("nb-capital", "750")
        set_field("nb-stop-loss", "5")
        assert "stop-loss must be a fraction between 0 and 1" in await submit()
        set_field("nb-stop-loss", "0.03")
        set_field("nb-name", "btc-ema")
        assert await submit() == "a bot named 'btc-ema' exists already"  # the engine's own message
        set_field("nb-name", "btc-fast")
        set_field("nb-params", '{"fast": 30, "slow": 10}')
        assert "fast" in await submit()  # the strategy's own range/constraint message
        assert app.screen is form

        set_field("nb-params", '{"fast": 5, "slow": 20}')
        created = next_events(app.bus, BotCreated, name="btc-fast")
        await pilot.press("ctrl+s")
        await asyncio.wait_for(created, 10)
        await workers_done(app, "new-bot")
        await pilot.pause()
        assert not isinstance(app.screen, NewBotScreen)
        assert app.engine is not None
        runner = app.engine.runner_by_name("btc-fast")
        assert runner.rec.params == {"fast": 5, "slow": 20}
        assert runner.rec.capital == runner.funding == 750
        assert str(runner.rec.stop_loss) == "0.03"
        table = app.query_one("#bots-table", DataTable)
        assert cell(table, runner.rec.id, "name") == "btc-fast"
        assert table.cursor_row == table.get_row_index(str(runner.rec.id))


async def test_bot_details_show_its_fills_and_marked_chart(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        assert app.engine is not None
        bot_id = select_bot(app, "btc-rsi")  # trades often enough to have fills in the last 300 candles
        await pilot.press("d")
        screen = app.screen
        assert isinstance(screen, BotDetailScreen) and screen.bot_id == bot_id
        await pilot.pause()
        fills = [f for f in app.engine.fill_log if f.bot_id == bot_id]
        assert screen.query_one("#detail-fills", Tape).rows == min(len(fills), 300)
        chart = screen.query_one("#detail-chart", LineChart)
        candles = list(app.model.candles[("BTC/USDT", "1h")])
        assert len(chart.values) == len(candles) == 300
        markers = chart.markers
        in_view = [f for f in fills if f.ts >= candles[0].ts]
        assert len(markers) == len(in_view) > 0
        for m, f in zip(markers, in_view, strict=True):
            assert m.kind == ("buy" if f.side is Side.BUY else "sell")
            assert candles[int(m.index)].ts == f.ts  # a fill sits on the candle it filled at
            assert m.value == float(f.price)
        assert markers == tuple(fill_markers(candles, fills))
        await pilot.press("escape")
        assert not isinstance(app.screen, BotDetailScreen)


async def test_palette_offers_bot_commands_that_run(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        assert app.engine is not None
        provider = BotCommands(app.screen)
        hits = [hit async for hit in provider.search("pause bot btc-ema")]
        best = max(hits, key=lambda h: h.score)
        assert best.text == "Pause bot btc-ema"
        texts = {h.text async for h in provider.search("bot")}
        assert {"Pause all bots", "Resume all bots", "New bot", "Stop bot btc-rsi"} <= texts
        assert "Resume bot btc-rsi" not in texts  # only what makes sense now: it is running
        paused = next_events(app.bus, BotStateChanged, new=BotState.PAUSED)
        best.command()
        [event] = await asyncio.wait_for(paused, 10)
        assert isinstance(event, BotStateChanged) and event.name == "btc-ema"


async def test_every_binding_has_an_id(make_app: MakeApp) -> None:
    from amarktai_tui.tui.bots_pane import BotsPane

    for cls in (AmarktaiApp, BotsPane, ConfirmScreen, NewBotScreen, BotDetailScreen):
        for binding in cls.BINDINGS:
            assert not isinstance(binding, tuple) and binding.id, f"{cls.__name__}: {binding}"


async def test_locked_data_dir_exits_with_1(make_app: MakeApp, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with EngineLock(lock_path(data)):
        app = make_app(data_dir=data)
        async with app.run_test(size=SIZE) as pilot:
            await asyncio.wait_for(app.engine_done.wait(), 30)
            await pilot.pause()
        assert app.return_code == 1
        assert app.engine is None


async def test_engine_failure_becomes_a_message(make_app: MakeApp, monkeypatch: pytest.MonkeyPatch) -> None:
    original = TradingEngine.process

    def failing(self: TradingEngine, candle: Any) -> None:
        if self.candles_seen == 1000:
            raise RuntimeError("disk on fire")
        original(self, candle)

    monkeypatch.setattr(TradingEngine, "process", failing)
    app = make_app()
    messages = spy_notify(app)
    async with app.run_test(size=SIZE) as pilot:
        await asyncio.wait_for(app.engine_done.wait(), 30)
        await pilot.pause()
        assert "The engine stopped: RuntimeError: disk on fire" in messages
        assert "ENGINE FAILED" in app.query_one(AppHeader).text
        await pilot.press("p")  # commands are refused, not attempted on a dead engine
        await pilot.pause()
        assert "the engine has stopped; restart the app to trade" in messages


async def test_bad_replay_file_exits_with_1(make_app: MakeApp, tmp_path: Path) -> None:
    bad = tmp_path / "BTC_USDT-1h.json"
    bad.write_text("[[1, 2, 3]]")
    app = make_app()
    app.replay = ReplayArgs(files=[str(bad)], speed=0, until_end=False)
    async with app.run_test(size=SIZE) as pilot:
        await asyncio.wait_for(app.engine_done.wait(), 30)
        await pilot.pause()
        assert app.return_code == 1
    assert app.engine is None


async def test_restart_shows_earlier_equity_and_fills(make_app: MakeApp) -> None:
    first = make_app()
    async with first.run_test(size=SIZE) as pilot:
        await replay_done(first, pilot)
        assert first.engine is not None
        samples = list(first.model.equity)
        fills = len(first.engine.fill_log)
        await pilot.press("q")
    assert first.return_code == 0 and first.engine_done.is_set()

    second = make_app()
    async with second.run_test(size=SIZE) as pilot:
        await replay_done(second, pilot)
        assert second.engine is not None
        assert list(second.model.equity)[: len(samples)] == samples  # the ledger's snapshots, read at start
        assert len(second.engine.fill_log) >= fills


async def test_a_failing_strategy_shows_error_and_a_notification(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = BotRunner.on_candle

    def on_candle(self: BotRunner, candle: Any) -> Any:
        if self.rec.name == "btc-donchian" and self.last_ts is not None and self.last_ts >= 1612137600000:
            raise ZeroDivisionError("bad maths")  # from 2021-02-01 on
        return original(self, candle)

    monkeypatch.setattr(BotRunner, "on_candle", on_candle)
    app = make_app()
    messages = spy_notify(app)
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        assert app.engine is not None
        runner = app.engine.runner_by_name("btc-donchian")
        assert runner.rec.state is BotState.ERROR
        assert "bot btc-donchian stopped trading: strategy raised ZeroDivisionError: bad maths" in messages
        assert cell(app.query_one("#bots-table", DataTable), runner.rec.id, "state") == "error"
        others = {r.rec.state for r in app.engine.runners.values() if r is not runner}
        assert others == {BotState.RUNNING}  # one bot's bug never stops the others
