"""CcxtBroker against a loopback KuCoin (real ccxt ``kucoin``, real HTTP on 127.0.0.1, real candles).

The KuCoin twin of ``test_live_broker.py``: each test states an outcome rule of
the broker (module doc of exchanges.live) and checks it at the server: what
the exchange received, what it holds, and what the broker reported. KuCoin
names the client order id ``clientOid`` and the broker finds orders by it
(``GET /api/v1/hf/orders/client-order/{clientOid}``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from ccxt.base.errors import AuthenticationError
from live_helpers import Clock, make_order, no_sleep, settle
from loopback.core import to_decimal
from loopback.kucoin import KucoinLoopback, order_id, rows

from amarktai_tui.domain.enums import OrderState, Side
from amarktai_tui.domain.types import Order
from amarktai_tui.exchanges.clients import make_client
from amarktai_tui.exchanges.live import CcxtBroker

BTC = rows("BTC-USDT")
START = int(BTC[20_000][0]) + 300_000  # the close of candle #20000 = the open of #20001
ORDERS = "/api/v1/hf/orders"


@pytest.fixture
async def server() -> AsyncIterator[KucoinLoopback]:
    async with KucoinLoopback.running(start_ms=START, balances={"USDT": Decimal(100_000)}) as srv:
        yield srv


def broker_for(srv: KucoinLoopback, clock: Clock, creds: dict[str, str] | None = None) -> CcxtBroker:
    assert srv.url is not None
    client = make_client("kucoin", creds or srv.credentials, api_url=srv.url, timeout_s=0.5)
    client.enableRateLimit = False  # ccxt's throttle (KuCoin's request weights) would only slow the tests
    client.timeout_on_exit = 0
    return CcxtBroker({"kucoin": client}, resubmit_grace_s=5.0, clock=clock, sleep=no_sleep)


def order(coid: str, side: Side = Side.BUY, qty: str = "0.01", limit: str | None = None) -> Order:
    return make_order(coid, "kucoin", START, side, qty, limit)


def posts(srv: KucoinLoopback) -> int:
    return sum(1 for m, p in srv.requests if m == "POST" and p == ORDERS)


async def test_market_order_is_acknowledged_then_filled_at_the_next_open(server: KucoinLoopback) -> None:
    clock = Clock()
    broker = broker_for(server, clock)
    await broker.start(load_fees=False, track=False)
    try:
        upd = await broker.submit(order("am1-a-k0"))
        assert upd.state is OrderState.OPEN
        ups = await settle(broker, clock)
    finally:
        await broker.close()
    (sim,) = server.book.orders
    assert upd.exchange_order_id == order_id(sim.id)
    assert [u.state for u in ups] == [OrderState.OPEN, OrderState.FILLED]
    (fill,) = [u.fill for u in ups if u.fill is not None]
    (trade,) = server.book.trades
    assert fill.fill_id == f"kucoin:{trade.id}"
    assert fill.price == trade.price == to_decimal(BTC[20_001][1])  # the open after the decision close
    assert fill.quantity == Decimal("0.01") and fill.liquidity == "taker"
    assert fill.fee == trade.fee == Decimal("0.001") * trade.cost and fill.fee_currency == "USDT"
    assert posts(server) == 1
    assert ("GET", f"{ORDERS}/client-order/am1-a-k0") in server.requests  # looked up by clientOid


async def test_a_lost_response_is_found_by_client_oid_and_never_resent(server: KucoinLoopback) -> None:
    clock = Clock()
    broker = broker_for(server, clock)
    await broker.start(load_fees=False, track=False)
    server.faults.add("lost", method="POST", path=ORDERS)
    try:
        upd = await broker.submit(order("am1-l-k0"))
        assert upd.state is OrderState.PENDING and upd.reason.startswith("unknown:")
        assert len(server.book.orders) == 1  # KuCoin has it although the answer never came
        ups = await settle(broker, clock)
    finally:
        await broker.close()
    assert posts(server) == 1 and broker.counters.resends == 0
    assert [u.state for u in ups] == [OrderState.OPEN, OrderState.OPEN, OrderState.FILLED]
    assert ups[0].exchange_order_id == order_id(server.book.orders[0].id)
    assert [u.fill.fill_id for u in ups if u.fill] == [f"kucoin:{server.book.trades[0].id}"]


@pytest.mark.parametrize("kind", ["timeout", "5xx", "429", "malformed"])
async def test_an_unprocessed_send_is_unknown_then_resent_under_the_same_client_oid(
    server: KucoinLoopback, kind: str
) -> None:
    clock = Clock()
    broker = broker_for(server, clock)
    await broker.start(load_fees=False, track=False)
    server.faults.add(kind, method="POST", path=ORDERS)
    try:
        upd = await broker.submit(order("am1-u-k0"))
        assert upd.state is OrderState.PENDING and upd.reason.startswith("unknown:")
        await broker.track_once()  # inside the grace: looked up, not found, not resent yet
        assert posts(server) == 1 and not server.book.orders
        ups = await settle(broker, clock)
    finally:
        await broker.close()
    assert posts(server) == 2 and broker.counters.resends == 1
    assert [o.client_order_id for o in server.book.orders] == ["am1-u-k0"]
    assert server.book.duplicate_client_order_ids() == {}
    assert ups[-1].state is OrderState.FILLED


async def test_insufficient_funds_is_rejected_and_never_retried(server: KucoinLoopback) -> None:
    clock = Clock()
    broker = broker_for(server, clock)
    await broker.start(load_fees=False, track=False)
    try:
        upd = await broker.submit(order("am1-f-k0", qty="50"))  # 50 BTC with 100,000 USDT
        assert upd.state is OrderState.REJECTED and "InsufficientFunds" in upd.reason
        assert "200004" in upd.reason  # KuCoin's "Balance insufficient!"
        await settle(broker, clock)
    finally:
        await broker.close()
    assert posts(server) == 1 and broker.tracked == 0 and not server.book.orders
    assert broker.breakers["kucoin"].consecutive == 0  # a business refusal says nothing of the API


async def test_a_bad_passphrase_is_an_authentication_refusal(server: KucoinLoopback) -> None:
    clock = Clock()
    wrong = {**server.credentials, "passphrase": "not-the-passphrase"}
    refused = broker_for(server, clock, wrong)
    try:
        with pytest.raises(AuthenticationError, match="400004"):  # load_markets signs with the keys
            await refused.start(load_fees=False, track=False)
    finally:
        await refused.close()
    broker = broker_for(server, clock)
    await broker.start(load_fees=False, track=False)
    broker.clients["kucoin"].password = "not-the-passphrase"  # the key's passphrase changed meanwhile
    try:
        upd = await broker.submit(order("am1-p-k0"))
        assert upd.state is OrderState.REJECTED and "AuthenticationError" in upd.reason
        assert "Invalid KC-API-PASSPHRASE" in upd.reason
        await settle(broker, clock)
    finally:
        await broker.close()
    assert posts(server) == 1 and broker.tracked == 0 and broker.counters.resends == 0
    assert not server.book.orders


async def test_cancel_of_a_resting_limit_order_is_confirmed_by_the_exchange(server: KucoinLoopback) -> None:
    clock = Clock()
    broker = broker_for(server, clock)
    await broker.start(load_fees=False, track=False)
    try:
        upd = await broker.submit(order("am1-c-k0", limit="1000"))  # rests far below the market
        assert upd.state is OrderState.OPEN
        assert server.book.orders[0].status == "open" and server.book.balances["USDT"].locked > 0
        assert broker.request_cancel("am1-c-k0", "cancelled: breaker tripped")
        ups = await settle(broker, clock)
    finally:
        await broker.close()
    (sim,) = server.book.orders
    assert sim.status == "cancelled" and server.book.balances["USDT"].locked == 0
    assert ("DELETE", f"{ORDERS}/{order_id(sim.id)}") in server.requests
    assert ups[-1].state is OrderState.CANCELLED and ups[-1].reason == "cancelled: breaker tripped"
    assert not [u for u in ups if u.fill is not None]


# -- broker gaps found with this server (reported; the fixes belong in exchanges/, not here) --------------


async def test_a_client_oid_kucoin_already_holds_counts_as_placed(server: KucoinLoopback) -> None:
    clock = Clock()
    first = broker_for(server, clock)
    await first.start(load_fees=False, track=False)
    try:
        assert (await first.submit(order("am1-d-k0", limit="1000"))).state is OrderState.OPEN
    finally:
        await first.close()
    broker = broker_for(server, clock)  # a restarted broker sends the same client order id again
    await broker.start(load_fees=False, track=False)
    try:
        again = await broker.submit(order("am1-d-k0", limit="1000"))
    finally:
        await broker.close()
    assert len(server.book.orders) == 1 and server.book.orders[0].status == "open"
    assert again.state is OrderState.OPEN and broker.counters.duplicates_refused == 1


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="known limit: GET /api/v1/hf/fills?orderId= answers at most 100 fills and ignores lastId with "
    "orderId; CcxtBroker._collect_fills reads one page, so an order split into more than 100 trades never "
    "completes (paging the pair's fills by the record id in info is left to do)",
)
async def test_an_order_with_more_fills_than_one_page_completes() -> None:
    async with KucoinLoopback.running(start_ms=START, split_trades=101) as srv:
        clock = Clock()
        broker = broker_for(srv, clock)
        await broker.start(load_fees=False, track=False)
        try:
            await broker.submit(order("am1-s-k0", qty="0.0101"))
            ups = await settle(broker, clock, passes=5)
        finally:
            await broker.close()
    assert len([u for u in ups if u.fill is not None]) == 101
    assert ups[-1].state is OrderState.FILLED


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="known limit: KuCoin finds a closed order by clientOid for 3 x 24 h only; reconciling a pending order after "
    "that answers 'order not exist.' and CcxtBroker resends it under the same id, which KuCoin accepts "
    "(the id is no longer active): the order is doubled",
)
async def test_reconcile_after_the_lookup_window_does_not_double_a_filled_order(
    server: KucoinLoopback,
) -> None:
    assert server.url is not None
    direct = make_client("kucoin", server.credentials, api_url=server.url)
    direct.enableRateLimit = False
    direct.timeout_on_exit = 0
    try:  # sent, filled, and the process died before the answer was written
        await direct.create_order("BTC/USDT", "market", "buy", 0.01, None, {"clientOid": "am1-o-k0"})
    finally:
        await direct.close()
    server.book.set_time(START + 73 * 3_600_000)  # back 73 hours later
    clock = Clock()
    broker = broker_for(server, clock)
    await broker.start(load_fees=False, track=False)
    try:
        await broker.reconcile([order("am1-o-k0")])
        await settle(broker, clock)
    finally:
        await broker.close()
    assert server.book.duplicate_client_order_ids() == {}
