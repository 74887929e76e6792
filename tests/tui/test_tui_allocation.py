"""Capital allocation preview (A), the engine commands in the palette, refusals after a restart.

Driven by keys on the real app: the BTC 1h replay, a real engine, a real ledger in a tmp dir.
With ``[allocator] min_trades = 3`` the three demo bots are ranked at the end of the replay.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot
from textual.widgets import Button, DataTable, RichLog, Static
from tui_helpers import SIZE, commands_done, replay_done, spy_notify

from amarktai_tui.config import AllocatorConfig, Settings, load_settings
from amarktai_tui.ledger import reader
from amarktai_tui.ledger.schema import connect_readonly, migrate
from amarktai_tui.locations import db_path
from amarktai_tui.risk.breakers import Breaker
from amarktai_tui.tui import fmt
from amarktai_tui.tui.app import AmarktaiApp, _all_bindings
from amarktai_tui.tui.breakers_pane import rule_name
from amarktai_tui.tui.header import AppHeader
from amarktai_tui.tui.palette import BotCommands
from amarktai_tui.tui.screens.allocation import AllocationScreen, PlanTable, change_text, score_text
from amarktai_tui.tui.screens.confirm import ConfirmScreen
from amarktai_tui.tui.screens.reset_breaker import ResetBreakerScreen
from amarktai_tui.tui.widgets.tape import Tape

MakeApp = Callable[..., AmarktaiApp]


def allocating_app(make_app: MakeApp, settings: Settings) -> AmarktaiApp:
    """The shared settings (breakers wide open) with bots ranked after 3 closed trades."""
    settings.allocator = AllocatorConfig(min_trades=3)
    return make_app(settings_=settings)


def ledger_rows(app: AmarktaiApp, sql: str) -> list[Any]:
    assert app.engine is not None
    conn = connect_readonly(str(app.engine.store.path))
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def allocation_events(app: AmarktaiApp) -> list[Any]:
    return ledger_rows(app, "SELECT * FROM ledger_events WHERE kind = 'allocation' ORDER BY id")


def capitals(app: AmarktaiApp) -> dict[int, Decimal]:
    """Each bot's capital as the ledger's ``bots`` table holds it."""
    return {int(r["id"]): Decimal(r["capital"]) for r in ledger_rows(app, "SELECT id, capital FROM bots")}


def row_text(table: DataTable[Any], row: str) -> dict[str, str]:
    return {str(col.value): str(table.get_cell(row, col)) for col in table.columns}


async def open_preview(app: AmarktaiApp, pilot: Pilot[None]) -> AllocationScreen:
    await pilot.press("A")
    await pilot.pause()
    assert isinstance(app.screen, AllocationScreen)
    return app.screen


async def test_preview_shows_every_bot_and_y_applies_the_changes(
    make_app: MakeApp, settings: Settings
) -> None:
    app = allocating_app(make_app, settings)
    messages = spy_notify(app)
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        engine = app.engine
        assert engine is not None
        plan = engine.allocation_plan()
        assert plan.changes, "with min_trades = 3 the 2020-2021 data moves some capital"
        before = capitals(app)

        modal = await open_preview(app, pilot)
        table = modal.query_one("#allocate-table", PlanTable)
        assert app.focused is table
        assert table.row_count == len(plan.allocations) == len(engine.runners)
        for a in plan.allocations:
            cells = row_text(table, str(a.bot_id))
            assert cells["bot"] == a.name and cells["tier"] == str(a.tier)
            assert cells["score"] == score_text(a.score)
            assert cells["capital"] == fmt.money(a.old_capital)
            assert cells["target"] == fmt.money(a.target)
            assert cells["new"] == fmt.money(a.new_capital)
            assert cells["change"] == change_text(a)
            assert cells["reason"] == a.reason
        highlighted = {
            int(str(row.key.value))
            for row in table.ordered_rows
            if (name := table.get_cell(row.key, "bot")) and isinstance(name, Text)
            if name.style == table.changed_style()
        }
        assert highlighted == {a.bot_id for a in plan.changes}
        for a in plan.changes:  # "+/-x (y%)" of the current capital
            delta = a.new_capital - a.old_capital
            pct = f"{delta / a.old_capital * 100:+.1f}%"
            assert row_text(table, str(a.bot_id))["change"] == f"{fmt.money(delta, signed=True)} ({pct})"
        summary = str(modal.query_one("#allocate-summary", Static).content)
        assert summary == f"{len(plan.changes)} of {len(plan.allocations)} bots change."
        assert not modal.query_one("#allocate-ok", Button).disabled

        await pilot.press("y")
        await commands_done(app, pilot)
        assert not isinstance(app.screen, AllocationScreen)
        n = len(plan.changes)
        assert f"{n} bot{'' if n == 1 else 's'} re-allocated" in messages

        events = allocation_events(app)
        assert len(events) == 2 * n  # a pair per bot: the bot +d, the account (the pool) -d
        after = capitals(app)
        for bot_row, account_row in zip(events[::2], events[1::2], strict=True):
            assert bot_row["bot_id"] is not None and account_row["bot_id"] is None
            assert Decimal(bot_row["amount"]) == -Decimal(account_row["amount"]) != 0
            assert bot_row["ts"] == account_row["ts"]
            bot_id = int(bot_row["bot_id"])
            assert after[bot_id] == before[bot_id] + Decimal(bot_row["amount"])
            assert engine.runners[bot_id].rec.capital == after[bot_id]
        for a in plan.changes:  # no bot held a position bigger than its free cash allows
            assert after[a.bot_id] == a.new_capital
        for a in plan.allocations:
            if not a.changed:
                assert after[a.bot_id] == before[a.bot_id]

        modal = await open_preview(app, pilot)  # the targets are met: nothing left to move
        assert engine.allocation_plan().changes == ()
        assert modal.query_one("#allocate-ok", Button).disabled
        assert str(modal.query_one("#allocate-summary", Static).content).startswith("Nothing to apply")
        await pilot.press("y", "enter")  # apply is off: nothing happens
        await commands_done(app, pilot)
        assert app.screen is modal
        assert len(allocation_events(app)) == 2 * n
        await pilot.press("escape")
        assert not isinstance(app.screen, AllocationScreen)


async def test_cancel_changes_nothing(make_app: MakeApp, settings: Settings) -> None:
    app = allocating_app(make_app, settings)
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        engine = app.engine
        assert engine is not None and engine.allocation_plan().changes
        before = capitals(app)
        for key in ("n", "escape"):
            await open_preview(app, pilot)
            await pilot.press(key)
            await commands_done(app, pilot)
            assert not isinstance(app.screen, AllocationScreen)
        modal = await open_preview(app, pilot)
        await pilot.click("#allocate-cancel")
        await commands_done(app, pilot)
        assert app.screen is not modal
        assert allocation_events(app) == []
        assert capitals(app) == before
        assert {i: r.rec.capital for i, r in engine.runners.items()} == before


async def palette_run(app: AmarktaiApp, pilot: Pilot[None], query: str) -> str:
    """Open the palette (ctrl+p), type ``query``, wait for its search, press enter; the top command's text."""
    await pilot.press("ctrl+p")
    palette = app.screen
    assert isinstance(palette, CommandPalette)
    await pilot.press(*query)
    searches = [w for w in app.workers if w.node is palette]
    if searches:
        await app.workers.wait_for_complete(searches)
    await pilot.pause()
    commands = palette.query_one(CommandList)
    assert commands.highlighted == 0
    top = str(commands.get_option_at_index(0).prompt).splitlines()[0]  # the command, not its help
    await pilot.press("enter")
    await pilot.pause()
    return top


