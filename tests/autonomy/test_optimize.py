"""Optimisation (``autonomy.optimize``) on real BTC/USDT 1h candles: search spaces, walk-forward
scores, seeded reproducibility, NSGA-II's Pareto front, the ledger rows, two worker processes
sharing one SQLite-backed study, and the backtest's warm-up window it relies on."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import optuna
import pytest
from optimize_helpers import btc_slice, ledger_rows, request, run

from amarktai_tui.autonomy.optimize import (
    OptimizeResult,
    TrialResult,
    score,
)
from amarktai_tui.autonomy.search_space import (
    OptimizeUsageError,
    search_space,
    suggest,
    warmup_candles,
)
from amarktai_tui.autonomy.settings import BoundsSettings
from amarktai_tui.autonomy.walkforward import walk_forward_windows
from amarktai_tui.config import Settings
from amarktai_tui.market.loaders import load_candles
from amarktai_tui.ops.backtest import BacktestRequest, run_backtest
from amarktai_tui.strategies.registry import STRATEGIES, make_strategy

HOUR = 3_600_000
# TPE's random start-up trials (10), then 2 suggested by its model
SEEDED_TRIALS = inspect.signature(optuna.samplers.TPESampler).parameters["n_startup_trials"].default + 2


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return btc_slice(tmp_path_factory.mktemp("candles"))


@pytest.fixture(scope="module")
def seeded(
    data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[OptimizeResult, OptimizeResult, Path]:
    """The same study twice (seed 7, one worker) into two data dirs; the first data dir. SEEDED_TRIALS
    goes past TPE's random start-up trials, so the model-driven suggestions are compared too."""
    base = tmp_path_factory.mktemp("seeded")
    a = run(base / "a", request(data, trials=SEEDED_TRIALS), base / "wa")
    b = run(base / "b", request(data, trials=SEEDED_TRIALS), base / "wb")
    return a, b, base / "a"


# -- search space -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_sampled_point_is_a_valid_strategy(name: str) -> None:
    dims = search_space(name, BoundsSettings())
    assert {d.name for d in dims if not d.exit} == {p.name for p in STRATEGIES[name].PARAMS}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(300):
        trial = study.ask()
        point = suggest(trial, dims)
        params = {k: v for k, v in point.items() if k not in ("stop_loss", "take_profit")}
        make_strategy(name, params)  # raises on a broken constraint (fast >= slow, oversold >= overbought)
        bounds = BoundsSettings()
        assert bounds.stop_loss_min <= point["stop_loss"] <= bounds.stop_loss_max
        assert bounds.take_profit_min <= point["take_profit"] <= bounds.take_profit_max
        assert isinstance(point["stop_loss"], Decimal)
        study.tell(trial, 0.0)


def test_search_ranges_and_warmup() -> None:
    dims = {d.name: d for d in search_space("sma_cross")}
    assert dims["slow"].above == "fast" and dims["kind"].choices == ("sma", "ema")
    assert "stop_loss" not in dims  # exits only with bounds
    assert warmup_candles("sma_cross", list(dims.values())) == int(dims["slow"].high) + 1
    with pytest.raises(OptimizeUsageError, match="unknown strategy 'nope'"):
        search_space("nope")


# -- the warm-up window of a backtest ------------------------------------------------------------


async def test_backtest_trades_from_the_window_start_after_warming_up(data: Path, tmp_path: Path) -> None:
    candles = load_candles(data)
    params = {"fast": 5, "slow": 60}  # warm-up 61 candles
    full = await run_backtest(
        Settings(), BacktestRequest("sma_cross", (str(data),), params), tmp_path / "full"
    )
    # an entry of the full run after a flat stretch: start the window 10 candles before it
    entry = next(
        t.entry_ts
        for prev, t in pairwise(full.trades)
        if t.entry_ts >= candles[100].ts and prev.exit_ts <= t.entry_ts - 20 * HOUR
    )
    start = entry - 10 * HOUR
    bt = BacktestRequest("sma_cross", (str(data),), params, trade_from_ms=start)
    warm = await run_backtest(Settings(), bt, tmp_path / "warm")
    assert warm.start_ms == start
    assert warm.candles == sum(1 for c in candles if c.ts >= start)  # the warm-up candles are not traded
    # warmed up on the candles before `start`, the strategy takes the full run's entry 10 candles
    # in (a cold start would need 61 candles of the window first)
    assert warm.trades[0].entry_ts == entry
    assert warm.trades[0].entry_price == next(t.entry_price for t in full.trades if t.entry_ts == entry)


# -- seeded study, walk-forward scores, ledger ----------------------------------------------------


def _key(trials: list[TrialResult]) -> list[tuple[int, object, object, str]]:
    return [(t.number, t.params, t.values, t.state) for t in trials]


def test_same_seed_one_worker_gives_the_same_trials_and_best(seeded: tuple[OptimizeResult, ...]) -> None:
    a, b, _ = seeded
    assert a.status == b.status == "done"
    assert len(a.trials) == SEEDED_TRIALS and a.study_name != b.study_name
    assert _key(a.trials) == _key(b.trials)
    assert [(t.train, t.test) for t in a.trials] == [(t.train, t.test) for t in b.trials]
    assert a.best is not None and b.best is not None
    assert (a.best.number, a.best.params) == (b.best.number, b.best.params)
    assert len({json.dumps(t.params, sort_keys=True) for t in a.trials}) > 1  # it did search


