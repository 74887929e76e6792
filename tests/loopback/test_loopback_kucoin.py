"""The loopback KuCoin server on its own: KuCoin's envelope, its gateway's signature checks (raw HTTP,
signed by hand as kucoin.com/docs-new/authentication describes), and real ccxt ``kucoin`` mapping its
errors to the exceptions the broker sorts by.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from ccxt.base.errors import (
    BadRequest,
    BadSymbol,
    InsufficientFunds,
    InvalidNonce,
    InvalidOrder,
    OrderNotFound,
)

from amarktai_tui.exchanges.clients import make_client
from loopback.kucoin import KucoinLoopback, b64_hmac, order_id, rows

START = int(rows("BTC-USDT")[20_000][0]) + 300_000


@pytest.fixture
async def server() -> AsyncIterator[KucoinLoopback]:
    async with KucoinLoopback.running(start_ms=START) as srv:
        yield srv


@pytest.fixture
async def client(server: KucoinLoopback) -> AsyncIterator[Any]:
    ex = make_client("kucoin", server.credentials, api_url=server.url)
    ex.enableRateLimit = False
    ex.timeout_on_exit = 0
    await ex.load_markets()
    yield ex
    await ex.close()


def headers(
    srv: KucoinLoopback,
    method: str,
    path_qs: str,
    body: str = "",
    *,
    key: str | None = None,
    secret: str | None = None,
    passphrase: str | None = None,
    ts: int | None = None,
) -> dict[str, str]:
    """KuCoin's v2 signing headers for one request (defaults: the server's own credentials, now)."""
    secret = secret or srv.secret
    stamp = str(ts if ts is not None else int(time.time() * 1000))
    return {
        "KC-API-KEY": key or srv.api_key,
        "KC-API-TIMESTAMP": stamp,
        "KC-API-KEY-VERSION": "2",
        "KC-API-PASSPHRASE": b64_hmac(secret, passphrase or srv.passphrase),
        "KC-API-SIGN": b64_hmac(secret, stamp + method + path_qs + body),
        "Content-Type": "application/json",
    }


async def call(
    srv: KucoinLoopback, method: str, path_qs: str, hdrs: dict[str, str] | None = None, body: str = ""
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, f"{srv.url}{path_qs}", headers=hdrs or {}, data=body or None) as r,
    ):
        return r.status, await r.json()


async def test_answers_wear_kucoins_envelope(server: KucoinLoopback) -> None:
    assert await call(server, "GET", "/api/v1/timestamp") == (200, {"code": "200000", "data": START})
    status, body = await call(server, "GET", "/api/v2/symbols")
    assert status == 200 and body["code"] == "200000"
    assert [s["symbol"] for s in body["data"]] == ["BTC-USDT", "ETH-USDT"]
    status, body = await call(server, "GET", "/api/v1/orders")  # the abandoned classic endpoint
    assert status == 404 and body["code"] == "404000"
    path = "/api/v1/accounts?type=trade_hf"
    status, body = await call(server, "GET", path, headers(server, "GET", path))
    assert status == 200 and body["code"] == "200000"
    usdt = next(a for a in body["data"] if a["currency"] == "USDT")
    assert usdt == usdt | {"type": "trade_hf", "balance": "100000", "available": "100000", "holds": "0"}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"key": "someone-else"}, "400003"),
        ({"passphrase": "not-the-passphrase"}, "400004"),
        ({"secret": "not-the-secret"}, "400004"),  # the passphrase is signed with the secret too
        ({"ts": 1_600_000_000_000}, "400002"),  # more than 5 s away from the wall clock
    ],
)
async def test_the_gateway_refuses_bad_credentials(
    server: KucoinLoopback, change: dict[str, Any], code: str
) -> None:
    path = "/api/v1/accounts"
    status, body = await call(server, "GET", path, headers(server, "GET", path, **change))
    assert status == 401 and body["code"] == code and body["msg"]


async def test_the_signature_covers_method_path_query_and_body(server: KucoinLoopback) -> None:
    path = "/api/v1/accounts?type=trade_hf"
    signed_without_query = headers(server, "GET", "/api/v1/accounts")
    status, body = await call(server, "GET", path, signed_without_query)
    assert (status, body) == (401, {"code": "400005", "msg": "Invalid KC-API-SIGN."})
    order = json.dumps(
        {"clientOid": "t-1", "symbol": "BTC-USDT", "side": "buy", "type": "market", "size": "1"}
    )
    tampered = order.replace('"1"', '"0.001"')
    status, body = await call(
        server, "POST", "/api/v1/hf/orders", headers(server, "POST", "/api/v1/hf/orders", order), tampered
    )
    assert (status, body["code"]) == (401, "400005") and not server.book.orders
    missing = headers(server, "GET", path)
    del missing["KC-API-PASSPHRASE"]
    status, body = await call(server, "GET", path, missing)
    assert (status, body["code"]) == (401, "400001")
    signed = headers(server, "POST", "/api/v1/hf/orders", tampered)
    status, body = await call(server, "POST", "/api/v1/hf/orders", signed, tampered)
    assert status == 200 and body["code"] == "200000"
    assert body["data"] == {"orderId": order_id(server.book.orders[0].id), "clientOid": "t-1"}


async def test_ccxt_maps_kucoins_errors(server: KucoinLoopback, client: Any) -> None:
    with pytest.raises(InsufficientFunds, match="200004"):
        await client.create_order("BTC/USDT", "market", "buy", 50, None, {"clientOid": "e-1"})
    with pytest.raises(OrderNotFound):
        await client.fetch_order(None, "BTC/USDT", {"clientOid": "e-1"})  # refused: never placed
    with pytest.raises(BadSymbol):
        await client.fetch_order(None, "BTC/USDT", {"clientOid": "e-1", "symbol": "DOGE-USDT"})
    with pytest.raises(InvalidOrder, match="minimum"):
        await client.create_order("BTC/USDT", "limit", "buy", 0.000001, 1000, {"clientOid": "e-2"})
    await client.create_order("BTC/USDT", "limit", "buy", 0.01, 1000, {"clientOid": "e-3"})
    with pytest.raises(BadRequest, match="clientOidDuplicated"):  # only an active order's id is refused
        await client.create_order("BTC/USDT", "limit", "buy", 0.01, 1000, {"clientOid": "e-3"})
    await client.cancel_order(None, "BTC/USDT", {"clientOid": "e-3"})
    with pytest.raises(OrderNotFound, match="order_not_exist_or_not_allow_to_cancel"):
        await client.cancel_order(None, "BTC/USDT", {"clientOid": "e-3"})
    await client.create_order("BTC/USDT", "limit", "buy", 0.01, 1000, {"clientOid": "e-3"})  # reusable now
    assert [o.status for o in server.book.orders] == ["cancelled", "open"]
    client.options["timeDifference"] = 60_000  # a client clock a minute fast
    with pytest.raises(InvalidNonce):
        await client.fetch_balance()


async def test_fills_and_orders_read_back_through_ccxt(server: KucoinLoopback, client: Any) -> None:
    placed = await client.create_order("BTC/USDT", "market", "buy", 0.01, None, {"clientOid": "r-1"})
    by_coid = await client.fetch_order(None, "BTC/USDT", {"clientOid": "r-1"})
    by_id = await client.fetch_order(placed["id"], "BTC/USDT")
    (trade,) = server.book.trades
    assert by_coid["id"] == by_id["id"] == placed["id"] == order_id(trade.order_id)
    assert by_id["status"] == "closed" and by_id["filled"] == 0.01 and by_id["clientOrderId"] == "r-1"
    (fill,) = await client.fetch_my_trades("BTC/USDT")
    assert fill["id"] == str(trade.id) and fill["order"] == placed["id"] and fill["takerOrMaker"] == "taker"
    assert Decimal(str(fill["fee"]["cost"])) == trade.fee and fill["fee"]["currency"] == "USDT"
    balance = await client.fetch_balance()
    assert balance["BTC"]["free"] == 0.01
    assert Decimal(str(balance["USDT"]["total"])) == Decimal(100_000) - trade.cost - trade.fee
    assert await client.fetch_time() == START
    assert (await client.fetch_trading_fee("BTC/USDT"))["taker"] == 0.001
    assert [o["clientOrderId"] for o in await client.fetch_closed_orders("BTC/USDT")] == ["r-1"]
    assert await client.fetch_open_orders("BTC/USDT") == []