async def test_palette_halt_resume_and_allocate(make_app: MakeApp, settings: Settings) -> None:
    app = allocating_app(make_app, settings)
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        engine = app.engine
        assert engine is not None

        assert await palette_run(app, pilot, "halt") == "Emergency stop: halt all trading"
        assert isinstance(app.screen, ConfirmScreen)  # asks first, like H
        await pilot.press("y")
        await commands_done(app, pilot)
        assert (Breaker.HALT, None) in engine.board.active
        assert "HALTED" in app.query_one(AppHeader).text

        provider = BotCommands(app.screen)
        texts = {h.text async for h in provider.search("trading")}
        assert "Resume trading after the emergency stop" in texts  # halted: resume, not halt
        assert "Emergency stop: halt all trading" not in texts
        assert await palette_run(app, pilot, "resume trading") == "Resume trading after the emergency stop"
        assert isinstance(app.screen, ResetBreakerScreen)
        await pilot.press("escape")

        assert await palette_run(app, pilot, "allocate") == "Allocate capital"
        assert isinstance(app.screen, AllocationScreen)
        await pilot.press("n")


async def test_palette_resets_a_tripped_breaker(make_app: MakeApp) -> None:
    app = make_app(settings_=load_settings(None))  # default thresholds: the replay trips breakers
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        engine = app.engine
        assert engine is not None
        trips = sorted(engine.board.active.values(), key=lambda t: t.id)
        assert trips
        provider = BotCommands(app.screen)
        texts = [h.text async for h in provider.search("reset breaker")]
        wanted = [f"Reset breaker {rule_name(t.breaker)} on {app.scope_name(t.bot_id)}" for t in trips]
        assert set(wanted) <= set(texts)

        assert await palette_run(app, pilot, wanted[0].lower()) == wanted[0]
        modal = app.screen
        assert isinstance(modal, ResetBreakerScreen)
        assert trips[0].message in str(modal.query_one("#reset-explanation", Static).content)
        await pilot.press(*"checked from the palette", "enter")
        for w in [w for w in app.workers if w.node is modal]:
            await w.wait()
        await pilot.pause()
        assert not isinstance(app.screen, ResetBreakerScreen)
        rows = ledger_rows(app, "SELECT trip_id, reason FROM breaker_resets")
        assert [(r["trip_id"], r["reason"]) for r in rows] == [(trips[0].id, "checked from the palette")]


