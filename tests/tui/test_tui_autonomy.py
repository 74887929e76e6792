"""The Autonomy tab (8): proposals made through the engine's Adjuster appear and are accepted,
rejected and reverted from the tab (the bots change in the engine, the answers are ledger rows);
evolution generations, a bot's lineage and quarantines written into the ledger show up. The real
app replays real candles (expert mode, the default)."""

from __future__ import annotations

import io
import sqlite3
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import DataTable, Select, Static, TabbedContent
from tui_helpers import SIZE, commands_done, replay_done, spy_notify

from amarktai_tui.autonomy import evolution_store
from amarktai_tui.autonomy.changes import Adjuster, Change, adjuster_for
from amarktai_tui.autonomy.dna import Dna
from amarktai_tui.autonomy.evolution_store import GenerationRow, MemberRow
from amarktai_tui.autonomy.healing import insert_quarantine
from amarktai_tui.config import Settings
from amarktai_tui.domain.enums import RiskMode
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.engine.events import BotQuarantined, GenerationEvolved
from amarktai_tui.engine.spec import BotSpec
from amarktai_tui.strategies.registry import make_strategy
from amarktai_tui.tui import fmt
from amarktai_tui.tui.app import AmarktaiApp
from amarktai_tui.tui.autonomy_pane import AutonomyPane
from amarktai_tui.tui.bots_pane import StyledTable
from amarktai_tui.tui.screens.confirm import ConfirmScreen

MakeApp = Callable[..., AmarktaiApp]
WAIT_S = 30  # a guard against a hang, not a wait
RUN = "evo-test"
T0 = 1_626_000_000_000  # ms UTC: the recorded generations' time (fixed: the snapshot is deterministic)


async def until(pilot: Pilot[None], cond: Callable[[], bool], what: str) -> None:
    """Let the app run (its timers read and draw) until ``cond`` holds."""
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.02)


