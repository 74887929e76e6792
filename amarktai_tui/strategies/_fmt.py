"""Number formatting for signal reasons (only called when a signal fires)."""

from __future__ import annotations


def fmt_price(x: float) -> str:
    """A price for a reason string: ``19650.2``, ``1.23456``, ``0.00123457``."""
    if abs(x) >= 1000.0:
        return f"{x:.1f}"
    return f"{x:.6g}"
