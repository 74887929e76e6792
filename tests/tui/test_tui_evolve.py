"""The Evolve dialog (e on the Autonomy tab): a tiny seeded evolution run on real candles, recorded in
the ledger as ``amarktai evolve`` records it, shown at once in the Autonomy tab, and equal to
``evolution.evolve`` called directly with the same seed, seeds and data."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from run_screen_helpers import short_replay, type_into, write_slice
from textual.pilot import Pilot
from textual.widgets import Input, Label, Static, TabbedContent
from tui_helpers import REPLAY_TIMEOUT_S, SIZE, replay_done, workers_done

from amarktai_tui.autonomy.dna import GeneSpace
from amarktai_tui.autonomy.evolution import BacktestEvaluator, evolve, seeds_from_bots, streams_by_pair
from amarktai_tui.autonomy.settings import EvolutionSettings
from amarktai_tui.engine.setup import ReplayArgs
from amarktai_tui.locations import db_path
from amarktai_tui.strategies.registry import STRATEGIES
from amarktai_tui.tui.app import AmarktaiApp
from amarktai_tui.tui.autonomy_pane import AutonomyPane, fitness_text, short_member
from amarktai_tui.tui.bots_pane import StyledTable
from amarktai_tui.tui.screens.evolve import EvolveScreen

MakeApp = Callable[..., AmarktaiApp]


@pytest.fixture
def replay(tmp_path: Path) -> ReplayArgs:
    """A short replay: its file is what the dialog offers, and each evolution replay is quick."""
    return short_replay(tmp_path)


async def open_dialog(app: AmarktaiApp, pilot: Pilot[None]) -> tuple[AutonomyPane, EvolveScreen]:
    await replay_done(app, pilot)
    await pilot.press("8")
    assert app.query_one("#tabs", TabbedContent).active == "autonomy"
    pane = app.query_one(AutonomyPane)
    await pilot.press("e")
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, EvolveScreen)
    return pane, screen


async def test_a_tiny_run_is_recorded_and_shown_in_the_autonomy_tab(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        pane, screen = await open_dialog(app, pilot)
        files = app.replay.files
        assert screen.query_one("#ev-files", Input).value == files[0]  # the running replay's file
        assert str(screen.query_one("#ev-file-check", Static).content).startswith("✓ BTC/USDT 1h")
        await type_into(pilot, screen, "ev-population", "4")
        await type_into(pilot, screen, "ev-generations", "2")
        await type_into(pilot, screen, "ev-seed", "3")
        await pilot.press("ctrl+r")
        await asyncio.wait_for(workers_done(app, "evolve"), REPLAY_TIMEOUT_S)
        await pilot.pause()
        assert str(screen.query_one("#ev-error", Static).content) == ""
        r = screen.result
        assert r is not None and r.seed == 3 and [g.number for g in r.generations] == [0, 1]
        assert r.replays == 5  # 4, then the one child of generation 1
        assert str(screen.query_one("#ev-progress-text", Label).content).startswith(
            "done: 2 generations, 5 replays in"
        )

        # the same as evolve() called directly with the same seed, seeds and data
        engine = app.engine
        assert engine is not None
        evo = EvolutionSettings(population=4, generations=2, seed=3)
        streams = streams_by_pair(files)
        space = GeneSpace(
            tuple(STRATEGIES),
            tuple(streams),
            (app.settings.market.exchange,),
            timeframes={p: tf for p, (_f, tf) in streams.items()},
        )
        evaluator = BacktestEvaluator(app.settings, streams, evo)
        seeds = seeds_from_bots([x.rec for x in engine.runners.values()], space, evaluator.budget)
        assert seeds, "the demo paper bots seed generation 0"
        direct = await evolve(evo, space, evaluator, run="direct", seeds=seeds)
        for mine, theirs in zip(r.generations, direct.generations, strict=True):
            assert [m.dna.key() for m in mine.members] == [m.dna.key() for m in theirs.members]
            assert [m.fitness for m in mine.members] == [m.fitness for m in theirs.members]
            assert (mine.best_fitness, mine.mean_fitness) == (theirs.best_fitness, theirs.mean_fitness)

        # recorded in the user's ledger, as `amarktai evolve` records a run
        with closing(sqlite3.connect(db_path(app.data_dir))) as conn:
            gens = conn.execute(
                "SELECT generation, seed, best_member FROM evolution_generations WHERE run = ? ORDER BY generation",
                (r.run,),
            ).fetchall()
            members = conn.execute(
                "SELECT COUNT(*) FROM evolution_members WHERE member LIKE ?", (f"{r.run}/%",)
            ).fetchone()[0]
        assert gens == [(g.number, 3, g.best.id) for g in r.generations] and members == 8

        # the Autonomy tab shows the run (the GenerationEvolved events made it read the ledger)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is not screen
        while pane.view.run is None or pane.view.run.run != r.run:
            await pilot.pause(0.05)  # the pane reads in a thread; guarded by the test timeout
        table = pane.query_one("#autonomy-generations", StyledTable)
        assert [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)] == [
            [
                str(g.number),
                fitness_text(g.best_fitness),
                fitness_text(g.mean_fitness),
                short_member(g.best.id, r.run),
            ]
            for g in reversed(r.generations)
        ]
        assert pane.query_one("#autonomy-evolution-box").border_title == f"Evolution · {r.run}"
        lineage = pane.query_one("#autonomy-lineage-box").border_title
        assert lineage == f"Lineage · {r.best.id}"  # the run's best member


async def test_bad_input_is_one_line_and_escape_cancels(make_app: MakeApp, tmp_path: Path) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        _pane, screen = await open_dialog(app, pilot)

        async def submit() -> str:
            await pilot.press("ctrl+r")
            await pilot.pause()
            assert not screen.running and screen.result is None
            return str(screen.query_one("#ev-error", Static).content)

        await type_into(pilot, screen, "ev-population", "2")
        assert await submit() == "population: Input should be greater than or equal to 4"
        assert screen.query_one("#ev-population", Input).has_class("ev-invalid")
        await type_into(pilot, screen, "ev-population", "4")
        await type_into(pilot, screen, "ev-generations", "many")
        assert await submit() == "generations: 'many' is not a whole number"
        await type_into(pilot, screen, "ev-generations", "50")
        twice = write_slice(tmp_path / "other", n=300)
        await type_into(pilot, screen, "ev-files", f"{app.replay.files[0]}, {twice}")
        line = await submit()
        assert line.startswith("data files: two files for BTC/USDT") and "\n" not in line

        # a long run (50 generations) is cancelled with escape; what was recorded stays
        await type_into(pilot, screen, "ev-files", app.replay.files[0])
        run = asyncio.create_task(pilot.press("ctrl+r"))
        await asyncio.wait_for(screen.progressed.wait(), REPLAY_TIMEOUT_S)
        await pilot.press("escape")
        await run
        await asyncio.wait_for(workers_done(app, "evolve"), REPLAY_TIMEOUT_S)
        await pilot.pause()
        assert app.screen is screen and not screen.running and screen.result is None
        assert str(screen.query_one("#ev-progress-text", Label).content) == (
            "cancelled; the generations recorded before stay in the ledger"
        )
        await pilot.press("escape")  # now it closes
        await pilot.pause()
        assert not isinstance(app.screen, EvolveScreen)
