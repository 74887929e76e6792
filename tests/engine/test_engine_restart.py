"""Restart: a run cut short and resumed on the same ledger equals one uninterrupted run."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from pathlib import Path

import pytest
from engine_helpers import (
    BTC_1H,
    ETH_1H,
    bots,
    candle_index,
    connect,
    fill_tuples,
    fills,
    orders,
    raw_candles,
    replay,
    rows,
    settings_from,
    write_prefix,
)

from amarktai_tui.domain.enums import BotState
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.ledger.verify import verify


def _verify_ok(data_dir: Path) -> None:
    conn = connect(data_dir)
    try:
        res = verify(conn)
    finally:
        conn.close()
    assert res.ok, res.first_discrepancy


def _cut_with_an_open_order(full: Path) -> int:
    """A cut (ts) in the middle of the data such that an order decided on the last candle before
    the cut fills on the first candle after it: the first run ends with that order open."""
    fl = [f for f in fills(full) if f["pair"] == "BTC/USDT"]
    mid = raw_candles(BTC_1H)[len(raw_candles(BTC_1H)) // 2][0]
    f = next(f for f in fl if f["ts"] > mid)
    return int(f["ts"])


def _cut_while_long(full: Path) -> int:
    """A cut two candles after a buy whose sell comes later: the first run ends holding a position."""
    fl = [f for f in fills(full) if f["pair"] == "ETH/USDT"]
    idx = candle_index(ETH_1H)
    mid = raw_candles(ETH_1H)[len(raw_candles(ETH_1H)) // 3][0]
    for buy, sell in itertools.pairwise(fl):
        same_bot = sell["bot_id"] == buy["bot_id"]
        if buy["side"] == "buy" and buy["ts"] > mid and same_bot and idx[sell["ts"]] - idx[buy["ts"]] >= 4:
            return int(raw_candles(ETH_1H)[idx[buy["ts"]] + 2][0])
    raise AssertionError("no suitable position in the data")


@pytest.mark.parametrize("where", ["open-order", "long-position"])
def test_restart_equals_an_uninterrupted_run(full_1h_run: Path, tmp_path: Path, where: str) -> None:
    cut = _cut_with_an_open_order(full_1h_run) if where == "open-order" else _cut_while_long(full_1h_run)
    data_dir = tmp_path / "data"
    half = [write_prefix(BTC_1H, tmp_path / "half", cut), write_prefix(ETH_1H, tmp_path / "half", cut)]
    asyncio.run(replay(settings_from(tmp_path), data_dir, half))

    first = fills(data_dir)
    active = rows(data_dir, "SELECT client_order_id FROM orders WHERE state IN ('pending', 'open')")
    if where == "open-order":
        assert active, "the first run must end with an order in flight (the test's premise)"
    else:
        held = Counter()
        for f in first:
            held[f["bot"]] += 1 if f["side"] == "buy" else -1
        assert any(held.values()), "the first run must end holding a position (the test's premise)"
    assert all(f["ts"] < cut for f in first)
    _verify_ok(data_dir)

    asyncio.run(replay(settings_from(tmp_path), data_dir, [BTC_1H, ETH_1H]))

    resumed, whole = fills(data_dir), fills(full_1h_run)
    assert len(resumed) == len(whole)
    for a, b in zip(resumed, whole, strict=True):  # fill by fill: ids, prices, quantities, PnL
        assert fill_tuples([a]) == fill_tuples([b])
    coids = [f["client_order_id"] for f in resumed]
    assert len(coids) == len(set(coids)), "no order filled twice"
    assert orders(data_dir).keys() == orders(full_1h_run).keys()
    q = "SELECT client_order_id, side, quantity, state, decision_ts FROM orders ORDER BY client_order_id"
    assert rows(data_dir, q) == rows(full_1h_run, q)
    _verify_ok(data_dir)


def test_restart_does_not_rewrite_past_equity_snapshots(full_1h_run: Path, tmp_path: Path) -> None:
    cut = _cut_with_an_open_order(full_1h_run)
    data_dir = tmp_path / "data"
    half = [write_prefix(BTC_1H, tmp_path / "half", cut), write_prefix(ETH_1H, tmp_path / "half", cut)]
    asyncio.run(replay(settings_from(tmp_path), data_dir, half))
    asyncio.run(replay(settings_from(tmp_path), data_dir, [BTC_1H, ETH_1H]))
    snaps = rows(data_dir, "SELECT ts, bot_id, fill_count FROM equity_snapshots WHERE bot_id IS NOT NULL")
    fill_ts: dict[int, list[int]] = {}
    for f in fills(data_dir):
        fill_ts.setdefault(f["bot_id"], []).append(f["ts"])
    keys = Counter((s["bot_id"], s["ts"]) for s in snaps)
    assert max(keys.values()) == 1, "one snapshot per bot and time"
    for s in snaps:  # a snapshot at ts includes no fill from after ts
        assert s["fill_count"] <= sum(1 for t in fill_ts.get(s["bot_id"], []) if t <= s["ts"]), s


TRAILING_BOT = """
[[bots]]
name = "btc-trail"
exchange = "binance"
pair = "BTC/USDT"
timeframe = "1h"
strategy = "sma_cross"
capital = "1000"
trailing_stop = "0.03"

