"""The Broker protocol: where orders go, paper or live."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from amarktai_tui.domain.enums import OrderState
from amarktai_tui.domain.types import Candle, Fill, Order


@dataclass(frozen=True, slots=True)
class BrokerUpdate:
    """A change to one order: a new state, and the fill that caused it if any.

    ``reason`` explains rejections/cancellations (one line, no secrets). A
    live broker also sends ``state`` pending with a reason when the order's
    fate is unknown (a timeout: it is being looked up), and open updates
    carrying a partial ``fill``; ``exchange_order_id`` once the exchange named it.
    """

    client_order_id: str
    state: OrderState
    fill: Fill | None = None
    reason: str = ""
    exchange_order_id: str | None = None


class Broker(Protocol):
    """Accepts orders already written (state pending) to the ledger.

    ``submit`` acknowledges (state open) or refuses (state rejected, with the
    reason) an order; fills arrive later through ``on_candle`` (paper: the
    candle after the decision) or the broker's own tracking (live).
    """

    name: str
    external: bool
    """True when ``submit`` reaches outside this process (a real exchange): the
    engine then commits the pending order row before calling it. A paper broker
    (False) is acknowledged in the same transaction as the pending row."""

    async def submit(self, order: Order) -> BrokerUpdate: ...

    async def cancel(self, client_order_id: str) -> BrokerUpdate: ...

    def on_candle(self, candle: Candle) -> list[BrokerUpdate]: ...

    def drain(self) -> list[BrokerUpdate]:
        """Updates that arrived on their own (a live broker's tracking) since the last call."""
        ...

    def fee_rate(self, exchange: str, pair: str, *, maker: bool) -> Decimal: ...

    def set_balance(self, bot_id: int, cash: Decimal, base: Decimal = ...) -> None: ...

    def cancel_now(self, client_order_id: str) -> bool:
        """Cancel synchronously if possible (paper: True when it was open); a live broker requests it."""
        ...
