"""``ledger verify`` on a consistent simulated ledger and on each kind of corruption."""

from __future__ import annotations

import copy
import sqlite3
from decimal import Decimal as D
from fractions import Fraction
from pathlib import Path

import pytest
from test_ledger_sim import WALL_TS, Sim, dec, simulate

from amarktai_tui.ledger import schema
from amarktai_tui.ledger.verify import verify

BTC = 1


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return simulate(tmp_path / schema.DB_FILENAME)


def last_ts(s: Sim) -> int:
    return int(s.conn.execute("SELECT MAX(ts) FROM fills").fetchone()[0])


def raw_fill(
    s: Sim,
    side: str,
    qty: str,
    price: str,
    realised: str,
    *,
    bot_id: int = BTC,
    fee: str = "0",
    fee_currency: str = "USDT",
    pair: str = "BTC/USDT",
    coid: str | None = None,
    order_state: str = "filled",
    order_side: str | None = None,
    order_qty: str | None = None,
    ts: int | None = None,
) -> tuple[int, int]:
    """Insert a fill as given (plus its order unless ``coid``); return (fill row id, order row id)."""
    ts = last_ts(s) + 1000 if ts is None else ts
    if coid is None:
        coid = f"raw-{s.n}"
        s.n += 1
        s.conn.execute(
            "INSERT INTO orders (client_order_id, bot_id, exchange, pair, side, order_type, quantity, state,"
            " decision_ts, created_ts, updated_ts) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                coid,
                bot_id,
                "binance",
                pair,
                order_side or side,
                "market",
                order_qty or qty,
                order_state,
                ts,
                ts,
                ts,
            ),
        )
    oid = int(s.conn.execute("SELECT id FROM orders WHERE client_order_id = ?", (coid,)).fetchone()[0])
    cur = s.conn.execute(
        "INSERT INTO fills (fill_id, client_order_id, bot_id, exchange, pair, side, quantity, price, fee,"
        " fee_currency, liquidity, realised_pnl, ts) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (f"raw-fill-{s.n}-{ts}", coid, bot_id, "binance", pair, side, qty, price, fee, fee_currency, "taker",
         realised, ts),
    )  # fmt: skip
    return int(cur.lastrowid or 0), oid


def copy_snapshot(s: Sim, bot_id: int | None, **changes: object) -> int:
    """Insert a copy of the latest snapshot of ``bot_id`` (None = account) one ms later, with ``changes``."""
    where = "bot_id IS NULL" if bot_id is None else f"bot_id = {bot_id}"
    cols = [
        "ts",
        "bot_id",
        "equity",
        "realised",
        "unrealised",
        "fees",
        "position_qty",
        "mark_price",
        "fill_count",
    ]
    row = s.conn.execute(
        f"SELECT {', '.join(cols)} FROM equity_snapshots WHERE {where} ORDER BY ts DESC, id DESC LIMIT 1"
    ).fetchone()
    values = dict(zip(cols, row, strict=True))
    values["ts"] += 1
    values.update(changes)
    cur = s.conn.execute(
        f"INSERT INTO equity_snapshots ({', '.join(cols)}) VALUES ({','.join('?' * len(cols))})",
        [values[c] for c in cols],
    )
    return int(cur.lastrowid or 0)


def check(s: Sim, expected: str) -> None:
    res = verify(schema.connect_readonly(str(s.path)))
    assert not res.ok
    assert res.first_discrepancy == expected
    assert res.discrepancies[0] == expected
    assert res.summary["discrepancies"] >= 1


def open_position(s: Sim) -> None:
    """Make sure the BTC bot holds something at the end, with a snapshot after it."""
    s.fill(BTC, "buy", "0.01", "20000", "0.2", last_ts(s) + 1000)
    s.snapshot(last_ts(s), {BTC: Fraction(20100)})


def test_consistent_ledger_passes(sim: Sim) -> None:
    res = verify(schema.connect_readonly(str(sim.path)))
    assert res.ok, res.discrepancies
    assert res.first_discrepancy is None and res.discrepancies == ()
    s = res.summary
    assert s["bots"] == 2 and s["fills"] == len(sim.fill_ids) == s["orders"] and s["discrepancies"] == 0
    assert s["snapshots"] == 2 * s["account_snapshots"] > 50
    assert res.checks == s["checks"] > 10 * s["fills"]
    assert D(s["realised_pnl"]) == D(dec(sum((b.realised for b in sim.bots.values()), Fraction(0))))
    assert s["funding"] == "15000.5"


