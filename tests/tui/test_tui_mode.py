"""The account mode switch in the TUI (M): the readiness checks listed, the phrase gate, the switch
applied by stopping and restarting the engine, a refused switch, a live start that fails (a replay
runs on paper only) and the way back to paper. Real ledger and engine on the BTC/USDT 1h replay; the
only exchange address used is a closed loopback port (the doctor's clock check)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Input, Static
from tui_helpers import SIZE, replay_done, spy_notify, workers_done

from amarktai_tui.config import ExchangeSettings, Settings
from amarktai_tui.domain.enums import LifecycleStage, TradingMode
from amarktai_tui.ledger.store import LedgerStore, StageChange
from amarktai_tui.locations import db_path
from amarktai_tui.ops.doctor import Check
from amarktai_tui.ops.mode import CONFIRM_PHRASE, current_mode, switch_mode
from amarktai_tui.tui.app import AmarktaiApp
from amarktai_tui.tui.header import AppHeader
from amarktai_tui.tui.palette import BotCommands
from amarktai_tui.tui.screens.mode_switch import ModeSwitchScreen

MakeApp = Callable[..., AmarktaiApp]
TIMEOUT_S = 60  # a guard against a hang, not a wait
CLOSED_PORT = "http://127.0.0.1:9"  # nothing listens: the clock check fails at once, no network


def mode_rows(data: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(f"file:{db_path(data)}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT from_mode, to_mode, actor FROM mode_switches ORDER BY id").fetchall()
    finally:
        conn.close()


def check_lines(screen: ModeSwitchScreen) -> list[str]:
    return [str(s.content) for s in screen.query("#mode-checks Static").results(Static)]


async def open_modal(app: AmarktaiApp, pilot: Pilot[None]) -> ModeSwitchScreen:
    await pilot.press("M")
    screen = app.screen
    assert isinstance(screen, ModeSwitchScreen)
    await asyncio.wait_for(screen.ready.wait(), TIMEOUT_S)
    await pilot.pause()
    return screen


async def switched(app: AmarktaiApp, pilot: Pilot[None]) -> None:
    """Wait for the switch (the modal's worker, which waits for the app's ``mode`` worker: engine
    stopped, switch made or refused, new engine worker started); the caller then waits for the new
    engine's replay or its failed start."""
    await workers_done(app, "mode-switch")
    await workers_done(app, "mode")
    await pilot.pause()


async def start_failed(app: AmarktaiApp, pilot: Pilot[None]) -> None:
    """Wait for the engine worker to end without an engine (a refused live start)."""
    await asyncio.wait_for(app.engine_done.wait(), TIMEOUT_S)
    await pilot.pause()
    await pilot.pause()


async def make_live(app: AmarktaiApp, name: str) -> None:
    """Put a demo bot at stage live in the ledger (through the running engine's store)."""
    engine = app.engine
    assert engine is not None
    rec = engine.runner_by_name(name).rec
    assert rec.id is not None
    change = StageChange(rec.id, engine.now_ms, rec.stage, LifecycleStage.LIVE, "user", "test: live bot", {})
    await engine.store.change_stage(change)


def header(app: AmarktaiApp) -> str:
    return app.query_one(AppHeader).text


async def test_m_opens_the_modal_and_a_failing_doctor_keeps_the_phrase_closed(
    make_app: MakeApp, settings: Settings
) -> None:
    settings.exchanges = {"binance": ExchangeSettings(api_url=CLOSED_PORT, timeout_s=2)}
    app = make_app(settings_=settings)
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        await make_live(app, "btc-ema")  # a live bot on binance, and no key saved
        screen = await open_modal(app, pilot)
        assert screen.current is TradingMode.PAPER and screen.target is TradingMode.LIVE
        assert str(screen.query_one("#mode-badge", Static).content).strip() == "PAPER"
        lines = check_lines(screen)
        assert any(line.startswith("FAIL keys  binance") for line in lines), lines
        assert any(line.startswith("FAIL clock  binance") for line in lines), lines
        assert any(line.startswith("PASS database") for line in lines), lines
        assert any(line.startswith("-> ") for line in lines)  # what to do, under each failure
        assert "readiness checks failed" in str(screen.query_one("#mode-status", Static).content)
        assert not screen.query_one("#mode-phrase-box").display
        assert screen.query_one("#mode-phrase", Input).is_disabled
        assert screen.query_one("#mode-ok", Button).disabled
        await pilot.press("escape")
        assert not isinstance(app.screen, ModeSwitchScreen)
        assert app.engine is not None and app.engine.mode is TradingMode.PAPER
    assert mode_rows(app.data_dir) == []


