"""Timestamps as candle files write them -> ms since the epoch, UTC.

Numbers are told apart by magnitude (seconds, ms, µs or ns since the epoch); text may be a
number, ISO 8601 (``2021-07-17T00:00:00Z``, ``2021-07-17 00:00:00``; naive means UTC) or
CryptoDataDownload's ``2019-10-17 09-AM``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def number_to_ms(x: float) -> int:
    """An epoch number in s, ms, µs or ns (by magnitude) -> ms UTC. Raises ValueError if not > 0."""
    if not x > 0 or x == float("inf"):
        raise ValueError(f"timestamp {x!r} is not a positive epoch time")
    if x < 1e11:  # seconds (1e11 s is the year 5138; 1e11 ms is 1973)
        return round(x * 1000)
    if x < 1e14:
        return int(x)
    if x < 1e17:  # microseconds
        return int(x // 1000)
    return int(x // 1_000_000)  # nanoseconds


def datetime_to_ms(dt: datetime) -> int:
    """A datetime (naive = UTC) -> ms since the epoch."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _MS


def text_to_ms(text: str) -> int:
    """A timestamp as text -> ms UTC. Raises ValueError with the offending text if unparseable."""
    s = text.strip()
    if not s:
        raise ValueError("empty timestamp")
    if s[0].isdigit() and s.isdigit():
        return number_to_ms(int(s))
    try:
        return number_to_ms(float(s))
    except ValueError:
        pass
    tail = s[-2:].upper()
    if tail in ("AM", "PM") and len(s) >= 14 and s[-3] == "-":
        # CryptoDataDownload: "2019-10-17 09-AM" (12-AM is midnight, 12-PM noon)
        try:
            day = datetime.fromisoformat(s[:10])
            hour = int(s[11:-3])
        except ValueError:
            raise ValueError(f"bad timestamp {text!r}") from None
        if not 1 <= hour <= 12:
            raise ValueError(f"bad timestamp {text!r}: hour {hour}")
        hour = hour % 12 + (12 if tail == "PM" else 0)
        return datetime_to_ms(day) + hour * 3_600_000
    try:
        return datetime_to_ms(datetime.fromisoformat(s))
    except ValueError:
        raise ValueError(
            f"bad timestamp {text!r}: expected epoch s/ms, ISO 8601 or YYYY-MM-DD HH-AM"
        ) from None


def ms_to_iso(ms: int) -> str:
    """ms UTC -> ``2021-07-17T00:05:00Z`` (for messages)."""
    return (_EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%SZ")
