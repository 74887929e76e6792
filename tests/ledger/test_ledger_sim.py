"""A ledger simulator for the ledger tests, with its own naive FIFO (Fractions).

``simulate(path)`` writes a real SQLite ledger (schema.configure + migrate,
rows inserted with plain sqlite3) for two bots trading real Binance 1h
closes: BTC/USDT paying fees in quote, ETH/USDT paying buy fees in base.
Realised PnL is computed by ``NaiveFifo`` below, which shares no code with
``amarktai_tui.ledger.pnl``: exact Fractions, the remaining cost of a
partially closed lot rounded half-even to 1e-18 (the documented rule).

Other test modules import it: ``from test_ledger_sim import ...``.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import pytest

from amarktai_tui.ledger import schema

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance"
WALL_TS = 1_750_000_000_000  # bot creation on the wall clock, long after the market data
Q = 10**18


def dec(fr: Fraction) -> str:
    """An exact decimal string for a Fraction whose denominator divides 10**18."""
    assert (fr * Q).denominator == 1, fr
    with localcontext() as ctx:
        ctx.prec = 80
        return format(Decimal(fr.numerator) / Decimal(fr.denominator), "f")


def F(x: str | Decimal) -> Fraction:
    return Fraction(Decimal(x))


class NaiveFifo:
    """Lots as [qty, cost, remaining_qty, remaining_cost] Fractions."""

    def __init__(self) -> None:
        self.lots: list[list[Fraction]] = []

    @property
    def position(self) -> Fraction:
        return sum((lot[2] for lot in self.lots), Fraction(0))

    @property
    def cost(self) -> Fraction:
        return sum((lot[3] for lot in self.lots), Fraction(0))

    def buy(self, qty: Fraction, price: Fraction, fee: Fraction) -> None:
        c = qty * price + fee
        self.lots.append([qty, c, qty, c])

    def sell(self, qty: Fraction, price: Fraction, fee: Fraction) -> Fraction:
        assert qty <= self.position
        closed = Fraction(0)
        left = qty
        while left:
            lot = self.lots[0]
            if left >= lot[2]:
                left -= lot[2]
                closed += lot[3]
                self.lots.pop(0)
            else:
                rem = lot[2] - left
                new_cost = Fraction(round(lot[1] * rem / lot[0] * Q), Q)
                closed += lot[3] - new_cost
                lot[2], lot[3] = rem, new_cost
                left = Fraction(0)
        return qty * price - fee - closed


@dataclass
class BotSim:
    id: int
    name: str
    pair: str
    capital: Fraction
    fifo: NaiveFifo = field(default_factory=NaiveFifo)
    cash: Fraction = Fraction(0)
    realised: Fraction = Fraction(0)
    fees: Fraction = Fraction(0)
    fills: int = 0
    mark: Fraction | None = None


class Sim:
    """Writes a ledger row by row; keeps the expected figures alongside."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(str(path), isolation_level=None)
        schema.configure(self.conn)
        schema.migrate(self.conn)
        self.bots: dict[int, BotSim] = {}
        self.n = 0
        self.fill_ids: list[int] = []
        self.snap_ids: list[int] = []
        self.partial_sells = 0

    def add_bot(
        self, name: str, pair: str, capital: str, ts: int = WALL_TS, exchange: str = "binance"
    ) -> int:
        cur = self.conn.execute(
            "INSERT INTO bots (name, exchange, pair, timeframe, strategy, risk_mode, capital, state, stage,"
            " created_ts, updated_ts) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                name,
                exchange,
                pair,
                "1h",
                "sma_cross",
                "balanced",
                capital,
                "running",
                "paper_training",
                ts,
                ts,
            ),
        )
        bot_id = int(cur.lastrowid or 0)
        self.conn.execute(
            "INSERT INTO ledger_events (ts, bot_id, kind, amount, currency, note) VALUES (?,?,?,?,?,?)",
            (ts, bot_id, "funding", capital, pair.split("/")[1], "initial capital"),
        )
        self.bots[bot_id] = BotSim(bot_id, name, pair, F(capital), cash=F(capital))
        return bot_id

    def order(self, bot_id: int, side: str, qty: str, ts: int, state: str = "filled") -> str:
        self.n += 1
        b = self.bots[bot_id]
        coid = f"am{bot_id}-{ts:x}-{side[0]}{self.n}"
        self.conn.execute(
            "INSERT INTO orders (client_order_id, bot_id, exchange, pair, side, order_type, quantity, state,"
            " decision_ts, created_ts, updated_ts) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (coid, bot_id, "binance", b.pair, side, "market", qty, state, ts, ts, ts),
        )
        return coid

    def fill(
        self, bot_id: int, side: str, qty: str, price: str, fee: str, ts: int, fee_currency: str | None = None
    ) -> int:
        """An order plus its fill with the naive realised PnL; returns the fill row id."""
        b = self.bots[bot_id]
        base, quote = b.pair.split("/")
        cur = fee_currency or quote
        fee_q = F(fee) * (F(price) if cur == base else 1)
        q, p = F(qty), F(price)
        if side == "buy":
            b.fifo.buy(q, p, fee_q)
            realised = Fraction(0)
            b.cash -= q * p + fee_q
        else:
            self.partial_sells += q < b.fifo.position
            realised = b.fifo.sell(q, p, fee_q)
            b.cash += q * p - fee_q
        b.realised += realised
        b.fees += fee_q
        b.fills += 1
        b.mark = p
        coid = self.order(bot_id, side, qty, ts)
        cur_row = self.conn.execute(
            "INSERT INTO fills (fill_id, client_order_id, bot_id, exchange, pair, side, quantity, price, fee,"
            " fee_currency, liquidity, realised_pnl, ts) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                f"f-{coid}",
                coid,
                bot_id,
                "binance",
                b.pair,
                side,
                qty,
                price,
                fee,
                cur,
                "taker",
                dec(realised),
                ts,
            ),
        )
        self.fill_ids.append(int(cur_row.lastrowid or 0))
        return self.fill_ids[-1]

    def snapshot(self, ts: int, marks: dict[int, Fraction]) -> None:
        """A row per bot (marked at ``marks``) and the account row (sums), all at ``ts``."""
        tot = [Fraction(0)] * 4
        count = 0
        for b in self.bots.values():
            b.mark = marks.get(b.id, b.mark)
            unreal = b.fifo.position * b.mark - b.fifo.cost if b.mark is not None else Fraction(0)
            eq = b.capital + b.realised + unreal
            row = (eq, b.realised, unreal, b.fees)
            mark = None if b.mark is None else dec(b.mark)
            self.conn.execute(
                "INSERT INTO equity_snapshots (ts, bot_id, equity, realised, unrealised, fees, position_qty,"
                " mark_price, fill_count) VALUES (?,?,?,?,?,?,?,?,?)",
                (ts, b.id, *map(dec, row), dec(b.fifo.position), mark, b.fills),
            )
            tot = [a + x for a, x in zip(tot, row, strict=True)]
            count += b.fills
        cur = self.conn.execute(
            "INSERT INTO equity_snapshots (ts, bot_id, equity, realised, unrealised, fees, position_qty,"
            " mark_price, fill_count) VALUES (?,?,?,?,?,?,?,?,?)",
            (ts, None, *map(dec, tot), "0", None, count),
        )
        self.snap_ids.append(int(cur.lastrowid or 0))

    def equity(self, bot_id: int) -> Fraction:
        b = self.bots[bot_id]
        assert b.mark is not None
        return b.capital + b.realised + b.fifo.position * b.mark - b.fifo.cost


