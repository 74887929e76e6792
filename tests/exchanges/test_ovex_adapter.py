"""The OVEX adapter (real ccxt over HTTP) against the loopback OVEX server.

Every client comes from ``make_client("ovex", {"bearer_key": ...}, api_url=...)``,
as the app builds it; prices are the real BTC/USDT 5m candles (x 18 for ZAR).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import ccxt
import pytest
from loopback.core import q8
from loopback.ovex import OvexLoopback

from amarktai_tui.exchanges.adapters.ovex import LIMIT_REFUSAL, QuoteExpired, check_order_type
from amarktai_tui.exchanges.clients import make_client

START_MS = 1_609_459_200_000  # 2021-01-01 00:00 UTC
KEY = "loopback-bearer"
ACCEPT = "/api/v2/rfq/accept_quote"
QUOTE = "/api/v2/rfq/get_quote"


def ovex_client(srv: OvexLoopback, key: str = KEY, timeout_s: float = 2) -> ccxt.Exchange:
    """A client as the app makes it, without ccxt's request spacing (OVEX's 100 ms: not under test here)."""
    c = make_client("ovex", {"bearer_key": key}, api_url=srv.url, timeout_s=timeout_s)
    assert c.enableRateLimit and c.rateLimit == 100  # docs.ovex.io: 100 requests / 10 s
    c.enableRateLimit = False
    return c


@pytest.fixture
async def srv() -> AsyncIterator[OvexLoopback]:
    async with OvexLoopback.running(start_ms=START_MS, api_key=KEY) as server:
        yield server


@pytest.fixture
async def client(srv: OvexLoopback) -> AsyncIterator[ccxt.Exchange]:
    c = ovex_client(srv)
    yield c
    await c.close()


def api_balances(balance: dict[str, object]) -> dict[str, Decimal]:
    """Free balances as OVEX sent them (decimal strings in ``info``), not ccxt's floats."""
    return {row["currency"]: Decimal(row["balance"]) for row in balance["info"]}  # type: ignore[attr-defined,index]


def count(srv: OvexLoopback, method: str, path: str) -> int:
    return sum(1 for r in srv.requests if r == (method, path))


async def test_markets_and_balance(client: ccxt.Exchange) -> None:
    markets = await client.load_markets()
    btczar = markets["BTC/ZAR"]
    assert (btczar["id"], btczar["base"], btczar["quote"], btczar["active"]) == ("btczar", "BTC", "ZAR", True)
    assert (btczar["precision"]["amount"], btczar["precision"]["price"]) == (1e-8, 0.01)
    assert {"BTC/USDT", "ETH/USDT"} <= set(markets)

    balance = await client.fetch_balance()
    assert api_balances(balance)["zar"] == Decimal(1_000_000)
    assert balance["ZAR"]["free"] == 1_000_000 and balance["BTC"]["total"] == 0


async def test_market_buy_then_sell_move_balances_by_the_quoted_amounts(
    client: ccxt.Exchange, srv: OvexLoopback
) -> None:
    candle_price = srv.book.price("btczar")  # BTC/USDT open x 18
    buy = await client.create_order("BTC/ZAR", "market", "buy", 0.01, None, {"clientOrderId": "bot1-buy"})
    ask = q8(candle_price * Decimal("1.002"))
    assert (buy["status"], buy["type"], buy["side"], buy["clientOrderId"]) == (
        "closed",
        "market",
        "buy",
        "bot1-buy",
    )
    assert buy["filled"] == buy["amount"] == 0.01 and buy["remaining"] == 0
    assert Decimal(buy["info"]["rate"]) == ask and buy["average"] == float(ask)
    spent = Decimal(buy["info"]["from_amount"])
    assert spent == q8(Decimal("0.01") * ask) and buy["cost"] == float(spent)
    assert buy["fee"] == {"cost": 0.0, "currency": "ZAR"}  # inside the price
    after_buy = api_balances(await client.fetch_balance())
    assert after_buy["zar"] == Decimal(1_000_000) - spent
    assert after_buy["btc"] == Decimal(buy["info"]["to_amount"]) == Decimal("0.01")

    sell = await client.create_order("BTC/ZAR", "market", "sell", 0.01, None, {"clientOrderId": "bot1-sell"})
    bid = q8(candle_price * Decimal("0.998"))
    assert Decimal(sell["info"]["rate"]) == bid < ask
    received = Decimal(sell["info"]["to_amount"])
    after_sell = api_balances(await client.fetch_balance())
    assert after_sell["zar"] == after_buy["zar"] + received and after_sell["btc"] == 0
    assert sell["id"] != buy["id"] and len(srv.book.trades) == 2

    trades = await client.fetch_my_trades("BTC/ZAR")
    assert [(t["side"], t["amount"], t["order"]) for t in trades] == [
        ("buy", 0.01, buy["id"]),
        ("sell", 0.01, sell["id"]),
    ]
    ticker = await client.fetch_ticker("BTC/ZAR", {"amount": "0.01"})
    assert (ticker["ask"], ticker["bid"]) == (float(ask), float(bid))


