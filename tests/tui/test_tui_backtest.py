"""The Backtest screen (b): driven with Pilot as a person would, checked against ``run_backtest``.

Real parts only: the app replays BTC 1h into its own data dir; the screen's runs read slices of
the real Binance candles written to tmp_path. Every wait is on the run's worker or an event.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from run_screen_helpers import SLICE, open_by_key, short_replay, type_into, write_slice
from textual.pilot import Pilot
from textual.widgets import Input, Label, Select, Static
from tui_helpers import BTC_1H, ETH_1H, REPLAY_TIMEOUT_S, SIZE, replay_done, workers_done

from amarktai_tui.engine.setup import ReplayArgs
from amarktai_tui.locations import db_path
from amarktai_tui.ops.backtest import BacktestRequest, BacktestResult, run_backtest
from amarktai_tui.tui import fmt
from amarktai_tui.tui.app import AmarktaiApp, _all_bindings
from amarktai_tui.tui.bots_pane import StyledTable
from amarktai_tui.tui.palette import BotCommands
from amarktai_tui.tui.screens import backtest as bt
from amarktai_tui.tui.screens.backtest import BacktestScreen, Kpi, figure_values

MakeApp = Callable[..., AmarktaiApp]


@pytest.fixture
def replay(tmp_path: Path) -> ReplayArgs:
    return short_replay(tmp_path)


async def open_screen(app: AmarktaiApp, pilot: Pilot[None]) -> BacktestScreen:
    return await open_by_key(app, pilot, "b", BacktestScreen)


async def choose_strategy(pilot: Pilot[None], screen: BacktestScreen, name: str) -> None:
    """Open the strategy list, move down to ``name``, pick it (the parameter fields are rebuilt)."""
    select = screen.query_one("#bt-strategy", Select)
    select.focus()
    await pilot.press("enter")
    names = list(bt.describe())
    for _ in range(names.index(name) - names.index(str(select.value))):
        await pilot.press("down")
    await pilot.press("enter")
    await pilot.pause()
    assert select.value == name
    assert screen.query(f"#{screen.param_field(screen.strategy().params[0].name)}")  # rebuilt


async def run_and_wait(app: AmarktaiApp, pilot: Pilot[None]) -> None:
    await pilot.press("ctrl+r")
    await asyncio.wait_for(workers_done(app, "backtest"), REPLAY_TIMEOUT_S)
    await pilot.pause()


def error_line(screen: BacktestScreen) -> str:
    return str(screen.query_one("#bt-error", Static).content)


def bot_names(data_dir: Path) -> set[str]:
    conn = sqlite3.connect(db_path(data_dir))
    try:
        return {row[0] for row in conn.execute("SELECT name FROM bots")}
    finally:
        conn.close()


async def test_rsi_reversion_run_equals_run_backtest(make_app: MakeApp, tmp_path: Path) -> None:
    data = write_slice(tmp_path / "candles")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        screen = await open_screen(app, pilot)
        assert screen.query_one("#bt-files", Input).value == app.replay.files[0]  # the running replay's
        await choose_strategy(pilot, screen, "rsi_reversion")
        await type_into(pilot, screen, screen.param_field("period"), "10")
        await type_into(pilot, screen, "bt-files", str(data))
        assert "✓ BTC/USDT 1h · BTC_USDT-1h.json" in str(screen.query_one("#bt-file-check", Static).content)
        await run_and_wait(app, pilot)

        assert error_line(screen) == ""
        shown = screen.result
        assert shown is not None
        direct: BacktestResult = await run_backtest(
            app.settings,
            BacktestRequest(strategy="rsi_reversion", files=(str(data),), params={"period": 10}),
            tmp_path / "direct",
        )
        assert shown.params == direct.params == {"period": 10, "oversold": 30.0, "overbought": 70.0}
        assert direct.trades, "the slice must close some trades for the comparison to mean something"
        assert len(shown.trades) == len(direct.trades)
        assert shown.figures.equity == direct.figures.equity
        assert shown.fills == direct.fills and shown.candles == direct.candles == SLICE
        # what the screen shows is the direct run's figures
        expected = figure_values(direct)
        assert screen.values == expected
        assert expected["Trades"] == str(len(direct.trades))
        for title in bt.KPIS:
            assert screen.query_one(f"#bt-kpi-{bt._slug(title)}", Kpi).value == expected[title]
        table = screen.query_one("#bt-trades", StyledTable)
        assert table.row_count == len(direct.trades)
        for i, t in enumerate(direct.trades, 1):
            row = [str(c) for c in table.get_row(str(i))]
            assert row[1:5] == [fmt.ts(t.entry_ts), fmt.ts(t.exit_ts), "BTC/USDT", fmt.qty(t.qty)]
            assert row[5:8] == [
                fmt.price(t.entry_price),
                fmt.price(t.exit_price),
                fmt.money(t.pnl, signed=True),
            ]
            assert t.return_ is not None and row[8] == f"{t.return_ * 100:+.2f}%"
        assert str(screen.query_one("#bt-progress-text", Label).content) == f"done: {SLICE:,} candles"

        # its own temporary ledger, removed; the user's ledger never saw the backtest's bot
        assert screen.run_dir is not None and not screen.run_dir.exists()
        assert not screen.run_dir.is_relative_to(app.data_dir)
        assert "btc-usdt-1h" not in bot_names(app.data_dir)
        assert bot_names(app.data_dir)  # (the app's own bots are there)

        # back to the cockpit; opened again, the last result is still there
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, BacktestScreen)
        again = await open_screen(app, pilot)
        assert again is screen and again.values == expected
        app.theme = next(t for t in sorted(app.available_themes) if t != app.theme)  # redrawn, same figures
        await pilot.pause()
        assert screen.query_one("#bt-kpi-return", Kpi).value == expected["Return"]
        assert table.row_count == len(direct.trades)


async def test_bad_input_is_one_line_naming_what(make_app: MakeApp, tmp_path: Path) -> None:
    bad = tmp_path / "bad" / "BTC_USDT-1h.json"
    bad.parent.mkdir()
    bad.write_text("[[1606780800000, 1, 2]]")  # a row with 3 of its 6 fields
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        screen = await open_screen(app, pilot)
        await choose_strategy(pilot, screen, "rsi_reversion")
        period = screen.param_field("period")

        async def submit() -> str:
            await pilot.press("ctrl+r")
            await pilot.pause()
            assert not screen.running and screen.result is None  # refused before any run
            return error_line(screen)

        await type_into(pilot, screen, period, "1")
        assert await submit() == "rsi_reversion: period=1 is invalid: must be an integer in [2, 10000]"
        assert screen.query_one(f"#{period}", Input).has_class("bt-invalid")
        assert screen.focused is screen.query_one(f"#{period}", Input)
        await type_into(pilot, screen, period, "ten")
        assert await submit() == "period: 'ten' is not an integer"
        await type_into(pilot, screen, period, "14")
        assert not screen.query_one(f"#{period}", Input).has_class("bt-invalid")  # edited since
        await type_into(pilot, screen, screen.param_field("oversold"), "80")
        assert "oversold" in await submit()  # the strategy's own rule: oversold < overbought
        await type_into(pilot, screen, screen.param_field("oversold"), "30")

        missing = tmp_path / "nowhere" / "BTC_USDT-1h.json"
        await type_into(pilot, screen, "bt-files", str(missing))
        check = str(screen.query_one("#bt-file-check", Static).content)
        assert check == f"✗ {missing}: no such file"
        assert await submit() == f"{missing}: no such file"
        assert screen.query_one("#bt-files", Input).has_class("bt-invalid")

        await type_into(pilot, screen, "bt-files", str(BTC_1H))
        await type_into(pilot, screen, "bt-capital", "-5")
        assert await submit() == "capital must be > 0 (quote currency), got -5"
        await type_into(pilot, screen, "bt-capital", "")

        # a file that looks right by name but holds a bad row: the run itself says so, one line
        await type_into(pilot, screen, "bt-files", str(bad))
        await run_and_wait(app, pilot)
        line = error_line(screen)
        assert line.startswith(f"{bad}: row 1") and "\n" not in line
        assert screen.result is None and not screen.running
        assert str(screen.query_one("#bt-progress-text", Label).content) == "failed; nothing kept"
        assert screen.run_dir is not None and not screen.run_dir.exists()


async def test_escape_cancels_a_run_and_cleans_up(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        commands = {text: call for text, call, _ in BotCommands(app.screen)._commands()}
        commands["Backtest a strategy"]()  # from the command palette this time
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, BacktestScreen)
        await type_into(pilot, screen, "bt-files", f"{BTC_1H}, {ETH_1H}")  # ~11k candles: about a second
        # Pilot's press returns once the app looks idle (up to 2 s while busy): press in a task and
        # stop the run as soon as its engine reports progress
        run = asyncio.create_task(pilot.press("ctrl+r"))
        await asyncio.wait_for(screen.progressed.wait(), REPLAY_TIMEOUT_S)  # the engine is running
        assert screen.running
        await pilot.press("escape")
        await run
        await asyncio.wait_for(workers_done(app, "backtest"), REPLAY_TIMEOUT_S)
        await pilot.pause()
        assert app.screen is screen  # escape stopped the run; it did not leave the screen
        assert screen.result is None and not screen.running
        assert str(screen.query_one("#bt-progress-text", Label).content) == "cancelled; nothing kept"
        assert screen.run_dir is not None and not screen.run_dir.exists()
        await pilot.press("escape")  # now it goes back
        await pilot.pause()
        assert not isinstance(app.screen, BacktestScreen)


def test_backtest_bindings_have_ids_the_keymap_knows() -> None:
    assert {"app.backtest", "backtest.run", "backtest.back"} <= {b.id for b in _all_bindings()}


async def test_the_runs_engine_logs_stay_out_of_the_users_log() -> None:
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Keep()
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    logger = logging.getLogger("amarktai_tui.engine.core")
    try:

        async def engine_task(text: str) -> None:
            logger.warning(text)

        async def backtest() -> None:
            with bt._quiet_run():
                await asyncio.create_task(engine_task("from the backtest's engine"))
                logger.warning("from the backtest itself")
            logger.warning("after the backtest")

        await asyncio.gather(backtest(), engine_task("from the live engine"))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert sorted(seen) == ["after the backtest", "from the live engine"]


def test_backtest_screen_snapshot(
    snap_compare: Any, make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_slice(tmp_path)
    monkeypatch.chdir(tmp_path)  # a relative path: the same text in every checkout
    app = make_app()

    async def run_before(pilot: Pilot[None]) -> None:
        await replay_done(app, pilot)
        screen = await open_screen(app, pilot)
        await choose_strategy(pilot, screen, "rsi_reversion")
        await type_into(pilot, screen, screen.param_field("period"), "10")
        await type_into(pilot, screen, "bt-files", "BTC_USDT-1h.json")
        await run_and_wait(app, pilot)
        assert screen.result is not None
        screen.query_one("#bt-elapsed", Label).update("ran in (wall time, masked for the snapshot)")
        screen.query_one("#bt-trades").focus()
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
