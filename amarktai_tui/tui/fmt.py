"""Display formatting: Decimal money, quantities, engine timestamps (display only, never stored)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

_CENT = Decimal("0.01")


def money(value: Decimal, *, signed: bool = False, places: int = 2) -> str:
    """``Decimal("-1234.5")`` -> ``"-1,234.50"``; ``signed`` adds ``+`` to positives (quote currency)."""
    q = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    if q == 0:
        q = abs(q)  # no "-0.00"
    text = f"{q:,.{places}f}"
    return f"+{text}" if signed and q > 0 else text


def qty(value: Decimal) -> str:
    """A base quantity with up to 8 decimals, trailing zeros dropped (``0.01230000`` -> ``0.0123``)."""
    q = value.quantize(Decimal("0.00000001"), rounding=ROUND_HALF_EVEN)
    if q == 0:
        return "0"
    text = f"{q:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def price(value: Decimal | float) -> str:
    """A price with 2 decimals above 1, else 8 significant-ish decimals."""
    d = value if isinstance(value, Decimal) else Decimal(repr(value))
    if abs(d) >= 1:
        return money(d)
    return qty(d)


def pct(fraction: float | None) -> str:
    """``0.347`` -> ``"34.7%"``; None -> ``"-"``."""
    return "-" if fraction is None else f"{fraction * 100:.1f}%"


def ts(ms: int | None, *, seconds: bool = False) -> str:
    """ms UTC -> ``"2021-07-17 21:00"`` (UTC); None or 0 -> ``"-"``."""
    if not ms:
        return "-"
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def duration(ms: int) -> str:
    """A span in ms -> ``"3d 4h"``, ``"5h 10m"`` or ``"25m"``."""
    minutes = ms // 60_000
    days, rem = divmod(minutes, 1440)
    hours, mins = divmod(rem, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {mins}m"
    return f"{mins}m"


def pnl_class(value: Decimal) -> str:
    """CSS class for a PnL figure: ``"up"``, ``"down"`` or ``"flat"``."""
    return "up" if value > 0 else "down" if value < 0 else "flat"
