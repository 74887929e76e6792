"""The profit service (``ledger.profits``) against a ledger from a real replay, recomputed here
independently (plain FIFO with Fractions over the fills rows, UTC calendar with ``datetime``),
plus hand-made ledgers for the UTC period boundaries, paper/live and exchanges, and the countdown.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from amarktai_tui.config import load_settings
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.ledger import schema
from amarktai_tui.ledger.profits import (
    ProfitService,
    bucket_label,
    countdown,
    fill_venue,
    period_bounds,
)
from amarktai_tui.ledger.reader import FillRow
from amarktai_tui.ledger.report import account_report
from amarktai_tui.locations import db_path

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance"
BTC_1H, ETH_1H = DATA / "BTC_USDT-1h.json", DATA / "ETH_USDT-1h.json"
DAY = 86_400_000


def ms(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0, milli: int = 0) -> int:
    return int(datetime(y, m, d, hh, mm, ss, tzinfo=UTC).timestamp()) * 1000 + milli


def utc_date(ts: int) -> date:
    return datetime.fromtimestamp(ts / 1000, UTC).date()


# -- a ledger from a real replay ------------------------------------------------------------


def replay_ledger(data_dir: Path, files: list[Path]) -> Path:
    """One finite replay (default config: 3 demo bots per pair) through the real engine."""

    async def run() -> None:
        engine, feed = await open_engine(
            load_settings(None), data_dir, ReplayArgs([str(f) for f in files], speed=0, until_end=True)
        )
        try:
            await engine.run(feed)
        finally:
            await engine.store.close()

    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in __import__("os").environ if k.startswith("AMARKTAI_")]:
            mp.delenv(key)
        asyncio.run(run())
    return db_path(data_dir)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    path = replay_ledger(tmp_path_factory.mktemp("profits") / "data", [BTC_1H, ETH_1H])
    conn = schema.connect_readonly(str(path))
    yield conn
    conn.close()


@dataclass
class Naive:
    """Figures recomputed from the raw rows with Fractions (no code shared with ledger.pnl)."""

    realised: dict[int, Fraction]  # fills.id -> realised PnL of that fill (0 for buys)
    fees: dict[int, Fraction]  # fills.id -> fee in quote
    trades: list[tuple[int, str, int, Fraction]]  # (bot_id, exchange, exit ts, pnl)
    position: dict[tuple[int, str, str], tuple[Fraction, Fraction]]  # qty, cost basis
    last_price: dict[int, Fraction]


def naive(conn: sqlite3.Connection) -> tuple[list[sqlite3.Row], Naive]:
    rows = conn.execute("SELECT * FROM fills ORDER BY id").fetchall()
    lots: dict[tuple[int, str, str], list[list[Fraction]]] = defaultdict(list)
    open_trade: dict[tuple[int, str, str], Fraction] = {}
    out = Naive({}, {}, [], {}, {})
    for r in rows:
        key = (r["bot_id"], r["exchange"], r["pair"])
        qty, price = Fraction(D(r["quantity"])), Fraction(D(r["price"]))
        fee = Fraction(D(r["fee"])) * (price if r["fee_currency"] == r["pair"].split("/")[0] else 1)
        out.fees[r["id"]] = fee
        out.last_price[r["bot_id"]] = price
        if r["side"] == "buy":
            lots[key].append([qty, qty * price + fee])
            open_trade[key] = open_trade.get(key, Fraction(0)) - qty * price - fee
            out.realised[r["id"]] = Fraction(0)
            continue
        left, closed = qty, Fraction(0)
        while left > 0:
            lot = lots[key][0]
            take = min(lot[0], left)
            cost = lot[1] * take / lot[0]
            closed += cost
            lot[0] -= take
            lot[1] -= cost
            left -= take
            if lot[0] == 0:
                lots[key].pop(0)
        out.realised[r["id"]] = qty * price - fee - closed
        open_trade[key] += qty * price - fee
        if not lots[key]:
            out.trades.append((r["bot_id"], r["exchange"], r["ts"], open_trade.pop(key)))
    for key, ls in lots.items():
        out.position[key] = (sum((x[0] for x in ls), Fraction(0)), sum((x[1] for x in ls), Fraction(0)))
    return rows, out


def close(a: str | D, b: Fraction, tol: str = "1e-9") -> bool:
    return abs(Fraction(D(a)) - b) < Fraction(D(tol))


def test_figures_match_an_independent_fifo(ledger: sqlite3.Connection) -> None:
    rows, nv = naive(ledger)
    sells = [r for r in rows if r["side"] == "sell"]
    assert len(sells) > 50
    now = sells[40]["ts"] + 3_600_000  # mid-history: "today" has a closing fill
    svc = ProfitService.read(ledger)
    fig = svc.figures(now)

    funding = sum(
        (Fraction(D(r[0])) for r in ledger.execute("SELECT amount FROM ledger_events")), Fraction(0)
    )
    realised = sum(nv.realised.values(), Fraction(0))
    unrealised = Fraction(0)
    for (bot, _ex, _pair), (qty, cost) in nv.position.items():
        snap = ledger.execute(  # marked at the later of the last snapshot's mark and the last fill
            "SELECT ts, mark_price FROM equity_snapshots WHERE bot_id = ? ORDER BY ts DESC, id DESC LIMIT 1",
            (bot,),
        ).fetchone()
        last_fill = max(r["ts"] for r in rows if r["bot_id"] == bot)
        mark = Fraction(D(snap[1])) if snap and snap[0] >= last_fill else nv.last_price[bot]
        unrealised += qty * mark - cost
    assert Fraction(fig.capital) == funding and close(fig.realised, realised)
    assert close(fig.fees, sum(nv.fees.values(), Fraction(0)))
    assert close(fig.unrealised, unrealised)
    assert fig.total == fig.realised + fig.unrealised and fig.equity == fig.capital + fig.total

    def realised_between(start: date, end: date) -> Fraction:
        return sum(
            (nv.realised[r["id"]] for r in rows if start <= utc_date(r["ts"]) < end and r["ts"] <= now),
            Fraction(0),
        )

    today = utc_date(now)
    monday = today - timedelta(days=today.weekday())
    first = today.replace(day=1)
    prev_first = (first - timedelta(days=1)).replace(day=1)
    next_first = (first + timedelta(days=32)).replace(day=1)
    assert close(fig.today, realised_between(today, today + timedelta(days=1)))
    assert fig.today != 0
    assert close(fig.yesterday, realised_between(today - timedelta(days=1), today))
    assert close(fig.this_week, realised_between(monday, monday + timedelta(days=7)))
    assert close(fig.last_week, realised_between(monday - timedelta(days=7), monday))
    assert close(fig.this_month, realised_between(first, next_first))
    assert close(fig.last_month, realised_between(prev_first, first))

    # trade stats over every closed trade (the figures' as-of only bounds the period sums)
    pnls = [p for *_, p in nv.trades]
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    st = fig.stats
    assert st.trades == len(pnls) > 20
    assert st.win_rate == pytest.approx(len(wins) / len(pnls))
    assert st.profit_factor == pytest.approx(float(sum(wins) / -sum(losses)))
    assert st.expectancy is not None and close(st.expectancy, sum(pnls, Fraction(0)) / len(pnls))
    assert st.avg_win is not None and close(st.avg_win, sum(wins, Fraction(0)) / len(wins))
    assert st.avg_loss is not None and close(st.avg_loss, sum(losses, Fraction(0)) / len(losses))
    assert fig.trades_today == sum(1 for b, _, t, _ in nv.trades if utc_date(t) == today and t <= now)

    # max drawdown of the stored account equity (opening capital first), recomputed here
    eq = [Fraction(D(r[0])) for r in ledger.execute(
        "SELECT equity FROM equity_snapshots WHERE bot_id IS NULL ORDER BY ts, id")]  # fmt: skip
    peak, worst = funding, Fraction(0)
    for e in eq:
        peak = max(peak, e)
        worst = max(worst, (peak - e) / peak)
    assert st.max_drawdown == pytest.approx(float(worst))


def test_the_report_json_comes_from_the_same_figures(ledger: sqlite3.Connection) -> None:
    now = int(ledger.execute("SELECT MAX(ts) FROM equity_snapshots").fetchone()[0])
    svc = ProfitService.read(ledger)
    fig, rep = svc.figures(now), account_report(ledger, now)
    for key, value in (("equity", fig.equity), ("realised", fig.realised), ("fees", fig.fees)):
        assert D(rep[key]) == value, key
    assert (D(rep["pnl_today"]), D(rep["pnl_week"]), D(rep["pnl_month"])) == (
        fig.today,
        fig.this_week,
        fig.this_month,
    )
    for key in (
        "trades",
        "win_rate",
        "profit_factor",
        "max_drawdown",
        "sharpe",
        "sortino",
        "calmar",
        "returns",
    ):
        assert rep[key] == getattr(fig.stats, key), key
    # every fill of a paper replay is paper
    assert {fill_venue(f) for f in svc.fills()} == {"paper"}
    paper, live = svc.figures(now, "paper"), svc.figures(now, "live")
    assert paper.realised == fig.realised and paper.stats.trades == fig.stats.trades
    assert live.realised == 0 and live.stats.trades == 0 and live.capital == 0


@pytest.mark.parametrize("period", ["daily", "weekly", "monthly"])
def test_series_bucket_by_the_closing_fill_in_utc(ledger: sqlite3.Connection, period: Any) -> None:
    rows, nv = naive(ledger)
    now = int(ledger.execute("SELECT MAX(ts) FROM equity_snapshots").fetchone()[0])
    series = ProfitService.read(ledger).series(period, now)

    def key(ts: int) -> date:
        d = utc_date(ts)
        if period == "weekly":
            return d - timedelta(days=d.weekday())
        return d.replace(day=1) if period == "monthly" else d

    pnl: dict[date, Fraction] = defaultdict(Fraction)
    count: dict[date, int] = defaultdict(int)
    for r in rows:
        pnl[key(r["ts"])] += nv.realised[r["id"]]
    for *_, t, _p in nv.trades:
        count[key(t)] += 1
    assert series[0].start_ms <= rows[0]["ts"] < series[0].end_ms
    assert series[-1].start_ms <= now < series[-1].end_ms
    for a, b in itertools.pairwise(series):
        assert a.end_ms == b.start_ms  # contiguous, empty periods included
    for b in series:
        d = utc_date(b.start_ms)
        assert b.start_ms == ms(d.year, d.month, d.day) and key(b.start_ms) == d
        assert close(b.pnl, pnl.get(d, Fraction(0))) and b.trades == count.get(d, 0)
    assert close(sum((b.pnl for b in series), D(0)), sum(nv.realised.values(), Fraction(0)))
    first, last = key(rows[0]["ts"]), key(now)  # from the first fill's period to now's
    if period == "monthly":
        expected = (last.year - first.year) * 12 + last.month - first.month + 1
    else:
        expected = (last - first).days // (7 if period == "weekly" else 1) + 1
    assert len(series) == expected


# -- hand-made ledgers ----------------------------------------------------------------------


class Book:
    """Writes bots, orders, fills and snapshots straight into a fresh ledger file."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(str(path), isolation_level=None)
        schema.configure(self.conn)
        schema.migrate(self.conn)
        self.n = 0

    def bot(self, name: str, exchange: str = "binance", capital: str = "1000", stage: str = "paper_training",
            state: str = "running", pair: str = "BTC/USDT") -> int:  # fmt: skip
        cur = self.conn.execute(
            "INSERT INTO bots (name, exchange, pair, timeframe, strategy, risk_mode, capital, state, stage,"
            " created_ts, updated_ts) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (name, exchange, pair, "1h", "sma_cross", "balanced", capital, state, stage, 0, 0),
        )
        bot_id = int(cur.lastrowid or 0)
        self.conn.execute(
            "INSERT INTO ledger_events (ts, bot_id, kind, amount, currency, note) VALUES (0,?,'funding',?,?,'')",
            (bot_id, capital, pair.split("/")[1]),
        )
        return bot_id

    def fill(self, bot: int, side: str, qty: str, price: str, ts: int, realised: str = "0",
             fee: str = "0", live: bool = False) -> None:  # fmt: skip
        ex, pair = self.conn.execute("SELECT exchange, pair FROM bots WHERE id = ?", (bot,)).fetchone()
        quote = pair.split("/")[1]
        self.n += 1
        coid = f"am{bot}-{self.n}-{side[0]}0"
        self.conn.execute(
            "INSERT INTO orders (client_order_id, bot_id, exchange, pair, side, order_type, quantity, state,"
            " decision_ts, created_ts, updated_ts) VALUES (?,?,?,?,?,'market',?,'filled',?,?,?)",
            (coid, bot, ex, pair, side, qty, ts, ts, ts),
        )
        fill_id = f"{ex}:{1000 + self.n}" if live else f"{coid}-f1"
        self.conn.execute(
            "INSERT INTO fills (fill_id, client_order_id, bot_id, exchange, pair, side, quantity, price, fee,"
            " fee_currency, liquidity, realised_pnl, ts) VALUES (?,?,?,?,?,?,?,?,?,?,'taker',?,?)",
            (fill_id, coid, bot, ex, pair, side, qty, price, fee, quote, realised, ts),
        )

    def round_trip(self, bot: int, exit_ts: int, pnl: str, *, live: bool = False) -> None:
        """Buy 1 at 100 an hour before ``exit_ts``, sell 1 at 100 + pnl at ``exit_ts`` (no fees)."""
        self.fill(bot, "buy", "1", "100", exit_ts - 3_600_000, live=live)
        self.fill(bot, "sell", "1", str(100 + D(pnl)), exit_ts, realised=pnl, live=live)


