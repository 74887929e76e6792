"""Replay throughput: N bots over real 5m candles through the whole path into SQLite.

Usage: python bench/replay_throughput.py [--bots 1,10,45] [--data PATH] [--risk default|wide]

Reports, for each bot count, bot-candles/s end to end (feed -> strategies ->
paper broker -> ledger, a real SQLite file) and its ratio to a floor
measured in the same run: a bare Python loop computing the same SMA-cross
signals over the same candles (no engine, no I/O). Also fills written per
second against a raw ``executemany`` floor into the same schema.
Targets (issue 2): 45 bots end to end <= 20 s on the 2-core machine, and
>= 5% of the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
from collections import deque
from decimal import Decimal
from pathlib import Path

from amarktai_tui.config import BotSettings, RiskSettings, Settings
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.ledger.schema import configure, migrate
from amarktai_tui.market import load_candles

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "binance" / "BTC_USDT-5m.json"
# (exchange, cap) in the order bots are spread, so 45 bots respect every exchange's cap
SLOTS = [("binance", 10), ("kucoin", 10), ("valr", 10), ("ovex", 10), ("luno", 5)]
STRATS = [
    ("sma_cross", {}),
    ("rsi_reversion", {}),
    ("donchian_breakout", {}),
    ("sma_cross", {"fast": 20, "slow": 50, "kind": "ema"}),
]


# "default": the [risk] defaults (breakers trip, bots stop opening: fewer fills);
# "wide": breakers opened wide, so every bot trades the whole file through every gate
RISK = {
    "default": RiskSettings(),
    "wide": RiskSettings(
        max_consecutive_losses=10**6,
        bot_max_drawdown=Decimal("0.99"),
        account_max_drawdown=Decimal("0.99"),
        account_daily_loss=Decimal("0.99"),
        bot_trades_per_day=10**6,
        account_trades_per_day=10**6,
    ),
}


def bots(n: int) -> list[BotSettings]:
    out: list[BotSettings] = []
    slots = [ex for ex, cap in SLOTS for _ in range(cap)]
    for i in range(n):
        strategy, params = STRATS[i % len(STRATS)]
        out.append(
            BotSettings(
                name=f"bench-{i:02d}",
                exchange=slots[i],
                pair="BTC/USDT",
                timeframe="5m",
                strategy=strategy,
                params=params,
                capital=Decimal(1000),
                stop_loss=Decimal("0.05"),
            )
        )
    return out


def floor_sma_cross(closes: list[float], fast: int = 10, slow: int = 30) -> tuple[float, int]:
    """Bare loop: incremental SMA fast/slow and cross detection. Returns (seconds, signals)."""
    t0 = time.perf_counter()
    fq: deque[float] = deque()
    sq: deque[float] = deque()
    fs = ss = 0.0
    prev = 0
    signals = 0
    for c in closes:
        fq.append(c)
        sq.append(c)
        fs += c
        ss += c
        if len(fq) > fast:
            fs -= fq.popleft()
        if len(sq) > slow:
            ss -= sq.popleft()
        if len(sq) == slow:
            diff = fs / fast - ss / slow
            sign = 1 if diff > 0 else -1 if diff < 0 else 0
            if prev and sign != prev:
                signals += 1
            prev = sign
    return time.perf_counter() - t0, signals


async def engine_run(n: int, data: Path, workdir: Path, risk: str = "default") -> dict[str, float]:
    settings = Settings(bots=bots(n), risk=RISK[risk])
    t0 = time.perf_counter()
    engine, feed = await open_engine(settings, workdir, ReplayArgs([str(data)], speed=0.0, until_end=True))
    t1 = time.perf_counter()
    await engine.run(feed)
    t2 = time.perf_counter()
    await engine.store.close()
    return {
        "bots": n,
        "candles": engine.candles_seen,
        "fills": engine.fills_seen,
        "setup_s": t1 - t0,
        "run_s": t2 - t1,
        "total_s": t2 - t0,
    }


def raw_fill_floor(n_rows: int) -> float:
    """Seconds to executemany ``n_rows`` fill-shaped rows into the same schema (one transaction)."""
    with tempfile.TemporaryDirectory() as d:
        conn = sqlite3.connect(str(Path(d) / "floor.sqlite3"), isolation_level=None)
        configure(conn)
        migrate(conn)
        conn.execute(
            "INSERT INTO bots (id, name, exchange, pair, timeframe, strategy, risk_mode, capital, state, stage,"
            " created_ts, updated_ts) VALUES (1,'b','binance','BTC/USDT','5m','sma_cross','safe','1','running',"
            "'paper_training',0,0)"
        )
        orders = [
            (f"o{i}", 1, "binance", "BTC/USDT", "buy", "market", "0.1", "filled", 0, 0, 0)
            for i in range(n_rows)
        ]
        fills = [
            (
                f"f{i}",
                f"o{i}",
                1,
                "binance",
                "BTC/USDT",
                "buy",
                "0.1",
                "19000.5",
                "0.019",
                "USDT",
                "taker",
                "0",
                i,
            )
            for i in range(n_rows)
        ]
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO orders (client_order_id, bot_id, exchange, pair, side, order_type, quantity,"
            " state, decision_ts, created_ts, updated_ts) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            orders,
        )
        conn.execute("COMMIT")
        t0 = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO fills (fill_id, client_order_id, bot_id, exchange, pair, side, quantity, price,"
            " fee, fee_currency, liquidity, realised_pnl, ts) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            fills,
        )
        conn.execute("COMMIT")
        dt = time.perf_counter() - t0
        conn.close()
        return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bots", default="1,10,45")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--risk", choices=sorted(RISK), default="default", help="breakers at defaults or opened wide"
    )
    args = ap.parse_args()
    candles = load_candles(str(args.data))
    closes = [c.close for c in candles]
    floor_s, _ = min((floor_sma_cross(closes) for _ in range(3)), key=lambda r: r[0])
    floor_rate = len(closes) / floor_s
    results = []
    for n in (int(x) for x in args.bots.split(",")):
        with tempfile.TemporaryDirectory() as d:
            r = asyncio.run(engine_run(n, args.data, Path(d), args.risk))
        r["bot_candles_per_s"] = r["bots"] * len(candles) / r["run_s"]
        r["ratio_to_floor"] = r["bot_candles_per_s"] / floor_rate
        r["fills_per_s"] = r["fills"] / r["run_s"]
        if r["fills"]:
            raw = raw_fill_floor(int(r["fills"]))
            r["raw_fill_insert_per_s"] = r["fills"] / raw
        results.append(r)
    out = {"candles": len(candles), "floor_candles_per_s": floor_rate, "runs": results}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"floor: bare SMA-cross loop {floor_rate:,.0f} candles/s over {len(candles):,} candles")
    for r in results:
        print(
            f"{r['bots']:>3} bots: run {r['run_s']:.2f}s (total {r['total_s']:.2f}s), "
            f"{r['bot_candles_per_s']:,.0f} bot-candles/s = {r['ratio_to_floor']:.1%} of floor; "
            f"{r['fills']:.0f} fills, {r['fills_per_s']:,.0f} fills/s"
            + (
                f" (raw executemany floor {r['raw_fill_insert_per_s']:,.0f}/s)"
                if r.get("raw_fill_insert_per_s")
                else ""
            )
        )


if __name__ == "__main__":
    main()
