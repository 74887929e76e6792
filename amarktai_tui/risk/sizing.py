"""Position sizing (pure): how much a bot buys on an entry signal.

notional = min(capital x f, cash), where f is the risk mode's maximum
notional fraction (``MAX_NOTIONAL_FRACTION``), or the fractional Kelly
figure when the bot sizes by Kelly and that is smaller (``risk.kelly``).
Then the account's exposure caps: one asset's open notional at most
``asset_share`` (35%) of account equity, and, when more than one exchange is
used, one exchange's at most ``exchange_share`` (60%). The notional is then
divided by (1 + taker fee + slippage + FUNDING_BUFFER) so that the order is
still funded if the next open gaps up a little; the quantity is rounded down
to the market's amount step, and orders under the market's minimum notional
are not placed.
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
class ExposureCaps:
    """Account-level caps as fractions of account equity."""

    asset_share: Decimal = Decimal("0.35")
    exchange_share: Decimal = Decimal("0.60")


@dataclass(frozen=True, slots=True)
class Exposure:
    """Open notional the account holds now, quote at mark: in the pair's base asset (all bots and
    exchanges) and on the bot's exchange; ``exchanges_used`` counts exchanges with bots."""

    account_equity: Decimal
    asset: Decimal
    exchange: Decimal
    exchanges_used: int


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
    fraction: Decimal | None = None,
    exposure: Exposure | None = None,
    caps: ExposureCaps = ExposureCaps(),
    multiplier: Decimal = Decimal(1),
) -> SizeResult:
    """Base quantity for an entry at about ``price`` (quote per base).

    ``capital``/``cash`` in quote; ``taker_fee``/``slippage``/``fraction`` as
    fractions; ``fraction`` (Kelly) only ever lowers the risk mode's cap, and
    0 means no trade. ``multiplier`` scales the capital x cap notional (self-learning's size
    multiplier times the regime's, ``autonomy``; 1 = none) before cash and the exposure caps
    bound it. ``exposure`` applies the account caps. Returns quantity
    0 with a one-line reason when no trade should be placed.
    """
    if price <= 0:
        return SizeResult(Decimal(0), f"bad price {price}")
    cap = MAX_NOTIONAL_FRACTION[risk_mode]
    if fraction is not None:
        if fraction <= 0:
            return SizeResult(Decimal(0), "Kelly sizing says no edge: no trade")
        cap = min(cap, fraction)
    notional = min(capital * cap * multiplier if multiplier != 1 else capital * cap, cash)
    if exposure is not None:
        eq = exposure.account_equity
        room = caps.asset_share * eq - exposure.asset
        why = f"asset exposure {exposure.asset:.2f} at its cap {caps.asset_share * eq:.2f}"
        if exposure.exchanges_used > 1:
            room_ex = caps.exchange_share * eq - exposure.exchange
            if room_ex < room:
                room = room_ex
                why = f"exchange exposure {exposure.exchange:.2f} at its cap {caps.exchange_share * eq:.2f}"
        if room <= 0:
            return SizeResult(Decimal(0), why)
        notional = min(notional, room)
    notional = notional / (1 + taker_fee + slippage + FUNDING_BUFFER)
    qty = (notional / price).quantize(qty_step, rounding=ROUND_DOWN)
    if qty <= 0 or qty * price < min_notional:
        return SizeResult(Decimal(0), f"notional {qty * price:.2f} below the minimum {min_notional}")
    return SizeResult(qty)