def test_utc_period_boundaries(tmp_path: Path) -> None:
    b = Book(tmp_path / "b.sqlite3")
    bot = b.bot("a")
    # ISO week 53 of 2020 ends on Sunday 2021-01-03; a month ends on 2021-01-31 (a Sunday)
    exits = {
        "2020-12-31 23:59:59.999": (ms(2020, 12, 31, 23, 59, 59, 999), "1"),
        "2021-01-01 00:00": (ms(2021, 1, 1), "2"),
        "2021-01-03 23:59:59.999": (ms(2021, 1, 3, 23, 59, 59, 999), "4"),
        "2021-01-04 00:00": (ms(2021, 1, 4), "8"),
        "2021-01-31 23:59:59.999": (ms(2021, 1, 31, 23, 59, 59, 999), "16"),
        "2021-02-01 00:00": (ms(2021, 2, 1), "32"),
        "2021-02-01 12:00": (ms(2021, 2, 1, 12), "64"),
        "after now": (ms(2021, 2, 1, 12, 0, 0, 1), "128"),
    }
    for ts, pnl in exits.values():
        b.round_trip(bot, ts, pnl)
    svc = ProfitService.read(b.conn)
    now = ms(2021, 2, 1, 12)  # Monday
    daily = {x.label: (x.pnl, x.trades) for x in svc.series("daily", now)}
    assert daily["2020-12-31"] == (1, 1) and daily["2021-01-01"] == (2, 1)
    assert daily["2021-01-03"] == (4, 1) and daily["2021-01-04"] == (8, 1)
    assert daily["2021-01-31"] == (16, 1) and daily["2021-02-01"] == (96, 2)  # 128 is after now
    assert daily["2021-01-02"] == (0, 0) and list(daily)[-1] == "2021-02-01"
    weekly = {x.label: x.pnl for x in svc.series("weekly", now)}
    assert weekly == {
        "2020-W53": 7,
        "2021-W01": 8,
        "2021-W02": 0,
        "2021-W03": 0,
        "2021-W04": 16,
        "2021-W05": 96,
    }
    monthly = {x.label: x.pnl for x in svc.series("monthly", now)}
    assert monthly == {"2020-12": 1, "2021-01": 30, "2021-02": 96}
    f = svc.figures(now)
    assert (f.today, f.yesterday, f.this_week, f.last_week, f.this_month, f.last_month) == (
        96,
        16,
        96,
        16,
        96,
        30,
    )
    assert f.trades_today == 2 and f.realised == 255  # all-time figures include the later fill
    assert period_bounds("weekly", now) == (ms(2021, 2, 1), ms(2021, 2, 8))
    assert period_bounds("monthly", ms(2020, 12, 31, 23)) == (ms(2020, 12, 1), ms(2021, 1, 1))
    assert bucket_label("weekly", ms(2021, 1, 4)) == "2021-W01"


