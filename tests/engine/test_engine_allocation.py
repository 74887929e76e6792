"""The capital allocator applied by the engine: ledger events in pairs, capital, breakers unmoved."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from engine_helpers import BTC_1H, ETH_1H, connect, replay, rows, settings_from

from amarktai_tui.engine.events import BreakerTripped, CapitalChanged
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.ledger.verify import verify

WIDE = """
[risk]
max_consecutive_losses = 1000
bot_max_drawdown = "0.9"
account_max_drawdown = "0.9"
account_daily_loss = "0.9"

[allocator]
min_trades = 3
"""


async def test_a_plan_is_a_preview_and_applying_it_writes_paired_allocation_events(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, WIDE)
    data = tmp_path / "data"
    await replay(settings, data, [BTC_1H, ETH_1H])
    engine, _feed = await open_engine(settings, data, ReplayArgs([str(BTC_1H)], until_end=True))
    seen: list[object] = []
    engine.bus.subscribe(CapitalChanged, seen.append)
    engine.bus.subscribe(BreakerTripped, seen.append)
    try:
        before = {r.rec.name: r.rec.capital for r in engine.runners.values()}
        equity = engine.account_equity()
        plan = engine.allocation_plan()
        assert plan.account_equity == equity  # nothing in the pool yet
        assert {r.rec.name: r.rec.capital for r in engine.runners.values()} == before  # a preview only
        ranked = [a for a in plan.allocations if a.score is not None]
        assert ranked and plan.changes, "the demo bots have enough trades to rank and differ enough"
        done = await engine.apply_allocation(plan, actor="user")
        assert done and all(isinstance(e, CapitalChanged) for e in seen)  # no breaker tripped on a flow
        for a in done:
            assert engine.runners[a.bot_id].rec.capital == a.new_capital
        # equity moved with the capital: account equity + pool is unchanged
        assert engine.account_equity() + engine.pool == equity
    finally:
        await engine.flush()
        await engine.store.close()
    events = rows(data, "SELECT * FROM ledger_events WHERE kind = 'allocation' ORDER BY id")
    assert len(events) == 2 * len(done)
    for bot_row, pool_row in zip(events[::2], events[1::2], strict=True):
        assert pool_row["bot_id"] is None and Decimal(bot_row["amount"]) == -Decimal(pool_row["amount"])
    caps = {r["id"]: Decimal(r["capital"]) for r in rows(data, "SELECT id, capital FROM bots")}
    assert all(caps[a.bot_id] == a.new_capital for a in done)
    conn = connect(data)
    try:
        res = verify(conn)
    finally:
        conn.close()
    assert res.ok, res.first_discrepancy


def test_a_scheduled_allocator_runs_on_market_time(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, WIDE.replace("min_trades = 3", 'min_trades = 3\ninterval = "7d"'))
    data = tmp_path / "data"
    asyncio.run(replay(settings, data, [BTC_1H, ETH_1H]))
    events = rows(data, "SELECT ts, note FROM ledger_events WHERE kind = 'allocation'")
    assert events and all("allocator (engine)" in e["note"] for e in events)
    week = 7 * 86_400_000
    assert all(e["ts"] % week < 3_600_000 for e in events)  # at the first close past a 7-day boundary