async def test_an_expired_quote_is_requested_again_once(client: ccxt.Exchange, srv: OvexLoopback) -> None:
    srv.stall_quotes(srv.quote_ttl_ms, count=1)  # the first quote dies before it is accepted
    order = await client.create_order("BTC/ZAR", "market", "buy", 0.001)
    assert order["status"] == "closed" and order["filled"] == 0.001
    assert count(srv, "GET", QUOTE) == 2 and count(srv, "POST", ACCEPT) == 2
    assert len(srv.book.trades) == 1 and srv.quotes[order["info"]["quote_token"]].trade_id is not None

    srv.stall_quotes(srv.quote_ttl_ms, count=2)  # the second quote dies too: give up, nothing traded
    with pytest.raises(QuoteExpired):
        await client.create_order("BTC/ZAR", "market", "buy", 0.001)
    assert count(srv, "GET", QUOTE) == 4 and len(srv.book.trades) == 1


async def test_limit_orders_are_refused(client: ccxt.Exchange, srv: OvexLoopback) -> None:
    with pytest.raises(ccxt.InvalidOrder, match="OVEX trades by request-for-quote: market orders only"):
        await client.create_order("BTC/ZAR", "limit", "buy", 0.01, 500_000)
    assert not any(path.startswith("/api/v2/rfq") for _, path in srv.requests)
    assert client.has["createLimitOrder"] is False and client.has["createMarketOrder"] is True
    assert check_order_type("limit") == LIMIT_REFUSAL
    assert LIMIT_REFUSAL.startswith("OVEX trades by request-for-quote: market orders only; ")
    assert "\n" not in LIMIT_REFUSAL
    assert check_order_type("market") is None


async def test_errors_map_to_ccxt_classes(client: ccxt.Exchange, srv: OvexLoopback) -> None:
    bad = ovex_client(srv, "not-the-key")
    try:
        with pytest.raises(ccxt.AuthenticationError) as auth:
            await bad.fetch_balance()
        assert "not-the-key" not in str(auth.value)
    finally:
        await bad.close()

    with pytest.raises(ccxt.BadRequest) as bad_request:  # 400 invalid_params
        await client.request(
            "rfq/get_quote", ["private"], "GET", {"market": "btczar", "side": "hold", "to_amount": "1"}
        )
    assert not isinstance(bad_request.value, ccxt.NetworkError)

    with pytest.raises(ccxt.InsufficientFunds):
        await client.create_order("BTC/ZAR", "market", "buy", 100)

    srv.faults.add("5xx", path="/api/v2/accounts")
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await client.fetch_balance()
    srv.faults.add("429", path="/api/v2/accounts")
    with pytest.raises(ccxt.RateLimitExceeded):
        await client.fetch_balance()
    assert len(srv.book.trades) == 0


async def test_an_order_is_found_after_its_accept_response_is_lost(srv: OvexLoopback) -> None:
    impatient = ovex_client(srv, timeout_s=0.3)
    restarted = ovex_client(srv)
    try:
        srv.faults.add("lost", method="POST", path=ACCEPT)
        with pytest.raises(ccxt.RequestTimeout):  # a NetworkError: outcome unknown
            await impatient.create_order("BTC/ZAR", "market", "buy", 0.002, None, {"clientOrderId": "bot7-1"})
        assert len(srv.book.trades) == 1  # OVEX did trade

        found = await impatient.fetch_order(None, "BTC/ZAR", {"clientOrderId": "bot7-1"})
        assert (found["status"], found["clientOrderId"], found["filled"]) == ("closed", "bot7-1", 0.002)
        assert found["id"] == str(srv.book.trades[0].id)

        # after a restart the client order id is not remembered: side, amount and since identify it
        with pytest.raises(ccxt.OrderNotFound):
            await restarted.fetch_order(None, "BTC/ZAR", {"clientOrderId": "bot7-1"})
        again = await restarted.fetch_order(
            None, "BTC/ZAR", {"clientOrderId": "bot7-1", "side": "buy", "amount": 0.002, "since": START_MS}
        )
        assert (again["id"], again["clientOrderId"]) == (found["id"], "bot7-1")
        assert (await restarted.fetch_order(found["id"], "BTC/ZAR"))["average"] == found["average"]

        srv.faults.add("malformed", method="POST", path=ACCEPT)  # not processed: nothing to find
        with pytest.raises(ccxt.BadResponse):
            await impatient.create_order("BTC/ZAR", "market", "buy", 0.002, None, {"clientOrderId": "bot7-2"})
        with pytest.raises(ccxt.OrderNotFound):
            await impatient.fetch_order(None, "BTC/ZAR", {"clientOrderId": "bot7-2"})
        assert len(srv.book.trades) == 1
    finally:
        await impatient.close()
        await restarted.close()