async def test_refusals_of_earlier_runs_are_shown_after_a_restart(make_app: MakeApp, tmp_path: Path) -> None:
    first = make_app(settings_=load_settings(None))  # default thresholds: tripped bots refuse entries
    async with first.run_test(size=SIZE) as pilot:
        await replay_done(first, pilot)
        assert first.engine is not None and first.engine.refusals
        await pilot.press("q")
    conn = connect_readonly(str(db_path(tmp_path / "data")))
    try:
        past = reader.refusals(conn, limit=200)[::-1]  # oldest first
    finally:
        conn.close()
    assert past and all(r.gate and r.bot for r in past)
    live = first.engine.refusals[-1]
    assert (past[-1].updated_ts, past[-1].bot, past[-1].gate) == (live[0], live[1], live[3].gate.value)
    assert past[-1].figures == dict(live[3].figures)

    second = make_app(settings_=load_settings(None))
    async with second.run_test(size=SIZE) as pilot:
        await replay_done(second, pilot)
        engine = second.engine
        assert engine is not None
        await pilot.press("3")
        await pilot.pause()
        tape = second.query_one("#refusals-tape", Tape)
        assert tape.rows == min(len(past) + len(engine.refusals), 200)
        shown = past[max(0, len(past) + len(engine.refusals) - 200) :]
        assert shown, "the first run's refusals, read from the ledger, come first on the tape"
        lines = [strip.text for strip in tape.query_one(RichLog).lines]
        for line, r in zip(lines, shown, strict=False):
            assert line.startswith(f"{fmt.ts(r.updated_ts)}  {r.bot}")
            assert f" {r.gate} " in line
            assert r.reject_reason[:20] in line


def test_reader_refusals_on_a_fresh_and_an_old_ledger(tmp_path: Path) -> None:
    fresh = sqlite3.connect(tmp_path / "fresh.sqlite3")
    migrate(fresh)
    assert reader.refusals(fresh) == []
    fresh.close()
    old = sqlite3.connect(tmp_path / "old.sqlite3")  # before schema v2: no gate column
    old.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, bot_id INTEGER)")
    assert reader.refusals(old) == []
    old.close()


def test_allocation_bindings_have_ids_the_keymap_knows() -> None:
    for binding in AllocationScreen.BINDINGS:
        assert not isinstance(binding, tuple) and binding.id, binding
    ids = {b.id for b in _all_bindings()}
    assert {"app.allocate", "allocate.apply", "allocate.cancel"} <= ids