def test_wrong_realised_pnl_by_one_unit_in_the_18th_decimal(sim: Sim) -> None:
    open_position(sim)
    fifo = copy.deepcopy(sim.bots[BTC].fifo)
    qty = dec(Fraction(round(fifo.position / 3 * 10**8), 10**8))
    right = fifo.sell(Fraction(D(qty)), Fraction(21000), Fraction(1, 10))
    wrong = dec(right + Fraction(1, 10**18))
    fid, _ = raw_fill(sim, "sell", qty, "21000", wrong, fee="0.1")
    check(sim, f"fills id={fid} realised_pnl: expected {D(dec(right))}, found {D(wrong)}")


def test_sell_beyond_position(sim: Sim) -> None:
    open_position(sim)
    pos = sim.bots[BTC].fifo.position
    qty = dec(pos + Fraction(1, 10**8))
    fid, _ = raw_fill(sim, "sell", qty, "20000", "0")
    check(sim, f"fills id={fid} quantity: expected <= position {D(dec(pos))}, found {D(qty)}")


def test_buy_with_realised_pnl(sim: Sim) -> None:
    fid, _ = raw_fill(sim, "buy", "0.001", "20000", "1")
    check(sim, f"fills id={fid} realised_pnl: expected 0, found 1")


def test_fill_on_rejected_order(sim: Sim) -> None:
    _, oid = raw_fill(sim, "buy", "0.001", "20000", "0", order_state="rejected")
    check(sim, f"orders id={oid} state: expected filled or open (it has fills), found rejected")


def test_fill_side_differs_from_order(sim: Sim) -> None:
    fid, _ = raw_fill(sim, "buy", "0.001", "20000", "0", order_side="sell")
    check(sim, f"fills id={fid} side: expected sell, found buy")


def test_fills_exceed_order_quantity(sim: Sim) -> None:
    _, oid = raw_fill(sim, "buy", "0.001", "20000", "0")
    coid = sim.conn.execute("SELECT client_order_id FROM orders WHERE id = ?", (oid,)).fetchone()[0]
    raw_fill(sim, "buy", "0.001", "20000", "0", coid=coid)
    check(sim, f"orders id={oid} quantity: expected >= sum of fills 0.002, found 0.001")


def test_cancelled_after_partial_fill_is_fine_but_not_after_a_full_one(sim: Sim) -> None:
    _, oid = raw_fill(sim, "buy", "0.001", "20000", "0", order_state="cancelled")
    sim.conn.execute("UPDATE orders SET quantity = '0.002' WHERE id = ?", (oid,))
    assert verify(sim.conn).ok
    sim.conn.execute("UPDATE orders SET quantity = '0.001' WHERE id = ?", (oid,))
    check(sim, f"orders id={oid} state: expected filled (fills reach its quantity), found cancelled")


def test_filled_order_without_fills(sim: Sim) -> None:
    sim.order(BTC, "buy", "0.5", last_ts(sim) + 1)
    oid = sim.conn.execute("SELECT MAX(id) FROM orders").fetchone()[0]
    check(sim, f"orders id={oid} state: expected not filled (it has no fills), found filled")


def test_cash_goes_negative(sim: Sim) -> None:
    fid, _ = raw_fill(sim, "buy", "1", "100000", "0")
    cash = sim.bots[BTC].cash - 100000
    check(sim, f"fills id={fid} cash of bot 1: expected >= 0, found {D(dec(cash))}")


def test_top_up_counts_only_from_its_time(tmp_path: Path) -> None:
    s = Sim(tmp_path / "x.sqlite3")
    bot = s.add_bot("b", "BTC/USDT", "100", ts=WALL_TS)
    s.conn.execute(
        "INSERT INTO ledger_events (ts, bot_id, kind, amount, currency) VALUES (?,?,?,?,?)",
        (5000, bot, "allocation", "1000", "USDT"),
    )
    fid, _ = raw_fill(s, "buy", "1", "500", "0", bot_id=bot, ts=4999)
    check(s, f"fills id={fid} cash of bot 1: expected >= 0, found -400")
    s2 = Sim(tmp_path / "y.sqlite3")
    bot = s2.add_bot("b", "BTC/USDT", "100", ts=WALL_TS)  # opening funding stamped after the fills: fine
    s2.conn.execute(
        "INSERT INTO ledger_events (ts, bot_id, kind, amount, currency) VALUES (?,?,?,?,?)",
        (5000, bot, "allocation", "1000", "USDT"),
    )
    raw_fill(s2, "buy", "1", "500", "0", bot_id=bot, ts=5000)
    assert verify(s2.conn).ok


