"""Order updates over the websocket (ccxt.pro watch_orders) against the loopback Binance user stream.

The stream only wakes the tracker for the order it names; fills still come from
``fetch_my_trades`` keyed by trade id. With REST polling set to an hour, a fill
that reaches the ledger within seconds can only have come through the stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import pytest
from loopback.binance import BinanceLoopback

from amarktai_tui.domain.enums import OrderState, OrderType, Side
from amarktai_tui.domain.types import Order
from amarktai_tui.exchanges.base import BrokerUpdate
from amarktai_tui.exchanges.clients import make_client, replace_origin
from amarktai_tui.exchanges.live import CcxtBroker
from amarktai_tui.exchanges.order_stream import supports_order_stream

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BTC = json.loads((DATA / "binance" / "BTC_USDT-5m.json").read_text())
I0 = 20_001
START = int(BTC[I0][0])  # the open of candle #20001
HOUR = 3600.0


@pytest.fixture
async def server() -> AsyncIterator[BinanceLoopback]:
    async with BinanceLoopback.running(start_ms=START, balances={"USDT": Decimal(100_000)}) as srv:
        yield srv


def ws_broker(srv: BinanceLoopback, *, websocket: bool = True) -> CcxtBroker:
    assert srv.url is not None
    client = make_client(
        "binance",
        {"api_key": srv.api_key, "api_secret": srv.secret},
        api_url=srv.url,
        timeout_s=2,
        websocket=websocket,
    )
    return CcxtBroker({"binance": client}, poll_interval_s=HOUR, ws_poll_interval_s=HOUR)


def resting_buy(coid: str, candles: int) -> tuple[Order, int]:
    """A limit buy at the lowest low of the next ``candles`` candles (below the open: it rests),
    and the ms at which the candle that reaches it has closed."""
    window = BTC[I0 : I0 + candles]
    low = min(Decimal(str(c[3])) for c in window)
    assert low < Decimal(str(BTC[I0][1]))
    hit = next(c for c in window if Decimal(str(c[3])) == low)
    o = Order(
        client_order_id=coid,
        bot_id=1,
        exchange="binance",
        pair="BTC/USDT",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        quantity=Decimal("0.01"),
        limit_price=low,
        state=OrderState.PENDING,
        created_ts=START,
        updated_ts=START,
    )
    return o, int(hit[0]) + 300_000


async def until(cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Wait for ``cond`` (checked on every loop turn), failing with ``what`` after ``timeout`` s."""
    try:
        async with asyncio.timeout(timeout):
            while not cond():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


class Drained:
    def __init__(self, broker: CcxtBroker) -> None:
        self.broker = broker
        self.updates: list[BrokerUpdate] = []

    def has_fill(self) -> bool:
        self.updates += self.broker.drain()
        return any(u.fill is not None for u in self.updates)

    def finished(self) -> bool:
        self.updates += self.broker.drain()
        return any(u.state is OrderState.FILLED for u in self.updates)


async def test_a_fill_arrives_through_the_stream_while_polling_is_an_hour_away(
    server: BinanceLoopback,
) -> None:
    broker = ws_broker(server)
    await broker.start(load_fees=False)
    got = Drained(broker)
    try:
        await until(lambda: server.subscribed_streams() == 1, "the user stream subscription")
        assert broker.stream_states() == {"binance": "live"}
        o, filled_at = resting_buy("am1-ws-b0", 60)
        assert (await broker.submit(o)).state is OrderState.OPEN
        await until(lambda: broker.counters.lookups >= 1 and broker.idle, "the first lookup")
        lookups_before = broker.counters.lookups
        assert server.book.set_time(filled_at)  # the candle reaching the limit closes: the order fills
        await until(got.finished, "the fill through the stream")
    finally:
        await broker.close()
    (fill,) = [u.fill for u in got.updates if u.fill is not None]
    (trade,) = server.book.trades
    assert fill.fill_id == f"binance:{trade.id}" and fill.price == trade.price == o.limit_price
    assert broker.counters.stream_events >= 1
    assert broker.counters.lookups - lookups_before <= 2  # the named order only, not a full poll
    assert server.ws_events_sent >= 2  # NEW, then TRADE


async def test_events_lost_while_the_stream_was_down_are_found_by_the_pass_after_it(
    server: BinanceLoopback,
) -> None:
    broker = ws_broker(server)
    await broker.start(load_fees=False)
    got = Drained(broker)
    try:
        await until(lambda: server.subscribed_streams() == 1, "the user stream subscription")
        o, filled_at = resting_buy("am1-ws-b1", 60)
        server.ws_muted = True  # every event of this order is lost
        await broker.submit(o)
        await until(lambda: broker.counters.lookups >= 1 and broker.idle, "the first lookup")
        server.book.set_time(filled_at)
        assert server.book.orders[0].status == "filled"
        lookups_before = broker.counters.lookups
        server.ws_muted = False
        assert await server.drop_streams() == 1  # the connection drops: the broker polls at once
        await until(got.finished, "the fill found by the pass after the drop")
        await until(lambda: server.subscribed_streams() == 1, "the stream to reconnect")
        await until(lambda: broker.stream_states()["binance"] == "live", "the stream state to be live")
    finally:
        await broker.close()
    assert broker.streams["binance"].failures >= 1
    assert broker.counters.stream_events == 0  # nothing came over the stream: the fill came from the pass
    assert broker.counters.lookups > lookups_before
    assert len([u for u in got.updates if u.fill is not None]) == 1


async def test_without_websocket_the_broker_polls(server: BinanceLoopback) -> None:
    broker = ws_broker(server, websocket=False)
    try:
        assert broker.streams == {} and broker.stream_states() == {"binance": "polling"}
    finally:
        await broker.close()
    valr = make_client("valr", {"api_key": "k", "api_secret": "s"}, websocket=True)
    try:
        assert not supports_order_stream(valr)  # our adapter has no websocket: polled
    finally:
        await valr.close()


def test_api_url_keeps_a_websocket_scheme_for_websocket_urls() -> None:
    urls = {
        "rest": "https://api.binance.com/api/v3",
        "ws": {"spot": "wss://ws-api.binance.com:443/ws-api/v3"},
    }
    assert replace_origin(urls, "http://127.0.0.1:8900") == {
        "rest": "http://127.0.0.1:8900/api/v3",
        "ws": {"spot": "ws://127.0.0.1:8900/ws-api/v3"},
    }
    assert replace_origin(urls, "https://testnet.example")["ws"]["spot"] == "wss://testnet.example/ws-api/v3"