def test_paper_and_live_are_told_apart_by_the_fill_id(tmp_path: Path) -> None:
    b = Book(tmp_path / "v.sqlite3")
    trained = b.bot("trained", stage="live", capital="2000")
    paper_only = b.bot("paper-only")
    day = ms(2021, 3, 10)
    b.round_trip(trained, day + 1 * 3_600_000, "10")  # paper training first
    b.round_trip(trained, day + 3 * 3_600_000, "-4")
    b.round_trip(trained, day + 5 * 3_600_000, "7", live=True)  # then live
    b.fill(trained, "buy", "2", "100", day + 6 * 3_600_000, live=True)  # an open live lot
    b.round_trip(paper_only, day + 2 * 3_600_000, "5")
    b.fill(paper_only, "buy", "1", "50", day + 7 * 3_600_000)  # an open paper lot
    now = day + 8 * 3_600_000
    b.conn.execute(
        "INSERT INTO equity_snapshots (ts, bot_id, equity, realised, unrealised, fees, position_qty, mark_price)"
        " VALUES (?, ?, '0', '0', '0', '0', '2', '110'), (?, ?, '0', '0', '0', '0', '1', '60')",
        (now, trained, now, paper_only),
    )
    svc = ProfitService.read(b.conn)
    rows = b.conn.execute("SELECT fill_id, exchange FROM fills").fetchall()
    live_ids = {r[0] for r in rows if r[0].startswith("binance:")}
    assert {f.fill_id for f in svc.fills("live")} == live_ids and len(live_ids) == 3
    allf, paper, live = (svc.figures(now, v) for v in ("all", "paper", "live"))
    assert (live.realised, live.unrealised, live.stats.trades) == (7, 2 * 110 - 200, 1)
    assert (paper.realised, paper.unrealised, paper.stats.trades) == (11, 60 - 50, 3)
    assert allf.realised == paper.realised + live.realised
    assert allf.unrealised == paper.unrealised + live.unrealised
    assert live.capital == 2000 and paper.capital == 3000 and allf.capital == 3000
    assert live.equity == 2000 + 7 + 20
    assert live.stats.win_rate == 1.0 and paper.stats.win_rate == pytest.approx(2 / 3)
    assert [x.pnl for x in svc.series("daily", now, "live")] == [7]
    # per exchange and per bot views agree
    (ex,) = svc.by_exchange(now)
    assert (ex.exchange, ex.bots, ex.live, ex.trades, ex.trades_today) == ("binance", 2, 1, 4, 4)
    assert ex.total == allf.total and ex.today == 18
    (lex,) = svc.by_exchange(now, "live")
    assert lex.total == 27 and lex.trades == 1


