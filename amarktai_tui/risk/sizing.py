"""Position sizing (pure): how much a bot buys on an entry signal.

Foundation rule (issue 3 adds Kelly, allocation and exposure caps on top):
notional = min(capital x MAX_NOTIONAL_FRACTION[risk_mode], cash), then
divided by (1 + taker fee + slippage + FUNDING_BUFFER) so that the order is
still funded if the next open gaps up a little; quantity rounded down to
the quantity step. Orders under ``min_notional`` are not placed.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from amarktai_tui.domain.enums import RiskMode

MAX_NOTIONAL_FRACTION: dict[RiskMode, Decimal] = {
    RiskMode.SAFE: Decimal("0.25"),
    RiskMode.BALANCED: Decimal("0.35"),
    RiskMode.RISKY: Decimal("0.45"),
    RiskMode.AGGRESSIVE: Decimal("0.60"),
}
FUNDING_BUFFER = Decimal("0.01")  # 1% headroom for the gap between decision close and next open
DEFAULT_MIN_NOTIONAL = Decimal(10)  # quote; Binance's spot minimum for USDT pairs is 5-10 USDT


@dataclass(frozen=True, slots=True)
class SizeResult:
    """``quantity`` in base units (0 = no trade) and ``reason`` when zero."""

    quantity: Decimal
    reason: str = ""


def entry_quantity(
    *,
    capital: Decimal,
    cash: Decimal,
    price: Decimal,
    risk_mode: RiskMode,
    taker_fee: Decimal,
    slippage: Decimal,
    qty_step: Decimal = Decimal("1e-8"),
    min_notional: Decimal = DEFAULT_MIN_NOTIONAL,
) -> SizeResult:
    """Base quantity for an entry at about ``price`` (quote per base).

    ``capital``/``cash`` in quote; ``taker_fee``/``slippage`` as fractions.
    Returns quantity 0 with a reason when the trade is too small to place.
    """
    if price <= 0:
        return SizeResult(Decimal(0), f"bad price {price}")
    notional = min(capital * MAX_NOTIONAL_FRACTION[risk_mode], cash)
    notional = notional / (1 + taker_fee + slippage + FUNDING_BUFFER)
    qty = (notional / price).quantize(qty_step, rounding=ROUND_DOWN)
    if qty <= 0 or qty * price < min_notional:
        return SizeResult(Decimal(0), f"notional {qty * price:.2f} below the minimum {min_notional}")
    return SizeResult(qty)
