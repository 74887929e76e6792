"""``ops.platforms``: the Platforms pane's per-exchange figures against a real replay (BTC and ETH 1h
candles, the 6 demo bots on Binance, default breakers: three of them trip), recomputed here from
the raw ledger rows and from the engine's own running figures; API health from real ApiBreakers."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from amarktai_tui.config import load_settings
from amarktai_tui.domain.enums import BotState
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.exchanges.api_breaker import ApiBreaker, ApiState
from amarktai_tui.exchanges.registry import EXCHANGES
from amarktai_tui.ledger import schema
from amarktai_tui.locations import db_path
from amarktai_tui.ops.platforms import (
    LedgerRead,
    PlatformRow,
    as_of_ms,
    empty_figures,
    exchange_bots,
    platform_rows,
    read_ledger,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance"


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[TradingEngine, Path]:
    """The engine after a whole BTC+ETH 1h replay (default config), and its ledger."""
    data_dir = tmp_path_factory.mktemp("platforms") / "data"
    files = [str(DATA / "BTC_USDT-1h.json"), str(DATA / "ETH_USDT-1h.json")]

    async def run() -> TradingEngine:
        engine, feed = await open_engine(
            load_settings(None), data_dir, ReplayArgs(files, speed=0, until_end=True)
        )
        try:
            await engine.run(feed)
        finally:
            await engine.store.close()
        return engine

    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("AMARKTAI_")]:
            mp.delenv(key)
        engine = asyncio.run(run())
    return engine, db_path(data_dir)


def naive_closed_trades(db: Path, exchange: str) -> list[tuple[int, Decimal]]:
    """``(exit ts, pnl)`` of every round trip on ``exchange``: flat -> long -> flat per bot and pair,
    its PnL the sum of its sells' stored realised PnL."""
    conn = schema.connect_readonly(str(db))
    try:
        rows = conn.execute(
            "SELECT bot_id, pair, side, quantity, realised_pnl, ts FROM fills WHERE exchange = ? ORDER BY id",
            (exchange,),
        ).fetchall()
    finally:
        conn.close()
    position: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    pnl: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    out = []
    for r in rows:
        key, qty = (r["bot_id"], r["pair"]), Decimal(r["quantity"])
        if r["side"] == "buy":
            position[key] += qty
            continue
        position[key] -= qty
        pnl[key] += Decimal(r["realised_pnl"])
        if position[key] == 0:
            out.append((r["ts"], pnl.pop(key)))
    return out


def raw_realised(db: Path, exchange: str, since: int, until: int) -> Decimal:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        values = conn.execute(
            "SELECT realised_pnl FROM fills WHERE exchange = ? AND ts BETWEEN ? AND ?",
            (exchange, since, until),
        ).fetchall()
    finally:
        conn.close()
    return sum((Decimal(v) for (v,) in values), Decimal(0))


def by_id(rows: list[PlatformRow]) -> dict[str, PlatformRow]:
    return {r.exchange: r for r in rows}


def test_every_exchange_of_the_registry_with_its_bots_against_the_cap(
    replayed: tuple[TradingEngine, Path],
) -> None:
    engine, db = replayed
    rows = platform_rows(engine.runners.values(), read_ledger(db, engine.now_ms), {})
    assert [r.exchange for r in rows] == list(EXCHANGES), "every exchange, those without a bot too"
    got = by_id(rows)
    running = [r for r in engine.runners.values() if r.rec.state is BotState.RUNNING]
    tripped = [r for r in engine.runners.values() if r.rec.state is BotState.CIRCUIT_TRIPPED]
    assert len(engine.runners) == 6 and tripped, "the default breakers trip some demo bots"
    binance = got["binance"]
    assert (binance.bots, binance.active, binance.cap_usage) == (6, len(running), "6/10")
    assert binance.active < binance.bots, "a breaker-tripped bot is not active"
    assert (got["luno"].cap_usage, got["luno"].active) == ("0/5", 0)
    for ex in ("kucoin", "valr", "ovex"):
        assert got[ex].cap_usage == "0/10"
        assert got[ex].figures == empty_figures(ex), "no bot, no fill: zero figures, no win rate"
        assert got[ex].api is None


