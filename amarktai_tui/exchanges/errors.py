"""One-line descriptions of exchange errors, safe to log and show."""

from __future__ import annotations


def why(exc: BaseException) -> str:
    """One line naming the error class and the first 160 characters of its message (no secrets: ccxt
    messages carry the exchange's response body and URL, never the signing secret or the API key)."""
    msg = " ".join(str(exc).split())[:160]
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
