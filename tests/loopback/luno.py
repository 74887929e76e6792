"""A loopback Luno server replaying ccxt's recorded static-test fixtures.

ccxt's own static tests (``ts/src/test/static`` in the ccxt repository) record, per
unified method, what ccxt sent (``request/luno.json``: the URL) and what Luno
answered (``response/luno.json``: the raw HTTP body and ccxt's parsed result);
``markets/luno.json`` holds the parsed markets, whose ``info`` fields are the raw
rows of ``GET /api/exchange/1/markets``. Copies live in ``shared/data/ccxt_static``.

This server answers:

- ``GET /api/exchange/1/markets``: ``{"markets": [info, ...]}`` from the markets fixture
  (and ``GET /api/1/send/networks``: ``{"data": []}``, which load_markets asks for with keys);
- each recorded response (``fetchTicker``, ``fetchTrades``) at the path ccxt's
  luno class calls for that method, with the query it builds from the recorded
  input (``pair=<market id>``, plus ``since`` when given);
- each recorded request URL (``fetchOrderBook``, ``createOrder``: no response
  was recorded) with a small synthetic body in Luno's documented shape
  (luno.com/en/developers/api), so tests can check that ccxt sends exactly the
  recorded URL (``requests`` keeps the path and query of every request).

Private paths (``/api/1/postorder``, ``/api/1/marketorder``, ...) need HTTP Basic
auth with ``api_key:secret`` (else 401 ``ErrUnauthorised``); anything not
recorded answers 404 ``ErrNotFound``. ``faults`` (core.Faults) applies to every request.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from aiohttp import web

from loopback.core import Faults, LoopbackServer, fault_middleware

STATIC = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ccxt_static"

RESPONSE_PATHS: dict[str, tuple[str, str]] = {
    # unified method -> (HTTP method, path): ccxt.luno.fetch_ticker -> publicGetTicker, etc.
    "fetchTicker": ("GET", "/api/1/ticker"),
    "fetchTrades": ("GET", "/api/1/trades"),
    "fetchOrderBook": ("GET", "/api/1/orderbook"),
    "fetchBalance": ("GET", "/api/1/balance"),
    "fetchMyTrades": ("GET", "/api/1/listtrades"),
    "fetchOpenOrders": ("GET", "/api/1/listorders"),
}
"""Where ccxt's luno class sends each recorded response's request (the response fixture has no URL)."""

PRIVATE_PREFIXES = (
    "/api/1/postorder",
    "/api/1/marketorder",
    "/api/1/balance",
    "/api/1/list",
    "/api/1/orders",
    "/api/1/send",
)

SYNTHETIC: dict[str, dict[str, Any]] = {
    # bodies for recorded requests without a recorded response (Luno's API reference shapes)
    "/api/1/orderbook": {
        "timestamp": 1710328244969,
        "bids": [{"price": "72617.38", "volume": "0.0312"}, {"price": "72600.00", "volume": "0.1000"}],
        "asks": [{"price": "73998.97", "volume": "0.0045"}, {"price": "74000.00", "volume": "0.2500"}],
    },
    "/api/1/orderbook_top": {
        "timestamp": 1710328244969,
        "bids": [{"price": "72617.38", "volume": "0.0312"}],
        "asks": [{"price": "73998.97", "volume": "0.0045"}],
    },
    "/api/1/marketorder": {"order_id": "BXMC2CJ7HNB88U4"},
    "/api/1/postorder": {"order_id": "BXRANDOMORDERID"},
}


@cache
def fixture(kind: str) -> dict[str, Any]:
    """``kind`` in markets | request | response: ``ccxt_static/<kind>/luno.json``."""
    return json.loads((STATIC / kind / "luno.json").read_text())  # type: ignore[no-any-return]


def market_id(symbol: str) -> str:
    return str(fixture("markets")[symbol]["id"])


@dataclass(frozen=True)
class Recorded:
    """One recorded call: the unified method, its input, and what the server answers for it."""

    method: str
    description: str
    input: list[Any]
    http_method: str
    path: str
    query: tuple[tuple[str, str], ...]  # as ccxt orders it
    body: Any  # the raw JSON body served
    parsed: Any  # ccxt's recorded parsed result (None when only the request was recorded)

    @property
    def path_qs(self) -> str:
        return self.path + ("?" + urlencode(self.query) if self.query else "")


def recorded_calls() -> list[Recorded]:
    """Every call in the request and response fixtures, each with the URL ccxt sends for it."""
    calls: list[Recorded] = []
    for method, entries in fixture("response")["methods"].items():
        http_method, path = RESPONSE_PATHS[method]
        for e in entries:
            args = e["input"]
            pairs = [("pair", market_id(args[0]))]
            if method in ("fetchTrades", "fetchMyTrades") and len(args) > 1 and args[1] is not None:
                pairs.append(("since", str(args[1])))
            calls.append(
                Recorded(
                    method,
                    e["description"],
                    args,
                    http_method,
                    path,
                    tuple(pairs),
                    e["httpResponse"],
                    e["parsedResponse"],
                )
            )
    for method, entries in fixture("request")["methods"].items():
        for e in entries:
            url = urlsplit(e["url"])
            http_method = "POST" if method in ("createOrder", "cancelOrder") else "GET"
            query = tuple(parse_qsl(url.query, keep_blank_values=True))
            calls.append(
                Recorded(
                    method,
                    e["description"],
                    e["input"],
                    http_method,
                    url.path,
                    query,
                    SYNTHETIC[url.path],
                    None,
                )
            )
    return calls


class LunoLoopback(LoopbackServer):
    """Luno's recorded answers on 127.0.0.1 (see the module doc).

    Attributes: ``calls`` (the recorded calls served), ``faults``, ``requests``
    ((method, path with query) of every request), ``url`` once started.
    """

    def __init__(self, *, api_key: str = "loopback-key", secret: str = "loopback-secret") -> None:
        super().__init__()
        self.api_key = api_key
        self.secret = secret
        self.faults = Faults()
        self.calls = recorded_calls()
        self._answers: dict[tuple[str, str, frozenset[tuple[str, str]]], Any] = {}
        for call in self.calls:
            self._answers.setdefault((call.http_method, call.path, frozenset(call.query)), call.body)
        markets = {"markets": [m["info"] for m in fixture("markets").values()]}
        self._answers[("GET", "/api/exchange/1/markets", frozenset())] = markets
        # load_markets with credentials also asks for currencies (ccxt.luno.fetch_currencies); none recorded
        self._answers[("GET", "/api/1/send/networks", frozenset())] = {"data": []}

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record, fault_middleware(self.faults)])
        app.router.add_route("*", "/{tail:.*}", self._answer)
        return app

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        return await handler(request)

    async def _answer(self, request: web.Request) -> web.Response:
        if request.path.startswith(PRIVATE_PREFIXES):
            expected = "Basic " + base64.b64encode(f"{self.api_key}:{self.secret}".encode()).decode()
            if request.headers.get("Authorization") != expected:
                return web.json_response(
                    {"error": "Unauthorized", "error_code": "ErrUnauthorised"}, status=401
                )
        key = (request.method, request.path, frozenset(parse_qsl(request.rel_url.raw_query_string)))
        if key not in self._answers:
            body = {"error": f"not recorded: {request.method} {request.path_qs}", "error_code": "ErrNotFound"}
            return web.json_response(body, status=404)
        return web.json_response(self._answers[key])