def test_figures_per_exchange(tmp_path: Path) -> None:
    b = Book(tmp_path / "e.sqlite3")
    bn = b.bot("bn", "binance")
    bn2 = b.bot("bn2", "binance", state="paused")
    lu = b.bot("lu", "luno", pair="BTC/ZAR", stage="live")
    today = ms(2021, 5, 5)
    b.round_trip(bn, today - DAY, "30")  # yesterday
    b.round_trip(bn, today + 3_600_000, "-10")
    b.round_trip(bn2, today + 7_200_000, "5")
    b.round_trip(lu, today + 3_600_000, "200")
    b.round_trip(lu, today + 7_200_000, "-50")
    b.round_trip(lu, today + 9_000_000, "-20")
    rows = {e.exchange: e for e in ProfitService.read(b.conn).by_exchange(today + 10_000_000)}
    assert list(rows) == ["binance", "luno"]
    binance, luno = rows["binance"], rows["luno"]
    assert (binance.bots, binance.active, binance.live) == (2, 1, 0)
    assert (binance.today, binance.total, binance.trades, binance.trades_today) == (-5, 25, 3, 2)
    assert binance.win_rate == pytest.approx(2 / 3) and binance.fills_today == 4
    assert (luno.bots, luno.active, luno.live, luno.today, luno.trades_today) == (1, 1, 1, 130, 3)
    assert luno.win_rate == pytest.approx(1 / 3) and luno.capital == 1000


