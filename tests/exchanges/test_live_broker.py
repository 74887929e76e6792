"""CcxtBroker against a loopback Binance (real ccxt, real HTTP on 127.0.0.1, real candles).

Each test states an outcome rule of the broker (module doc of exchanges.live)
and checks it at the server: what the exchange received, what it holds, and
what the broker reported.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from live_helpers import Clock, make_order, no_sleep, settle
from loopback.binance import BinanceLoopback

from amarktai_tui.domain.enums import OrderState, Side
from amarktai_tui.domain.types import Order
from amarktai_tui.exchanges.api_breaker import ApiState
from amarktai_tui.exchanges.clients import make_client
from amarktai_tui.exchanges.live import CcxtBroker

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BTC = json.loads((DATA / "binance" / "BTC_USDT-5m.json").read_text())
START = int(BTC[20_000][0]) + 300_000  # the close of candle #20000 = the open of #20001


@pytest.fixture
async def server() -> AsyncIterator[BinanceLoopback]:
    async with BinanceLoopback.running(start_ms=START, balances={"USDT": Decimal(100_000)}) as srv:
        yield srv


def broker_for(srv: BinanceLoopback, clock: Clock, **kw: object) -> CcxtBroker:
    assert srv.url is not None
    client = make_client(
        "binance", {"api_key": srv.api_key, "api_secret": srv.secret}, api_url=srv.url, timeout_s=0.5
    )
    opts: dict[str, object] = {"resubmit_grace_s": 5.0, "clock": clock, "sleep": no_sleep}
    opts.update(kw)
    return CcxtBroker({"binance": client}, **opts)  # type: ignore[arg-type]


def order(coid: str, side: Side = Side.BUY, qty: str = "0.01", limit: str | None = None) -> Order:
    return make_order(coid, "binance", START, side, qty, limit)


def posts(srv: BinanceLoopback) -> int:
    return sum(1 for m, p in srv.requests if m == "POST" and p == "/api/v3/order")


async def test_market_order_is_acknowledged_then_filled_at_the_next_open(server: BinanceLoopback) -> None:
    clock = Clock()
    broker = broker_for(server, clock)
    await broker.start(load_fees=False, track=False)
    try:
        upd = await broker.submit(order("am1-a-b0"))
        assert upd.state is OrderState.OPEN and upd.exchange_order_id
        ups = await settle(broker, clock)
    finally:
        await broker.close()
    fills = [u.fill for u in ups if u.fill is not None]
    assert [u.state for u in ups] == [OrderState.OPEN, OrderState.FILLED]
    (fill,) = fills
    trade = server.book.trades[0]
    assert fill.fill_id == f"binance:{trade.id}"
    assert fill.price == trade.price == Decimal(str(BTC[20_001][1]))  # the open after the decision close
    assert fill.quantity == Decimal("0.01") and fill.fee == trade.fee and fill.fee_currency == "USDT"
    assert posts(server) == 1


async def test_partial_fills_each_land_once_then_the_order_completes() -> None:
    async with BinanceLoopback.running(start_ms=START, split_trades=3) as srv:
        clock = Clock()
        broker = broker_for(srv, clock)
        await broker.start(load_fees=False, track=False)
        try:
            await broker.submit(order("am1-p-b0", qty="0.03"))
            ups = await settle(broker, clock)
            await broker.track_once()  # one more pass finds nothing new
            assert broker.drain() == []
        finally:
            await broker.close()
    fills = [u.fill for u in ups if u.fill is not None]
    assert len(fills) == 3 and sum(f.quantity for f in fills) == Decimal("0.03")
    assert len({f.fill_id for f in fills}) == 3
    assert ups[-1].state is OrderState.FILLED and ups[-1].fill is None


@pytest.mark.parametrize("kind", ["timeout", "5xx", "429", "malformed"])
async def test_an_unprocessed_send_is_unknown_then_resent_under_the_same_id(
    server: BinanceLoopback, kind: str
) -> None:
    clock = Clock()
    broker = broker_for(server, clock)
    await broker.start(load_fees=False, track=False)
    server.faults.add(kind, method="POST", path="/api/v3/order")
    try:
        upd = await broker.submit(order("am1-u-b0"))
        assert upd.state is OrderState.PENDING and upd.reason.startswith("unknown:")
        await broker.track_once()  # inside the grace: looked up, not found, not resent yet
        assert posts(server) == 1 and not server.book.orders
        ups = await settle(broker, clock)
    finally:
        await broker.close()
    assert posts(server) == 2
    assert [o.client_order_id for o in server.book.orders] == ["am1-u-b0"]
    assert ups[-1].state is OrderState.FILLED
    assert broker.counters.resends == 1


async def test_a_lost_response_is_found_by_client_id_and_never_resent(server: BinanceLoopback) -> None:
    clock = Clock()
    broker = broker_for(server, clock)
    await broker.start(load_fees=False, track=False)
    server.faults.add("lost", method="POST", path="/api/v3/order")
    try:
        upd = await broker.submit(order("am1-l-b0"))
        assert upd.state is OrderState.PENDING
        assert len(server.book.orders) == 1  # the exchange has it although the answer never came
        ups = await settle(broker, clock)
    finally:
        await broker.close()
    assert posts(server) == 1 and broker.counters.resends == 0
    assert [u.state for u in ups] == [OrderState.OPEN, OrderState.OPEN, OrderState.FILLED]
    assert ups[0].exchange_order_id == str(server.book.orders[0].id)


async def test_definite_refusals_are_rejected_and_never_retried(server: BinanceLoopback) -> None:
    clock = Clock()
    broker = broker_for(server, clock)
    await broker.start(load_fees=False, track=False)
    try:
        upd = await broker.submit(order("am1-f-b0", qty="50"))  # 50 BTC with 100,000 USDT
        assert upd.state is OrderState.REJECTED and "InsufficientFunds" in upd.reason
        await settle(broker, clock)
    finally:
        await broker.close()
    assert posts(server) == 1 and broker.tracked == 0
    assert broker.breakers["binance"].consecutive == 0  # a business refusal says nothing of the API


async def test_a_resend_refused_as_duplicate_counts_as_placed(server: BinanceLoopback) -> None:
    clock = Clock()
    broker = broker_for(server, clock)
    await broker.start(load_fees=False, track=False)
    try:
        first = await broker.submit(order("am1-d-b0", limit="1000"))  # rests far below the market
        assert first.state is OrderState.OPEN
        again = await broker.submit(order("am1-d-b0", limit="1000"))
        assert again.state is OrderState.OPEN and "duplicate" in again.reason
    finally:
        await broker.close()
    assert len(server.book.orders) == 1 and broker.counters.duplicates_refused == 1


async def test_cancel_of_a_resting_order_is_confirmed_by_the_exchange(server: BinanceLoopback) -> None:
    clock = Clock()
    broker = broker_for(server, clock)
    await broker.start(load_fees=False, track=False)
    try:
        await broker.submit(order("am1-c-b0", limit="1000"))
        assert broker.request_cancel("am1-c-b0", "cancelled: breaker tripped")
        ups = await settle(broker, clock)
    finally:
        await broker.close()
    assert server.book.orders[0].status == "cancelled"
    assert ups[-1].state is OrderState.CANCELLED and ups[-1].reason == "cancelled: breaker tripped"


async def test_api_breaker_opens_after_consecutive_failures_then_probes(server: BinanceLoopback) -> None:
    clock = Clock()
    broker = broker_for(server, clock, breaker_failures=5, breaker_cooldown_s=60.0, read_attempts=1)
    await broker.start(load_fees=False, track=False)
    server.faults.add("5xx", count=5)
    try:
        for i in range(5):
            upd = await broker.submit(order(f"am1-x{i}-b0"))
            assert upd.state is OrderState.PENDING
        assert broker.breakers["binance"].state is ApiState.OPEN
        seen = len(server.requests)
        refused = await broker.submit(order("am1-x9-b0"))
        assert refused.state is OrderState.REJECTED and "breaker open" in refused.reason
        await broker.track_once()  # lookups wait while it is open
        assert len(server.requests) == seen  # nothing reached the exchange
        clock.now += 61  # half-open: one probe goes through and closes it
        ups = await settle(broker, clock)
    finally:
        await broker.close()
    assert broker.breakers["binance"].state is ApiState.CLOSED
    assert sorted(o.client_order_id for o in server.book.orders) == [f"am1-x{i}-b0" for i in range(5)]
    assert sum(1 for u in ups if u.state is OrderState.FILLED) == 5
    health = broker.health()["binance"]
    assert health.errors == 5 and health.latency_p50_ms is not None


async def test_reconcile_recovers_fills_and_resends_what_never_arrived(server: BinanceLoopback) -> None:
    """A crash left two pending rows: one reached the exchange (and filled), one never left."""
    assert server.url is not None
    direct = make_client(
        "binance", {"api_key": server.api_key, "api_secret": server.secret}, api_url=server.url
    )
    try:
        await direct.create_order("BTC/USDT", "market", "buy", 0.02, None, {"newClientOrderId": "am1-r-b0"})
    finally:
        await direct.close()
    clock = Clock()
    broker = broker_for(server, clock)
    await broker.start(load_fees=False, track=False)
    try:
        outcomes = await broker.reconcile([order("am1-r-b0", qty="0.02"), order("am2-r-b0")])
        assert broker.unsettled()  # am2 was just resent and filled at once: not looked up yet
        ups = broker.drain() + await settle(broker, clock)
        assert not broker.unsettled()
    finally:
        await broker.close()
    (o,) = outcomes
    assert o.ok and o.resolved == 2 and o.recovered == 1 and o.resent == 1
    assert sorted(x.client_order_id for x in server.book.orders) == ["am1-r-b0", "am2-r-b0"]
    done = {u.client_order_id for u in ups if u.state is OrderState.FILLED}
    assert done == {"am1-r-b0", "am2-r-b0"}


async def test_reconcile_reports_drift_when_the_exchange_holds_less(server: BinanceLoopback) -> None:
    clock = Clock()
    broker = broker_for(server, clock)
    await broker.start(load_fees=False, track=False)
    try:
        (o,) = await broker.reconcile([])
        drift = await broker.balance_drift("binance", {"BTC": Decimal("0.5"), "USDT": Decimal(10)})
    finally:
        await broker.close()
    assert o.ok and drift == {"BTC": "ledger 0.5, exchange 0"}  # 10 USDT of 100,000 is no drift
    assert not o.with_drift(drift).ok