def _qty(cash: Fraction, price: str, frac: str) -> str:
    with localcontext() as ctx:
        ctx.prec = 50
        q = (Decimal(cash.numerator) / Decimal(cash.denominator) * Decimal(frac) / Decimal(price)).quantize(
            Decimal("1e-8"), rounding=ROUND_DOWN
        )
    return format(q, "f")


def _fee(notional: Fraction) -> str:
    return dec(Fraction(round(notional / 1000 * 10**8), 10**8))  # 0.1 %, rounded to 1e-8


@functools.cache
def load_closes(name: str, n: int) -> list[tuple[int, str]]:
    """The first ``n`` (open time ms, close as a decimal string) of a freqtrade JSON file."""
    rows = json.loads((DATA / name).read_text())[:n]
    return [(int(c[0]), format(Decimal(str(c[4])), "f")) for c in rows]


def simulate(path: Path, hours: int = 24 * 12, snap_every: int = 4) -> Sim:
    """Two bots over ``hours`` real 1h candles; a snapshot every ``snap_every`` hours and at the end."""
    sim = Sim(path)
    btc = sim.add_bot("btc-bot", "BTC/USDT", "10000")
    eth = sim.add_bot("eth-bot", "ETH/USDT", "5000.5")
    closes = {btc: load_closes("BTC_USDT-1h.json", hours), eth: load_closes("ETH_USDT-1h.json", hours)}
    sim.conn.execute("BEGIN")
    for i in range(1, hours):
        for bot_id, series in closes.items():
            b = sim.bots[bot_id]
            ts, price = series[i]
            ts += 3_600_000  # fills at the candle's close
            prev = Decimal(series[i - 1][1])
            pos = b.fifo.position
            up = Decimal(price) > prev
            if up and i % 3 and b.cash > 100:
                qty = _qty(b.cash, price, "0.3")
                fee_cur = "ETH" if bot_id == eth else None
                notional = F(qty) * F(price)
                fee = _fee(F(qty)) if fee_cur else _fee(notional)
                if notional + (F(fee) * F(price) if fee_cur else F(fee)) <= b.cash:
                    sim.fill(bot_id, "buy", qty, price, fee, ts, fee_cur)
            elif pos and not up and i % 5 == 0:
                half = Fraction(round(pos / 2 * 10**8), 10**8)
                qty = dec(half if half else pos)
                sim.fill(bot_id, "sell", qty, price, _fee(F(qty) * F(price)), ts)
            elif pos and Decimal(price) < prev * Decimal("0.995"):
                sim.fill(bot_id, "sell", dec(pos), price, _fee(pos * F(price)), ts)
        if i % snap_every == 0 or i == hours - 1:
            sim.snapshot(closes[btc][i][0] + 3_600_000, {k: F(v[i][1]) for k, v in closes.items()})
    sim.conn.execute("COMMIT")
    return sim


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return simulate(tmp_path / schema.DB_FILENAME)


def test_naive_fifo_partial_close_rounds_half_even_to_1e18() -> None:
    f = NaiveFifo()
    f.buy(Fraction(3), Fraction(1), Fraction(1, 100))
    r = f.sell(Fraction(1), Fraction(1), Fraction(0))
    assert f.cost == Fraction(2006666666666666667, Q)  # 3.01 * 2/3 = 2.00666...67
    assert r == 1 - (Fraction(301, 100) - f.cost)


def test_simulation_trades_both_ways_with_partial_closes(sim: Sim) -> None:
    sides = dict(sim.conn.execute("SELECT side, COUNT(*) FROM fills GROUP BY side").fetchall())
    assert sides["buy"] > 10 and sides["sell"] > 10
    base_fees = sim.conn.execute("SELECT COUNT(*) FROM fills WHERE fee_currency = 'ETH'").fetchone()[0]
    assert base_fees > 0
    assert sim.partial_sells > 5  # lots closed in part: their remaining cost gets rounded
    for b in sim.bots.values():
        assert b.cash >= 0
