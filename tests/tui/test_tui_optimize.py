"""The Optimise screen (O): driven with Pilot as a person would, checked against ``optimize()``.

Real parts only: the app replays a slice of BTC 1h into its own data dir (expert mode, the
default); the studies read another slice of the real Binance candles written to tmp_path. Every
wait is on a worker, an event or the app's own reads.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from run_screen_helpers import open_by_key, short_replay, type_into, write_slice
from textual.pilot import Pilot
from textual.widgets import Button, Input, Label, Select, Static
from tui_helpers import REPLAY_TIMEOUT_S, SIZE, replay_done, workers_done

from amarktai_tui.autonomy.changes import adjuster_for
from amarktai_tui.autonomy.optimize import OptimizeRequest, OptimizeResult, TrialResult, optimize
from amarktai_tui.config import Settings
from amarktai_tui.domain.enums import BotState
from amarktai_tui.engine.setup import ReplayArgs
from amarktai_tui.locations import db_path
from amarktai_tui.ops.optimize_commands import top_trials
from amarktai_tui.tui import fmt
from amarktai_tui.tui.app import AmarktaiApp, _all_bindings
from amarktai_tui.tui.autonomy_pane import AutonomyPane
from amarktai_tui.tui.bots_pane import StyledTable
from amarktai_tui.tui.palette import BotCommands
from amarktai_tui.tui.screens import optimize as op
from amarktai_tui.tui.screens.backtest import BacktestScreen, Kpi, _slug
from amarktai_tui.tui.screens.confirm import ConfirmScreen
from amarktai_tui.tui.screens.optimize import OptimizeScreen, signed

MakeApp = Callable[..., AmarktaiApp]
STUDY_CANDLES = 1000  # BTC 1h from 2020-12-01: two folds of a few hundred candles each


@pytest.fixture
def replay(tmp_path: Path) -> ReplayArgs:
    return short_replay(tmp_path)


async def open_screen(app: AmarktaiApp, pilot: Pilot[None]) -> OptimizeScreen:
    return await open_by_key(app, pilot, "O", OptimizeScreen)


async def choose(pilot: Pilot[None], screen: OptimizeScreen, select_id: str, value: str) -> None:
    """Open a select, move to ``value`` with the arrow keys, pick it."""
    select: Select[str] = screen.query_one(f"#{select_id}", Select)
    values = [v for _, v in select._options if isinstance(v, str)]
    select.focus()
    await pilot.press("enter")
    steps = values.index(value) - values.index(str(select.value))
    await pilot.press(*(["down"] * steps if steps > 0 else ["up"] * -steps))
    await pilot.press("enter")
    await pilot.pause()
    assert select.value == value


async def fill_form(
    pilot: Pilot[None], screen: OptimizeScreen, data: str, *, trials: int, seed: int, folds: int
) -> None:
    await type_into(pilot, screen, "op-files", data)
    await type_into(pilot, screen, "op-trials", str(trials))
    await type_into(pilot, screen, "op-seed", str(seed))
    await type_into(pilot, screen, "op-folds", str(folds))


async def run_and_wait(app: AmarktaiApp, pilot: Pilot[None]) -> None:
    await pilot.press("ctrl+r")
    await asyncio.wait_for(workers_done(app, "optimize"), REPLAY_TIMEOUT_S)
    await pilot.pause()


def direct(settings: Settings, tmp: Path, request: OptimizeRequest) -> OptimizeResult:
    """``optimize()`` called directly: its own data dir, storage and work dir."""
    (tmp / "work").mkdir(parents=True)
    request = replace(request, storage=f"sqlite:///{tmp / 'study.sqlite3'}")
    return optimize(settings, tmp / "data", request, work_dir=tmp / "work")


def same(t: TrialResult) -> tuple[Any, ...]:
    """A trial without its wall time and worker id."""
    return (t.number, t.params, t.values, t.train, t.test, t.state)


def text(widget: Static | Label) -> str:
    return str(widget.content)


async def test_a_study_equals_optimize_and_applies_as_a_proposal(make_app: MakeApp, tmp_path: Path) -> None:
    data = write_slice(tmp_path / "candles", n=STUDY_CANDLES)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        screen = await open_screen(app, pilot)
        assert screen.query_one("#op-files", Input).value == app.replay.files[0]  # the running replay's
        await choose(pilot, screen, "op-strategy", "rsi_reversion")
        assert "Searches period 5–40, oversold 10–45, overbought 55–90 (> oversold)" in text(
            screen.query_one("#op-summary", Static)
        )
        await fill_form(pilot, screen, str(data), trials=3, seed=5, folds=2)
        await run_and_wait(app, pilot)

        assert text(screen.query_one("#op-error", Static)) == ""
        shown = screen.result
        assert shown is not None and shown.status == "done"
        request = OptimizeRequest(strategy="rsi_reversion", files=(str(data),), trials=3, seed=5, folds=2)
        expected = await asyncio.to_thread(direct, app.settings, tmp_path / "direct", request)
        assert [same(t) for t in shown.trials] == [same(t) for t in expected.trials]
        assert len(shown.trials) == 3 and shown.windows == expected.windows
        assert shown.best is not None and expected.best is not None
        assert same(shown.best) == same(expected.best)
        assert shown.best.test, "the best trial has out-of-sample scores"
        assert shown.pareto == expected.pareto == []

        # what the screen shows is that result
        b = shown.best
        kpis = {title: screen.query_one(f"#bt-kpi-{_slug(title)}", Kpi).value for title in op.KPIS}
        assert kpis == {
            "IS return": signed(b.train_return),
            "IS max DD": fmt.pct(b.train_max_drawdown),
            "OOS return": signed(b.test_return),
            "OOS max DD": fmt.pct(b.test_max_drawdown),
            "Trials": "3/3",
        }
        assert text(screen.query_one("#op-best", Static)).startswith(
            f"Trial {b.number}: period={b.params['period']}"
        )
        folds = screen.query_one("#op-fold-table", StyledTable)
        assert folds.row_count == 3  # two folds and the mean
        first = [str(c) for c in folds.get_row("1")]
        assert first[2:4] == [signed(b.train[0].return_), fmt.pct(b.train[0].max_drawdown)]
        assert first[5:8] == [
            signed(b.test[0].return_),
            fmt.pct(b.test[0].max_drawdown),
            f"{b.train[0].trades} / {b.test[0].trades}",
        ]
        assert str(folds.get_row("mean")[5]) == signed(b.test_return)
        top = screen.query_one("#op-top-trials", StyledTable)
        assert [str(top.get_row_at(i)[0]) for i in range(top.row_count)] == [
            str(t.number) for t in top_trials(expected, op.TOP_SHOWN)
        ]
        assert not screen.query_one("#op-pareto-box").display  # tpe: no front
        assert text(screen.query_one("#op-progress-text", Label)) == "done: 3 trials"

        # its temporary directory is gone; the run is recorded in the user's ledger
        assert screen.run_dir is not None and not screen.run_dir.exists()
        with closing(sqlite3.connect(db_path(app.data_dir))) as conn:
            rows = conn.execute(
                "SELECT id, strategy, status, n_trials FROM optimization_runs ORDER BY id"
            ).fetchall()
            trials = conn.execute(
                "SELECT COUNT(*) FROM optimization_trials WHERE run_id = ?", (shown.run_id,)
            )
            assert rows == [(shown.run_id, "rsi_reversion", "done", 3)] and trials.fetchone()[0] == 3

        # Apply… to the running rsi_reversion bot: expert mode makes a proposal
        engine = app.engine
        assert engine is not None
        bot = engine.runner_by_name("btc-rsi")
        assert bot.rec.state is BotState.RUNNING
        assert screen.query_one("#op-bot", Select).value == bot.rec.id
        params_before = dict(bot.rec.params)
        screen.query_one("#op-apply", Button).press()
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "Expert mode: this makes a proposal" in text(
            app.screen.query_one("#confirm-explanation", Static)
        )
        await pilot.press("y")
        await asyncio.wait_for(workers_done(app, "optimize-apply"), REPLAY_TIMEOUT_S)
        await pilot.pause()
        row = screen.applied
        assert row is not None and row.status == "proposed" and row.source == "optimizer"
        assert row.bot_id == bot.rec.id and row.field == "params" and row.actor == "user"
        assert row.after == b.params
        assert f"trial {b.number} of 3" in row.reason and signed(b.test_return) in row.reason
        assert text(screen.query_one("#op-applied", Static)) == (
            f"#{row.id} proposed for btc-rsi: nothing changes until it is accepted in the Autonomy tab (8)"
        )
        assert dict(bot.rec.params) == params_before  # nothing changed yet
        adjuster = adjuster_for(engine)
        assert adjuster is not None  # the optimiser's one proposal (learning/healing may propose too)
        assert [p.id for p in adjuster.pending(bot.rec.id) if p.source == "optimizer"] == [row.id]

        # ...and the Autonomy tab lists it
        await pilot.press("escape")
        await pilot.press("8")
        pane = app.query_one(AutonomyPane)
        while row.id not in {p.id for p in pane.view.pending}:
            await pilot.pause(0.05)  # the pane reads the ledger in a thread after the BotAdjusted event
        proposals = pane.query_one("#autonomy-proposals", StyledTable)
        assert str(proposals.get_row(str(row.id))[3]) == "optimizer"


async def test_exits_searched_shown_and_applied_as_three_proposals(make_app: MakeApp, tmp_path: Path) -> None:
    """SL / TP "searched too": the same study as ``amarktai optimize --exits``; every trial's
    stop-loss and take-profit within the bounds; Apply proposes params, stop-loss and take-profit."""
    data = write_slice(tmp_path / "candles", n=STUDY_CANDLES)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        screen = await open_screen(app, pilot)
        await choose(pilot, screen, "op-strategy", "rsi_reversion")
        await choose(pilot, screen, "op-exits", "on")
        assert "stop_loss 0.01–0.1, take_profit 0.02–0.1" in text(screen.query_one("#op-summary", Static))
        await fill_form(pilot, screen, str(data), trials=3, seed=5, folds=2)
        await run_and_wait(app, pilot)

        shown = screen.result
        assert shown is not None and shown.status == "done" and shown.best is not None
        request = OptimizeRequest(
            strategy="rsi_reversion", files=(str(data),), trials=3, seed=5, folds=2, exits=True
        )
        expected = await asyncio.to_thread(direct, app.settings, tmp_path / "direct", request)
        assert [same(t) for t in shown.trials] == [same(t) for t in expected.trials]
        bounds = app.settings.autonomy.bounds
        for t in shown.trials:
            assert bounds.stop_loss_min <= Decimal(t.params["stop_loss"]) <= bounds.stop_loss_max
            assert bounds.take_profit_min <= Decimal(t.params["take_profit"]) <= bounds.take_profit_max
        top = screen.query_one("#op-top-trials", StyledTable)
        assert str(top.columns["Params"].label) == "period · oversold · overbought · stop_loss · take_profit"

        engine = app.engine
        assert engine is not None
        bot = engine.runner_by_name("btc-rsi")
        screen.query_one("#op-apply", Button).press()
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await asyncio.wait_for(workers_done(app, "optimize-apply"), REPLAY_TIMEOUT_S)
        await pilot.pause()
        rows = screen.applied_rows
        assert [(r.field, r.status, r.source) for r in rows] == [
            ("params", "proposed", "optimizer"),
            ("stop_loss", "proposed", "optimizer"),
            ("take_profit", "proposed", "optimizer"),
        ]
        b = shown.best
        assert rows[0].after == {k: v for k, v in b.params.items() if k not in ("stop_loss", "take_profit")}
        for r, key in zip(rows[1:], ("stop_loss", "take_profit"), strict=True):
            # the one door keeps the searched value, or brings it within the bounds and says so (a
            # stop-loss that would risk more than 2 % per trade on this bot)
            assert r.after == b.params[key] or f"{key} {b.params[key]} -> {r.after} to keep" in r.reason
        assert all(r.bot_id == bot.rec.id for r in rows)
        assert text(screen.query_one("#op-applied", Static)).endswith(
            "(+2 for stop-loss/take-profit: see the Autonomy tab)"
        )


async def test_bad_input_is_one_line_naming_the_field(make_app: MakeApp, tmp_path: Path) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        commands = {t: call for t, call, _ in BotCommands(app.screen)._commands()}
        commands["Optimise a strategy"]()  # from the palette this time
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, OptimizeScreen)

        async def submit() -> str:
            await pilot.press("ctrl+r")
            await pilot.pause()
            assert not screen.running and screen.result is None
            return text(screen.query_one("#op-error", Static))

        await type_into(pilot, screen, "op-trials", "0")
        assert await submit() == "trials must be at least 1, got 0"
        assert screen.query_one("#op-trials", Input).has_class("op-invalid")
        await type_into(pilot, screen, "op-trials", "5")
        await type_into(pilot, screen, "op-folds", "30")
        assert await submit() == "folds must be 1 to 20, got 30"
        await type_into(pilot, screen, "op-folds", "x")
        assert await submit() == "folds: 'x' is not a whole number"
        await type_into(pilot, screen, "op-folds", "2")
        missing = tmp_path / "nowhere" / "BTC_USDT-1h.json"
        await type_into(pilot, screen, "op-files", str(missing))
        assert text(screen.query_one("#op-file-check", Static)) == f"✗ {missing}: no such file"
        assert await submit() == f"{missing}: no such file"

        # too few candles for the folds: optimize() says so, one line, nothing recorded
        short = write_slice(tmp_path / "short", n=60)
        await type_into(pilot, screen, "op-files", str(short))
        await run_and_wait(app, pilot)
        line = text(screen.query_one("#op-error", Static))
        assert line.startswith("data files: too little data for 2 folds") and "\n" not in line
        assert text(screen.query_one("#op-progress-text", Label)) == "failed; nothing kept"
        assert screen.run_dir is not None and not screen.run_dir.exists()
        with closing(sqlite3.connect(db_path(app.data_dir))) as conn:
            assert conn.execute("SELECT COUNT(*) FROM optimization_runs").fetchone()[0] == 0


async def test_from_the_backtest_screen_and_cancelled(make_app: MakeApp, tmp_path: Path) -> None:
    data = write_slice(tmp_path / "candles", n=STUDY_CANDLES)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        await pilot.press("b")
        await pilot.pause()
        backtest = app.screen
        assert isinstance(backtest, BacktestScreen)
        backtest.query_one("#bt-strategy", Select).value = "donchian_breakout"
        await type_into(pilot, backtest, "bt-files", str(data))
        backtest.query_one("#bt-optimise", Button).press()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, OptimizeScreen)  # with the backtest's strategy and data
        assert screen.query_one("#op-strategy", Select).value == "donchian_breakout"
        assert screen.query_one("#op-files", Input).value == str(data)

        await type_into(pilot, screen, "op-trials", "50")
        await type_into(pilot, screen, "op-folds", "2")
        run = asyncio.create_task(pilot.press("ctrl+r"))
        await asyncio.wait_for(screen.progressed.wait(), REPLAY_TIMEOUT_S)  # a trial is done
        assert screen.running
        await pilot.press("escape")  # stops after the running trial
        await run
        await asyncio.wait_for(workers_done(app, "optimize"), REPLAY_TIMEOUT_S)
        await pilot.pause()
        assert app.screen is screen and not screen.running
        r = screen.result
        assert r is not None and r.status == "interrupted" and 1 <= len(r.trials) < 50
        assert text(screen.query_one("#op-progress-text", Label)) == (
            f"cancelled after {len(r.trials)} trials (recorded as interrupted)"
        )
        assert screen.query_one("#op-apply", Button).disabled  # an interrupted run is not applied
        assert screen.run_dir is not None and not screen.run_dir.exists()
        with closing(sqlite3.connect(db_path(app.data_dir))) as conn:
            assert conn.execute("SELECT status FROM optimization_runs").fetchall() == [("interrupted",)]
        await pilot.press("escape")  # now it goes back
        await pilot.pause()
        assert not isinstance(app.screen, OptimizeScreen)


def test_optimise_bindings_have_ids_the_keymap_knows() -> None:
    ids = {b.id for b in _all_bindings()}
    assert {"app.optimize", "optimize.run", "optimize.back", "autonomy.evolve"} <= ids


def test_optimise_screen_snapshot(
    snap_compare: Any, make_app: MakeApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_slice(tmp_path, n=STUDY_CANDLES)
    monkeypatch.chdir(tmp_path)  # a relative path: the same text in every checkout
    app = make_app()

    async def run_before(pilot: Pilot[None]) -> None:
        await replay_done(app, pilot)
        screen = await open_screen(app, pilot)
        await choose(pilot, screen, "op-sampler", "nsga2")  # sma_cross, the first strategy
        await fill_form(pilot, screen, "BTC_USDT-1h.json", trials=4, seed=4, folds=2)
        await run_and_wait(app, pilot)
        assert screen.result is not None and screen.result.pareto
        screen.query_one("#op-elapsed", Label).update("ran in (wall time, masked for the snapshot)")
        screen.query_one("#op-top-trials").focus()
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
