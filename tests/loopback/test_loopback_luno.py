"""Real ccxt luno (through the app's make_client) against Luno's answers as ccxt recorded them.

For each recorded response, ccxt must parse the served body into the recorded
parsed result; for each recorded request, it must send exactly the recorded URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from ccxt.base.errors import AuthenticationError, ExchangeNotAvailable

from amarktai_tui.exchanges.clients import make_client
from loopback.luno import LunoLoopback, Recorded, fixture, recorded_calls

CREDS = {"api_key": "loopback-key", "api_secret": "loopback-secret"}
CALLS = recorded_calls()


@pytest.fixture
async def server() -> AsyncIterator[LunoLoopback]:
    async with LunoLoopback.running() as srv:
        yield srv


@pytest.fixture
async def client(server: LunoLoopback) -> AsyncIterator[Any]:
    ex = make_client("luno", CREDS, api_url=server.url)
    ex.enableRateLimit = False
    ex.timeout_on_exit = 0
    yield ex
    await ex.close()


def test_the_fixtures_cover_reads_and_writes() -> None:
    assert {c.method for c in CALLS} == {"fetchTicker", "fetchTrades", "fetchOrderBook", "createOrder"}
    assert all(c.parsed is not None for c in CALLS if c.method in ("fetchTicker", "fetchTrades"))


async def test_markets_match_the_recorded_ones(server: LunoLoopback, client: Any) -> None:
    markets = await client.load_markets()
    recorded = fixture("markets")
    assert sorted(markets) == sorted(recorded)
    for symbol, want in recorded.items():
        got = markets[symbol]
        for key in (
            "id",
            "symbol",
            "base",
            "quote",
            "baseId",
            "quoteId",
            "active",
            "type",
            "spot",
            "precision",
            "info",
        ):
            assert got[key] == want[key], (symbol, key)
        for key in ("amount", "price"):
            assert got["limits"][key] == want["limits"][key], (symbol, key)
        # maker/taker are not compared: ccxt's luno fee table changed since the recording
    assert set(server.requests) == {("GET", "/api/exchange/1/markets"), ("GET", "/api/1/send/networks")}


@pytest.mark.parametrize("call", CALLS, ids=[f"{c.method}-{c.description}-{i}" for i, c in enumerate(CALLS)])
async def test_recorded_call(server: LunoLoopback, client: Any, call: Recorded) -> None:
    await client.load_markets()
    result = await getattr(client, call.method)(*call.input)
    assert server.requests[-1] == (call.http_method, call.path_qs)  # exactly the URL ccxt recorded
    if call.parsed is None:  # only the request was recorded: the synthetic body, parsed
        if call.method == "createOrder":
            assert result["id"] == call.body["order_id"]
        else:
            assert result["bids"][0] == [
                float(call.body["bids"][0]["price"]),
                float(call.body["bids"][0]["volume"]),
            ]
        return
    want = call.parsed if isinstance(call.parsed, list) else [call.parsed]
    got = result if isinstance(result, list) else [result]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert {k: g.get(k) for k in w} == w  # every recorded field (none depends on the current time)


async def test_private_calls_need_the_credentials(server: LunoLoopback) -> None:
    ex = make_client("luno", {"api_key": "loopback-key", "api_secret": "wrong"}, api_url=server.url)
    ex.timeout_on_exit = 0
    try:
        with pytest.raises(AuthenticationError, match="ErrUnauthorised"):
            await ex.load_markets()  # with keys, load_markets asks for the (private) send networks
    finally:
        await ex.close()


async def test_faults_apply(server: LunoLoopback, client: Any) -> None:
    await client.load_markets()
    server.faults.add("5xx", path="/api/1/ticker")
    with pytest.raises(ExchangeNotAvailable):
        await client.fetch_ticker("BTC/USDT")
    assert (await client.fetch_ticker("BTC/USDT"))["last"] == 73998.98
    assert server.faults.injected == {"5xx": 1}
