"""Real ccxt (through the app's make_client) against the loopback Binance server, and core.Book's rules.

The server runs in this process on 127.0.0.1 (one test starts it as a separate
process); prices are the real BTCUSDT 5m candles from shared/data, the clock
starts at the open of candle #20000 and only moves through ``/_ctl/time``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import ccxt.async_support as ccxt_async
import pytest
from ccxt.base.errors import (
    AuthenticationError,
    BadRequest,
    DDoSProtection,
    ExchangeNotAvailable,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
    RequestTimeout,
)

from amarktai_tui.exchanges.clients import make_client
from loopback.binance import BinanceLoopback, rows
from loopback.core import Book, SimError, to_decimal

I0 = 20_000  # a stretch of BTC 5m data without gaps
CANDLES = rows("BTCUSDT", "5m")
START = int(CANDLES[I0][0])
CREDS = {"api_key": "loopback-key", "api_secret": "loopback-secret"}


def d(i: int, field: int) -> Decimal:
    """Field (1 open, 2 high, 3 low, 4 close) of BTC 5m candle ``i`` as Decimal."""
    return to_decimal(CANDLES[i][field])


@pytest.fixture
async def server() -> AsyncIterator[BinanceLoopback]:
    async with BinanceLoopback.running(start_ms=START, split_trades=3) as srv:
        yield srv


def client_for(url: str, creds: dict[str, str] = CREDS, timeout_s: float = 5.0) -> Any:
    ex = make_client("binance", creds, api_url=url, timeout_s=timeout_s)
    ex.enableRateLimit = False  # ccxt's throttle would only slow the tests down
    ex.timeout_on_exit = 0  # nor its 250 ms pause in close()
    return ex


@pytest.fixture
async def client(server: BinanceLoopback) -> AsyncIterator[Any]:
    ex = client_for(server.url or "")
    await ex.load_markets()
    yield ex
    await ex.close()


async def ctl(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(method, url + path, json=body) as r:
        return r.status, await r.json()


# -- reads ---------------------------------------------------------------------------


async def test_public_reads(server: BinanceLoopback, client: Any) -> None:
    assert sorted(client.markets) == ["BTC/USDT", "ETH/USDT"]
    assert await client.fetch_time() == START
    ohlcv = await client.fetch_ohlcv("BTC/USDT", "5m", limit=3)
    assert ohlcv == [list(map(float, r[:6])) for r in CANDLES[I0 - 3 : I0]]  # closed candles only
    ticker = await client.fetch_ticker("BTC/USDT")
    assert ticker["last"] == float(d(I0, 1))  # the open of the candle containing now
    assert ticker["bid"] < ticker["last"] < ticker["ask"]
    book = await client.fetch_order_book("BTC/USDT")
    assert book["bids"][0][0] == ticker["bid"] and book["asks"][0][0] == ticker["ask"]
    balance = await client.fetch_balance()
    assert balance["USDT"] == {"free": 100_000.0, "used": 0.0, "total": 100_000.0}
    fees = await client.fetch_trading_fees()
    assert fees["BTC/USDT"]["maker"] == fees["BTC/USDT"]["taker"] == 0.001
    restrictions = await client.sapiGetAccountApiRestrictions()
    assert restrictions["enableWithdrawals"] is False and restrictions["enableReading"] is True
    server.restrictions["enableWithdrawals"] = True
    assert (await client.sapiGetAccountApiRestrictions())["enableWithdrawals"] is True
    assert ("GET", "/api/v3/klines") in server.requests


# -- orders ----------------------------------------------------------------------------


async def test_market_order_fills_at_the_open_in_split_trades(server: BinanceLoopback, client: Any) -> None:
    order = await client.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "m-1"})
    price = d(I0, 1)
    cost = Decimal("0.01") * price
    fee = cost * Decimal("0.001")
    assert (order["id"], order["clientOrderId"], order["status"]) == ("100001", "m-1", "closed")
    assert order["filled"] == 0.01 and order["average"] == float(price)
    assert order["fee"] == {"currency": "USDT", "cost": float(fee)}
    assert len(order["trades"]) == 3
    # the account, to the last digit (server side) and as ccxt reads it
    assert server.book.balances["USDT"].free == Decimal(100_000) - cost - fee
    assert server.book.balances["BTC"].free == Decimal("0.01")
    balance = await client.fetch_balance()
    assert balance["BTC"]["free"] == 0.01 and balance["USDT"]["total"] == float(Decimal(100_000) - cost - fee)
    trades = await client.fetch_my_trades("BTC/USDT")
    assert [t["id"] for t in trades] == ["1", "2", "3"]
    assert sum(Decimal(str(t["amount"])) for t in trades) == Decimal("0.01")
    assert {t["order"] for t in trades} == {"100001"} and {t["takerOrMaker"] for t in trades} == {"taker"}
    assert sum(Decimal(t["info"]["commission"]) for t in trades) == fee
    fetched = await client.fetch_order(None, "BTC/USDT", {"origClientOrderId": "m-1"})
    assert (fetched["id"], fetched["status"], fetched["filled"]) == ("100001", "closed", 0.01)
    assert len(await client.fetch_my_trades("BTC/USDT", params={"orderId": "100001", "fromId": 3})) == 1


async def test_limit_order_rests_then_fills_when_the_clock_crosses_it(
    server: BinanceLoopback, client: Any
) -> None:
    limit = (d(I0, 1) * Decimal("0.995")).quantize(Decimal("0.01"))
    order = await client.create_order(
        "BTC/USDT", "limit", "buy", 0.01, float(limit), {"clientOrderId": "l-1"}
    )
    assert (order["status"], order["filled"], order["price"]) == ("open", 0.0, float(limit))
    locked = server.book.balances["USDT"].locked
    assert locked == Decimal("0.01") * limit * Decimal("1.001")
    assert [o["id"] for o in await client.fetch_open_orders("BTC/USDT")] == [order["id"]]
    # the first candle whose range reaches the limit (opening through it would be a taker fill at its open)
    j = next(i for i in range(I0, I0 + 500) if d(i, 3) <= limit)
    assert d(j, 1) > limit  # so: a maker fill at the limit
    close_before = int(CANDLES[j - 1][0]) + 300_000
    status, body = await ctl(server.url or "", "POST", "/_ctl/time", {"ms": close_before})
    assert (status, body) == (200, {"trades": 0, "now_ms": close_before})
    assert (await client.fetch_order(order["id"], "BTC/USDT"))["status"] == "open"
    status, body = await ctl(server.url or "", "POST", "/_ctl/time", {"ms": close_before + 300_000})
    assert body["trades"] == 3
    filled = await client.fetch_order(None, "BTC/USDT", {"origClientOrderId": "l-1"})
    assert (filled["status"], filled["average"]) == ("closed", float(limit))
    trades = await client.fetch_my_trades("BTC/USDT")
    assert {t["takerOrMaker"] for t in trades} == {"maker"} and {t["price"] for t in trades} == {float(limit)}
    assert server.book.balances["USDT"].locked == 0
    assert server.book.balances["USDT"].free == Decimal(100_000) - Decimal("0.01") * limit * Decimal("1.001")
    assert await client.fetch_open_orders("BTC/USDT") == []


async def test_cancel_and_order_errors(server: BinanceLoopback, client: Any) -> None:
    low = float((d(I0, 1) * Decimal("0.9")).quantize(Decimal("0.01")))
    order = await client.create_order("BTC/USDT", "limit", "buy", 0.01, low, {"newClientOrderId": "c-1"})
    with pytest.raises(
        InvalidOrder, match="Duplicate order sent"
    ):  # -2010; ccxt has no DuplicateOrderId here
        await client.create_order("BTC/USDT", "limit", "buy", 0.01, low, {"newClientOrderId": "c-1"})
    cancelled = await client.cancel_order(order["id"], "BTC/USDT")
    assert cancelled["status"] == "canceled" and server.book.balances["USDT"].free == 100_000
    with pytest.raises(OrderNotFound, match="-2011"):
        await client.cancel_order(order["id"], "BTC/USDT")
    with pytest.raises(OrderNotFound, match="-2013"):
        await client.fetch_order(None, "BTC/USDT", {"origClientOrderId": "no-such-order"})
    # a client order id reused after its order closed is accepted (as on Binance): the tests can see it
    again = await client.create_order("BTC/USDT", "market", "buy", 0.001, None, {"newClientOrderId": "c-1"})
    assert again["status"] == "closed" and again["id"] != order["id"]
    assert server.book.duplicate_client_order_ids() == {"c-1": 2}
    with pytest.raises(InsufficientFunds):
        await client.create_order("BTC/USDT", "market", "buy", 10, None, {"newClientOrderId": "big"})
    with pytest.raises(BadRequest, match="NOTIONAL"):
        await client.create_order("BTC/USDT", "market", "buy", 0.0001, None)
    assert server.book.find(client_order_id="big") is None and len(server.book.orders) == 2
    status, state = await ctl(server.url or "", "GET", "/_ctl/state")
    assert status == 200 and state["duplicates"] == {"c-1": 2} and len(state["orders"]) == 2


async def test_bad_credentials_are_authentication_errors(server: BinanceLoopback) -> None:
    for creds, code in (
        ({"api_key": "someone-else", "api_secret": "loopback-secret"}, "-2015"),
        ({"api_key": "loopback-key", "api_secret": "wrong"}, "-1022"),
    ):
        ex = client_for(server.url or "", creds)
        try:
            with pytest.raises(AuthenticationError, match=code):
                await ex.fetch_balance()  # load_markets' signed currencies call already fails
        finally:
            await ex.close()


# -- faults ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "error", "processed"),
    [
        ("5xx", ExchangeNotAvailable, False),
        ("429", DDoSProtection, False),  # binance.handle_errors raises DDoSProtection for 418/429
        ("timeout", RequestTimeout, False),
        ("lost", RequestTimeout, True),
    ],
)
async def test_faults_on_create_order(
    server: BinanceLoopback, client: Any, kind: str, error: type[Exception], processed: bool
) -> None:
    client.timeout = 300  # ms
    server.faults.add(kind, method="POST", path="/api/v3/order")
    with pytest.raises(error):
        await client.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": f"f-{kind}"})
    assert server.faults.injected == {kind: 1}
    at_server = server.book.find(client_order_id=f"f-{kind}")
    assert (at_server is not None) == processed
    # the next request is not faulted; a lost order can be looked up by its client order id
    looked = (
        await client.fetch_order(None, "BTC/USDT", {"origClientOrderId": f"f-{kind}"}) if processed else None
    )
    assert looked is None or looked["status"] == "closed"


async def test_malformed_json_is_not_an_exception_in_ccxt(server: BinanceLoopback, client: Any) -> None:
    """ccxt (4.5.90) does not raise on a 200 with truncated JSON: it parses the text as an empty order."""
    server.faults.add("malformed", method="POST", path="/api/v3/order")
    order = await client.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "mal-1"})
    assert order["id"] is None and isinstance(order["info"], str) and order["status"] is None
    assert server.book.find(client_order_id="mal-1") is None  # a write is not processed
    server.faults.add("malformed", path="/api/v3/ticker/24hr")
    ticker = await client.fetch_ticker("BTC/USDT")
    assert ticker["last"] is None and ticker["info"].startswith('{"symbol": "BTCUSDT"')


async def test_random_faults_are_seeded(server: BinanceLoopback, client: Any) -> None:
    async def outcomes() -> list[str]:
        got = []
        for _ in range(20):
            try:
                await client.fetch_time()
                got.append("ok")
            except (ExchangeNotAvailable, DDoSProtection) as e:
                got.append(type(e).__name__)
        return got

    status, _ = await ctl(
        server.url or "", "POST", "/_ctl/faults", {"rate": 0.5, "kinds": ["5xx", "429"], "seed": 7}
    )
    assert status == 200
    first = await outcomes()
    server.faults.set_rate(0.5, kinds=["5xx", "429"], seed=7, path="/api/v3/time")
    assert await outcomes() == first
    assert {"ok", "ExchangeNotAvailable", "DDoSProtection"} == set(first)
    await ctl(server.url or "", "POST", "/_ctl/faults/clear")
    assert await outcomes() == ["ok"] * 20
    status, body = await ctl(server.url or "", "POST", "/_ctl/faults", {"kind": "nope"})
    assert status == 400 and "unknown fault kind" in body["error"]


# -- a separate process ------------------------------------------------------------------


async def test_runs_as_a_separate_process() -> None:
    tests_dir = Path(__file__).resolve().parents[1]
    path = [str(tests_dir), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loopback.binance", "--port", "0", "--start-ms", str(START),
        "--balance", "USDT=1000", "--split-trades", "2",
        stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        assert line.startswith("LISTENING http://127.0.0.1:")
        url = line.split()[1]
        ex = client_for(url)
        try:
            order = await ex.create_order(
                "BTC/USDT", "market", "buy", 0.001, None, {"newClientOrderId": "p-1"}
            )
        finally:
            await ex.close()
        status, state = await ctl(url, "GET", "/_ctl/state")
        assert status == 200 and state["now_ms"] == START
        assert [(o["id"], o["client_order_id"], o["status"]) for o in state["orders"]] == [
            (int(order["id"]), "p-1", "filled")
        ]
        assert len(state["trades"]) == 2 and state["balances"]["BTC"]["free"] == "0.00100000"
        assert Decimal(state["balances"]["USDT"]["free"]) == 1000 - Decimal("0.001") * d(I0, 1) * Decimal(
            "1.001"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0


# -- core.Book's rules, on made-up candles ----------------------------------------------

ROWS = [
    [0, 100.0, 110.0, 90.0, 105.0, 1.0],
    [300_000, 105.0, 106.0, 104.0, 105.0, 1.0],
    [600_000, 120.0, 125.0, 119.0, 121.0, 1.0],
    # a gap: no candle at 900_000
    [1_200_000, 130.0, 131.0, 129.0, 130.0, 1.0],
]


def book(**kw: Any) -> Book:
    return Book({"XY": ("X", "Y")}, {"XY": ROWS}, {"Y": Decimal(1000)}, start_ms=0, **kw)


def test_book_limit_fills_maker_in_range_taker_when_opening_through() -> None:
    b = book()
    buy = b.place("b", "XY", "buy", "limit", Decimal(1), Decimal(95))
    assert buy.status == "open" and b.balances["Y"].locked == Decimal("95.095")
    assert [(t.price, t.maker) for t in b.set_time(300_000)] == [(Decimal(95), True)]
    sell = b.place("s", "XY", "sell", "limit", Decimal(1), Decimal(115))
    assert b.set_time(600_000) == [] and sell.status == "open"  # candle 1 never reached 115
    assert [(t.price, t.maker, t.ts) for t in b.set_time(900_000)] == [(Decimal(120), False, 600_000)]
    assert b.balances["Y"] == type(b.balances["Y"])(
        Decimal(1000) - Decimal("95.095") + Decimal("119.88"), Decimal(0)
    )
    assert b.balances["X"].total == 0


def test_book_prices_gaps_splits_and_refusals() -> None:
    b = book(split_trades=3)
    assert b.price("XY") == 100
    b.set_time(950_000)
    assert b.price("XY") == 130  # inside the gap: the next candle's open, where the paper broker fills
    order = b.place("m", "XY", "buy", "market", Decimal("0.00000010"), None)
    assert [t.qty for t in order.trades] == [Decimal("3E-8"), Decimal("3E-8"), Decimal("4E-8")]
    assert [t.id for t in order.trades] == [1, 2, 3] and order.cost == Decimal("0.000013")
    with pytest.raises(ValueError):
        b.set_time(0)
    for args, code in [
        (("q", "XY", "buy", "market", Decimal(8), None), "insufficient_funds"),
        (("q", "XY", "sell", "market", Decimal(1), None), "insufficient_funds"),
        (("q", "XY", "buy", "market", Decimal("1e-9"), None), "invalid_quantity"),
        (("q", "ZZ", "buy", "market", Decimal(1), None), "unknown_symbol"),
        (("q", "XY", "buy", "limit", Decimal(1), None), "invalid_price"),
    ]:
        with pytest.raises(SimError) as e:
            b.place(*args)  # type: ignore[arg-type]
        assert e.value.code == code
    assert len(b.orders) == 1 and b.duplicate_client_order_ids() == {}
    state = b.state()
    assert state["orders"][0]["trade_ids"] == [1, 2, 3] and state["faults"] == {}


def test_ccxt_maps_the_error_codes_used() -> None:
    exact = ccxt_async.binance().exceptions["exact"]
    assert exact["Account has insufficient balance for requested action."] is InsufficientFunds
    assert (
        exact["-2010"] is InvalidOrder and exact["-2011"] is OrderNotFound and exact["-2013"] is OrderNotFound
    )
    assert exact["-2015"] is AuthenticationError and exact["-1022"] is AuthenticationError
    assert "Duplicate order sent." not in exact  # so a duplicate is a plain InvalidOrder