async def test_phrase_gate_then_a_refusal_on_the_second_run_restarts_on_paper(
    make_app: MakeApp, settings: Settings
) -> None:
    settings.exchanges = {"binance": ExchangeSettings(api_url=CLOSED_PORT, timeout_s=2)}
    app = make_app(settings_=settings)
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        first = app.engine
        screen = await open_modal(app, pilot)
        lines = check_lines(screen)
        assert lines and all(line.startswith("PASS ") for line in lines), lines
        phrase, ok = screen.query_one("#mode-phrase", Input), screen.query_one("#mode-ok", Button)
        assert screen.query_one("#mode-phrase-box").display and not phrase.is_disabled
        assert phrase.has_focus and ok.disabled
        for wrong in ("confirm_live_trading", "CONFIRM LIVE TRADING", f"{CONFIRM_PHRASE} "):
            phrase.value = ""
            await pilot.press(*wrong)
            assert phrase.value == wrong and ok.disabled
            await pilot.press("enter")  # nothing happens with a wrong phrase
            assert app.screen is screen and app.engine is first
        phrase.value = CONFIRM_PHRASE
        await pilot.pause()
        assert not ok.disabled
        # a bot goes live (no key) between the checks and the confirmation: the gate's second run fails
        await make_live(app, "btc-rsi")
        await pilot.press("enter")
        await switched(app, pilot)
        assert app.screen is screen  # the modal shows why and stays open
        error = str(screen.query_one("#mode-error", Static).content)
        assert error.startswith("Refused: doctor: keys: binance"), error
        assert any(line.startswith("FAIL keys") for line in check_lines(screen))
        assert not screen.query_one("#mode-phrase-box").display and ok.disabled
        await replay_done(app, pilot)  # the engine started again, on paper
        assert app.engine is not None and app.engine is not first
        assert app.engine.mode is TradingMode.PAPER and " PAPER " in header(app)
        await pilot.press("escape")
        assert app.query_one("#bots-table").has_focus
    assert mode_rows(app.data_dir) == []


async def test_live_from_the_tui_fails_to_start_on_a_replay_then_paper_runs_again(
    make_app: MakeApp,
) -> None:
    app = make_app()
    notes = spy_notify(app)
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        screen = await open_modal(app, pilot)
        screen.query_one("#mode-phrase", Input).value = CONFIRM_PHRASE
        await pilot.pause()
        await pilot.press("enter")
        await switched(app, pilot)
        await start_failed(app, pilot)
        assert not isinstance(app.screen, ModeSwitchScreen)
        assert current_mode(app.data_dir) is TradingMode.LIVE
        # the live start is refused (a replay runs on paper only): the app stays open and says why
        assert app.is_running and app.engine is None
        assert " LIVE " in header(app) and "NOT TRADING: LiveSetupError" in header(app)
        assert any("a replay runs on paper only" in n and "M switches" in n for n in notes), notes
        await pilot.press("P")  # no engine: the command says why
        assert notes[-1].startswith("NOT TRADING: LiveSetupError")

        screen = await open_modal(app, pilot)
        assert screen.current is TradingMode.LIVE and screen.target is TradingMode.PAPER
        assert "live" in screen.query_one("#mode-badge").classes
        assert not check_lines(screen)  # no checks to go back to paper
        await pilot.press("enter")  # one confirmation (the switch button has the focus)
        await switched(app, pilot)
        await replay_done(app, pilot)
        assert app.engine is not None and app.engine.mode is TradingMode.PAPER
        assert " PAPER " in header(app) and "NOT TRADING" not in header(app)
        assert len(app.engine.runners) == 3
    assert mode_rows(app.data_dir) == [("paper", "live", "user"), ("live", "paper", "user")]


async def test_an_account_left_live_shows_the_reason_and_switches_to_paper(
    make_app: MakeApp, settings: Settings, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    store = await LedgerStore.open(db_path(data))
    await store.close()
    await switch_mode(settings, data, TradingMode.LIVE, actor="cli", phrase=CONFIRM_PHRASE)
    app = make_app()
    notes = spy_notify(app)
    async with app.run_test(size=SIZE) as pilot:
        await start_failed(app, pilot)
        assert app.is_running and app.engine is None
        assert " LIVE " in header(app) and "a replay runs on paper only" in header(app)
        assert any("The engine did not start" in n for n in notes)
        texts = [str(h.text) async for h in BotCommands(app.screen).search("account mode")]
        assert texts == ["Account mode: paper or live"]
        screen = await open_modal(app, pilot)
        await pilot.click("#mode-ok")
        await switched(app, pilot)
        await replay_done(app, pilot)
        assert app.engine is not None and app.engine.mode is TradingMode.PAPER
        assert " PAPER " in header(app)
        assert screen.target is TradingMode.PAPER
    assert mode_rows(data) == [("paper", "live", "cli"), ("live", "paper", "user")]


FIXED_CHECKS = [
    Check("database", True, "ledger ok (integrity_check)", ""),
    Check("writable", True, "data dir writable; the running engine holds the ledger", ""),
    Check(
        "keys", False, "binance: no key saved", "amarktai keys set binance, then amarktai keys test binance"
    ),
    Check("reconcile", True, "no reconciliation yet", ""),
    Check("clock", True, "binance: clock skew +12 ms (limit 1000 ms; round trip 40 ms)", ""),
    Check("errors", True, "no error storm in the last 60 min", ""),
    Check("breakers", True, "no account breaker tripped", ""),
    Check("withdraw", True, "no key can withdraw", ""),
    Check("disk", True, "50,000 MB free (need 500 MB)", ""),
]


def test_mode_modal_snapshot(snap_compare: Any, make_app: MakeApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """The modal with one failing check (fixed checks: the real ones name tmp paths and free space)."""

    async def fixed_doctor(*_args: object, **_kwargs: object) -> list[Check]:
        return FIXED_CHECKS

    monkeypatch.setattr("amarktai_tui.tui.screens.mode_switch.run_doctor", fixed_doctor)
    app = make_app()

    async def run_before(pilot: Pilot[None]) -> None:
        await replay_done(app, pilot)
        await open_modal(app, pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