def test_trials_score_train_windows_and_keep_the_test_windows_out_of_sample(
    seeded: tuple[OptimizeResult, OptimizeResult, Path], data: Path, tmp_path: Path
) -> None:
    a, _, _ = seeded
    candles = load_candles(data)
    warmup = a.warmup
    start = candles[0].ts + warmup * HOUR
    assert a.windows == walk_forward_windows(start, candles[-1].ts + HOUR, 2, Decimal("0.7"), HOUR)
    for t in a.trials:
        assert len(t.train) == len(t.test) == 2
        assert t.values == [pytest.approx(sum(s.return_ for s in t.train) / 2)]
    best = max((t for t in a.trials if t.values), key=lambda t: (t.values or [0])[0])
    assert a.best is not None and a.best.number == best.number
    # the stored out-of-sample figure of fold 2 is a backtest of exactly that test window
    w = a.windows[1]
    rows = [c for c in candles if w.test_start - warmup * HOUR <= c.ts < w.test_end]
    f = tmp_path / "BTC_USDT-1h.json"
    f.write_text(json.dumps([[c.ts, c.open, c.high, c.low, c.close, c.volume] for c in rows]))
    bt = BacktestRequest("sma_cross", (str(f),), a.best.params, trade_from_ms=w.test_start)
    again = asyncio.run(run_backtest(Settings(), bt, tmp_path / "run"))
    assert score(again) == a.best.test[1]
    assert again.start_ms == w.test_start and again.end_ms == w.test_end


def test_the_run_and_its_trials_are_in_the_ledger(
    seeded: tuple[OptimizeResult, OptimizeResult, Path],
) -> None:
    a, _, data_dir = seeded
    (run_row,) = ledger_rows(data_dir, "SELECT * FROM optimization_runs")
    assert run_row["id"] == a.run_id and run_row["status"] == "done"
    assert run_row["study_name"] == a.study_name and run_row["sampler"] == "tpe"
    assert run_row["seed"] == 7 and run_row["n_trials"] == SEEDED_TRIALS and run_row["workers"] == 1
    assert json.loads(run_row["objectives"]) == ["return"]
    assert a.best is not None
    assert json.loads(run_row["best_params_json"]) == a.best.params
    best_values = json.loads(run_row["best_values_json"])
    assert best_values["out_of_sample"]["return"] == pytest.approx(a.best.test_return)
    data_json = json.loads(run_row["data_json"])
    assert [tuple(w.values()) for w in data_json["windows"]] == [tuple(w) for w in a.windows]
    trials = ledger_rows(data_dir, "SELECT * FROM optimization_trials ORDER BY number")
    assert [r["number"] for r in trials] == [t.number for t in a.trials]
    for row, t in zip(trials, a.trials, strict=True):
        assert row["run_id"] == a.run_id and row["state"] == "complete"
        assert json.loads(row["values_json"]) == t.values
        assert json.loads(row["test_json"])["folds"] == [s.as_dict() for s in t.test]
    assert (data_dir / "optuna.sqlite3").exists()


# -- NSGA-II ---------------------------------------------------------------------------------------


def test_nsga2_gives_a_pareto_front_of_return_and_drawdown(data: Path, tmp_path: Path) -> None:
    r = run(tmp_path / "d", request(data, sampler="nsga2", trials=6, seed=11), tmp_path / "w")
    done = [t for t in r.trials if t.state == "complete" and t.values]
    assert all(t.values is not None and len(t.values) == 2 for t in done)
    assert r.pareto and r.best is not None and r.best.number in {t.number for t in r.pareto}

    def dominates(x: TrialResult, y: TrialResult) -> bool:
        (rx, dx), (ry, dy) = x.values or [], y.values or []
        return rx >= ry and dx <= dy and (rx > ry or dx < dy)

    front = {t.number for t in r.pareto}
    for t in done:
        assert (t.number in front) == (not any(dominates(o, t) for o in done))
    assert r.best.values is not None
    assert all(
        r.best.values[0] - r.best.values[1] >= (p.values or [0, 0])[0] - (p.values or [0, 0])[1]
        for p in r.pareto
    )
    (row,) = ledger_rows(tmp_path / "d", "SELECT objectives, sampler FROM optimization_runs")
    assert json.loads(row["objectives"]) == ["return", "max_drawdown"] and row["sampler"] == "nsga2"


# -- shared studies --------------------------------------------------------------------------------


def test_two_worker_processes_share_one_sqlite_study(data: Path, tmp_path: Path) -> None:
    r = run(tmp_path / "d", request(data, trials=4, workers=2, study="shared"), tmp_path / "w")
    assert r.status == "done" and len(r.trials) == 4
    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{tmp_path / 'd' / 'optuna.sqlite3'}")
    stored = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in stored) == [0, 1, 2, 3]
    pids = {t.user_attrs["pid"] for t in stored}
    assert len(pids) == 2 and os.getpid() not in pids  # both workers did trials, the parent none
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in stored)
    assert {t.worker for t in r.trials} == {t.user_attrs["worker"] for t in stored}
    rows = ledger_rows(tmp_path / "d", "SELECT number FROM optimization_trials")
    assert sorted(row["number"] for row in rows) == [0, 1, 2, 3]
    (run_row,) = ledger_rows(tmp_path / "d", "SELECT workers FROM optimization_runs")
    assert run_row["workers"] == 2


def test_a_named_study_is_joined_and_other_settings_are_refused(data: Path, tmp_path: Path) -> None:
    first = run(tmp_path / "d", request(data, trials=1, study="s1"), tmp_path / "w1")
    second = run(tmp_path / "d", request(data, trials=1, study="s1", seed=8), tmp_path / "w2")
    assert second.study_trials == 2 and [t.number for t in second.trials] == [1]
    assert first.trials[0].number == 0
    with pytest.raises(OptimizeUsageError, match="--study s1: exists with other settings"):
        run(tmp_path / "d", request(data, trials=1, study="s1", folds=3), tmp_path / "w3")
    assert len(ledger_rows(tmp_path / "d", "SELECT id FROM optimization_runs")) == 2
