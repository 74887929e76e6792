"""The Audit tab: entries from the bus appear live, newest first; the filters hide what does not match;
the ledger's earlier entries are shown when the engine starts. The real app replays real candles."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import Input, Select, TabbedContent
from tui_helpers import SIZE, replay_done

from amarktai_tui.engine.events import BackupCreated, BotCreated, EngineStopped, EventBus
from amarktai_tui.locations import db_path
from amarktai_tui.ops import audit_store
from amarktai_tui.ops.audit import AuditEntry, AuditNoted, Severity, key_entry, wall_ms
from amarktai_tui.tui.app import AmarktaiApp
from amarktai_tui.tui.audit_pane import SHOWN, AuditPane
from amarktai_tui.tui.bots_pane import StyledTable

WAIT_S = 30  # a guard against a hang, not a wait
T = 1_700_000_000_000


def rows(pane: AuditPane) -> list[tuple[str, str, str]]:
    """(severity, type, bot) of each table row, top to bottom."""
    table = pane.query_one("#audit-table", StyledTable)
    return [(str(r[1]), str(r[2]), str(r[4])) for r in (table.get_row_at(i) for i in range(table.row_count))]


async def until(pilot: Pilot[None], cond: Callable[[], bool], what: str) -> None:
    """Let the app run (its timers draw) until ``cond`` holds."""
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.02)


class PaneApp(App[None]):
    def __init__(self, bus: EventBus) -> None:
        super().__init__()
        self.bus = bus

    def compose(self) -> ComposeResult:
        yield AuditPane(self.bus, id="audit-pane")


async def test_events_appear_newest_first_and_filters_hide_the_rest() -> None:
    bus = EventBus()
    app = PaneApp(bus)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(AuditPane)
        bus.publish(BotCreated(T, 1, "btc-ema"))
        bus.publish(EngineStopped(T, "feed ended"))  # not audited: no row
        bus.publish(AuditNoted(T, key_entry("added", "binance", ts=wall_ms(), masked="••••f3a9")))
        bus.publish(BackupCreated(T, "/d/b.sqlite3", 10, "ab" * 32, "daily"))
        await until(pilot, lambda: len(rows(pane)) == 3, "three rows")
        assert rows(pane) == [
            ("info", "backup_created", "-"),
            ("critical", "api_key_added", "-"),
            ("info", "bot_created", "btc-ema"),
        ]
        pane.query_one("#audit-severity", Select).value = Severity.CRITICAL.value
        await until(pilot, lambda: len(rows(pane)) == 1, "the critical filter")
        assert rows(pane) == [("critical", "api_key_added", "-")]
        bus.publish(BotCreated(T, 2, "eth-rsi"))  # info: hidden while filtered
        bus.publish(AuditNoted(T, key_entry("deleted", "luno", ts=wall_ms(), found=True)))
        await until(pilot, lambda: len(rows(pane)) == 2, "the new critical row")
        assert [r[1] for r in rows(pane)] == ["api_key_deleted", "api_key_added"]

        pane.query_one("#audit-severity", Select).value = "all"
        pane.query_one("#audit-type", Select).value = "bot_created"
        await until(pilot, lambda: [r[1] for r in rows(pane)] == ["bot_created"] * 2, "the type filter")
        await pilot.click("#audit-bot")
        await pilot.press(*"eth-rsi")
        assert pane.query_one("#audit-bot", Input).value == "eth-rsi"
        await until(pilot, lambda: rows(pane) == [("info", "bot_created", "eth-rsi")], "the bot filter")


async def test_the_audit_tab_shows_the_ledgers_entries_then_the_runs(
    make_app: Callable[..., AmarktaiApp], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    earlier = AuditEntry(wall_ms() - 3_600_000, "system_mode_changed", Severity.CRITICAL, "cli", None, None,
                         {"from": "live", "to": "paper", "reason": "earlier"})  # fmt: skip
    audit_store.write(db_path(data), [earlier])
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        assert app.query_one("#tabs", TabbedContent).active == "audit"
        await replay_done(app, pilot)
        pane = app.query_one(AuditPane)
        await until(
            pilot, lambda: any(r[1] == "paper_trade_executed" for r in rows(pane)), "the run's trades"
        )
        shown = rows(pane)
        assert shown[-1] == ("critical", "system_mode_changed", "-")  # the oldest: read from the ledger
        assert {r[1] for r in shown} >= {"bot_created", "paper_trade_executed", "system_mode_changed"}
        assert sum(r[1] == "bot_created" for r in shown) == 3  # the demo bots, once each
        trades = [r for r in shown if r[1] == "paper_trade_executed"]
        assert all(bot.startswith("btc-") for _sev, _type, bot in trades)  # named from the engine's bots
        assert len(shown) < SHOWN and app.engine is not None and len(trades) == app.engine.fills_seen > 0

        app.bus.publish(BackupCreated(app.engine.now_ms, "/x.sqlite3", 1, "00" * 32, "manual"))
        await until(pilot, lambda: rows(pane)[0][1] == "backup_created", "the new event on top")
        app.query_one("#audit-severity", Select).value = "critical"
        await until(pilot, lambda: all(r[0] == "critical" for r in rows(pane)), "the critical filter")
        assert ("critical", "system_mode_changed", "-") in rows(pane)
        assert not any(r[1] in ("paper_trade_executed", "backup_created") for r in rows(pane))
        await asyncio.wait_for(app.stop_engine(), WAIT_S)