@pytest.mark.parametrize(
    ("field", "delta"),
    [
        ("realised", D("0.01")),
        ("unrealised", D("-0.000000000000000001")),
        ("fees", D("1")),
        ("position_qty", D("0.00000001")),
        ("equity", D("5")),
    ],
)
def test_bot_snapshot_field_wrong(sim: Sim, field: str, delta: D) -> None:
    open_position(sim)
    row = sim.conn.execute(
        f"SELECT {field} FROM equity_snapshots WHERE bot_id = {BTC} ORDER BY ts DESC, id DESC LIMIT 1"
    ).fetchone()
    right = D(row[0])
    sid = copy_snapshot(sim, BTC, **{field: str(right + delta)})
    check(sim, f"equity_snapshots id={sid} {field}: expected {right}, found {right + delta}")


def test_snapshot_without_mark_while_holding(sim: Sim) -> None:
    open_position(sim)
    sid = copy_snapshot(sim, BTC, mark_price=None)
    check(sim, f"equity_snapshots id={sid} mark_price: expected a price (position is open), found NULL")


def test_snapshot_fill_count_beyond_the_fills(sim: Sim) -> None:
    n = sim.bots[BTC].fills
    sid = copy_snapshot(sim, BTC, fill_count=n + 5)
    check(sim, f"equity_snapshots id={sid} fill_count: expected 0..{n}, found {n + 5}")


def test_account_row_not_the_sum_of_bot_rows(sim: Sim) -> None:
    acc = D(
        sim.conn.execute("SELECT equity FROM equity_snapshots WHERE id = ?", (sim.snap_ids[-1],)).fetchone()[
            0
        ]
    )
    copy_snapshot(sim, 1)
    copy_snapshot(sim, 2)
    sid = copy_snapshot(sim, None, equity=str(acc + 1))
    check(sim, f"equity_snapshots id={sid} equity: expected {acc} (sum of bot rows), found {acc + 1}")


def test_fee_in_a_third_currency(sim: Sim) -> None:
    fid, _ = raw_fill(sim, "buy", "0.001", "20000", "0", fee="0.01", fee_currency="BNB")
    check(sim, f"fills id={fid} fee_currency: expected base or quote of BTC/USDT, found BNB")


def test_pair_not_the_bots(sim: Sim) -> None:
    fid, _ = raw_fill(sim, "buy", "0.001", "600", "0", pair="ETH/USDT")
    check(sim, f"fills id={fid} pair: expected BTC/USDT, found ETH/USDT")


def test_unparseable_money(sim: Sim) -> None:
    fid, _ = raw_fill(sim, "buy", "abc", "20000", "0", order_qty="1")
    check(sim, f"fills id={fid} quantity: expected a decimal string, found 'abc'")


def test_orphan_fill(sim: Sim) -> None:
    sim.conn.execute("PRAGMA foreign_keys=OFF")
    ts = last_ts(sim) + 1
    cur = sim.conn.execute(
        "INSERT INTO fills (fill_id, client_order_id, bot_id, exchange, pair, side, quantity, price, fee,"
        " fee_currency, liquidity, realised_pnl, ts) VALUES ('x', 'nope', 1, 'binance', 'BTC/USDT', 'buy',"
        " '0.001', '100', '0', 'USDT', 'taker', '0', ?)",
        (ts,),
    )
    check(sim, f"fills id={cur.lastrowid} foreign key: expected a row in orders, found none")


def test_missing_trigger(sim: Sim) -> None:
    sim.conn.execute("DROP TRIGGER fills_no_update")
    check(sim, "sqlite_master id=fills_no_update trigger: expected present, found missing")


@pytest.mark.parametrize("table", ["fills", "ledger_events"])
def test_append_only_tables_reject_update_and_delete(sim: Sim, table: str) -> None:
    column = "price" if table == "fills" else "amount"
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        sim.conn.execute(f"UPDATE {table} SET {column} = '1' WHERE id = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        sim.conn.execute(f"DELETE FROM {table} WHERE id = 1")
    assert sim.conn.execute(f"SELECT COUNT(*) FROM {table} WHERE id = 1").fetchone()[0] == 1


def test_account_rows_sum_each_bots_latest_row_as_of_their_time(sim: Sim) -> None:
    last = sim.conn.execute("SELECT MAX(ts) FROM equity_snapshots").fetchone()[0]
    sim.snapshot(last, {})  # a second batch at the same market time (a replay run again)
    assert verify(sim.conn).ok
    sid = copy_snapshot(sim, None, equity="0")  # an account row that forgot the bots' equity
    res = verify(sim.conn)
    assert res.first_discrepancy is not None
    assert res.first_discrepancy.startswith(f"equity_snapshots id={sid} equity: expected ")
    assert res.first_discrepancy.endswith("(sum of bot rows), found 0")
