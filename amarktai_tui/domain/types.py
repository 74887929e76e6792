"""Value types on the one path: Candle -> Signal -> OrderIntent -> Order -> Fill.

Units: timestamps are ms since the epoch, UTC; prices are quote currency per
unit of base; quantities are base units; fees are in ``fee_currency``.
Candle prices are floats (indicator input, as read from the file); every
money figure from an intent onwards is ``Decimal``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from amarktai_tui.domain.enums import OrderState, OrderType, Side, SignalAction

_TF = re.compile(r"^(\d+)([mhdw])$")
_TF_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def timeframe_to_ms(timeframe: str) -> int:
    """Length of a timeframe such as ``5m``, ``1h``, ``1d``, ``1w`` in ms.

    Raises ValueError for anything else.
    """
    m = _TF.match(timeframe)
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"bad timeframe {timeframe!r}: expected like 1m, 5m, 1h, 4h, 1d")
    return int(m.group(1)) * _TF_MS[m.group(2)]


@dataclass(frozen=True, slots=True)
class Candle:
    """One closed OHLCV candle of ``pair`` (``BASE/QUOTE``) on ``timeframe``.

    ``ts`` is the candle's open time (ms UTC), as exchanges and freqtrade
    record it; the candle is closed at ``ts + timeframe_to_ms(timeframe)``.
    Volume is in base currency.
    """

    pair: str
    timeframe: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True)
class Signal:
    """A strategy's decision on a closed candle.

    ``edge_bps`` is the strategy's expected gross edge of the trade in basis
    points (1 bps = 0.0001), used by the fee-coverage gate. ``reason`` is a
    short human string shown in the UI and stored with the order.
    ``limit_price`` asks for a limit order at that price (None = market).
    """

    action: SignalAction
    edge_bps: float = 0.0
    reason: str = ""
    limit_price: float | None = None


HOLD = Signal(SignalAction.HOLD)


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What a bot wants to trade, before any gate or broker sees it.

    ``client_order_id`` is deterministic in (bot, candle time, side, attempt)
    so that a replayed or re-submitted intent can never become a second order.
    ``quantity`` is in base units; ``limit_price`` in quote (None = market).
    ``decision_ts`` is the closed candle's open time (ms UTC) the decision
    was made on.
    """

    client_order_id: str
    bot_id: int
    exchange: str
    pair: str
    side: Side
    order_type: OrderType
    quantity: Decimal
    limit_price: Decimal | None
    decision_ts: int
    reason: str
    edge_bps: float = 0.0


@dataclass(slots=True)
class Order:
    """An order as the ledger tracks it (mutable state; the row is updated)."""

    client_order_id: str
    bot_id: int
    exchange: str
    pair: str
    side: Side
    order_type: OrderType
    quantity: Decimal
    limit_price: Decimal | None
    state: OrderState
    created_ts: int
    updated_ts: int
    reason: str = ""
    exchange_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class Fill:
    """An execution. Append-only in the ledger.

    ``fee`` is in ``fee_currency`` (quote for paper fills). ``realised_pnl``
    is the FIFO realised PnL (quote, net of the buy fees inside the closed
    lots' cost and this sell's fee) for a sell, zero for a buy.
    """

    fill_id: str
    client_order_id: str
    bot_id: int
    exchange: str
    pair: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    ts: int
    liquidity: str  # "maker" | "taker"
    realised_pnl: Decimal = Decimal(0)


def client_order_id(bot_id: int, decision_ts: int, side: Side, attempt: int = 0) -> str:
    """Deterministic client order id: ``am<bot>-<ts base36>-<b|s><attempt>``.

    Short enough for every exchange's limit (Binance: 36 characters); only
    ``[a-z0-9-]``, which every exchange accepts.
    """
    return f"am{bot_id}-{_b36(decision_ts)}-{side.value[0]}{attempt}"


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    if n == 0:
        return "0"
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(digits[r])
    return "".join(reversed(out))


def split_pair(pair: str) -> tuple[str, str]:
    """``"BTC/USDT"`` -> ``("BTC", "USDT")``. Raises ValueError on other shapes."""
    base, sep, quote = pair.partition("/")
    if not sep or not base or not quote:
        raise ValueError(f"bad pair {pair!r}: expected BASE/QUOTE like BTC/USDT")
    return base, quote
