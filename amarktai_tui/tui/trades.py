"""Closed round trips from ``engine.fill_log``, built incrementally with ``ledger.pnl.trades_from_fills``.

A round trip runs from flat to flat on one (bot, exchange, pair), so the
fills since the last flat point are all ``trades_from_fills`` needs: the
result is the same as running it over the whole log, at a cost per new fill.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from amarktai_tui.domain.enums import Side
from amarktai_tui.domain.types import Fill
from amarktai_tui.ledger.pnl import Trade, trades_from_fills

_Key = tuple[int, str, str]


class ClosedTrades:
    """Every closed trade so far, oldest exit first; call ``update(fill_log)`` before reading."""

    def __init__(self) -> None:
        self.trades: list[Trade] = []
        self._open: dict[_Key, list[Fill]] = {}
        self._position: dict[_Key, Decimal] = {}
        self._seen = 0

    def update(self, fills: Sequence[Fill]) -> bool:
        """Take in the fills appended since the last call; True when a trade closed."""
        before = len(self.trades)
        for f in fills[self._seen :]:
            key = (f.bot_id, f.exchange, f.pair)
            pending = self._open.setdefault(key, [])
            pending.append(f)
            pos = self._position.get(key, Decimal(0))
            pos = pos + f.quantity if f.side is Side.BUY else pos - f.quantity
            self._position[key] = pos
            if pos == 0:
                self.trades.extend(trades_from_fills(pending))
                self._open[key] = []
        self._seen = len(fills)
        return len(self.trades) != before
