"""Three loopback exchange accounts at once (Binance, VALR, OVEX) with known keys and balances, for
the balances tests (``tests/ops``, ``tests/tui``): one place for what each server holds.

Expected figures come from the servers' own books: balances (free and locked) and prices
(``Book.price``; OVEX's mid of its buy and sell quote rates, ``Accounts.ovex_mid``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from loopback.binance import BinanceLoopback
from loopback.binance import rows as binance_rows
from loopback.ovex import OvexLoopback
from loopback.valr import ValrLoopback

START_MS = int(binance_rows("BTCUSDT", "5m")[20_000][0])
KEYS: dict[str, dict[str, str]] = {
    "binance": {"api_key": "bnBalKey-1111-2222-3333", "api_secret": "bnBalSecret-4444-5555-6666"},
    "valr": {"api_key": "valrBalKey-7777-8888", "api_secret": "valrBalSecret-9999-aaaa"},
    "ovex": {"bearer_key": "ovexBalBearer-bbbb-cccc-dddd"},
}
"""The key fields each server accepts, as the vault stores them."""
SECRETS = [v for fields in KEYS.values() for v in fields.values()]
BALANCES: dict[str, dict[str, Decimal]] = {
    "binance": {"USDT": Decimal(1000), "BTC": Decimal("0.5"), "ETH": Decimal(2), "XYZ": Decimal(7)},
    "valr": {"ZAR": Decimal(180_000), "BTC": Decimal("0.1"), "USDT": Decimal(500), "ETH": Decimal(1)},
    "ovex": {"ZAR": Decimal(50_000), "USDT": Decimal(250), "BTC": Decimal("0.25"), "ETH": Decimal(3)},
}
"""Free amounts at the start (XYZ: an asset no market prices)."""
Q8 = Decimal("1e-8")


def q8(x: Decimal) -> Decimal:
    return x.quantize(Q8, rounding=ROUND_HALF_EVEN)


@dataclass
class Accounts:
    binance: BinanceLoopback
    valr: ValrLoopback
    ovex: OvexLoopback

    @property
    def urls(self) -> dict[str, str]:
        """Exchange id -> the server's URL (for ``[exchanges.<id>] api_url``)."""
        return {"binance": str(self.binance.url), "valr": str(self.valr.url), "ovex": str(self.ovex.url)}

    def ovex_mid(self, market: str) -> Decimal:
        """OVEX's price as its quotes give it: the mid of the buy and sell rates (loopback.ovex doc)."""
        p = self.ovex.book.price(market)
        return (q8(p * (1 + self.ovex.spread)) + q8(p * (1 - self.ovex.spread))) / 2


@contextlib.asynccontextmanager
async def running_accounts() -> AsyncIterator[Accounts]:
    """The three servers started on 127.0.0.1 with ``KEYS`` and ``BALANCES``; stopped on exit."""
    bn, valr, ovex = KEYS["binance"], KEYS["valr"], KEYS["ovex"]
    async with (
        BinanceLoopback.running(
            start_ms=START_MS, balances=BALANCES["binance"], api_key=bn["api_key"], secret=bn["api_secret"]
        ) as b,
        ValrLoopback.running(
            start_ms=START_MS, balances=BALANCES["valr"], api_key=valr["api_key"], secret=valr["api_secret"]
        ) as v,
        OvexLoopback.running(start_ms=START_MS, balances=BALANCES["ovex"], api_key=ovex["bearer_key"]) as o,
    ):
        yield Accounts(b, v, o)