# -- countdown --------------------------------------------------------------------------------


def _growth(
    days: int, daily: float, start: D = D(10_000), t0: int = ms(2021, 1, 1, 12)
) -> list[tuple[int, D]]:
    """One equity point per day (noon UTC), compounding ``daily``; the first point is the opening."""
    return [(t0 + i * DAY, start * D(repr((1 + daily) ** i))) for i in range(days + 1)]


def test_countdown_linear_and_compound() -> None:
    pts = _growth(40, 0.01)
    now, equity = pts[-1][0], pts[-1][1]
    c = countdown(pts, [], now, D(1_000_000), equity)
    assert (c.status, c.days, c.window) == ("ok", 40, 30)
    assert c.mean_return == pytest.approx(0.01) and c.compound_return == pytest.approx(0.01)
    ratio = 1_000_000 / float(equity)
    assert c.days_linear == pytest.approx((ratio - 1) / 0.01)
    assert c.days_compound == pytest.approx(math.log(ratio) / math.log(1.01))
    assert c.days_compound < c.days_linear
    assert c.eta_compound_ms == now + round(c.days_compound * DAY)
    # only the trailing 30 days count: a bad start is forgotten
    bad = [(t, e) for t, e in _growth(10, -0.05)]
    tail = _growth(30, 0.01, bad[-1][1], bad[-1][0] + DAY)
    c2 = countdown(bad + tail, [], tail[-1][0], D(1_000_000), tail[-1][1])
    assert c2.window == 30 and c2.mean_return == pytest.approx(0.01)
    # uneven returns: linear uses the arithmetic mean, compound the geometric one
    rets = [0.03, -0.01] * 5
    levels = [D(10_000)]
    for r in rets:
        levels.append(levels[-1] * D(repr(1 + r)))
    pts3 = [(ms(2021, 3, 1, 12) + i * DAY, v) for i, v in enumerate(levels)]
    c3 = countdown(pts3, [], pts3[-1][0], D(20_000), levels[-1])
    geo = math.prod(1 + r for r in rets) ** (1 / len(rets)) - 1
    assert c3.mean_return == pytest.approx(0.01) and c3.compound_return == pytest.approx(geo)
    assert c3.days_compound == pytest.approx(math.log(20_000 / float(levels[-1])) / math.log1p(geo))