[risk]  # this test needs a bot that keeps trading after the peak
max_consecutive_losses = 1000
bot_max_drawdown = "0.9"
account_max_drawdown = "0.9"
"""


def test_restart_while_long_with_a_trailing_stop(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, TRAILING_BOT)
    whole = tmp_path / "whole"
    asyncio.run(replay(settings, whole, [BTC_1H]))
    fl = fills(whole)
    idx = candle_index(BTC_1H)
    data = raw_candles(BTC_1H)
    peak_ts = max(data, key=lambda r: r[2])[0]  # the all-time high of the file (April 2021)
    cut = None
    for buy, sell in itertools.pairwise(fl):
        if buy["side"] == "buy" and buy["ts"] > peak_ts and idx[sell["ts"]] - idx[buy["ts"]] >= 4:
            cut = data[idx[buy["ts"]] + 2][0]
            break
    assert cut is not None
    resumed = tmp_path / "resumed"
    asyncio.run(replay(settings, resumed, [write_prefix(BTC_1H, tmp_path / "half", cut)]))
    asyncio.run(replay(settings, resumed, [BTC_1H]))
    assert fill_tuples(fills(resumed)) == fill_tuples(fl)


async def test_paused_state_persists_across_restart(full_1h_run: Path, tmp_path: Path) -> None:
    cut = _cut_with_an_open_order(full_1h_run)
    data_dir = tmp_path / "data"
    half = [write_prefix(BTC_1H, tmp_path / "half", cut), write_prefix(ETH_1H, tmp_path / "half", cut)]
    settings = settings_from(tmp_path)

    engine, feed = await open_engine(settings, data_dir, ReplayArgs([str(p) for p in half], until_end=True))
    try:
        await engine.run(feed)
        bot = engine.runner_by_name("eth-ema")
        await engine.set_bot_state(bot.rec.id, BotState.PAUSED, "paused for the test")
    finally:
        await engine.store.close()
    assert bots(data_dir)["eth-ema"]["state"] == "paused"
    assert bots(data_dir)["eth-ema"]["state_reason"] == "paused for the test"

    engine, feed = await open_engine(
        settings, data_dir, ReplayArgs([str(BTC_1H), str(ETH_1H)], until_end=True)
    )
    try:
        bot = engine.runner_by_name("eth-ema")
        assert bot.rec.state is BotState.PAUSED
        assert bot.rec.state_reason == "paused for the test"
        assert engine.runner_by_name("eth-rsi").rec.state is BotState.RUNNING
        await engine.run(feed)
    finally:
        await engine.store.close()
    assert bots(data_dir)["eth-ema"]["state"] == "paused"
    after = [f for f in fills(data_dir) if f["bot"] == "eth-ema" and f["ts"] >= cut]
    assert not [f for f in after if f["side"] == "buy"], "a paused bot opens nothing new"
    # it was flat or had one position: at most its exit happens after the cut
    assert len(after) <= 1
    # the other bots traded on as in an uninterrupted run
    others = [f for f in fills(data_dir) if f["bot"] != "eth-ema"]
    assert fill_tuples(others) == fill_tuples([f for f in fills(full_1h_run) if f["bot"] != "eth-ema"])
    _verify_ok(data_dir)
