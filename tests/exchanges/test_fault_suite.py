"""Fault suite: a live session through the whole engine against a loopback Binance that misbehaves.

Six bots trade real BTC/USDT and ETH/USDT 5m candles through the engine, the
risk pipeline and CcxtBroker (real ccxt, real HTTP, a real SQLite ledger).
The exchange answers a seeded share of every request with a fault: 503, 429
with Retry-After, a timeout, a truncated JSON body, or an order accepted and
its answer lost. At the end every order must be resolved, no client order id
may have been accepted twice by the exchange, and the ledger's fills must be
the exchange's trades, one for one, with the same quantities, prices and fees.

``AMARKTAI_FAULT_CANDLES`` (default 2000, about 2,000 orders) sets how many candles per pair run;
the figures of a run are printed (``pytest -s``) for the closing note.
"""

from __future__ import annotations

import os
import sqlite3
import time
from decimal import Decimal
from pathlib import Path

from live_helpers import (
    ClockedFeed,
    compare,
    finish_session,
    ledger,
    live_settings,
    settle_orders,
    slice_files,
    start_ms,
)
from loopback.binance import BinanceLoopback

from amarktai_tui.engine.live_setup import make_live_broker
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.ledger.verify import verify
from amarktai_tui.locations import db_path

KINDS = ["5xx", "429", "timeout", "malformed", "lost"]


async def test_thousands_of_orders_under_faults_end_with_the_ledger_equal_to_the_exchange(
    tmp_path: Path,
) -> None:
    candles = int(os.environ.get("AMARKTAI_FAULT_CANDLES", "2000"))
    files = slice_files(tmp_path / "candles", candles)
    t0 = time.perf_counter()
    async with BinanceLoopback.running(
        start_ms=start_ms(), balances={"USDT": Decimal(1_000_000)}, split_trades=2, seed=7
    ) as srv:
        assert srv.url is not None
        settings = live_settings(tmp_path, srv.url)
        data = tmp_path / "data"
        creds = {"binance": {"api_key": srv.api_key, "api_secret": srv.secret}}
        # a loopback answers synchronously: an order it does not find was never placed, so no grace
        broker = make_live_broker(settings, ["binance"], creds, resubmit_grace_s=0.0)
        client = broker.clients["binance"]
        assert client.enableRateLimit  # the app's setting; off here: a loopback needs no spacing
        client.enableRateLimit = False
        client.timeout_on_exit = 0
        broker.backoff_base_s = 0.01  # read retries back off in milliseconds, not seconds
        await broker.start(load_fees=False)
        srv.faults.set_rate(0.12, kinds=KINDS, seed=11)
        engine, feed = await open_engine(
            settings, data, ReplayArgs([str(f) for f in files], speed=0, until_end=True), broker=broker
        )

        try:
            await engine.run(ClockedFeed(feed, srv.book.set_time, settle=lambda: settle_orders(broker)))
            await finish_session(engine, broker)
        finally:
            await broker.close()
            await engine.store.close()
        state = srv.book.state()
        state["faults"] = dict(srv.faults.injected)
    elapsed = time.perf_counter() - t0
    orders, fills = ledger(db_path(data))
    got = compare(state, orders, fills)
    c = broker.counters
    print(
        f"\nfault suite: {candles} candles x 2 pairs, {got['orders']} orders sent, {got['server_orders']} at the "
        f"exchange, {got['fills']} fills; faults injected {sum(state['faults'].values())} {state['faults']}; "
        f"unknown {c.unknown}, resends {c.resends}, duplicates refused {c.duplicates_refused}, "
        f"read retries {c.read_retries}; duplicates {len(got['duplicates'])}; {elapsed:.1f} s"
    )
    gates: dict[str, int] = {}
    for o in orders:
        gates[o["gate"] or o["state"]] = gates.get(o["gate"] or o["state"], 0) + 1
    print("orders by gate/state", gates, "candles", engine.candles_seen, {o["bot_id"] for o in orders})
    if got["mismatched"]:
        fid = got["mismatched"][0]
        print(
            [t for t in state["trades"] if f"binance:{t['id']}" == fid],
            [f for f in fills if f["fill_id"] == fid],
        )
    assert got["duplicates"] == {}
    assert got["unresolved"] == [] and got["rejected_but_placed"] == []
    assert got["missing_fills"] == [] and got["extra_fills"] == [] and got["mismatched"] == []
    assert got["server_orders"] >= 1800 if candles >= 2000 else got["server_orders"] > 0
    assert sum(state["faults"].values()) >= got["server_orders"] // 10 and set(state["faults"]) == set(KINDS)
    assert c.unknown > 0 and c.resends > 0  # the faults really hit orders in flight
    conn = sqlite3.connect(f"file:{db_path(data)}?mode=ro", uri=True)
    try:
        result = verify(conn)
    finally:
        conn.close()
    assert result.ok, result.discrepancies[:5]
