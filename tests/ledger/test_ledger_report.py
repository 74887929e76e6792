"""``report --json`` and ``status --json`` figures from a real ledger file."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal as D
from fractions import Fraction
from pathlib import Path

import pytest
from test_ledger_sim import Sim, dec, simulate

from amarktai_tui.ledger import reader, schema
from amarktai_tui.ledger.pnl import trades_from_fills
from amarktai_tui.ledger.report import account_report, period_starts, status_report

DAY = 86_400_000


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * 1000


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return simulate(tmp_path / schema.DB_FILENAME)


def test_period_starts() -> None:
    now = ms(2021, 3, 17, 12, 30)  # a Wednesday
    assert period_starts(now) == (ms(2021, 3, 17), ms(2021, 3, 15), ms(2021, 3, 1))
    assert period_starts(ms(2021, 3, 1)) == (ms(2021, 3, 1), ms(2021, 3, 1), ms(2021, 3, 1))


def test_account_report_matches_the_naive_simulation(sim: Sim) -> None:
    conn = schema.connect_readonly(str(sim.path))
    now = int(conn.execute("SELECT MAX(ts) FROM equity_snapshots").fetchone()[0])
    rep = account_report(conn, now)
    json.dumps(rep, allow_nan=False)
    bots = {b.id: b for b in sim.bots.values()}
    assert D(rep["equity"]) == D(dec(sum((sim.equity(i) for i in bots), Fraction(0))))
    assert D(rep["realised"]) == D(dec(sum((b.realised for b in bots.values()), Fraction(0))))
    assert D(rep["fees"]) == D(dec(sum((b.fees for b in bots.values()), Fraction(0))))
    assert rep["funding"] == "15000.5" and rep["quote_currencies"] == ["USDT"]
    last_acc = reader.latest_snapshot(conn, None)
    assert last_acc is not None and D(rep["equity"]) == last_acc.equity  # nothing happened since
    assert D(rep["equity"]) == D(rep["funding"]) + D(rep["realised"]) + D(rep["unrealised"])
    trades = trades_from_fills(reader.fills(conn))
    assert rep["trades"] == len(trades) > 10
    assert rep["win_rate"] == pytest.approx(sum(t.pnl > 0 for t in trades) / len(trades))
    assert 0 < rep["max_drawdown"] < 1 and 0 <= rep["drawdown"] <= rep["max_drawdown"]
    assert rep["returns"] == 13 and rep["sharpe"] is not None and rep["sortino"] is not None
    assert rep["calmar"] is not None
    assert rep["as_of"] == "2020-12-13T00:00:00.000Z"
    assert [b["name"] for b in rep["bots"]] == ["btc-bot", "eth-bot"]
    for b in rep["bots"]:
        sb = bots[b["id"]]
        assert D(b["equity"]) == D(dec(sim.equity(sb.id)))
        assert D(b["position_qty"]) == D(dec(sb.fifo.position))
        assert b["trades"] == len([t for t in trades if t.bot_id == sb.id])
        assert set(b) >= {"exchange", "pair", "strategy", "state", "stage", "sharpe", "pnl_today", "calmar"}
    assert sum(b["trades"] for b in rep["bots"]) == rep["trades"]


def test_realised_buckets_by_utc_calendar(tmp_path: Path) -> None:
    s = Sim(tmp_path / "b.sqlite3")
    bot = s.add_bot("b", "BTC/USDT", "1000")
    now = ms(2021, 3, 17, 12, 30)  # Wednesday
    times = {
        "last_month": ms(2021, 2, 28, 23, 59),
        "last_week": ms(2021, 3, 14, 23, 59),  # Sunday
        "week": ms(2021, 3, 15, 0, 0),  # Monday 00:00
        "today": ms(2021, 3, 17, 0, 0),
        "future": now + 1,
    }
    realised: dict[str, Fraction] = {}
    for i, (name, ts) in enumerate(times.items()):
        s.fill(bot, "buy", "0.01", "10000", "0.1", ts - 1000)
        s.fill(bot, "sell", "0.01", str(10000 + 100 * (i + 1)), "0.1", ts)
        realised[name] = s.bots[bot].realised - sum(realised.values(), Fraction(0))
    rep = account_report(s.conn, now)
    assert D(rep["pnl_today"]) == D(dec(realised["today"]))
    assert D(rep["pnl_week"]) == D(dec(realised["today"] + realised["week"]))
    month = realised["today"] + realised["week"] + realised["last_week"]
    assert D(rep["pnl_month"]) == D(dec(month))
    assert rep["bots"][0]["pnl_month"] == rep["pnl_month"]
    assert rep["trades"] == 5 and rep["win_rate"] == 1.0 and rep["profit_factor"] is None


def test_a_bot_added_later_is_a_cash_flow_not_a_return(tmp_path: Path) -> None:
    s = Sim(tmp_path / "f.sqlite3")
    t0 = ms(2021, 1, 1, 23)
    s.add_bot("a", "BTC/USDT", "1000", ts=t0 - 1000)
    for d in range(3):
        s.snapshot(t0 + d * DAY, {})
    s.add_bot("b", "ETH/USDT", "1000", ts=t0 + 3 * DAY - 1000)
    for d in range(3, 6):
        s.snapshot(t0 + d * DAY, {})
    rep = account_report(s.conn, t0 + 6 * DAY)
    assert rep["equity"] == "2000" and rep["returns"] == 6
    assert rep["annual_return"] == 0.0 and rep["sharpe"] is None  # all returns 0: no std
    assert rep["max_drawdown"] == 0.0 and rep["trades"] == 0 and rep["win_rate"] is None


def test_status_report(sim: Sim) -> None:
    conn = schema.connect_readonly(str(sim.path))
    now = ms(2021, 1, 1)
    st = status_report(conn, now)
    json.dumps(st, allow_nan=False)
    rep = account_report(conn, now)
    assert st["mode"] == "paper" and st["open_orders"] == 0
    for k in ("equity", "funding", "realised", "unrealised", "fees"):
        assert st[k] == rep[k]
    last = int(conn.execute("SELECT MAX(ts) FROM fills").fetchone()[0])
    assert st["last_fill_ts"] == last and st["last_fill_time"].endswith("Z")
    assert [(b["name"], b["state"]) for b in st["bots"]] == [("btc-bot", "running"), ("eth-bot", "running")]
    sim.conn.execute("INSERT INTO kv (key, value) VALUES ('trading_mode', 'live')")
    sim.order(1, "buy", "0.1", last + 1, state="pending")
    sim.order(1, "buy", "0.1", last + 2, state="open")
    sim.order(1, "buy", "0.1", last + 3, state="rejected")
    st = status_report(conn, now)
    assert st["mode"] == "live" and st["open_orders"] == 2


def test_empty_ledger(tmp_path: Path) -> None:
    s = Sim(tmp_path / "e.sqlite3")
    st = status_report(s.conn, 0)
    assert st["equity"] == "0" and st["bots"] == [] and st["last_fill_ts"] is None
    rep = account_report(s.conn, 0)
    assert rep["trades"] == 0 and rep["sharpe"] is None and rep["max_drawdown"] is None and rep["bots"] == []
