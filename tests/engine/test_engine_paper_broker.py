"""PaperBroker on real candles: fill prices, limit rules, funding checks, fee table, gaps."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from engine_helpers import BTC_1H, ETH_1H, HOUR, F, orders
from lifecycle_helpers import Scripted, candles, feed, make_engine, spec

from amarktai_tui.domain.enums import OrderState, OrderType, Side
from amarktai_tui.domain.types import Candle, Order
from amarktai_tui.exchanges.paper import PaperBroker

HALF_PRICE_STEP = Fraction(1, 2 * 10**8)
HALF_FEE_STEP = Fraction(1, 2 * 10**12)


def order(
    side: Side,
    qty: str,
    created_ts: int,
    *,
    limit: str | None = None,
    exchange: str = "binance",
    pair: str = "BTC/USDT",
    bot_id: int = 1,
    coid: str = "am1-x-b0",
) -> Order:
    return Order(
        client_order_id=coid,
        bot_id=bot_id,
        exchange=exchange,
        pair=pair,
        side=side,
        order_type=OrderType.MARKET if limit is None else OrderType.LIMIT,
        quantity=Decimal(qty),
        limit_price=None if limit is None else Decimal(limit),
        state=OrderState.PENDING,
        created_ts=created_ts,
        updated_ts=created_ts,
    )


def btc(i: int) -> Candle:
    return candles(BTC_1H)[i]


def with_pair(c: Candle, pair: str) -> Candle:
    return Candle(pair, c.timeframe, c.ts, c.open, c.high, c.low, c.close, c.volume)


def broker(cash: str = "100000", base: str = "0", **kw: object) -> PaperBroker:
    b = PaperBroker(**kw)  # type: ignore[arg-type]
    b.set_balance(1, Decimal(cash), Decimal(base))
    return b


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_market_order_fills_at_the_next_open_with_slippage(side: Side) -> None:
    decided, nxt = btc(500), btc(501)
    b = broker(base="1")
    upd = b.accept(order(side, "0.5", decided.ts + HOUR))
    assert upd.state is OrderState.OPEN
    assert b.on_candle(decided) == []  # the decision candle itself opened before the order existed
    assert len(b.open_orders()) == 1
    (upd,) = b.on_candle(nxt)
    assert upd.state is OrderState.FILLED and upd.fill is not None
    f = upd.fill
    slip = Fraction(5, 10_000)
    want = F(nxt.open) * (1 + slip if side is Side.BUY else 1 - slip)
    assert abs(F(f.price) - want) <= HALF_PRICE_STEP
    assert f.ts == nxt.ts and f.liquidity == "taker" and f.quantity == Decimal("0.5")
    assert abs(F(f.fee) - F(f.quantity) * F(f.price) / 1000) <= HALF_FEE_STEP  # Binance taker 0.1%
    assert f.fee_currency == "USDT"
    bal = b.balance(1)
    if side is Side.BUY:
        assert bal.cash == Decimal(100000) - f.quantity * f.price - f.fee and bal.base == Decimal("1.5")
    else:
        assert bal.cash == Decimal(100000) + f.quantity * f.price - f.fee and bal.base == Decimal("0.5")
    assert b.open_orders() == []


def test_zero_slippage_fills_at_the_open_exactly() -> None:
    b = broker(slippage_bps=Decimal(0))
    b.accept(order(Side.BUY, "0.1", btc(10).ts))
    (upd,) = b.on_candle(btc(10))
    assert upd.fill is not None and F(upd.fill.price) == F(btc(10).open)


def test_negative_slippage_is_refused() -> None:
    with pytest.raises(ValueError):
        PaperBroker(Decimal(-1))


def _candle_with_room() -> tuple[int, Candle]:
    """A candle whose open is well above its low and well below its high."""
    for i, c in enumerate(candles(BTC_1H)):
        if i > 100 and c.open - c.low > 100 and c.high - c.open > 100:
            return i, c
    raise AssertionError


def test_limit_buy_rules() -> None:
    _, c = _candle_with_room()
    created = c.ts
    # opens through the limit (open <= limit): taker at the open, no slippage
    b = broker()
    b.accept(order(Side.BUY, "0.1", created, limit=str(c.open + 50)))
    (upd,) = b.on_candle(c)
    assert upd.fill is not None
    assert F(upd.fill.price) == F(c.open) and upd.fill.liquidity == "taker"
    assert abs(F(upd.fill.fee) - F(upd.fill.price) * Fraction(1, 10) / 1000) <= HALF_FEE_STEP
    # the range reaches the limit (low <= limit < open): maker at the limit
    limit = Decimal(repr(c.low)) + Decimal("20.5")
    b = broker()
    b.accept(order(Side.BUY, "0.1", created, limit=str(limit)))
    (upd,) = b.on_candle(c)
    assert upd.fill is not None
    assert upd.fill.price == limit and upd.fill.liquidity == "maker"
    # not reached (limit < low): stays open, fills later when a candle reaches it
    limit = Decimal(repr(c.low)) - 1
    b = broker()
    b.accept(order(Side.BUY, "0.1", created, limit=str(limit)))
    assert b.on_candle(c) == []
    assert [o.client_order_id for o in b.open_orders()] == ["am1-x-b0"]
    assert b.balance(1).cash == Decimal(100000)
    later = next(x for x in candles(BTC_1H) if x.ts > c.ts and x.low <= float(limit))
    for x in candles(BTC_1H):
        if c.ts < x.ts < later.ts:
            assert b.on_candle(x) == []
    (upd,) = b.on_candle(later)
    assert upd.fill is not None and upd.fill.ts == later.ts
    want = limit if F(later.open) > F(limit) else Decimal(repr(later.open))
    assert upd.fill.price == want


def test_limit_sell_rules() -> None:
    _, c = _candle_with_room()
    b = broker(base="1")
    b.accept(order(Side.SELL, "0.1", c.ts, limit=str(c.open - 50)))
    (upd,) = b.on_candle(c)
    assert upd.fill is not None and F(upd.fill.price) == F(c.open) and upd.fill.liquidity == "taker"
    limit = Decimal(repr(c.high)) - Decimal("20.5")
    b = broker(base="1")
    b.accept(order(Side.SELL, "0.1", c.ts, limit=str(limit)))
    (upd,) = b.on_candle(c)
    assert upd.fill is not None and upd.fill.price == limit and upd.fill.liquidity == "maker"
    b = broker(base="1")
    b.accept(order(Side.SELL, "0.1", c.ts, limit=str(Decimal(repr(c.high)) + 1)))
    assert b.on_candle(c) == [] and len(b.open_orders()) == 1


def test_insufficient_funds_rejected_whole_with_the_reason() -> None:
    c = btc(700)
    b = broker(cash="1000", base="0.25")
    b.accept(order(Side.BUY, "1", c.ts))  # ~19k USDT for 1 BTC
    (upd,) = b.on_candle(c)
    assert upd.state is OrderState.REJECTED and upd.fill is None
    assert upd.reason.startswith("insufficient funds") and "USDT" in upd.reason and "\n" not in upd.reason
    assert (b.balance(1).cash, b.balance(1).base) == (Decimal(1000), Decimal("0.25"))
    assert b.open_orders() == []


def test_buy_must_cover_price_and_fee() -> None:
    """Cash exactly equal to qty x price is not enough: the fee is part of the cost."""
    c = btc(700)
    price = (Decimal(repr(c.open)) * Decimal("1.0005")).quantize(Decimal("1e-8"))
    b = broker(cash=str(price))
    b.accept(order(Side.BUY, "1", c.ts))
    (upd,) = b.on_candle(c)
    assert upd.state is OrderState.REJECTED
    assert b.balance(1).cash == price


def test_selling_more_than_held_is_rejected() -> None:
    c = btc(700)
    b = broker(cash="5", base="0.1")
    b.accept(order(Side.SELL, "0.10000001", c.ts))
    (upd,) = b.on_candle(c)
    assert upd.state is OrderState.REJECTED and upd.reason.startswith("insufficient position")
    assert (b.balance(1).cash, b.balance(1).base) == (Decimal(5), Decimal("0.1"))


@pytest.mark.parametrize(
    ("exchange", "pair", "taker", "maker"),
    [
        ("binance", "BTC/USDT", "0.001", "0.001"),
        ("kucoin", "BTC/USDT", "0.001", "0.001"),
        ("luno", "BTC/ZAR", "0.006", "0.004"),
        ("valr", "BTC/ZAR", "0.0035", "0.0018"),  # VALR fiat quote
        ("valr", "BTC/USDT", "0.001", "0.0008"),  # VALR crypto quote
        ("ovex", "BTC/ZAR", "0.002", None),  # market orders only
    ],
)
def test_fee_per_exchange_table(exchange: str, pair: str, taker: str, maker: str | None) -> None:
    c = with_pair(btc(900), pair)
    b = broker(cash="1000000")
    b.accept(order(Side.BUY, "0.3", c.ts, exchange=exchange, pair=pair))
    (upd,) = b.on_candle(c)
    f = upd.fill
    assert f is not None and f.liquidity == "taker"
    assert abs(F(f.fee) - F(f.quantity) * F(f.price) * F(taker)) <= HALF_FEE_STEP
    assert f.fee_currency == pair.split("/")[1]
    if maker is None:
        upd = b.accept(order(Side.BUY, "0.3", c.ts, exchange=exchange, pair=pair, limit="1", coid="l"))
        assert upd.state is OrderState.REJECTED and "market orders only" in upd.reason
        return
    limit = Decimal(repr(c.low)) + Decimal("0.5")
    assert limit < Decimal(repr(c.open))
    b.accept(order(Side.BUY, "0.3", c.ts, exchange=exchange, pair=pair, limit=str(limit), coid="l"))
    (upd,) = b.on_candle(c)
    f = upd.fill
    assert f is not None and f.liquidity == "maker" and f.price == limit
    assert abs(F(f.fee) - F(f.quantity) * F(limit) * F(maker)) <= HALF_FEE_STEP


def test_fixed_fee_overrides_replace_the_table() -> None:
    c = btc(900)
    b = broker(fee_overrides={"binance": (Decimal("0.0002"), Decimal("0.0007"))})
    b.accept(order(Side.BUY, "0.3", c.ts))
    (upd,) = b.on_candle(c)
    assert upd.fill is not None
    assert abs(F(upd.fill.fee) - F(upd.fill.quantity) * F(upd.fill.price) * F("0.0007")) <= HALF_FEE_STEP


def test_refusals_at_submission() -> None:
    b = broker()
    assert b.accept(order(Side.BUY, "0", 0)).state is OrderState.REJECTED
    assert b.accept(order(Side.BUY, "1", 0, bot_id=7)).reason == "no paper balance for this bot"
    assert b.open_orders() == []


async def test_cancel_removes_an_open_order() -> None:
    b = broker()
    b.accept(order(Side.BUY, "0.1", btc(5).ts, limit="1"))
    assert (await b.cancel("am1-x-b0")).state is OrderState.CANCELLED
    assert b.open_orders() == []
    assert b.on_candle(btc(5)) == []


def test_other_pairs_candles_do_not_fill() -> None:
    c = btc(1000)
    eth = candles(ETH_1H)[1000]
    assert eth.ts == c.ts
    b = broker()
    b.accept(order(Side.BUY, "0.1", c.ts))
    assert b.on_candle(eth) == []
    assert len(b.on_candle(c)) == 1


def _gaps() -> list[tuple[int, int]]:
    cs = candles(BTC_1H)
    return [(i, i + 1) for i in range(len(cs) - 1) if cs[i + 1].ts - cs[i].ts > HOUR]


def test_order_before_a_gap_fills_at_the_first_candle_after_it() -> None:
    gaps = _gaps()
    assert len(gaps) == 6  # the README's exchange maintenance windows
    for before, after in gaps:
        cb, ca = btc(before), btc(after)
        b = broker()
        b.accept(order(Side.BUY, "0.1", cb.ts + HOUR))  # decided on the last candle before the gap
        (upd,) = b.on_candle(ca)
        assert upd.fill is not None and upd.fill.ts == ca.ts
        assert abs(F(upd.fill.price) - F(ca.open) * Fraction(10005, 10000)) <= HALF_PRICE_STEP


async def test_engine_decision_before_a_gap_fills_after_the_gap(tmp_path: Path) -> None:
    before, after = _gaps()[0]  # 2020-12-21: four hours missing
    cs = candles(BTC_1H)
    engine, _ = await make_engine(tmp_path, [spec("a")])
    bot = engine.runner_by_name("a")
    bot.strategy = Scripted(enter=[cs[before].ts])
    try:
        feed(engine, cs[: after + 3])
        assert [(f.side, f.ts) for f in engine.fill_log] == [(Side.BUY, cs[after].ts)]
        fill = engine.fill_log[0]
        assert abs(F(fill.price) - F(cs[after].open) * Fraction(10005, 10000)) <= HALF_PRICE_STEP
    finally:
        await engine.flush(final=True)
        await engine.store.close()
    (o,) = orders(tmp_path).values()
    assert o["decision_ts"] == cs[before].ts and o["created_ts"] == cs[before].ts + HOUR
