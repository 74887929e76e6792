"""Shared parts of the live-session suites: candle slices, a feed that moves the exchange's clock,
settings with the breakers opened wide, and the ledger-vs-exchange comparison.

Imported by the fault suite (in-process server) and the crash driver (server in its own process).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from amarktai_tui.config import Settings, load_settings
from amarktai_tui.domain.enums import OrderState, OrderType, Side
from amarktai_tui.domain.types import Candle, Order, timeframe_to_ms
from amarktai_tui.exchanges.base import BrokerUpdate
from amarktai_tui.exchanges.live import CcxtBroker
from amarktai_tui.market.base import FeedStatus, MarketFeed

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FIRST = 20_000  # candle index where the slices start (inside the data, away from the gaps)


def slice_files(folder: Path, candles: int, first: int = FIRST) -> list[Path]:
    """BTC_USDT-5m.json and ETH_USDT-5m.json holding ``candles`` real candles from index ``first``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for pair in ("BTC_USDT", "ETH_USDT"):
        rows = json.loads((DATA / "binance" / f"{pair}-5m.json").read_text())[first : first + candles]
        path = folder / f"{pair}-5m.json"
        path.write_text(json.dumps(rows))
        out.append(path)
    return out


def start_ms(first: int = FIRST) -> int:
    """The open time of candle ``first`` (the exchange's clock starts there)."""
    rows = json.loads((DATA / "binance" / "BTC_USDT-5m.json").read_text())
    return int(rows[first][0])


