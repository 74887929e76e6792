"""Bot lifecycle stages in the TUI: the Stage column and stage line of the Bots pane, the promote and
demote modals (Pilot), the palette entries; every change audited in the real ledger."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from textual.widgets import DataTable, Input, Static
from tui_helpers import SIZE, replay_done, spy_notify

from amarktai_tui.config import PromotionConfig, Settings
from amarktai_tui.domain.enums import LifecycleStage
from amarktai_tui.locations import db_path
from amarktai_tui.tui.app import AmarktaiApp
from amarktai_tui.tui.palette import BotCommands
from amarktai_tui.tui.screens.stage_change import StageChangeScreen

MakeApp = Callable[..., AmarktaiApp]

# only the demo Donchian bot meets these on the BTC/USDT 1h replay (at its third trade: 2 wins, +28%);
# the EMA bot's win rate and the RSI bot's return never both get there
LOOSE = PromotionConfig(
    min_days=Decimal(7),
    min_trades=3,
    min_win_rate=Decimal("0.6"),
    min_return=Decimal("0.2"),
    max_drawdown=Decimal("0.3"),
    min_profit_factor=Decimal("1.2"),
)


def ledger_rows(app: AmarktaiApp, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{db_path(app.data_dir)}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def select(app: AmarktaiApp, name: str) -> int:
    assert app.engine is not None
    bot_id = app.engine.runner_by_name(name).rec.id
    table = app.query_one("#bots-table", DataTable)
    table.focus()
    table.move_cursor(row=table.get_row_index(str(bot_id)))
    return bot_id


async def modal_done(app: AmarktaiApp, modal: object) -> None:
    """Wait for the modal's engine command (its worker) to finish."""
    for w in [w for w in app.workers if w.node is modal]:
        await w.wait()


async def test_promote_and_demote_through_the_modals_are_audited(
    make_app: MakeApp, settings: Settings
) -> None:
    settings.promotion = LOOSE
    app = make_app(settings_=settings)
    notes = spy_notify(app)
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        engine = app.engine
        assert engine is not None
        stages = {r.rec.name: r.rec.stage for r in engine.runners.values()}
        assert stages == {
            "btc-ema": LifecycleStage.PAPER_TRAINING,
            "btc-rsi": LifecycleStage.PAPER_TRAINING,
            "btc-donchian": LifecycleStage.ELIGIBLE_FOR_LIVE,
        }
        table = app.query_one("#bots-table", DataTable)
        don = select(app, "btc-donchian")
        await pilot.pause()
        assert str(table.get_cell(str(don), "stage")) == "eligible"
        line = str(app.query_one("#stage-progress", Static).content)
        assert line.startswith(
            "btc-donchian: eligible for live: L promotes it (asks first), D demotes it · trades "
        )

        # L asks first; escape changes nothing
        await pilot.press("L")
        modal = app.screen
        assert isinstance(modal, StageChangeScreen)
        assert "Promote btc-donchian to live?" in str(modal.query_one("#stage-question").render())
        checks = str(modal.query_one("#stage-checks", Static).content).splitlines()
        # eligible at its third trade; four trades later the win rate has fallen: shown, not hidden
        assert checks == [
            "✓ trades 7 ok",
            "✗ win rate 28.5%/60%",
            "✓ days 228.8 ok",
            "✓ return 23.6% ok",
            "✓ max drawdown 12.6% ok",
            "✓ profit factor 4.56 ok",
        ]
        explanation = str(modal.query_one("#stage-explanation", Static).content)
        assert explanation.endswith("Since it became eligible it no longer meets: win rate 28.5%/60%.")
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, StageChangeScreen)
        assert engine.runners[don].rec.stage is LifecycleStage.ELIGIBLE_FOR_LIVE

        # L again, a reason, enter: live, recorded with the user as the actor
        await pilot.press("L")
        modal = app.screen
        assert isinstance(modal, StageChangeScreen)
        await pilot.press(*"figures look right", "enter")
        await modal_done(app, modal)
        await pilot.pause()
        assert not isinstance(app.screen, StageChangeScreen)
        assert engine.runners[don].rec.stage is LifecycleStage.LIVE
        assert str(table.get_cell(str(don), "stage")) == "live"
        assert "btc-donchian promoted to live (recorded: figures look right)" in notes

        # D: an empty reason is refused inline, then a reason demotes it
        await pilot.press("D")
        modal = app.screen
        assert isinstance(modal, StageChangeScreen)
        await pilot.press("enter")
        await modal_done(app, modal)
        await pilot.pause()
        assert app.screen is modal
        assert (
            str(modal.query_one("#stage-error", Static).content) == "btc-donchian: a demotion needs a reason"
        )
        modal.query_one("#stage-reason", Input).value = "more paper first"
        await pilot.press("enter")
        await modal_done(app, modal)
        await pilot.pause()
        assert not isinstance(app.screen, StageChangeScreen)
        assert engine.runners[don].rec.stage is LifecycleStage.PAPER_TRAINING

        # a paper bot: the modal says why not, and the engine refuses
        rsi = select(app, "btc-rsi")
        await pilot.pause()
        assert str(table.get_cell(str(rsi), "stage")).startswith("paper ")
        await pilot.press("L")
        modal = app.screen
        assert isinstance(modal, StageChangeScreen)
        await pilot.press("enter")  # the default reason
        await modal_done(app, modal)
        await pilot.pause()
        error = str(modal.query_one("#stage-error", Static).content)
        assert error.startswith(
            "btc-rsi is paper_training: only an eligible_for_live bot can be promoted (trades "
        )
        await pilot.press("escape")
        await pilot.pause()
        assert engine.runners[rsi].rec.stage is LifecycleStage.PAPER_TRAINING

    rows = ledger_rows(app, "SELECT b.name, s.from_stage, s.to_stage, s.actor, s.reason FROM stage_changes s"
                            " JOIN bots b ON b.id = s.bot_id ORDER BY s.id")  # fmt: skip
    assert [tuple(r.values()) for r in rows] == [
        ("btc-donchian", "paper_training", "eligible_for_live", "engine", rows[0]["reason"]),
        ("btc-donchian", "eligible_for_live", "live", "user", "figures look right"),
        ("btc-donchian", "live", "paper_training", "user", "more paper first"),
    ]
    assert rows[0]["reason"].startswith("met every promotion criterion: trades ")


