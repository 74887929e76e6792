"""PaperBroker: simulated fills on candles, with the exchange's fees.

How fills are simulated (the README repeats this for users):

- A decision is made on the closed candle t; its order reaches the broker
  when that candle closes (the order's ``created_ts``), so it can first fill
  on the first candle of the same pair that opens at or after that time:
  candle t+1, whatever the gap (after an exchange outage the fill is at the
  first candle after it, at that candle's open).
- Market orders fill in full at t+1's open, moved against the trader by the
  configured slippage: buy at ``open * (1 + slippage_bps/10_000)``, sell at
  ``open * (1 - slippage_bps/10_000)``; taker fee.
- Limit orders: if t+1 opens through the limit (buy: open <= limit; sell:
  open >= limit) they fill at the open as taker; else if the candle's range
  reaches the limit (buy: low <= limit; sell: high >= limit) they fill at the
  limit as maker, without slippage; else they stay open for the next candle.
- Fees are the exchange table's rates (``exchanges.registry``) times the
  notional, charged in the quote currency.
- Funding is checked at fill time on the bot's own balances: a buy whose
  cost (quantity x price + fee) exceeds the bot's cash, or a sell of more
  than the bot holds, is rejected whole with the reason; nothing is half
  applied.
- Quantities are whole multiples of 1e-8 base units; prices are rounded to
  1e-8 quote; fees to 1e-12 quote (ROUND_HALF_EVEN).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from amarktai_tui.domain.enums import OrderState, OrderType, Side
from amarktai_tui.domain.types import Candle, Fill, Order, split_pair
from amarktai_tui.exchanges.base import BrokerUpdate
from amarktai_tui.exchanges.registry import ExchangeInfo, exchange_info

PRICE_STEP = Decimal("1e-8")
QTY_STEP = Decimal("1e-8")
FEE_STEP = Decimal("1e-12")
_BPS = Decimal(10_000)


@dataclass(slots=True)
class PaperBalance:
    """One bot's paper balances: ``cash`` in quote, ``base`` in base units."""

    cash: Decimal
    base: Decimal = Decimal(0)


def to_decimal(x: float) -> Decimal:
    """A float read from a candle file as the Decimal of its shortest repr (``19695.87`` stays exact)."""
    return Decimal(repr(x))