class ClockedFeed:
    """Wraps a feed: before each candle reaches the engine, the exchange's clock moves to its close.

    ``settle()``, if given, runs before each candle too: the suites use it to let the broker resolve
    the orders in flight (market time waits for them, as it would live, where a 5m candle is 5 minutes).

    ``set_time(ms)`` is the server's clock (in-process: ``book.set_time``; another process: an HTTP
    call). Times never move back (a restarted engine re-reads candles it already saw as warm-up).
    """

    def __init__(
        self,
        inner: MarketFeed,
        set_time: Callable[[int], Any],
        now_ms: int = 0,
        settle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.inner = inner
        self._set_time = set_time
        self.now_ms = now_ms
        self._settle = settle

    @property
    def streams(self) -> list[tuple[str, str]]:
        return self.inner.streams

    def status(self) -> FeedStatus:
        return self.inner.status()

    async def history(self, pair: str, timeframe: str, limit: int) -> list[Candle]:
        return await self.inner.history(pair, timeframe, limit)

    def stop(self) -> None:
        self.inner.stop()

    async def candles(self) -> AsyncIterator[Candle]:
        async for c in self.inner.candles():
            close = c.ts + timeframe_to_ms(c.timeframe)
            if close > self.now_ms:
                self.now_ms = close
                done = self._set_time(close)
                if hasattr(done, "__await__"):
                    await done
            if self._settle is not None:
                await self._settle()
            yield c


async def settle_orders(broker: Any, passes: int = 50) -> None:
    """Tracker passes until the broker follows no order (at most ``passes``): orders in flight resolve."""
    for _ in range(passes):
        if not broker.tracked:
            return
        await broker.track_once()


async def finish_session(engine: Any, broker: Any) -> None:
    """After the data ended: resolve what is still unknown or open, apply it, write everything."""
    for _ in range(500):
        if not broker.tracked:
            break
        await broker.track_once()
        engine.apply_broker_updates()
    engine.apply_broker_updates()
    await engine.flush()


def live_settings(tmp: Path, api_url: str, bots_per_pair: int = 3) -> Settings:
    """Bots on Binance BTC/USDT and ETH/USDT trading often (fast SMA crosses), breakers opened wide,
    the exchange at ``api_url`` with a short timeout (a loopback answers in milliseconds)."""
    bots = []
    for pair in ("BTC/USDT", "ETH/USDT"):
        for i in range(bots_per_pair):
            name = f"{pair.split('/')[0].lower()}-{i}"
            bots.append(
                f'[[bots]]\nname = "{name}"\nexchange = "binance"\npair = "{pair}"\ntimeframe = "5m"\n'
                f'strategy = "sma_cross"\nparams = {{ fast = {2 + i}, slow = {5 + 2 * i} }}\n'
                f'risk_mode = "balanced"\ncapital = "10000"\n'
            )
    text = (
        '[risk]\nmin_edge_bps = "0"\nslippage_buffer_bps = "0"\nsafety_margin_bps = "0"\n'
        "bot_trades_per_day = 10000\naccount_trades_per_day = 100000\nburst_orders = 1000\n"
        "error_storm_errors = 100000\nmax_consecutive_losses = 100000\n"
        'bot_max_drawdown = "0.99"\naccount_max_drawdown = "0.99"\naccount_daily_loss = "0.99"\n'
        'max_asset_exposure = "1"\nmax_exchange_exposure = "1"\n'
        f'[exchanges.binance]\napi_url = "{api_url}"\ntimeout_s = 0.25\npoll_interval_s = 0.05\n'
        "breaker_failures = 1000\nbreaker_cooldown_s = 0.1\n\n" + "\n".join(bots)
    )
    path = tmp / "config.toml"
    path.write_text(text)
    return load_settings(path, required=True)


def ledger(db: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(orders, fills) rows of the ledger at ``db``."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        orders = [dict(r) for r in conn.execute("SELECT * FROM orders ORDER BY id")]
        fills = [dict(r) for r in conn.execute("SELECT * FROM fills ORDER BY id")]
    finally:
        conn.close()
    return orders, fills


def compare(
    state: dict[str, Any], orders: list[dict[str, Any]], fills: list[dict[str, Any]]
) -> dict[str, Any]:
    """The exchange's state (``Book.state()``) against the ledger: what differs, and the figures.

    Returns {"duplicates", "unresolved", "missing_fills", "extra_fills", "mismatched", "orders",
    "server_orders", "fills"}; a clean session has the first five empty.
    """
    trades = {f"binance:{t['id']}": t for t in state["trades"]}
    ledger_fills = {f["fill_id"]: f for f in fills}
    mismatched = []
    for fid, f in ledger_fills.items():
        t = trades.get(fid)
        if t is None:
            continue
        same = (
            t["client_order_id"] == f["client_order_id"]
            and Decimal(t["qty"]) == Decimal(f["quantity"])
            and Decimal(t["price"]) == Decimal(f["price"])
            and Decimal(t["fee"]) == Decimal(f["fee"])
        )
        if not same:
            mismatched.append(fid)
    placed = {o["client_order_id"] for o in state["orders"]}
    unresolved = [o["client_order_id"] for o in orders if o["state"] in ("pending", "open")]
    ghost = [
        o["client_order_id"] for o in orders if o["state"] == "rejected" and o["client_order_id"] in placed
    ]
    return {
        "duplicates": state["duplicates"],
        "unresolved": unresolved,
        "rejected_but_placed": ghost,
        "missing_fills": sorted(set(trades) - set(ledger_fills)),
        "extra_fills": sorted(set(ledger_fills) - set(trades)),
        "mismatched": mismatched,
        "orders": len([o for o in orders if o["gate"] == ""]),
        "server_orders": len(state["orders"]),
        "fills": len(fills),
    }


class Clock:
    """Monotonic seconds that move only when a test says so (the broker's grace and breaker timers)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def no_sleep(_: float) -> None:
    return None


def make_order(
    coid: str,
    exchange: str,
    created_ts: int,
    side: Side = Side.BUY,
    qty: str = "0.01",
    limit: str | None = None,
) -> Order:
    """A pending BTC/USDT order of bot 1 (market, or limit at ``limit``)."""
    return Order(
        client_order_id=coid,
        bot_id=1,
        exchange=exchange,
        pair="BTC/USDT",
        side=side,
        order_type=OrderType.MARKET if limit is None else OrderType.LIMIT,
        quantity=Decimal(qty),
        limit_price=None if limit is None else Decimal(limit),
        state=OrderState.PENDING,
        created_ts=created_ts,
        updated_ts=created_ts,
    )


async def settle(broker: CcxtBroker, clock: Clock, passes: int = 10) -> list[BrokerUpdate]:
    """Tracker passes (moving the clock past the grace each time) until nothing is followed."""
    out: list[BrokerUpdate] = []
    for _ in range(passes):
        await broker.track_once()
        out += broker.drain()
        if not broker.tracked:
            break
        clock.now += 6
    return out
