"""The VALR adapter (real ccxt over HTTP) against the loopback VALR server, and VALR's signing vectors.

Every client comes from ``make_client("valr", {"api_key", "api_secret"}, api_url=...)``,
as the app builds it. Prices are the real BTC/USDT 5m candles x 18 (BTCZAR).
ccxt's throttle is turned off in the ``client`` fixture only: VALR's public
budget (30 calls a minute, ``rateLimit`` 50 ms x cost 40) would make each test
wait 2 s per public call; ``test_make_client_keeps_valr_rate_limits`` checks the
app's clients keep it on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import ccxt
import pytest
from loopback.valr import ValrLoopback, rows

from amarktai_tui.exchanges.adapters.valr import Valr, sign_request
from amarktai_tui.exchanges.clients import make_client

START_MS = 1_614_556_800_000  # 2021-03-01 00:00 UTC; BTCZAR opens at 812413.98 (BTC/USDT 45134.11 x 18)
KEY, SECRET = "loopback-key", "loopback-secret"
CREDS = {"api_key": KEY, "api_secret": SECRET}

# -- VALR's published signing vectors -------------------------------------------------------------
# Source: docs.valr.com, "Authentication" ("If you choose to write your own method ... use the
# following test data"): API secret, timestamp, verb, path, body and the expected signature of a
# GET and a POST request (the POST body as the current docs print it, pair BTCUSDC).
VECTOR_SECRET = "4961b74efac86b25cce8fbe4c9811c4c7a787b7a5996660afcc2e287ad864363"
GET_VECTOR = (
    1558014486185,
    "GET",
    "/v1/account/balances",
    "",
    "9d52c181ed69460b49307b7891f04658e938b21181173844b5018b2fe783a6d4"
    "c62b8e67a03de4d099e7437ebfabe12c56233b73c6a0cc0f7ae87e05f6289928",
)
POST_VECTOR = (
    1558017528946,
    "POST",
    "/v1/orders/market",
    '{"customerOrderId":"ORDER-000001","pair":"BTCUSDC","side":"BUY","quoteAmount":"80000"}',
    "09f536e3dfdad58443f16010a97a0a21ad27486b7b8d6d4103170d885410ed77"
    "f037f1fa628474190d4f5c08ca12c1acc850901f1c2e75c6d906ec3b32b008d0",
)


@pytest.mark.parametrize("vector", [GET_VECTOR, POST_VECTOR], ids=["GET", "POST"])
def test_sign_request_matches_valrs_published_vectors(vector: tuple[int, str, str, str, str]) -> None:
    timestamp, verb, path, body, expected = vector
    assert sign_request(VECTOR_SECRET, timestamp, verb, path, body) == expected
    assert sign_request(VECTOR_SECRET, str(timestamp), verb.lower(), path, body) == expected


def test_sign_request_appends_the_subaccount_id() -> None:
    timestamp, verb, path, body, _ = GET_VECTOR
    text = f"{timestamp}{verb}{path}{body}1234567890"
    expected = hmac.new(VECTOR_SECRET.encode(), text.encode(), hashlib.sha512).hexdigest()
    assert sign_request(VECTOR_SECRET, timestamp, verb, path, body, "1234567890") == expected


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture
async def srv() -> AsyncIterator[ValrLoopback]:
    async with ValrLoopback.running(start_ms=START_MS) as server:
        yield server


@pytest.fixture
async def client(srv: ValrLoopback) -> AsyncIterator[Any]:
    c = make_client("valr", CREDS, api_url=srv.url, timeout_s=2)
    c.enableRateLimit = False  # see the module doc
    yield c
    await c.close()


def state_order(srv: ValrLoopback, coid: str) -> dict[str, Any]:
    return next(o for o in srv.book.state()["orders"] if o["client_order_id"] == coid)


async def test_make_client_keeps_valr_rate_limits(srv: ValrLoopback) -> None:
    c = make_client("valr", CREDS, api_url=srv.url)
    try:
        assert isinstance(c, Valr) and c.enableRateLimit and c.rateLimit == 50
        assert c.urls["api"] == {"public": srv.url, "private": srv.url}
        assert vars(Valr)["public_get_v1_public_pairs"].config["cost"] == 40  # 30/min on /v1/public/*
        assert vars(Valr)["public_get_v1_public_pair_buckets"].config["cost"] == 1  # 20/s on buckets
    finally:
        await c.close()


def test_btczar_is_btc_usdt_times_18_to_the_last_digit() -> None:
    zar, usdt = rows("BTCZAR"), rows("BTCUSDT")
    assert len(zar) == len(usdt) == 65_741
    for z, u in zip(zar[::97], usdt[::97], strict=True):
        assert [Decimal(repr(x)) for x in z[1:5]] == [Decimal(repr(x)) * 18 for x in u[1:5]]
        assert (z[0], z[5]) == (u[0], u[5])


# -- market data and balances ---------------------------------------------------------------------
async def test_markets_ticker_book_ohlcv_and_balance(client: Any) -> None:
    markets = await client.load_markets()
    assert set(markets) == {"BTC/ZAR", "BTC/USDT", "ETH/USDT"}
    btczar = markets["BTC/ZAR"]
    assert (btczar["id"], btczar["base"], btczar["quote"], btczar["spot"], btczar["active"]) == (
        "BTCZAR", "BTC", "ZAR", True, True,
    )  # fmt: skip
    assert btczar["precision"]["amount"] == 1e-8 and btczar["precision"]["price"] == 1
    assert btczar["limits"]["amount"]["min"] == 0.0001 and btczar["limits"]["cost"]["min"] == 10
    assert (btczar["maker"], btczar["taker"]) == (0.0018, 0.0035)
    assert (markets["BTC/USDT"]["maker"], markets["BTC/USDT"]["taker"]) == (0.0008, 0.001)

    ticker = await client.fetch_ticker("BTC/ZAR")
    assert ticker["last"] == 812413.98 and ticker["bid"] < ticker["last"] < ticker["ask"]
    assert ticker["timestamp"] == START_MS

    book = await client.fetch_order_book("BTC/ZAR")
    assert book["bids"][0][0] < 812413.98 < book["asks"][0][0]
    assert book["symbol"] == "BTC/ZAR" and book["timestamp"] == START_MS

    candles = await client.fetch_ohlcv("BTC/ZAR", "5m", since=START_MS - 3_600_000)
    assert len(candles) == 12  # closed candles only: none from the simulated future
    assert candles[0][0] == START_MS - 3_600_000 and candles[-1][0] == START_MS - 300_000
    data = {int(r[0]): r for r in rows("BTCZAR")}
    first = data[START_MS - 3_600_000]
    assert candles[0][1:5] == [float(x) for x in first[1:5]] and candles[0][5] == first[5]
    hourly = await client.fetch_ohlcv("BTC/ZAR", "1h", limit=2)
    assert [c[0] for c in hourly] == [START_MS - 7_200_000, START_MS - 3_600_000]
    assert hourly[-1][2] == max(float(data[START_MS - 3_600_000 + i * 300_000][2]) for i in range(12))

    balance = await client.fetch_balance()
    assert balance["ZAR"] == {"free": 1_000_000, "used": 0, "total": 1_000_000}
    assert balance["BTC"]["total"] == 0


async def test_subaccount_calls_are_signed_with_its_id(srv: ValrLoopback, client: Any) -> None:
    client.options["subaccountId"] = "1234567890"
    balance = await client.fetch_balance()  # the loopback checks the signature over the id too
    assert balance["USDT"]["free"] == 100_000
    assert client.last_request_headers["X-VALR-SUB-ACCOUNT-ID"] == "1234567890"


# -- orders ---------------------------------------------------------------------------------------
async def test_market_orders_by_customer_id_with_fees_as_valr_charges_them(
    srv: ValrLoopback, client: Any
) -> None:
    placed = await client.create_order(
        "BTC/ZAR", "market", "buy", 0.01, None, {"customerOrderId": "am1-kz3c-b0"}
    )
    assert placed["clientOrderId"] == "am1-kz3c-b0" and placed["id"]

    order = await client.fetch_order(None, "BTC/ZAR", {"customerOrderId": "am1-kz3c-b0"})
    assert (order["id"], order["clientOrderId"], order["status"]) == (placed["id"], "am1-kz3c-b0", "closed")
    assert (order["type"], order["side"], order["amount"], order["filled"], order["remaining"]) == (
        "market", "buy", 0.01, 0.01, 0,
    )  # fmt: skip
    assert order["average"] == 812413.98 and order["cost"] == 8124.1398
    assert order["fee"] == {"cost": 0.000035, "currency": "BTC"}  # a taker buy pays in base: 0.35% x 0.01
    assert await client.fetch_order(placed["id"], "BTC/ZAR") == order

    sold = await client.create_order(
        "BTC/ZAR", "market", "sell", 0.005, None, {"clientOrderId": "am1-kz3c-s0"}
    )
    trades = await client.fetch_my_trades("BTC/ZAR")
    assert [t["order"] for t in trades] == [placed["id"], sold["id"]]  # oldest first
    buy, sell = trades
    assert (buy["side"], buy["takerOrMaker"], buy["price"], buy["amount"]) == (
        "buy",
        "taker",
        812413.98,
        0.01,
    )
    assert buy["fee"] == {"cost": 0.000035, "currency": "BTC"}
    assert (sell["side"], sell["takerOrMaker"]) == ("sell", "taker")
    assert sell["fee"] == {"cost": 14.21724465, "currency": "ZAR"}  # quote: 0.35% x 4062.0699
    server_trades = srv.book.state()["trades"]
    assert [(t["fee"], t["fee_asset"]) for t in server_trades] == [
        (f"{Decimal(t['fee']['cost']):.12f}", t["fee"]["currency"]) for t in trades
    ]

    balance = await client.fetch_balance()
    api = {row["currency"]: Decimal(row["total"]) for row in balance["info"]}
    assert api["BTC"] == Decimal("0.009965") - Decimal("0.005")
    assert api["ZAR"] == Decimal(1_000_000) - Decimal("8124.1398") + Decimal("4062.0699") - Decimal(
        "14.21724465"
    )


async def test_limit_orders_rest_fill_as_makers_and_cancel(srv: ValrLoopback, client: Any) -> None:
    await client.create_order("BTC/ZAR", "market", "buy", 0.02, None, {"customerOrderId": "seed-b0"})
    bid = await client.create_order("BTC/ZAR", "limit", "buy", 0.01, 810000, {"customerOrderId": "am2-1-b0"})
    ask = await client.create_order("BTC/ZAR", "limit", "sell", 0.01, 815000, {"customerOrderId": "am2-1-s0"})
    far = await client.create_order("BTC/ZAR", "limit", "buy", 0.01, 700000, {"customerOrderId": "am2-2-b0"})

    opened = await client.fetch_open_orders("BTC/ZAR")
    assert {o["clientOrderId"] for o in opened} == {"am2-1-b0", "am2-1-s0", "am2-2-b0"}
    resting = next(o for o in opened if o["id"] == far["id"])
    assert (resting["status"], resting["type"], resting["price"], resting["remaining"]) == (
        "open",
        "limit",
        700000,
        0.01,
    )
    balance = await client.fetch_balance()
    assert balance["ZAR"]["used"] > 2 * 7000  # both bids' funds are held

    srv.book.set_time(START_MS + 300_000)  # the first candle closes: low 809600.76, high 816685.38
    for placed, side, fee_currency in ((bid, "buy", "ZAR"), (ask, "sell", "BTC")):
        order = await client.fetch_order(placed["id"], "BTC/ZAR")
        assert (order["status"], order["filled"]) == ("closed", 0.01)
        (trade,) = [t for t in await client.fetch_my_trades("BTC/ZAR") if t["order"] == placed["id"]]
        assert (trade["side"], trade["takerOrMaker"], trade["fee"]["currency"]) == (
            side,
            "maker",
            fee_currency,
        )
        assert state_order(srv, placed["clientOrderId"])["status"] == "filled"
    assert [t["maker"] for t in srv.book.state()["trades"]] == [False, True, True]

    canceled = await client.cancel_order(None, "BTC/ZAR", {"customerOrderId": "am2-2-b0"})
    assert canceled["status"] == "canceled"
    order = await client.fetch_order(None, "BTC/ZAR", {"clientOrderId": "am2-2-b0"})
    assert (order["id"], order["status"], order["filled"]) == (far["id"], "canceled", 0)
    assert await client.fetch_open_orders("BTC/ZAR") == []
    with pytest.raises(ccxt.OrderNotFound):
        await client.cancel_order(far["id"], "BTC/ZAR")


async def test_post_only_would_match_is_refused_and_found_failed(client: Any) -> None:
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        await client.create_order(
            "BTC/ZAR", "limit", "buy", 0.01, 900000, {"customerOrderId": "po-1", "postOnly": True}
        )
    order = await client.fetch_order(None, "BTC/ZAR", {"customerOrderId": "po-1"})
    assert order["status"] == "rejected" and order["filled"] == 0


# -- errors ---------------------------------------------------------------------------------------
async def test_insufficient_balance_is_insufficient_funds(srv: ValrLoopback, client: Any) -> None:
    with pytest.raises(ccxt.InsufficientFunds):  # 2 BTC x 812k ZAR > 1M ZAR
        await client.create_order("BTC/ZAR", "market", "buy", 2, None, {"customerOrderId": "big-b0"})
    order = await client.fetch_order(None, "BTC/ZAR", {"customerOrderId": "big-b0"})
    assert (order["status"], order["filled"], order["info"]["failedReason"]) == (
        "rejected",
        0,
        "Insufficient Balance",
    )
    assert srv.book.orders == []


async def test_a_customer_id_of_an_open_order_is_a_duplicate(client: Any) -> None:
    first = await client.create_order("BTC/ZAR", "limit", "buy", 0.01, 700000, {"customerOrderId": "dup-1"})
    with pytest.raises(ccxt.DuplicateOrderId):
        await client.create_order("BTC/ZAR", "limit", "buy", 0.01, 700000, {"customerOrderId": "dup-1"})
    order = await client.fetch_order(None, "BTC/ZAR", {"customerOrderId": "dup-1"})
    assert (order["id"], order["status"]) == (first["id"], "open")


async def test_unknown_orders_are_order_not_found(client: Any) -> None:
    with pytest.raises(ccxt.OrderNotFound):
        await client.fetch_order(None, "BTC/ZAR", {"customerOrderId": "never-sent"})
    with pytest.raises(ccxt.OrderNotFound):
        await client.fetch_order("01980000-0000-0000-0000-00000000ffff", "BTC/ZAR")
    with pytest.raises(ccxt.OrderNotFound):
        await client.cancel_order(None, "BTC/ZAR", {"customerOrderId": "never-sent"})


async def test_bad_credentials_are_authentication_errors(client: Any) -> None:
    await client.load_markets()
    for attr, value in (("secret", "wrong"), ("apiKey", "other")):
        good = getattr(client, attr)
        setattr(client, attr, value)
        with pytest.raises(ccxt.AuthenticationError):
            await client.fetch_balance()
        setattr(client, attr, good)
    assert (await client.fetch_balance())["ZAR"]["free"] == 1_000_000


async def test_a_refused_request_is_bad_request_not_a_network_error(srv: ValrLoopback, client: Any) -> None:
    with pytest.raises(ccxt.BadRequest) as caught:  # below minBaseAmount 0.0001: 400 -11
        await client.create_order("BTC/ZAR", "market", "buy", 0.00001, None, {"customerOrderId": "tiny-b0"})
    assert not isinstance(caught.value, ccxt.NetworkError)
    assert KEY not in str(caught.value) and SECRET not in str(caught.value)
    with pytest.raises(ccxt.InvalidOrder):  # VALR's customerOrderId rule, checked before sending
        await client.create_order(
            "BTC/ZAR", "market", "buy", 0.01, None, {"customerOrderId": "no_underscores"}
        )
    with pytest.raises(ccxt.InvalidOrder):
        await client.create_order("BTC/ZAR", "market", "buy", 0.01, None, {"customerOrderId": "x" * 51})
    assert [r for r in srv.requests if r[1].startswith("/v2/")] == [("POST", "/v2/orders/market")]


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("5xx", ccxt.ExchangeNotAvailable),
        ("429", ccxt.RateLimitExceeded),
        ("timeout", ccxt.RequestTimeout),
        ("malformed", ccxt.BadResponse),
    ],
)
async def test_transport_faults(srv: ValrLoopback, client: Any, kind: str, error: type[Exception]) -> None:
    await client.load_markets()
    client.timeout = 300  # ms: the held "timeout" response ends with the client's own timeout
    srv.faults.add(kind, method="POST", path="/v2/orders/*")
    with pytest.raises(error):
        await client.create_order(
            "BTC/ZAR", "market", "buy", 0.01, None, {"customerOrderId": f"fault-{kind}"}
        )
    assert srv.book.orders == []  # none of these faults processes the order


@pytest.mark.parametrize(
    ("status", "url", "method", "body", "error"),
    [
        (400, "/v1/orders/open", "GET", "", ccxt.BadRequest),
        (400, "/v1/public/pairs", "GET", '{"code":-21,"message":"Unsupported Currency Pair"}', ccxt.BadSymbol),
        (401, "/v1/account/balances", "GET", "", ccxt.AuthenticationError),
        (403, "/v1/account/balances", "GET", "", ccxt.PermissionDenied),
        (404, "/v1/orders/BTCZAR/orderid/abc", "GET", "", ccxt.OrderNotFound),
        (404, "/v2/orders/order", "DELETE", "", ccxt.OrderNotFound),
        (404, "/v1/public/NOPE/marketsummary", "GET", '{"code":-111,"message":"Market summary not found"}', ccxt.BadSymbol),
        (404, "/v1/account/balances", "GET", "", ccxt.BadRequest),
        (409, "/v2/orders/limit", "POST", "", ccxt.BadRequest),
        (429, "/v1/account/balances", "GET", "", ccxt.RateLimitExceeded),
        (500, "/v1/account/balances", "GET", "", ccxt.ExchangeNotAvailable),
        (502, "/v1/account/balances", "GET", "oops", ccxt.ExchangeNotAvailable),
        (504, "/v1/account/balances", "GET", "", ccxt.RequestTimeout),
        (201, "/v2/orders/market", "POST", '{"orderId":"x","code":-11,"message":"Insufficient Balance"}', ccxt.InsufficientFunds),
        (201, "/v2/orders/limit", "POST", '{"orderId":"x","code":-7,"message":"Something else"}', ccxt.InvalidOrder),
        (200, "/v1/account/balances", "GET", '[{"currency":', ccxt.BadResponse),
    ],
)  # fmt: skip
def test_http_statuses_map_to_ccxt_errors(
    status: int, url: str, method: str, body: str, error: type[Exception]
) -> None:
    exchange = Valr()
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    with pytest.raises(error) as caught:
        exchange.handle_errors(status, "", "https://api.valr.com" + url, method, {}, body, parsed, {}, None)
    if status in (400, 401, 403, 404, 409):
        assert not isinstance(caught.value, ccxt.NetworkError)


def test_a_success_is_not_an_error() -> None:
    exchange = Valr()
    assert (
        exchange.handle_errors(
            201, "", "https://api.valr.com/v2/orders/limit", "POST", {}, '{"id":"x"}', {"id": "x"}, {}, None
        )
        is None
    )
    assert (
        exchange.handle_errors(200, "", "https://api.valr.com/v1/orders/open", "GET", {}, "[]", [], {}, None)
        is None
    )
