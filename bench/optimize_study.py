"""One optimisation study of 100 trials over BTC/USDT 5m, walk-forward, against a one-backtest floor.

Usage: python bench/optimize_study.py [--data PATH] [--strategy NAME] [--trials N] [--folds K]
       [--sampler tpe|nsga2] [--seed S] [--workers N] [--json]

The study runs through ``autonomy.optimize.optimize`` (TPE seeded by default, one worker, 3
walk-forward folds, the default config; storage and ledger in a temporary data dir): every trial
backtests its parameters on each fold's train window and scores each test window, all through
the replay engine path (``ops.backtest.run_backtest``). The floor is ONE bare backtest of the same
data with the strategy's default parameters, end to end (ledger set-up and report included).
Printed: wall time, trials/s, seconds per trial, the floor, and the ratio seconds per trial /
floor (a trial covers the data about once: folds tile the range, plus each window's warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
from pathlib import Path

import amarktai_tui.engine.setup  # noqa: F401 - imported (ccxt and all) before anything is timed
from amarktai_tui.autonomy.optimize import OptimizeRequest, optimize
from amarktai_tui.config import Settings
from amarktai_tui.ops.backtest import BacktestRequest, run_backtest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "binance" / "BTC_USDT-5m.json"


def floor(data: str, strategy: str) -> tuple[float, int]:
    """Wall seconds of one backtest of ``data`` with default params (end to end); its candles."""
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        result = asyncio.run(run_backtest(Settings(), BacktestRequest(strategy, (data,)), Path(d) / "run"))
        return time.perf_counter() - t0, result.candles


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--strategy", default="sma_cross")
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--sampler", choices=("tpe", "nsga2"), default="tpe")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # breaker trips of the trials' backtests are not the point here

    floor_s, candles = floor(args.data, args.strategy)
    request = OptimizeRequest(
        strategy=args.strategy,
        files=(args.data,),
        trials=args.trials,
        sampler=args.sampler,
        seed=args.seed,
        folds=args.folds,
        workers=args.workers,
    )
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        result = optimize(Settings(), Path(d) / "data", request, work_dir=Path(d) / "work")
        wall = time.perf_counter() - t0
    best = result.best
    out = {
        "data": args.data,
        "candles": candles,
        "strategy": args.strategy,
        "sampler": args.sampler,
        "seed": args.seed,
        "folds": args.folds,
        "workers": args.workers,
        "trials": len(result.trials),
        "wall_s": wall,
        "trials_per_s": len(result.trials) / wall,
        "s_per_trial": wall / len(result.trials),
        "floor_backtest_s": floor_s,
        "trial_over_floor": wall / len(result.trials) / floor_s,
        "best": None
        if best is None
        else {
            "number": best.number,
            "params": best.params,
            "in_sample_return": best.train_return,
            "out_of_sample_return": best.test_return,
        },
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(
        f"{args.strategy} on {args.data}: {candles:,} candles, {args.folds} folds, {args.sampler} seed {args.seed}"
    )
    print(
        f"study: {out['trials']} trials in {wall:.1f} s ({out['trials_per_s']:.3f} trials/s, "
        f"{out['s_per_trial']:.2f} s per trial, {args.workers} worker(s))"
    )
    print(
        f"floor: one backtest of the whole file {floor_s:.2f} s; a trial = {out['trial_over_floor']:.2f} x floor"
    )
    if best is not None:
        print(
            f"best trial {best.number}: {best.params}; in-sample return {best.train_return:+.2%}, "
            f"out-of-sample {best.test_return:+.2%}"
        )


if __name__ == "__main__":
    main()