def test_countdown_needs_seven_days_and_ignores_cash_flows() -> None:
    six, seven = _growth(6, 0.02), _growth(7, 0.02)
    c6 = countdown(six, [], six[-1][0], D(1_000_000), six[-1][1])
    assert (c6.status, c6.days, c6.days_linear, c6.days_compound) == ("not_enough_data", 6, None, None)
    assert countdown(seven, [], seven[-1][0], D(1_000_000), seven[-1][1]).status == "ok"
    # a top-up of 5,000 on day 4 is not a return
    pts = _growth(10, 0.01)
    topped = [pts[0]]
    for i, (t, _) in enumerate(pts[1:], start=1):  # the 5,000 arrives at the start of day 4
        topped.append((t, (topped[-1][1] + (5000 if i == 4 else 0)) * D("1.01")))
    flow = [(pts[4][0] - 1000, D(5000))]
    c = countdown(topped, flow, pts[-1][0], D(1_000_000), topped[-1][1])
    assert c.days == 10 and c.mean_return == pytest.approx(0.01)
    assert (
        countdown(topped, [], pts[-1][0], D(1_000_000), topped[-1][1]).mean_return > 0.05
    )  # counted as profit
    flat = [(t, D(10_000)) for t, _ in pts]
    assert countdown(flat, [], pts[-1][0], D(1_000_000), D(10_000)).status == "no_growth"
    reached = countdown(pts, [], pts[-1][0], D(10_000), pts[-1][1])
    assert (reached.status, reached.days_linear, reached.days_compound) == ("reached", 0.0, 0.0)


def test_countdown_of_the_replay_uses_its_equity_curve(ledger: sqlite3.Connection) -> None:
    svc = ProfitService.read(ledger)
    now = ms(2021, 2, 20)  # the account grew in the 30 days before
    pts = [(int(r[0]), D(r[1])) for r in ledger.execute(
        "SELECT ts, equity FROM equity_snapshots WHERE bot_id IS NULL AND ts <= ? ORDER BY ts, id", (now,))]  # fmt: skip
    c = svc.countdown(now, D(20_000))
    assert c.equity == pts[-1][1] and c.status == "ok" and c.window == 30
    closes: dict[date, D] = {}
    for t, e in pts:
        closes[utc_date(t)] = e  # the last point of each UTC day
    days = sorted(closes)[-31:]
    rets = [float(closes[b] / closes[a] - 1) for a, b in itertools.pairwise(days)]
    assert c.mean_return == pytest.approx(sum(rets) / 30, rel=1e-9)
    assert c.days_linear == pytest.approx((20_000 / float(c.equity) - 1) / (sum(rets) / 30), rel=1e-9)
    early = svc.countdown(int(ledger.execute("SELECT MIN(ts) FROM equity_snapshots").fetchone()[0]) + 3 * DAY)
    assert early.status == "not_enough_data" and early.days < 7


def test_fill_venue_rule() -> None:
    def row(fill_id: str, exchange: str = "binance") -> FillRow:
        return FillRow(1, fill_id, "am1-x-b0", 1, exchange, "BTC/USDT", "buy", D(1), D(1), D(0), "USDT",
                       "taker", D(0), 0)  # fmt: skip

    assert fill_venue(row("binance:123456")) == "live"
    assert fill_venue(row("luno:BXMC2CJ7HNB88U4", "luno")) == "live"
    assert fill_venue(row("am1-kk6mjs00-b0-f1")) == "paper"
    assert fill_venue(row("kucoin:1", "binance")) == "paper"  # not this fill's exchange