def cells(pane: AutonomyPane, table_id: str) -> list[list[str]]:
    table = pane.query_one(f"#{table_id}", StyledTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def rendered(widget: Static) -> str:
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(widget.content)
    return console.export_text()


@pytest.fixture
def quiet(settings: Settings) -> Settings:
    """The default settings without the learning and healing jobs: the replay makes no proposals of
    its own, so the tab shows exactly what a test writes."""
    settings.autonomy.learning.enabled = False
    settings.autonomy.healing.enabled = False
    return settings


async def open_tab(app: AmarktaiApp, pilot: Pilot[None]) -> tuple[TradingEngine, Adjuster, AutonomyPane]:
    await replay_done(app, pilot)
    await pilot.press("8")
    assert app.query_one("#tabs", TabbedContent).active == "autonomy"
    engine = app.engine
    assert engine is not None
    adjuster = adjuster_for(engine)
    assert adjuster is not None and adjuster.mode == "expert"
    pane = app.query_one(AutonomyPane)
    await until(pilot, lambda: pane.reads > 0, "the first read")
    return engine, adjuster, pane


def bot(engine: TradingEngine, strategy: str) -> Any:
    return next(r for r in engine.runners.values() if r.rec.strategy == strategy)


async def answer(app: AmarktaiApp, pilot: Pilot[None], key: str, word: str) -> None:
    """Press ``key`` on the tab, check the modal asks, confirm with y, wait for the command."""
    await pilot.press(key)
    assert isinstance(app.screen, ConfirmScreen)
    assert word in str(app.screen.query_one("#confirm-question", Static).content)
    await pilot.press("y")
    await commands_done(app, pilot)


async def test_proposals_are_accepted_rejected_and_reverted_from_the_tab(
    make_app: MakeApp, quiet: Settings
) -> None:
    app = make_app(settings_=quiet)
    async with app.run_test(size=SIZE) as pilot:
        messages = spy_notify(app)
        engine, adjuster, pane = await open_tab(app, pilot)
        assert "EXPERT" in str(pane.query_one("#autonomy-mode", Static).content)
        sma, rsi = bot(engine, "sma_cross"), bot(engine, "rsi_reversion")
        params_before = dict(sma.rec.params)
        size_before = rsi.rec.size_multiplier
        new_fast = int(params_before["fast"]) - 2
        p1 = await adjuster.submit(
            Change(sma.rec.id, "optimizer", "params", {"fast": new_fast}, "walk-forward best")
        )
        p2 = await adjuster.submit(
            Change(
                rsi.rec.id, "learning", "size_multiplier", size_before * Decimal("0.8"), "win rate 40% < 45%"
            )
        )
        p3 = await adjuster.submit(
            Change(rsi.rec.id, "learning", "take_profit", Decimal("0.05"), "win/loss 1.2")
        )
        assert [p.status for p in (p1, p2, p3)] == ["proposed"] * 3
        assert (
            sma.rec.params == params_before and rsi.rec.size_multiplier == size_before
        )  # expert: nothing yet

        await until(
            pilot, lambda: [p.id for p in pane.view.pending] == [p1.id, p2.id, p3.id], "the proposals"
        )
        shown = cells(pane, "autonomy-proposals")
        assert [r[0] for r in shown] == [f"#{p1.id}", f"#{p2.id}", f"#{p3.id}"]
        assert shown[0][2:5] == [sma.rec.name, "optimizer", "params"]
        assert shown[0][5] == f"fast {params_before['fast']}→{new_fast}"
        assert (
            shown[1][5] == f"x{size_before.normalize():f} → x{(size_before * Decimal('0.8')).normalize():f}"
        )

        # a: the first row (the params proposal) is under the cursor
        await answer(app, pilot, "a", f"#{p1.id}")
        accepted1 = [a for a in adjuster.history(status="accepted") if a.ref_id == p1.id]
        assert len(accepted1) == 1
        assert sma.rec.params["fast"] == new_fast == accepted1[0].after["fast"]
        assert f"#{p1.id} accepted" in messages[-1]
        await until(pilot, lambda: [p.id for p in pane.view.pending] == [p2.id, p3.id], "p1 answered")

        await answer(app, pilot, "a", f"#{p2.id}")  # the cursor is on the first row again: p2
        accepted2 = [a for a in adjuster.history(status="accepted") if a.ref_id == p2.id]
        assert len(accepted2) == 1
        assert rsi.rec.size_multiplier == Decimal(accepted2[0].after) != size_before

        await until(pilot, lambda: [p.id for p in pane.view.pending] == [p3.id], "p2 answered")
        take_profit = rsi.rec.take_profit
        await answer(app, pilot, "x", f"#{p3.id}")
        assert [a.ref_id for a in adjuster.history(status="rejected")] == [p3.id]
        assert rsi.rec.take_profit == take_profit
        await until(pilot, lambda: not pane.view.pending, "no proposal left")
        assert cells(pane, "autonomy-proposals") == []

        # r: revert the params change, chosen in the history (newest first)
        history = pane.query_one("#autonomy-history", StyledTable)
        await until(
            pilot, lambda: accepted1[0].id in {h.row.id for h in pane.view.history}, "the accepted row"
        )
        history.focus()
        history.move_cursor(row=history.get_row_index(str(accepted1[0].id)))
        await pilot.pause()
        selected = pane.selected_change()
        assert selected is not None and selected.row.id == accepted1[0].id and selected.revertible
        await answer(app, pilot, "r", f"#{accepted1[0].id}")
        assert sma.rec.params == params_before
        reverted = adjuster.history(status="reverted")
        assert [a.ref_id for a in reverted] == [accepted1[0].id]
        await until(
            pilot,
            lambda: any(
                h.row.id == accepted1[0].id and h.reverted_by == reverted[0].id for h in pane.view.history
            ),
            "the change shown as reverted",
        )
        row = cells(pane, "autonomy-history")[history.get_row_index(str(accepted1[0].id))]
        assert row[5] == f"accepted ↺#{reverted[0].id}"

        # a second revert of the same row is refused with a message, nothing runs
        history.move_cursor(row=history.get_row_index(str(accepted1[0].id)))
        await pilot.press("r")
        assert not isinstance(app.screen, ConfirmScreen)
        assert f"#{accepted1[0].id} cannot be reverted: it was reverted by #{reverted[0].id}" in messages[-1]


def member_dna(strategy: str, **params: Any) -> Dna:
    return Dna(strategy, {**make_strategy(strategy, {}).params, **params}, "BTC/USDT", "binance",
               RiskMode.BALANCED, Decimal("0.1"), "1h")  # fmt: skip


LINEAGE = {
    # member: (generation, index, dna, fitness, parent_a, parent_b, elite, origin)
    "g0/m0": (0, 0, member_dna("sma_cross", fast=8), "0.010", None, None, True, "seed"),
    "g0/m1": (0, 1, member_dna("sma_cross", fast=12, slow=40), "0.030", None, None, True, "random"),
    "g0/m2": (0, 2, member_dna("rsi_reversion"), None, None, None, False, "random"),
    "g1/m0": (1, 0, member_dna("sma_cross", fast=12, slow=40), "0.030", "g0/m1", None, True, "kept"),
    "g1/m1": (1, 1, member_dna("sma_cross", fast=8, slow=40), "0.050", "g0/m0", "g0/m1", True, "child"),
    "g2/m0": (2, 0, member_dna("sma_cross", fast=9, slow=40), "0.070", "g1/m1", "g1/m0", True, "child"),
    "g2/m1": (2, 1, member_dna("sma_cross", fast=8, slow=40), "0.050", "g1/m1", None, False, "kept"),
}


def record_run(db: Path) -> None:
    """Three generations of run ``RUN`` in the ledger, as ``autonomy.evolution`` records them."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=10)
    try:
        for g in range(3):
            rows = [
                MemberRow(
                    f"{RUN}/{m}",
                    dna,
                    None if fit is None else Decimal(fit),
                    {"origin": origin, "trades": 7},
                    a and f"{RUN}/{a}",
                    b and f"{RUN}/{b}",
                    elite,
                )
                for m, (gen, _i, dna, fit, a, b, elite, origin) in LINEAGE.items()
                if gen == g
            ]
            fits = [r.fitness for r in rows if r.fitness is not None]
            best = max(rows, key=lambda r: r.fitness or Decimal(-1))
            mean = sum(fits, Decimal(0)) / len(fits)
            evolution_store.record_generation(
                conn,
                GenerationRow(RUN, g, 7, max(fits), mean.quantize(Decimal("0.0001")), best.member, T0 + g),
                rows,
            )
    finally:
        conn.close()


async def populate(app: AmarktaiApp, engine: TradingEngine, adjuster: Adjuster) -> dict[str, Any]:
    """What the other autonomy processes would have written: an evolution run, a bot spawned from
    its best member, a quarantine, a proposal, an accepted-then-reverted change and a refusal."""
    record_run(engine.store.path)
    app.bus.publish(GenerationEvolved(T0 + 2, RUN, 2, Decimal("0.070"), Decimal("0.06"), f"{RUN}/g2/m0"))
    dna = LINEAGE["g2/m0"][2]
    spawned = await engine.create_bot(
        BotSpec(
            "evo-sma",
            "binance",
            "BTC/USDT",
            "1h",
            dna.strategy,
            dict(dna.params),
            dna.risk_mode,
            Decimal(500),
            stop_loss=Decimal("0.03"),
            dna_id=f"{RUN}/g2/m0",
        ),
        from_pool=False,
    )
    rsi = bot(engine, "rsi_reversion")
    now = engine.now_ms
    qid = await insert_quarantine(engine.store, now - 3_600_000, rsi.rec.id, 1, "hourly_loss",
                                  "net loss 16.2% of capital in the last hour", now + 3_600_000)  # fmt: skip
    app.bus.publish(
        BotQuarantined(now, rsi.rec.id, rsi.rec.name, 1, "hourly_loss", "net loss", now + 3_600_000)
    )
    change = await adjuster.submit(
        Change(rsi.rec.id, "learning", "size_multiplier", Decimal("0.8"), "win rate 41%")
    )
    done = await adjuster.accept(change.id)
    await adjuster.revert(done.id)
    await adjuster.submit(Change(rsi.rec.id, "ai", "max_daily_loss", "0.5", "the AI asked"))
    pending = await adjuster.submit(
        Change(spawned.rec.id, "optimizer", "params", {"fast": 11}, "walk-forward best")
    )
    return {"spawned": spawned, "quarantine": qid, "rsi": rsi, "pending": pending}


async def test_evolution_lineage_and_quarantines_show(make_app: MakeApp, quiet: Settings) -> None:
    app = make_app(settings_=quiet)
    async with app.run_test(size=SIZE) as pilot:
        engine, adjuster, pane = await open_tab(app, pilot)
        assert cells(pane, "autonomy-generations") == [] and cells(pane, "autonomy-quarantines") == []
        made = await populate(app, engine, adjuster)

        await until(
            pilot, lambda: len(pane.view.generations) == 3 and bool(pane.view.quarantines), "the records"
        )
        assert [r[:4] for r in cells(pane, "autonomy-generations")] == [
            ["2", "+0.0700", "+0.0600", "g2/m0"],
            ["1", "+0.0500", "+0.0400", "g1/m1"],
            ["0", "+0.0300", "+0.0200", "g0/m1"],
        ]
        rsi = made["rsi"]
        [q] = cells(pane, "autonomy-quarantines")
        assert q[:4] == [rsi.rec.name, "1", "hourly_loss", fmt.ts(engine.now_ms + 3_600_000)]
        assert "1 in force" in str(pane.query_one("#autonomy-quarantines-box").border_title)

        # the lineage of the spawned bot (the choice defaults to a bot that came from evolution)
        select = pane.query_one("#autonomy-lineage-bot", Select)
        await until(pilot, lambda: select.value == f"{RUN}/g2/m0" and pane.view.lineage_of == f"{RUN}/g2/m0",
                    "the spawned bot's lineage")  # fmt: skip
        assert [n.row.member for n in pane.view.lineage] == [
            f"{RUN}/{m}" for m in ("g2/m0", "g1/m1", "g1/m0", "g0/m0", "g0/m1")
        ]
        text = rendered(pane.query_one("#autonomy-lineage", Static))
        lines = [line.strip("│└├─ ") for line in text.splitlines() if line.strip()]
        assert [line.split()[0] for line in lines] == ["g2/m0", "g1/m1", "g0/m0", "g0/m1", "g1/m0", "g0/m1"]
        assert lines[-1] == "g0/m1 (above)"  # the second parent met again is named, not expanded
        assert "fast=9" in lines[0] and "+0.0700" in lines[0] and "child" in lines[0]

        # the history: newest first, the revert marked on the row it undid, the refusal (read in a
        # thread after the last BotAdjusted event: wait for it, as for the panels above)
        await until(pilot, lambda: len(pane.view.history) == 3 and len(pane.view.pending) == 1, "the history")
        statuses = [r[5] for r in cells(pane, "autonomy-history")]
        h = pane.view.history
        assert [e.row.status for e in h] == ["refused", "reverted", "accepted"]
        assert statuses == ["refused", f"reverted #{h[2].row.id}", f"accepted ↺#{h[1].row.id}"]
        assert "max_daily_loss is protected" in h[0].row.reason
        assert [p.id for p in pane.view.pending] == [made["pending"].id]

        # choosing the best member of the run shows that member's lineage (the same one here)
        select.value = "best"
        await until(pilot, lambda: pane.view.lineage_of == f"{RUN}/g2/m0" and select.value == "best", "best")


def test_autonomy_tab_snapshot(snap_compare: Any, make_app: MakeApp, quiet: Settings) -> None:
    app = make_app(settings_=quiet)

    async def run_before(pilot: Pilot[None]) -> None:
        engine, adjuster, pane = await open_tab(app, pilot)
        made = await populate(app, engine, adjuster)
        await until(
            pilot,
            lambda: (
                [p.id for p in pane.view.pending] == [made["pending"].id]
                and len(pane.view.lineage) == 5
                and len(pane.view.history) == 3
            ),
            "everything read",
        )
        # the table keeps its cursor on the row it was on as newer rows arrive above it, so where it
        # sits depends on how many refreshes the populating took: put it on the newest row
        pane.query_one("#autonomy-history", DataTable).move_cursor(row=0, animate=False)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