class PaperBroker:
    """Simulated broker. ``name`` is ``paper``; it serves every exchange id in the table."""

    name = "paper"
    external = False

    def __init__(
        self,
        slippage_bps: Decimal = Decimal(5),
        fee_overrides: dict[str, tuple[Decimal, Decimal]] | None = None,
    ) -> None:
        """``slippage_bps``: basis points against the trader on market fills.

        ``fee_overrides``: exchange id -> (maker, taker) fractions replacing the table's.
        """
        if slippage_bps < 0:
            raise ValueError(f"paper slippage_bps must be >= 0, got {slippage_bps}")
        self.slippage = slippage_bps / _BPS
        self._fees = fee_overrides or {}
        self._balances: dict[int, PaperBalance] = {}
        # open orders per (exchange, pair): insertion order is submission order
        self._open: defaultdict[tuple[str, str], dict[str, Order]] = defaultdict(dict)
        self._fill_seq = 0

    # -- balances ---------------------------------------------------------
    def set_balance(self, bot_id: int, cash: Decimal, base: Decimal = Decimal(0)) -> None:
        """Seed a bot's balances (at creation from its capital, at restart from the ledger)."""
        self._balances[bot_id] = PaperBalance(cash, base)

    def balance(self, bot_id: int) -> PaperBalance:
        return self._balances[bot_id]

    def open_orders(self) -> list[Order]:
        return [o for book in self._open.values() for o in book.values()]

    def fee_rate(self, exchange: str, pair: str, *, maker: bool) -> Decimal:
        if exchange in self._fees:
            mk, tk = self._fees[exchange]
            return mk if maker else tk
        info: ExchangeInfo = exchange_info(exchange)
        return info.fee_rate(pair, maker=maker)

    # -- Broker protocol --------------------------------------------------
    async def submit(self, order: Order) -> BrokerUpdate:
        return self.accept(order)

    def accept(self, order: Order) -> BrokerUpdate:
        """Synchronous submit (the engine's replay path calls this directly)."""
        if order.bot_id not in self._balances:
            return BrokerUpdate(
                order.client_order_id, OrderState.REJECTED, reason="no paper balance for this bot"
            )
        if order.quantity <= 0:
            return BrokerUpdate(order.client_order_id, OrderState.REJECTED, reason="quantity must be > 0")
        if order.order_type is OrderType.LIMIT and not exchange_info(order.exchange).supports_limit:
            return BrokerUpdate(
                order.client_order_id,
                OrderState.REJECTED,
                reason=f"{order.exchange} takes market orders only",
            )
        self._open[(order.exchange, order.pair)][order.client_order_id] = order
        return BrokerUpdate(order.client_order_id, OrderState.OPEN)

    def drain(self) -> list[BrokerUpdate]:
        """Paper fills happen on candles (``on_candle``); nothing arrives on its own."""
        return []

    def cancel_now(self, client_order_id: str) -> bool:
        """Synchronous cancel (the engine's paper path): True when the order was open."""
        return any(book.pop(client_order_id, None) is not None for book in self._open.values())

    async def cancel(self, client_order_id: str) -> BrokerUpdate:
        for book in self._open.values():
            if book.pop(client_order_id, None) is not None:
                return BrokerUpdate(client_order_id, OrderState.CANCELLED, reason="cancelled")
        return BrokerUpdate(client_order_id, OrderState.CANCELLED, reason="not open")

    def has_open(self, pair: str) -> bool:
        return any(book for (_, p), book in self._open.items() if p == pair)

    def on_candle(self, candle: Candle) -> list[BrokerUpdate]:
        """Fill the open orders of ``candle.pair`` (any exchange) against this candle."""
        updates: list[BrokerUpdate] = []
        for (_exchange, pair), book in self._open.items():
            if pair != candle.pair or not book:
                continue
            for coid, order in list(book.items()):
                if candle.ts < order.created_ts:  # opened before the order existed
                    continue
                upd = self._try_fill(order, candle)
                if upd is not None:
                    del book[coid]
                    updates.append(upd)
        return updates

    # -- internals --------------------------------------------------------
    def _try_fill(self, order: Order, candle: Candle) -> BrokerUpdate | None:
        open_ = to_decimal(candle.open)
        buy = order.side is Side.BUY
        if order.order_type is OrderType.MARKET:
            price = open_ * (1 + self.slippage) if buy else open_ * (1 - self.slippage)
            maker = False
        else:
            limit = order.limit_price
            assert limit is not None
            if (buy and open_ <= limit) or (not buy and open_ >= limit):
                price, maker = open_, False
            elif (buy and to_decimal(candle.low) <= limit) or (not buy and to_decimal(candle.high) >= limit):
                price, maker = limit, True
            else:
                return None
        price = price.quantize(PRICE_STEP)
        qty = order.quantity
        fee = (qty * price * self.fee_rate(order.exchange, order.pair, maker=maker)).quantize(FEE_STEP)
        bal = self._balances[order.bot_id]
        if buy:
            cost = qty * price + fee
            if cost > bal.cash:
                return BrokerUpdate(
                    order.client_order_id,
                    OrderState.REJECTED,
                    reason=f"insufficient funds: needs {cost:.8f}, bot has {bal.cash:.8f} {split_pair(order.pair)[1]}",
                )
            bal.cash -= cost
            bal.base += qty
        else:
            if qty > bal.base:
                return BrokerUpdate(
                    order.client_order_id,
                    OrderState.REJECTED,
                    reason=f"insufficient position: sells {qty}, bot holds {bal.base}",
                )
            bal.cash += qty * price - fee
            bal.base -= qty
        self._fill_seq += 1
        fill = Fill(
            fill_id=f"{order.client_order_id}-f1",
            client_order_id=order.client_order_id,
            bot_id=order.bot_id,
            exchange=order.exchange,
            pair=order.pair,
            side=order.side,
            quantity=qty,
            price=price,
            fee=fee,
            fee_currency=split_pair(order.pair)[1],
            ts=candle.ts,
            liquidity="maker" if maker else "taker",
        )
        return BrokerUpdate(order.client_order_id, OrderState.FILLED, fill=fill)
