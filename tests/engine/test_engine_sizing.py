"""Position sizing (risk/sizing.py): notional per risk mode, cash limit, rounding, minimum notional."""

from __future__ import annotations

from decimal import Decimal

import pytest

from amarktai_tui.domain.enums import RiskMode
from amarktai_tui.risk.sizing import entry_quantity

FEE, SLIP = Decimal("0.001"), Decimal("0.0005")


@pytest.mark.parametrize(
    ("mode", "fraction"),
    [
        (RiskMode.SAFE, "0.25"),
        (RiskMode.BALANCED, "0.35"),
        (RiskMode.RISKY, "0.45"),
        (RiskMode.AGGRESSIVE, "0.60"),
    ],
)
def test_notional_per_risk_mode(mode: RiskMode, fraction: str) -> None:
    price = Decimal("19695.87")
    r = entry_quantity(
        capital=Decimal(1000), cash=Decimal(1000), price=price, risk_mode=mode, taker_fee=FEE, slippage=SLIP
    )
    budget = Decimal(1000) * Decimal(fraction) / (1 + FEE + SLIP + Decimal("0.01"))
    assert r.quantity == r.quantity.quantize(Decimal("1e-8"))
    assert r.quantity * price <= budget < (r.quantity + Decimal("1e-8")) * price


def test_cash_limits_the_order_and_the_buy_stays_funded_after_a_gap_up() -> None:
    price = Decimal(100)
    r = entry_quantity(
        capital=Decimal(1000),
        cash=Decimal(50),
        price=price,
        risk_mode=RiskMode.AGGRESSIVE,
        taker_fee=FEE,
        slippage=SLIP,
    )
    assert r.quantity > 0
    fill = price * Decimal("1.009") * (1 + SLIP)  # next open 0.9% higher, plus slippage
    assert r.quantity * fill * (1 + FEE) <= Decimal(50)


def test_below_the_minimum_notional_no_trade() -> None:
    r = entry_quantity(
        capital=Decimal(20),
        cash=Decimal(20),
        price=Decimal(30000),
        risk_mode=RiskMode.SAFE,
        taker_fee=FEE,
        slippage=SLIP,
    )
    assert r.quantity == 0 and "minimum" in r.reason
    r = entry_quantity(
        capital=Decimal(1000),
        cash=Decimal(1000),
        price=Decimal(0),
        risk_mode=RiskMode.SAFE,
        taker_fee=FEE,
        slippage=SLIP,
    )
    assert r.quantity == 0
