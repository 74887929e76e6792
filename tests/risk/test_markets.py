"""Market precision rules (exchanges/markets.py): known markets, defaults, rounding directions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from amarktai_tui.domain.enums import Side
from amarktai_tui.exchanges.markets import MarketRules, market_rules, round_amount, round_price

D = Decimal
BTC_USDT = MarketRules(D("0.00001"), D("0.01"), D(5))


def test_known_binance_markets() -> None:
    assert market_rules("binance", "BTC/USDT") == BTC_USDT
    assert market_rules("binance", "ETH/USDT") == MarketRules(D("0.0001"), D("0.01"), D(5))


def test_known_luno_and_kucoin_markets() -> None:
    assert market_rules("luno", "BTC/ZAR") == MarketRules(D("0.0001"), D(1), D(1000))
    assert market_rules("kucoin", "BTC/USDT") == MarketRules(D("1e-8"), D("0.1"), D("0.1"))


@pytest.mark.parametrize(
    ("exchange", "min_notional"),
    [("binance", D(5)), ("kucoin", D("0.1")), ("luno", D(500)), ("valr", D(10)), ("ovex", D(500))],
)
def test_defaults_for_other_pairs(exchange: str, min_notional: Decimal) -> None:
    rules = market_rules(exchange, "SOL/USDT" if exchange in {"binance", "kucoin"} else "SOL/ZAR")
    assert rules == MarketRules(D("1e-8"), D("1e-8"), min_notional)


def test_a_known_pair_on_another_exchange_gets_that_exchanges_default() -> None:
    assert market_rules("valr", "BTC/USDT").amount_step == D("1e-8")


def test_unknown_exchange_names_the_valid_ids() -> None:
    with pytest.raises(KeyError, match="unknown exchange 'kraken': expected one of luno, binance"):
        market_rules("kraken", "BTC/USDT")


def test_bad_pair_raises() -> None:
    with pytest.raises(ValueError, match="bad pair 'BTCUSDT'"):
        market_rules("binance", "BTCUSDT")


def test_bad_rules_raise() -> None:
    with pytest.raises(ValueError, match="step and tick must be > 0"):
        MarketRules(D(0), D("0.01"), D(5))


@pytest.mark.parametrize(
    ("qty", "expected"),
    [
        (D("0.123456789"), D("0.12345")),
        (D("0.12345"), D("0.12345")),  # already on the grid
        (D("0.0000099"), D(0)),  # below one step
        (D(0), D(0)),
    ],
)
def test_amount_rounds_down_to_the_step(qty: Decimal, expected: Decimal) -> None:
    assert round_amount(qty, BTC_USDT) == expected


def test_amount_step_that_is_not_a_power_of_ten() -> None:
    assert round_amount(D("7.9"), MarketRules(D("0.5"), D(1), D(0))) == D("7.5")
    assert round_amount(D(14), MarketRules(D(5), D(1), D(0))) == D(10)


def test_negative_amount_raises() -> None:
    with pytest.raises(ValueError, match="quantity -1 < 0"):
        round_amount(D(-1), BTC_USDT)


@pytest.mark.parametrize(
    ("price", "side", "expected"),
    [
        (D("64123.456"), Side.BUY, D("64123.45")),  # a buy pays no more than asked
        (D("64123.456"), Side.SELL, D("64123.46")),  # a sell takes no less than asked
        (D("64123.45"), Side.BUY, D("64123.45")),  # on the tick: unchanged either way
        (D("64123.45"), Side.SELL, D("64123.45")),
        (D("64123.4501"), Side.SELL, D("64123.46")),
        (D("64123.4599"), Side.BUY, D("64123.45")),
    ],
)
def test_price_rounds_in_our_favour(price: Decimal, side: Side, expected: Decimal) -> None:
    assert round_price(price, BTC_USDT, side=side) == expected


def test_luno_whole_rand_tick() -> None:
    rules = market_rules("luno", "BTC/ZAR")
    assert round_price(D("1234567.5"), rules, side=Side.BUY) == D(1234567)
    assert round_price(D("1234567.5"), rules, side=Side.SELL) == D(1234568)


def test_non_positive_price_raises() -> None:
    with pytest.raises(ValueError, match="price 0 <= 0"):
        round_price(D(0), BTC_USDT, side=Side.BUY)
