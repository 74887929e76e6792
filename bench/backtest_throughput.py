"""Backtest throughput: bot-candles/s of ``amarktai backtest`` against a floor measured in the same run.

Usage: python bench/backtest_throughput.py [--data PATH[,PATH]] [--strategy NAME] [--params JSON] [--json]

The backtest runs through ``ops.backtest.run_backtest`` (the replay engine path: feed ->
strategy -> risk pipeline -> paper broker -> SQLite ledger, then the report read back from the
ledger) with the default config. The floor is a bare Python loop over the same candles calling
only the strategy (a fresh instance per file, ``on_candle`` per candle; best of 3). Printed:
bot-candles/s of the engine run alone and end to end (loading, ledger set-up and the report
included, imports excluded), the floor, and the ratio engine / floor.
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
from amarktai_tui.config import Settings
from amarktai_tui.market import load_candles
from amarktai_tui.ops.backtest import BacktestRequest, effective_params, parse_params, run_backtest
from amarktai_tui.strategies.registry import make_strategy

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "binance" / "BTC_USDT-5m.json"


def floor(files: list[str], strategy: str, params: dict[str, object]) -> tuple[float, int]:
    """Seconds of the best of 3 bare loops (strategy only) over every file's candles; candles."""
    streams = [load_candles(f) for f in files]
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for candles in streams:
            on_candle = make_strategy(strategy, params).on_candle
            for c in candles:
                on_candle(c)
        best = min(best, time.perf_counter() - t0)
    return best, sum(len(s) for s in streams)


async def backtest(files: list[str], strategy: str, params: dict[str, object]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        result = await run_backtest(
            Settings(), BacktestRequest(strategy, tuple(files), params), Path(d) / "run"
        )
        total = time.perf_counter() - t0
    return {
        "candles": result.candles,
        "fills": result.fills,
        "trades": result.figures.stats.trades,
        "run_s": result.elapsed_s,
        "total_s": total,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DATA), help="candle file(s), comma-separated: one bot each")
    ap.add_argument("--strategy", default="sma_cross")
    ap.add_argument("--params", default="{}", help="strategy params as JSON")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    logging.getLogger().addHandler(logging.NullHandler())  # engine warnings (breaker trips) stay quiet
    files = [f for f in args.data.split(",") if f]
    params = parse_params(args.params)
    effective_params(args.strategy, params)  # a bad strategy or param fails before timing anything
    floor_s, n = floor(files, args.strategy, params)
    r = asyncio.run(backtest(files, args.strategy, params))
    out = {
        "strategy": args.strategy,
        "files": files,
        **r,
        "floor_s": floor_s,
        "floor_bot_candles_per_s": n / floor_s,
        "bot_candles_per_s": r["candles"] / r["run_s"],
        "end_to_end_bot_candles_per_s": r["candles"] / r["total_s"],
    }
    out["ratio_to_floor"] = out["bot_candles_per_s"] / out["floor_bot_candles_per_s"]
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(
        f"floor: bare {args.strategy} loop {out['floor_bot_candles_per_s']:,.0f} bot-candles/s over {n:,} candles"
    )
    print(
        f"backtest: {r['candles']:,.0f} candles, {r['fills']:,.0f} fills, {r['trades']:,.0f} trades; "
        f"engine run {r['run_s']:.2f} s = {out['bot_candles_per_s']:,.0f} bot-candles/s; "
        f"end to end {r['total_s']:.2f} s = {out['end_to_end_bot_candles_per_s']:,.0f} bot-candles/s"
    )
    print(f"ratio engine / floor: {out['ratio_to_floor']:.1%}")


if __name__ == "__main__":
    main()