def test_money_trades_and_win_rate_against_the_ledger_and_the_engine(
    replayed: tuple[TradingEngine, Path],
) -> None:
    engine, db = replayed
    trades = naive_closed_trades(db, "binance")
    # "now" at the last closing fill, so that today has trades; then at the end of the replay
    last_exit = trades[-1][0]
    for now in (last_exit, engine.now_ms):
        fig = by_id(platform_rows(engine.runners.values(), read_ledger(db, now), {}))["binance"].figures
        assert fig is not None
        day = (
            int(datetime.fromtimestamp(now / 1000, UTC).replace(hour=0, minute=0, second=0).timestamp())
            * 1000
        )
        today = [(ts, pnl) for ts, pnl in trades if day <= ts <= now]
        assert fig.today == raw_realised(db, "binance", day, now)
        assert fig.trades_today == len(today) and (today or now != last_exit)
        assert fig.trades == len(trades)
        assert fig.win_rate == sum(1 for _, pnl in trades if pnl > 0) / len(trades)
    # the engine counted the same in memory, by another path
    runners = [r for r in engine.runners.values() if r.rec.exchange == "binance"]
    assert (
        fig.realised
        == sum((r.stats.realised for r in runners), Decimal(0))
        == raw_realised(db, "binance", 0, now)
    )
    assert fig.total == sum((r.equity() - r.funding for r in runners), Decimal(0))
    assert fig.trades == sum(r.stats.trades for r in runners)
    assert fig.wins == sum(r.stats.wins for r in runners)


def test_the_drill_down_lists_one_exchanges_bots_with_their_figures(
    replayed: tuple[TradingEngine, Path],
) -> None:
    engine, _ = replayed
    lines = exchange_bots(engine.runners.values(), "binance")
    assert [b.id for b in lines] == sorted(engine.runners)
    for b in lines:
        r = engine.runners[b.id]
        assert (b.name, b.pair, b.strategy, b.state, b.stage) == (
            r.rec.name, r.rec.pair, r.rec.strategy, r.rec.state, r.rec.stage
        )  # fmt: skip
        assert (b.realised, b.trades, b.win_rate) == (r.stats.realised, r.stats.trades, r.win_rate)
    assert exchange_bots(engine.runners.values(), "luno") == []


def test_api_health_per_exchange_from_real_breakers(replayed: tuple[TradingEngine, Path]) -> None:
    engine, db = replayed
    now = [100.0]
    binance = ApiBreaker("binance", failures=2, cooldown_s=60, clock=lambda: now[0])
    kucoin = ApiBreaker("kucoin", failures=2, cooldown_s=60, clock=lambda: now[0])
    for latency in (0.010, 0.020, 0.030):
        binance.success(latency)
        kucoin.success(latency / 10)
    binance.failure("binance GET /api/v3/order: timeout")
    binance.failure("binance GET /api/v3/order: 503 Service Unavailable")
    now[0] += 15
    health = {b.exchange: b.health() for b in (binance, kucoin)}
    got = by_id(platform_rows(engine.runners.values(), read_ledger(db, engine.now_ms), health))
    assert got["binance"].api == health["binance"]
    api = got["binance"].api
    assert api is not None and api.state is ApiState.OPEN and api.retry_in_s == 45
    assert api.last_error == "binance GET /api/v3/order: 503 Service Unavailable"
    assert api.latency_p50_ms == pytest.approx(20) and api.latency_p99_ms is not None
    assert got["kucoin"].api is not None and got["kucoin"].api.state is ApiState.CLOSED
    assert got["luno"].api is None, "no breaker for it: no API in use"
    assert engine.api_health() == {}, "the paper broker calls no API"


def test_an_unreadable_ledger_is_said_not_raised(
    tmp_path: Path, replayed: tuple[TradingEngine, Path]
) -> None:
    engine, _ = replayed
    missing = read_ledger(tmp_path / "nothing.db", 0)
    assert missing.error.startswith("ledger not read: no ledger at") and missing.by_exchange == {}
    rows = platform_rows(engine.runners.values(), missing, {})
    assert all(r.figures is None for r in rows), "no figures rather than zeros"
    assert by_id(rows)["binance"].bots == 6, "the bots still count"
    extra = platform_rows([], LedgerRead(0, {"bitstamp": empty_figures("bitstamp")}), {})
    assert [r.exchange for r in extra][-1] == "bitstamp" and extra[-1].cap_usage == "0/-"


def test_now_is_market_time_in_a_replay_and_the_wall_clock_live(replayed: tuple[TradingEngine, Path]) -> None:
    engine, _ = replayed
    assert not engine.realtime and as_of_ms(engine, wall_ms=1) == engine.now_ms
    engine.realtime = True
    try:
        assert as_of_ms(engine, wall_ms=1_700_000_000_000) == 1_700_000_000_000
    finally:
        engine.realtime = False
