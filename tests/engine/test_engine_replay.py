"""The engine on real data: demo bots over Binance BTC/USDT and ETH/USDT 1h, start to end.

Everything is checked against the candle files and an independent FIFO written here
(Fractions), not against the engine's own figures.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from engine_helpers import (
    BTC_1H,
    ETH_1H,
    HOUR,
    F,
    bots,
    candle_index,
    connect,
    fill_tuples,
    fills,
    naive_fifo_realised,
    orders,
    raw_candles,
    replay,
    rows,
    settings_from,
)

from amarktai_tui.ledger.verify import verify

FILES = {"BTC/USDT": BTC_1H, "ETH/USDT": ETH_1H}
SLIPPAGE = Fraction(5, 10_000)  # the default paper.slippage_bps = 5
BINANCE_TAKER = Fraction(1, 1000)  # the exchange table: Binance spot VIP 0 taker 0.100%
TOL_PNL = Fraction(1, 10**8)


def test_bots_traded_on_both_pairs(full_1h_run: Path) -> None:
    fl = fills(full_1h_run)
    b = bots(full_1h_run)
    assert set(b) == {f"{c}-{s}" for c in ("btc", "eth") for s in ("ema", "rsi", "donchian")}
    assert {f["pair"] for f in fl} == {"BTC/USDT", "ETH/USDT"}
    sells = Counter(f["bot"] for f in fl if f["side"] == "sell")
    assert set(sells) == set(b), f"every demo bot closes at least one trade: {sells}"
    for f in fl:
        assert f["pair"] == b[f["bot"]]["pair"]
        assert f["exchange"] == "binance"
        assert f["fee_currency"] == "USDT"


def test_ledger_verifies(full_1h_run: Path) -> None:
    conn = connect(full_1h_run)
    try:
        res = verify(conn)
    finally:
        conn.close()
    assert res.ok, res.first_discrepancy
    assert res.summary["fills"] == len(fills(full_1h_run)) > 100


def test_realised_pnl_matches_an_independent_fifo(full_1h_run: Path) -> None:
    fl = fills(full_1h_run)
    mine = naive_fifo_realised(fl)
    for f in fl:
        got = F(f["realised_pnl"])
        assert abs(got - mine[f["fill_id"]]) <= TOL_PNL, (
            f["fill_id"],
            f["realised_pnl"],
            float(mine[f["fill_id"]]),
        )
    total = sum((F(f["realised_pnl"]) for f in fl), Fraction(0))
    assert abs(total - sum(mine.values(), Fraction(0))) <= TOL_PNL
    # and what the report says per bot is the same sum
    per_bot: dict[str, Fraction] = defaultdict(Fraction)
    for f in fl:
        per_bot[f["bot"]] += mine[f["fill_id"]]
    from amarktai_tui.ledger.report import account_report

    conn = connect(full_1h_run)
    try:
        rep = account_report(conn, max(f["ts"] for f in fl))
    finally:
        conn.close()
    for b in rep["bots"]:
        assert abs(F(b["realised"]) - per_bot[b["name"]]) <= TOL_PNL, b["name"]


def test_every_fill_is_the_next_candles_open_with_slippage(full_1h_run: Path) -> None:
    fl = fills(full_1h_run)
    ords = orders(full_1h_run)
    half_step = Fraction(1, 2 * 10**8)  # prices are rounded to 1e-8
    for f in fl:
        path = FILES[f["pair"]]
        idx = candle_index(path)
        data = raw_candles(path)
        assert f["ts"] in idx, f"{f['fill_id']}: ts {f['ts']} is not a candle open time of {path.name}"
        order = ords[f["client_order_id"]]
        assert order["order_type"] == "market"
        assert order["state"] == "filled"
        # no lookahead: decided on a closed candle strictly before the one it fills on ...
        assert order["decision_ts"] in idx
        assert order["decision_ts"] < f["ts"]
        # ... and it fills on the very next candle of the file (whatever the gap)
        assert idx[f["ts"]] == idx[order["decision_ts"]] + 1, f["fill_id"]
        # the order reached the broker when the decision candle closed
        assert order["created_ts"] == order["decision_ts"] + HOUR
        open_ = F(data[idx[f["ts"]]][1])
        want = open_ * (1 + SLIPPAGE) if f["side"] == "buy" else open_ * (1 - SLIPPAGE)
        assert abs(F(f["price"]) - want) <= half_step, (f["fill_id"], f["price"], float(want))
        assert f["liquidity"] == "taker"


def test_fees_are_notional_times_the_taker_rate(full_1h_run: Path) -> None:
    half_step = Fraction(1, 2 * 10**12)  # fees are rounded to 1e-12
    for f in fills(full_1h_run):
        want = F(f["quantity"]) * F(f["price"]) * BINANCE_TAKER
        assert abs(F(f["fee"]) - want) <= half_step, (f["fill_id"], f["fee"], float(want))


def test_stop_loss_exits_were_triggered_by_the_decision_candle(full_1h_run: Path) -> None:
    """A stop-loss sell is decided on a candle whose low reached entry x 0.95 (demo bots: 5%)."""
    fl = fills(full_1h_run)
    ords = orders(full_1h_run)
    entry: dict[int, Fraction] = {}
    seen = 0
    for f in fl:
        if f["side"] == "buy":
            entry[f["bot_id"]] = F(f["price"])
            continue
        order = ords[f["client_order_id"]]
        if not order["reason"].startswith("stop-loss"):
            continue
        seen += 1
        path = FILES[f["pair"]]
        low = F(raw_candles(path)[candle_index(path)[order["decision_ts"]]][3])
        assert low <= entry[f["bot_id"]] * Fraction(95, 100), f["fill_id"]
    assert seen > 0, "the real data holds drops of 5% within a trade"


def test_quantities_are_sized_and_positions_closed_whole(full_1h_run: Path) -> None:
    """Long-only: one buy, then one sell of the whole position; never more than capital x 35%."""
    fl = fills(full_1h_run)
    capital = {b["id"]: F(b["capital"]) for b in bots(full_1h_run).values()}
    held: dict[int, Fraction] = defaultdict(Fraction)
    for f in fl:
        qty = F(f["quantity"])
        assert qty > 0 and (qty * 10**8).denominator == 1
        if f["side"] == "buy":
            assert held[f["bot_id"]] == 0
            assert qty * F(f["price"]) + F(f["fee"]) <= capital[f["bot_id"]] * Fraction(35, 100)
            held[f["bot_id"]] += qty
        else:
            assert qty == held[f["bot_id"]]
            held[f["bot_id"]] = Fraction(0)


def test_second_identical_run_gives_identical_fills(full_1h_run: Path, tmp_path: Path) -> None:
    import asyncio

    asyncio.run(replay(settings_from(tmp_path), tmp_path, [BTC_1H, ETH_1H]))
    a, b = fills(full_1h_run), fills(tmp_path)
    assert fill_tuples(a) == fill_tuples(b)
    q = "SELECT client_order_id, side, quantity, state, decision_ts, created_ts FROM orders ORDER BY id"
    assert rows(full_1h_run, q) == rows(tmp_path, q)


def test_demo_capital_never_exceeds_the_starting_balance(full_1h_run: Path) -> None:
    """Demo bots split paper.starting_balance (10000); the split must not create money."""
    funding = sum(
        (Decimal(r["amount"]) for r in rows(full_1h_run, "SELECT amount FROM ledger_events")), Decimal(0)
    )
    assert len(bots(full_1h_run)) == 6
    assert funding <= Decimal(10_000)


def test_snapshots_follow_the_snapshot_interval(full_1h_run: Path) -> None:
    """Default engine.snapshot_interval is 1h: with 1h candles, one account snapshot per hour."""
    closes = {r[0] + HOUR for r in raw_candles(BTC_1H)}
    ts = [
        r["ts"]
        for r in rows(full_1h_run, "SELECT ts FROM equity_snapshots WHERE bot_id IS NULL ORDER BY ts, id")
    ]
    assert ts == sorted(set(ts)), "one account row per snapshot time"
    for a, b in itertools.pairwise(ts):
        if a + HOUR in closes:  # no data gap right after a
            assert b == a + HOUR, f"snapshot at {a} is followed by {b}, not {a + HOUR}"
