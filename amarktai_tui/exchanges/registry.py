"""The one table of the five supported platforms: caps, fees, limits, quirks.

Fee figures are the base (lowest-volume) spot tier as published by each
exchange, as fractions of notional (0.001 = 0.10% = 10 bps). With an API key
present, a live session replaces them with the exchange's own figures
(``fetch_trading_fees``); paper and backtest use this table, so paper and
live disagree only where the user's tier differs.

Sources (checked 2026-11):
- Binance: binance.com/en/fee/schedule, regular user (VIP 0) spot: maker
  0.100%, taker 0.100% (also ccxt's ``binance.fees['trading']``).
- KuCoin: kucoin.com/vip/level, LV0 spot class A: maker 0.100%, taker 0.100%
  (ccxt's ``kucoin.fees['trading']`` tier 0).
- Luno: luno.com/en/countries fee schedule, lowest tier of the major-pair
  schedule: maker 0.40%, taker 0.60% (ccxt's ``luno.fees['trading']`` tier 0).
- VALR: valr.com/en/fees, tier 1 (< 50,000 USDT 30-day volume), spot with a
  fiat quote (e.g. BTC/ZAR): maker 0.180%, taker 0.350%; with a crypto quote
  (e.g. BTC/USDT): maker 0.080%, taker 0.100%.
- OVEX: request-for-quote desk; the fee sits inside the quoted price and is
  not published as a rate. We model it as a 0.20% taker fee (an estimate, not
  a published figure) so that paper results are not flattered; OVEX has no
  maker side (market orders only).

``spread_bps`` is our estimate of a typical top-of-book spread on the major
pairs (for the fee gate's round-trip cost), not a published figure:
Binance and KuCoin quote BTC/USDT a tick or two wide (about 0.1-1 bps), the
rand books of Luno, VALR and OVEX are thinner. Override per exchange with
``[risk] spread_bps``; live sessions can measure it from the order book.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

FIAT_QUOTES = frozenset({"ZAR", "USD", "EUR", "GBP", "NGN"})


@dataclass(frozen=True, slots=True)
class ExchangeInfo:
    """Static facts about one platform.

    ``maker_fee``/``taker_fee`` are fractions of notional; ``*_fiat`` variants
    apply to pairs quoted in a fiat currency where the exchange prices those
    differently. ``bot_cap`` is the most bots the app allows on it;
    ``max_in_flight`` and ``min_gap_s`` are the order staggering limits.
    """

    id: str
    name: str
    ccxt_id: str | None  # None = our own adapter
    bot_cap: int
    maker_fee: Decimal
    taker_fee: Decimal
    maker_fee_fiat: Decimal | None = None
    taker_fee_fiat: Decimal | None = None
    supports_limit: bool = True
    max_in_flight: int = 3
    min_gap_s: float = 3.0
    symbol_aliases: tuple[tuple[str, str], ...] = ()  # (ours, theirs), e.g. ("BTC", "XBT")
    spread_bps: Decimal = Decimal(5)  # typical spread estimate (bps) for the fee gate
    coid_param: str = "clientOrderId"  # the exchange's own name for the client order id
    coid_max_len: int = 36
    market_buy_in_quote: bool = False  # a market buy's amount is quote currency (Luno's counter_volume)
    coid_lookup_param: str | None = None  # fetch_order param to find an order by client id (None: scan)
    trades_order_param: str | None = None  # fetch_my_trades param selecting one order's trades

    def fee_rate(self, pair: str, *, maker: bool) -> Decimal:
        """Fee fraction for ``pair`` (``BASE/QUOTE``) as maker or taker."""
        quote = pair.partition("/")[2]
        if quote in FIAT_QUOTES and self.taker_fee_fiat is not None:
            return (self.maker_fee_fiat or self.taker_fee_fiat) if maker else self.taker_fee_fiat
        return self.maker_fee if maker else self.taker_fee


EXCHANGES: dict[str, ExchangeInfo] = {
    "luno": ExchangeInfo(
        id="luno",
        name="Luno",
        ccxt_id="luno",
        bot_cap=5,
        maker_fee=Decimal("0.004"),
        taker_fee=Decimal("0.006"),
        max_in_flight=2,
        min_gap_s=10.0,
        symbol_aliases=(("BTC", "XBT"),),
        spread_bps=Decimal(10),
        coid_param="client_order_id",  # luno.com/en/developers/api: PostLimitOrder/PostMarketOrder
        coid_max_len=255,
        market_buy_in_quote=True,
    ),
    "binance": ExchangeInfo(
        id="binance",
        name="Binance",
        ccxt_id="binance",
        bot_cap=10,
        maker_fee=Decimal("0.001"),
        taker_fee=Decimal("0.001"),
        max_in_flight=5,
        min_gap_s=2.0,
        spread_bps=Decimal(1),
        coid_param="newClientOrderId",  # developers.binance.com spot POST /api/v3/order: <= 36 chars
        coid_max_len=36,
        coid_lookup_param="origClientOrderId",  # GET /api/v3/order
        trades_order_param="orderId",  # GET /api/v3/myTrades
    ),
    "kucoin": ExchangeInfo(
        id="kucoin",
        name="KuCoin",
        ccxt_id="kucoin",
        bot_cap=10,
        maker_fee=Decimal("0.001"),
        taker_fee=Decimal("0.001"),
        max_in_flight=3,
        min_gap_s=3.0,
        spread_bps=Decimal(2),
        coid_param="clientOid",  # kucoin.com/docs spot HF orders: clientOid <= 40 chars
        coid_max_len=40,
        coid_lookup_param="clientOid",  # ccxt kucoin.fetch_order: GET /api/v1/order/client-order/{clientOid}
        trades_order_param="orderId",  # GET /api/v1/hf/fills?orderId=: this order's fills (100 per page)
    ),
    "valr": ExchangeInfo(
        id="valr",
        name="VALR",
        ccxt_id=None,
        bot_cap=10,
        maker_fee=Decimal("0.0008"),
        taker_fee=Decimal("0.001"),
        maker_fee_fiat=Decimal("0.0018"),
        taker_fee_fiat=Decimal("0.0035"),
        max_in_flight=2,
        min_gap_s=8.0,
        spread_bps=Decimal(8),
        coid_param="customerOrderId",  # docs.valr.com v2 orders: customerOrderId <= 50 chars
        coid_max_len=50,
        coid_lookup_param="customerOrderId",  # GET /v1/orders/{pair}/customerorderid/{id}
    ),
    "ovex": ExchangeInfo(
        id="ovex",
        name="OVEX",
        ccxt_id=None,
        bot_cap=10,
        maker_fee=Decimal("0.002"),
        taker_fee=Decimal("0.002"),
        supports_limit=False,
        coid_lookup_param="clientOrderId",
        max_in_flight=3,
        min_gap_s=5.0,
        spread_bps=Decimal(20),
    ),
}

TOTAL_BOT_CAP = sum(e.bot_cap for e in EXCHANGES.values())  # 45


def order_type_refusal(exchange_id: str, order_type: str) -> str | None:
    """Why a bot on ``exchange_id`` may not use ``order_type`` orders (one line), or None."""
    info = EXCHANGES.get(exchange_id)
    if info is not None and order_type == "limit" and not info.supports_limit:
        return (
            f"{info.name} trades by request-for-quote: market orders only; "
            f'set order_type = "market" for bots on {info.id}'
        )
    return None


def exchange_info(exchange_id: str) -> ExchangeInfo:
    """Look up a platform by id. Raises KeyError naming the valid ids."""
    try:
        return EXCHANGES[exchange_id]
    except KeyError:
        raise KeyError(f"unknown exchange {exchange_id!r}: expected one of {', '.join(EXCHANGES)}") from None
