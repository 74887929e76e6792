"""Realised PnL per UTC calendar period (day, ISO week, month) of engine time.

Fed incrementally from ``engine.fill_log`` (oldest first): each new fill's
``realised_pnl`` (quote; zero for buys) is added to its UTC day, so a redraw
costs a few dict look-ups however long the log is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from amarktai_tui.domain.types import Fill

_DAY_MS = 86_400_000
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class PeriodPnl:
    """Realised PnL (quote) of the current and the previous period."""

    current: Decimal
    previous: Decimal


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date()


class RealisedByDay:
    """Sums of fills' realised PnL per UTC day; call ``update(fill_log)`` before reading."""

    def __init__(self) -> None:
        self._days: dict[date, Decimal] = {}
        self._seen = 0

    def update(self, fills: Sequence[Fill]) -> bool:
        """Take in the fills appended since the last call; True when any were new."""
        new = fills[self._seen :]
        for f in new:
            if f.realised_pnl:
                d = _day(f.ts)
                self._days[d] = self._days.get(d, _ZERO) + f.realised_pnl
        self._seen = len(fills)
        return bool(new)

    def between(self, start: date, end: date) -> Decimal:
        """Realised PnL of days ``start <= day < end``."""
        return sum((v for d, v in self._days.items() if start <= d < end), _ZERO)

    def day(self, now_ms: int) -> PeriodPnl:
        today = _day(now_ms)
        return PeriodPnl(self._days.get(today, _ZERO), self._days.get(today - timedelta(days=1), _ZERO))

    def week(self, now_ms: int) -> PeriodPnl:
        """ISO week (Monday 00:00 UTC to Monday)."""
        monday = _day(now_ms) - timedelta(days=_day(now_ms).weekday())
        week = timedelta(days=7)
        return PeriodPnl(self.between(monday, monday + week), self.between(monday - week, monday))

    def month(self, now_ms: int) -> PeriodPnl:
        first = _day(now_ms).replace(day=1)
        nxt = (first + timedelta(days=32)).replace(day=1)
        prev = (first - timedelta(days=1)).replace(day=1)
        return PeriodPnl(self.between(first, nxt), self.between(prev, first))
