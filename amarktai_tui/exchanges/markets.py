"""Market precision rules (pure): amount step, price tick and minimum notional per pair.

Paper and backtest use this table; a live session will replace it with the
exchange's own market data (ccxt ``load_markets``). Pairs are ours
(``BTC/ZAR``, not Luno's ``XBTZAR``). ``min_notional`` is always in the
pair's quote currency; where an exchange sets its minimum in base units it is
converted at a stated price, so that figure is an estimate.

Sources (figures as published when written; "estimate" where not checked):
- Binance BTC/USDT, ETH/USDT: GET /api/v3/exchangeInfo filters LOT_SIZE
  ``stepSize`` 0.00001 / 0.0001, PRICE_FILTER ``tickSize`` 0.01, NOTIONAL
  ``minNotional`` 5 USDT.
- Binance other pairs: step and tick 1e-8 (Binance's finest, 8 decimals: a
  permissive default), min notional 5 (the NOTIONAL filter of most USDT pairs).
- KuCoin BTC/USDT: GET /api/v2/symbols ``baseIncrement`` 0.00000001,
  ``priceIncrement`` 0.1, ``minFunds`` 0.1 USDT (from memory: estimate).
- KuCoin other pairs: step and tick 1e-8, min notional 0.1 (``minFunds`` of
  USDT pairs).
- Luno BTC/ZAR: GET /api/exchange/1/markets XBTZAR ``price_scale`` 0 (tick
  1 ZAR) and ``min_volume`` 0.0005 BTC; step 0.0001 (estimate: a coarse step
  is safe, its multiples are multiples of any finer step). 0.0005 BTC at
  R2,000,000/BTC = R1,000 (estimate, high side: paper refuses what live would).
- Luno other pairs: step and tick 1e-8; min notional R500 (estimate: Luno sets
  ``min_volume`` per market in base, roughly USD 20-50 worth).
- VALR other pairs: step and tick 1e-8; min notional 10 (``minQuoteAmount``
  of ZAR pairs on GET /v1/public/pairs, from memory: estimate).
- OVEX: request-for-quote desk with no published precision; step and tick
  1e-8, min notional R500 (estimate).
The default min notionals assume the exchange's home quote (USDT for Binance
and KuCoin, ZAR for Luno, VALR and OVEX).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_UP, Decimal

from amarktai_tui.domain.enums import Side
from amarktai_tui.domain.types import split_pair
from amarktai_tui.exchanges.registry import exchange_info


@dataclass(frozen=True, slots=True)
class MarketRules:
    """``amount_step`` in base units, ``price_tick`` in quote per base, ``min_notional`` in quote."""

    amount_step: Decimal
    price_tick: Decimal
    min_notional: Decimal

    def __post_init__(self) -> None:
        if self.amount_step <= 0 or self.price_tick <= 0 or self.min_notional < 0:
            raise ValueError(f"bad market rules {self}: step and tick must be > 0, min notional >= 0")


_FINE = Decimal("1e-8")

KNOWN_MARKETS: dict[tuple[str, str], MarketRules] = {
    ("binance", "BTC/USDT"): MarketRules(Decimal("0.00001"), Decimal("0.01"), Decimal(5)),
    ("binance", "ETH/USDT"): MarketRules(Decimal("0.0001"), Decimal("0.01"), Decimal(5)),
    ("kucoin", "BTC/USDT"): MarketRules(_FINE, Decimal("0.1"), Decimal("0.1")),
    ("luno", "BTC/ZAR"): MarketRules(Decimal("0.0001"), Decimal(1), Decimal(1000)),
}

DEFAULT_RULES: dict[str, MarketRules] = {
    "binance": MarketRules(_FINE, _FINE, Decimal(5)),
    "kucoin": MarketRules(_FINE, _FINE, Decimal("0.1")),
    "luno": MarketRules(_FINE, _FINE, Decimal(500)),
    "valr": MarketRules(_FINE, _FINE, Decimal(10)),
    "ovex": MarketRules(_FINE, _FINE, Decimal(500)),
}


def market_rules(exchange: str, pair: str) -> MarketRules:
    """Rules for ``pair`` (``BASE/QUOTE``) on ``exchange``: the known market, else the exchange default.

    Raises KeyError naming the valid ids for an unknown exchange, ValueError
    for a pair not shaped ``BASE/QUOTE``.
    """
    exchange_info(exchange)  # KeyError naming the valid ids
    split_pair(pair)
    return KNOWN_MARKETS.get((exchange, pair), DEFAULT_RULES[exchange])


def round_amount(qty: Decimal, rules: MarketRules) -> Decimal:
    """``qty`` (base units, >= 0) rounded down to a multiple of ``amount_step``. Raises ValueError if < 0."""
    if qty < 0:
        raise ValueError(f"quantity {qty} < 0")
    return _to_step(qty, rules.amount_step, ROUND_DOWN)


def round_price(price: Decimal, rules: MarketRules, *, side: Side) -> Decimal:
    """``price`` (quote per base, > 0) on the tick grid, never worse for us than asked.

    A buy rounds down (we pay no more), a sell rounds up (we take no less).
    Raises ValueError if ``price`` <= 0.
    """
    if price <= 0:
        raise ValueError(f"price {price} <= 0")
    return _to_step(price, rules.price_tick, ROUND_DOWN if side is Side.BUY else ROUND_UP)


def _to_step(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    # quantize(step) alone would only handle powers of ten; steps like 0.5 or 5 need the division
    return (value / step).to_integral_value(rounding=rounding) * step
