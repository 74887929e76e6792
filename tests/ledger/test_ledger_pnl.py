"""FifoBook, fee conversion and closed trades (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal as D
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ledger_sim import NaiveFifo

from amarktai_tui.domain.enums import Side
from amarktai_tui.domain.types import Fill
from amarktai_tui.ledger.pnl import FifoBook, canonical, fee_in_quote, trades_from_fills


def test_buy_fee_in_cost_sell_fee_off_proceeds_oldest_lot_first() -> None:
    b = FifoBook()
    b.buy(D("1"), D("100"), D("0.1"))  # cost 100.1
    b.buy(D("2"), D("110"), D("0.2"))  # cost 220.2
    # proceeds 1.5*120 - 0.18 = 179.82; closed: 100.1 + 220.2 * 0.5/2 = 155.15
    assert b.sell(D("1.5"), D("120"), D("0.18")) == D("24.67")
    assert b.position_qty == D("1.5")
    assert b.cost_basis == D("165.15")
    assert b.avg_entry_price == D("110.1")
    assert b.unrealised(D("100")) == D("-15.15")
    (lot,) = b.lots
    assert (lot.qty, lot.cost, lot.remaining_qty, lot.remaining_cost) == (
        D(2),
        D("220.2"),
        D("1.5"),
        D("165.15"),
    )
    assert b.sell(D("1.5"), D("100"), D("0")) == D("-15.15")
    assert b.position_qty == 0 and b.cost_basis == 0 and b.lots == () and b.avg_entry_price is None
    assert str(b.cost_basis) == "0"


def test_partial_close_keeps_remaining_cost_of_the_original_lot_rounded_to_1e18() -> None:
    b = FifoBook()
    b.buy(D("3"), D("1"), D("0.01"))  # cost 3.01
    r1 = b.sell(D("1"), D("1"), D("0"))
    assert b.cost_basis == D("2.006666666666666667")  # 3.01 * 2/3, half-even at 1e-18
    assert r1 == D("1") - (D("3.01") - D("2.006666666666666667"))
    r2 = b.sell(D("1"), D("1"), D("0"))
    assert b.cost_basis == D("1.003333333333333333")  # 3.01 * 1/3 from the original cost, not 2.0066../2
    r3 = b.sell(D("1"), D("1"), D("0"))
    assert r1 + r2 + r3 == D("3") - D("3.01")  # cost conserved exactly


def test_selling_more_than_held_raises_and_leaves_the_book_unchanged() -> None:
    b = FifoBook()
    b.buy(D("0.5"), D("10"), D("0"))
    with pytest.raises(ValueError, match=r"exceeds the position of 0\.5"):
        b.sell(D("0.50000001"), D("10"), D("0"))
    assert b.position_qty == D("0.5") and b.cost_basis == D("5")
    with pytest.raises(ValueError, match="exceeds"):
        FifoBook().sell(D("1E-18"), D("10"), D("0"))


@pytest.mark.parametrize(
    ("qty", "price", "fee"),
    [
        (D(0), D(1), D(0)),
        (D(-1), D(1), D(0)),
        (D(1), D(0), D(0)),
        (D(1), D("NaN"), D(0)),
        (D(1), D(1), D("Inf")),
    ],
)
def test_bad_inputs_raise(qty: D, price: D, fee: D) -> None:
    b = FifoBook()
    with pytest.raises(ValueError):
        b.buy(qty, price, fee)
    b.buy(D(5), D(1), D(0))
    with pytest.raises(ValueError):
        b.sell(qty, price, fee)
    assert b.position_qty == 5


def test_negative_fee_rebate_lowers_cost() -> None:
    b = FifoBook()
    b.buy(D("1"), D("100"), D("-0.01"))
    assert b.cost_basis == D("99.99")


def test_fee_in_quote() -> None:
    assert fee_in_quote(D("0.5"), "USDT", "BTC", "USDT", D("30000")) == D("0.5")
    assert fee_in_quote(D("0.001"), "btc", "BTC", "USDT", D("30000.5")) == D("30.0005")
    with pytest.raises(ValueError, match="BNB"):
        fee_in_quote(D("0.01"), "BNB", "BTC", "USDT", D("30000"))


def test_canonical() -> None:
    assert str(canonical(D("165.150000000000000000"))) == "165.15"
    assert str(canonical(D("0E-18"))) == "0"
    assert str(canonical(D("1.5E+2"))) == "150"
    assert str(canonical(D("-2.500"))) == "-2.5"


# -- property: exact accounting identity and agreement with a naive FIFO --------

qty_st = st.integers(min_value=1, max_value=10**9).map(lambda n: D(n).scaleb(-8))  # 1e-8 .. 10 base
price_st = st.integers(min_value=1, max_value=10**9).map(lambda n: D(n).scaleb(-2))  # 0.01 .. 1e7 quote
fee_st = st.integers(min_value=0, max_value=10**8).map(lambda n: D(n).scaleb(-8))


@st.composite
def trading(draw: st.DrawFn) -> tuple[list[tuple[str, D, D, D]], D]:
    ops: list[tuple[str, D, D, D]] = []
    held = D(0)
    for _ in range(draw(st.integers(min_value=1, max_value=40))):
        if held > 0 and draw(st.booleans()):
            whole = draw(st.booleans())
            q = held if whole else D(draw(st.integers(1, int(held.scaleb(8))))).scaleb(-8)
            held -= q
            ops.append(("sell", q, draw(price_st), draw(fee_st)))
        else:
            q = draw(qty_st)
            held += q
            ops.append(("buy", q, draw(price_st), draw(fee_st)))
    return ops, draw(price_st)


@settings(max_examples=300, deadline=None)
@given(trading())
def test_realised_plus_unrealised_equals_cash_flows_plus_marked_position_exactly(
    case: tuple[list[tuple[str, D, D, D]], D],
) -> None:
    ops, mark = case
    book, naive = FifoBook(), NaiveFifo()
    realised = D(0)
    sell_net = buy_cost = D(0)
    for side, q, p, fee in ops:
        if side == "buy":
            book.buy(q, p, fee)
            naive.buy(Fraction(q), Fraction(p), Fraction(fee))
            buy_cost += q * p + fee
        else:
            r = book.sell(q, p, fee)
            assert Fraction(r) == naive.sell(Fraction(q), Fraction(p), Fraction(fee))
            realised += r
            sell_net += q * p - fee
    pos = book.position_qty
    assert Fraction(pos) == naive.position and Fraction(book.cost_basis) == naive.cost
    assert realised + book.unrealised(mark) == sell_net + pos * mark - buy_cost
    assert sum((lot.remaining_cost for lot in book.lots), D(0)) == book.cost_basis


# -- closed trades ------------------------------------------------------------


@dataclass(frozen=True)
class F:
    bot_id: int
    side: str
    quantity: D
    price: D
    ts: int
    fee: D = D(0)
    fee_currency: str = "USDT"
    exchange: str = "binance"
    pair: str = "BTC/USDT"


def test_trades_from_fills_round_trips_flat_to_flat() -> None:
    fills = [
        F(1, "buy", D(1), D(100), 1, D("0.1")),
        F(2, "buy", D(2), D(10), 2, pair="ETH/USDT"),
        F(1, "buy", D(1), D(110), 3, D("0.1")),
        F(1, "sell", D("1.5"), D(120), 4, D("0.2")),
        F(2, "sell", D(2), D(9), 5, pair="ETH/USDT"),
        F(1, "sell", D("0.5"), D(90), 6),
        F(1, "buy", D(1), D(100), 7),  # still open at the end: not a trade
    ]
    t_eth, t_btc = trades_from_fills(fills)
    assert (t_eth.bot_id, t_eth.pair, t_eth.entry_ts, t_eth.exit_ts, t_eth.pnl) == (
        2,
        "ETH/USDT",
        2,
        5,
        D(-2),
    )
    assert (t_btc.entry_ts, t_btc.exit_ts, t_btc.qty) == (1, 6, D(2))
    assert t_btc.entry_cost == D("210.2") and t_btc.exit_proceeds == D("224.8")
    assert t_btc.pnl == D("14.6") and t_btc.fees == D("0.4") and t_btc.exchange == "binance"
    book = FifoBook()
    book.buy(D(1), D(100), D("0.1"))
    book.buy(D(1), D(110), D("0.1"))
    assert book.sell(D("1.5"), D(120), D("0.2")) + book.sell(D("0.5"), D(90), D(0)) == t_btc.pnl


def test_trades_from_domain_fills_with_base_fee() -> None:
    def fill(side: Side, qty: str, price: str, fee: str, cur: str, ts: int) -> Fill:
        return Fill(
            f"f{ts}", f"c{ts}", 1, "binance", "BTC/USDT", side, D(qty), D(price), D(fee), cur, ts, "taker"
        )

    (t,) = trades_from_fills(
        [fill(Side.BUY, "1", "100", "0.001", "BTC", 1), fill(Side.SELL, "1", "110", "0", "USDT", 2)]
    )
    assert t.entry_cost == D("100.1") and t.pnl == D("9.9")


def test_trades_from_fills_rejects_oversell() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        trades_from_fills([F(1, "buy", D(1), D(1), 1), F(1, "sell", D(2), D(1), 2)])