async def test_palette_offers_promote_for_eligible_bots_only(make_app: MakeApp, settings: Settings) -> None:
    settings.promotion = LOOSE
    app = make_app(settings_=settings)
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        texts = [str(h.text) async for h in BotCommands(app.screen).search("promote bot")]
        assert "Promote bot btc-donchian to live" in texts
        assert not any("btc-rsi" in t or "btc-ema" in t for t in texts)
        demote = [str(h.text) async for h in BotCommands(app.screen).search("demote bot")]
        assert "Demote bot btc-donchian to paper" in demote and not any("btc-rsi" in t for t in demote)


async def test_stage_line_follows_the_cursor_with_progress_on_every_criterion(make_app: MakeApp) -> None:
    app = make_app()  # the default criteria: no demo bot is eligible on this replay
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        assert app.engine is not None
        for name in ("btc-ema", "btc-rsi", "btc-donchian"):
            bot_id = select(app, name)
            await pilot.pause()
            line = str(app.query_one("#stage-progress", Static).content)
            verdict = app.engine.stages.verdict(bot_id)
            assert verdict is not None and not verdict.ok
            assert line == f"{name}: paper training · " + verdict.summary(short=True, sep=" · ")
            assert [p.split()[0] for p in line.split(" · ")[1:]] == [
                "trades",
                "win",
                "days",
                "ret",
                "dd",
                "pf",
            ]
            met = f"paper {verdict.met}/6"
            assert str(app.query_one("#bots-table", DataTable).get_cell(str(bot_id), "stage")) == met


def test_promote_modal_snapshot(snap_compare: Any, make_app: MakeApp, settings: Settings) -> None:
    settings.promotion = LOOSE
    app = make_app(settings_=settings)

    async def run_before(pilot: Any) -> None:
        await replay_done(app, pilot)
        select(app, "btc-donchian")
        await pilot.pause()
        await pilot.press("L")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
