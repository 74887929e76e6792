"""A loopback Binance spot REST server (the subset ccxt uses) on top of ``loopback.core``.

Real ccxt talks to it over HTTP on 127.0.0.1: point a client at it with
``amarktai_tui.exchanges.clients.make_client("binance", creds, api_url=server.url)``.
Prices are the real 5m candles of ``shared/data/binance`` (BTCUSDT, ETHUSDT) on
the simulated clock of ``core.Book``; ``GET /api/v3/exchangeInfo`` is the static
``shared/data/ccxt_static/binance-exchangeInfo.json``.

Answers follow Binance's spot API (developers.binance.com/docs/binance-spot-api-docs):
signed endpoints check ``X-MBX-APIKEY`` and the HMAC-SHA256 ``signature`` of the
query string + body (bad key: 401 -2015; bad signature: 400 -1022; the
``timestamp`` must be present but is not compared with the simulated clock);
errors are ``{"code": -NNNN, "msg": "..."}`` with Binance's codes and messages;
LOT_SIZE / PRICE_FILTER / NOTIONAL filters from exchangeInfo are enforced;
LIMIT orders take timeInForce GTC only. Fees are charged in the quote asset.
Klines are the closed candles up to the simulated now (never the forming one).

The WebSocket API's user data stream is served at ``/ws-api/v3`` (what ccxt.pro's
``watch_orders`` uses for spot): ``userDataStream.subscribe.signature`` (HMAC of
the sorted params, as for REST) answers ``{"id", "status": 200, "result":
{"subscriptionId"}}``; then every order change pushes ``{"subscriptionId", "event":
{"e": "executionReport", ...}}`` (NEW, one TRADE per trade, CANCELED).
Faults for it: ``ws_muted`` (events are dropped, as if lost) and ``drop_streams()``
(the server closes every connection), also as ``POST /_ctl/ws {"mute": bool,
"drop": bool}``.

Run as a separate process (the crash tests kill the client while it lives on)::

    python -m loopback.binance --port 0 --start-ms MS --balance USDT=100000 [--split-trades N]

prints ``LISTENING http://127.0.0.1:PORT`` and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from loopback.core import (
    Book,
    Faults,
    LoopbackServer,
    SimError,
    SimOrder,
    Trade,
    control_routes,
    fault_middleware,
    process_parser,
    serve_until_signal,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
EXCHANGE_INFO = DATA / "ccxt_static" / "binance-exchangeInfo.json"
MARKETS = {"BTCUSDT": ("BTC", "USDT"), "ETHUSDT": ("ETH", "USDT")}
KLINE_FILES = {
    (s, tf): DATA / "binance" / f"{b}_{q}-{tf}.json" for s, (b, q) in MARKETS.items() for tf in ("5m", "1h")
}
INTERVAL_MS = {"5m": 300_000, "1h": 3_600_000}
DAY_MS = 86_400_000

ERRORS: dict[str, tuple[int, int, str]] = {  # SimError code -> (HTTP status, Binance code, msg)
    "insufficient_funds": (400, -2010, "Account has insufficient balance for requested action."),
    "duplicate_order": (400, -2010, "Duplicate order sent."),
    "unknown_symbol": (400, -1121, "Invalid symbol."),
    "invalid_quantity": (400, -1013, "Filter failure: LOT_SIZE"),
    "invalid_price": (400, -1013, "Filter failure: PRICE_FILTER"),
    "invalid_side": (400, -1117, "Invalid side."),
    "invalid_type": (400, -1116, "Invalid orderType."),
    "order_not_open": (400, -2011, "Unknown order sent."),
}


@cache
def rows(symbol: str, interval: str) -> list[list[float]]:
    """Freqtrade rows ``[ts_ms, o, h, l, c, v]`` of one data file (read once per process)."""
    return json.loads(KLINE_FILES[(symbol, interval)].read_text())  # type: ignore[no-any-return]


@cache
def exchange_info() -> dict[str, Any]:
    return json.loads(EXCHANGE_INFO.read_text())  # type: ignore[no-any-return]


def num(d: Decimal | None) -> str:
    """Binance's number format: at least 8 decimals, more when the value has them (fees to 1e-12)."""
    if d is None:
        d = Decimal(0)
    return f"{d:.8f}" if d == d.quantize(Decimal("1e-8")) else str(d)


def error(code: int, msg: str, status: int = 400) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)


def sim_error(e: SimError) -> web.Response:
    status, code, msg = ERRORS.get(e.code, (e.http_status, -1013, e.message))
    return error(code, msg, status)


class BinanceLoopback(LoopbackServer):
    """One Binance spot account served on 127.0.0.1 (see the module doc).

    ``balances``: asset -> free amount at the start (default 100,000 USDT).
    ``split_trades``: trades per fill. ``seed``: seed of random fault rates set
    over ``/_ctl/faults`` without one. Attributes: ``book`` (core.Book),
    ``faults`` (core.Faults), ``restrictions`` (the body of
    ``GET /sapi/v1/account/apiRestrictions``), ``requests`` ((method, path) of
    every request but ``/_ctl/*``), ``url`` once started.
    """

    def __init__(
        self,
        *,
        start_ms: int,
        balances: dict[str, Decimal] | None = None,
        api_key: str = "loopback-key",
        secret: str = "loopback-secret",
        split_trades: int = 1,
        seed: int = 0,
        wall_time: bool = False,
    ) -> None:
        super().__init__()
        self.book = Book(
            MARKETS,
            {s: rows(s, "5m") for s in MARKETS},
            balances if balances is not None else {"USDT": Decimal(100_000)},
            start_ms=start_ms,
            split_trades=split_trades,
        )
        self.faults = Faults(seed=seed)
        self.api_key = api_key
        self.secret = secret
        self.seed = seed
        self.wall_time = wall_time  # GET /api/v3/time answers the wall clock (the doctor's skew check)
        self.restrictions: dict[str, Any] = {
            "ipRestrict": False,
            "createTime": start_ms,
            "enableReading": True,
            "enableSpotAndMarginTrading": True,
            "enableWithdrawals": False,
            "enableInternalTransfer": False,
            "enableMargin": False,
            "enableFutures": False,
            "permitsUniversalTransfer": False,
            "enableVanillaOptions": False,
            "enableFixApiTrade": False,
            "enableFixReadOnly": False,
            "enablePortfolioMarginTrading": False,
        }
        self.ws_muted = False
        self.ws_events_sent = 0
        self._streams: list[_UserStream] = []
        self.book.listeners.append(self._push_order)
        self._filters = {
            s["symbol"]: {f["filterType"]: f for f in s["filters"]} for s in exchange_info()["symbols"]
        }

    # -- lifecycle ---------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.record, fault_middleware(self.faults, self._fault_response)])
        control_routes(app, self.book, self.faults)
        public: dict[str, Callable[[dict[str, str]], web.Response]] = {
            "/api/v3/ping": lambda p: web.json_response({}),
            "/api/v3/time": lambda p: web.json_response(
                {"serverTime": int(time.time() * 1000) if self.wall_time else self.book.now_ms}
            ),
            "/api/v3/exchangeInfo": self._exchange_info,
            "/api/v3/klines": self._klines,
            "/api/v3/ticker/price": self._ticker_price,
            "/api/v3/ticker/24hr": self._ticker_24hr,
            "/api/v3/ticker/bookTicker": self._book_ticker,
            "/api/v3/depth": self._depth,
        }
        for path, fn in public.items():
            app.router.add_get(path, self._public(fn))
        signed: list[tuple[str, str, Callable[[dict[str, str]], web.Response]]] = [
            ("POST", "/api/v3/order", self._new_order),
            ("GET", "/api/v3/order", self._get_order),
            ("DELETE", "/api/v3/order", self._cancel_order),
            ("GET", "/api/v3/openOrders", self._open_orders),
            ("DELETE", "/api/v3/openOrders", self._cancel_all),
            ("GET", "/api/v3/allOrders", self._all_orders),
            ("GET", "/api/v3/myTrades", self._my_trades),
            ("GET", "/api/v3/account", self._account),
            ("GET", "/sapi/v1/account/apiRestrictions", lambda p: web.json_response(self.restrictions)),
            ("GET", "/sapi/v1/asset/tradeFee", self._trade_fee),
            ("GET", "/sapi/v1/capital/config/getall", lambda p: web.json_response([])),
            # load_markets with keys and options["fetchMargins"] (ccxt's default) asks for these
            ("GET", "/sapi/v1/margin/allPairs", lambda p: web.json_response([])),
            ("GET", "/sapi/v1/margin/isolated/allPairs", lambda p: web.json_response([])),
        ]
        for method, path, fn in signed:
            app.router.add_route(method, path, self._signed(fn))
        app.router.add_get("/ws-api/v3", self._ws_api)
        app.router.add_post("/_ctl/ws", self._ctl_ws)
        return app

    # -- websocket API: the user data stream ----------------------------------------
    async def _ws_api(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        stream = _UserStream(ws)
        self._streams.append(stream)
        sender = asyncio.ensure_future(stream.send_loop())
        try:
            async for msg in ws:
                if msg.type.name != "TEXT":
                    continue
                stream.queue.put_nowait(self._ws_request(stream, msg.data))
        finally:
            self._streams.remove(stream)
            stream.queue.put_nowait(None)
            await sender
        return ws

    def _ws_request(self, stream: _UserStream, text: str) -> dict[str, Any]:
        try:
            req = json.loads(text)
            rid, method, params = req.get("id"), req.get("method"), dict(req.get("params") or {})
        except (ValueError, AttributeError, TypeError):
            return {"id": None, "status": 400, "error": {"code": -1100, "msg": "Malformed request."}}
        if method != "userDataStream.subscribe.signature":
            return {"id": rid, "status": 400, "error": {"code": -1100, "msg": f"Unknown method {method}."}}
        sig = str(params.pop("signature", ""))
        if params.get("apiKey") != self.api_key:
            return {"id": rid, "status": 401, "error": {"code": -2015, "msg": "Invalid API-key."}}
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
        expected = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, sig.lower()):
            return {
                "id": rid,
                "status": 400,
                "error": {"code": -1022, "msg": "Signature for this request is not valid."},
            }
        stream.subscription = len(self._streams) - 1
        return {"id": rid, "status": 200, "result": {"subscriptionId": stream.subscription}}

    def _push_order(self, order: SimOrder, trades: list[Trade]) -> None:
        """Book listener: the order's executionReport events to every subscribed stream."""
        events = execution_reports(order, trades, self.book.now_ms)
        for stream in self._streams:
            if stream.subscription is None or self.ws_muted:
                continue
            for event in events:
                stream.queue.put_nowait({"subscriptionId": stream.subscription, "event": event})
                self.ws_events_sent += 1

    def subscribed_streams(self) -> int:
        """Open user-stream connections that completed their subscription."""
        return sum(1 for s in self._streams if s.subscription is not None)

    async def drop_streams(self) -> int:
        """Close every user-stream connection from the server side; returns how many."""
        streams = list(self._streams)
        for stream in streams:
            await stream.ws.close()
        return len(streams)

    async def _ctl_ws(self, request: web.Request) -> web.Response:
        body = await request.json()
        if "mute" in body:
            self.ws_muted = bool(body["mute"])
        dropped = await self.drop_streams() if body.get("drop") else 0
        return web.json_response({"muted": self.ws_muted, "dropped": dropped, "streams": len(self._streams)})

    # -- plumbing ----------------------------------------------------------

    @staticmethod
    def _fault_response(kind: str) -> web.Response:
        if kind == "429":
            body = {
                "code": -1003,
                "msg": "Too many requests; current limit is 6000 request weight per 1 MINUTE.",
            }
            return web.json_response(body, status=429, headers={"Retry-After": "1"})
        return web.Response(status=503, text="Service Unavailable")

    def _public(
        self, fn: Callable[[dict[str, str]], web.Response]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            return self._call(fn, dict(request.query))

        return handler

    def _signed(
        self, fn: Callable[[dict[str, str]], web.Response]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            key = request.headers.get("X-MBX-APIKEY")
            if not key:
                return error(-2014, "API-key format invalid.", 401)
            if key != self.api_key:
                return error(-2015, "Invalid API-key, IP, or permissions for action.", 401)
            query, q_sig = _strip_signature(request.rel_url.raw_query_string)
            body, b_sig = _strip_signature((await request.read()).decode())
            sig = q_sig or b_sig
            if not sig:
                return error(
                    -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."
                )
            expected = hmac.new(self.secret.encode(), (query + body).encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, sig.lower()):
                return error(-1022, "Signature for this request is not valid.")
            params = dict(parse_qsl(query, keep_blank_values=True)) | dict(
                parse_qsl(body, keep_blank_values=True)
            )
            if "timestamp" not in params:
                return error(
                    -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
                )
            return self._call(fn, params)

        return handler

    @staticmethod
    def _call(fn: Callable[[dict[str, str]], web.Response], params: dict[str, str]) -> web.Response:
        try:
            return fn(params)
        except SimError as e:
            return sim_error(e)
        except _Missing as e:
            return error(
                -1102, f"Mandatory parameter '{e.args[0]}' was not sent, was empty/null, or malformed."
            )
        except (InvalidOperation, ValueError) as e:
            return error(-1100, f"Illegal characters found in a parameter. ({e})")

    def _symbol(self, params: dict[str, str], required: bool = True) -> str | None:
        symbol = params.get("symbol")
        if symbol is None:
            if required:
                raise _Missing("symbol")
            return None
        if symbol not in MARKETS:
            raise SimError("unknown_symbol", symbol)
        return symbol

    # -- public ------------------------------------------------------------
    def _exchange_info(self, params: dict[str, str]) -> web.Response:
        body = dict(exchange_info(), serverTime=self.book.now_ms)
        return web.json_response(body)

    def _klines(self, params: dict[str, str]) -> web.Response:
        symbol = self._symbol(params)
        interval = params.get("interval") or ""
        if interval not in INTERVAL_MS:
            return error(-1120, "Invalid interval.")
        assert symbol is not None
        step = INTERVAL_MS[interval]
        limit = min(int(params.get("limit", 500)), 1000)
        closed = closed_rows(symbol, interval, self.book.now_ms)
        if "endTime" in params:
            closed = [r for r in closed if r[0] <= int(params["endTime"])]
        if "startTime" in params:
            start = int(params["startTime"])
            chosen = [r for r in closed if r[0] >= start][:limit]
        else:
            chosen = closed[-limit:]
        body = [
            [int(r[0]), *(f"{x:.8f}" for x in r[1:6]), int(r[0]) + step - 1, "0", 1, "0", "0", "0"]
            for r in chosen
        ]
        return web.json_response(body)

    def _each_symbol(self, params: dict[str, str], fn: Callable[[str], dict[str, Any]]) -> web.Response:
        symbol = self._symbol(params, required=False)
        if symbol is not None:
            return web.json_response(fn(symbol))
        if "symbols" in params:
            wanted = json.loads(params["symbols"])
            for s in wanted:
                if s not in MARKETS:
                    raise SimError("unknown_symbol", s)
            return web.json_response([fn(s) for s in wanted])
        return web.json_response([fn(s) for s in MARKETS])

    def _ticker_price(self, params: dict[str, str]) -> web.Response:
        return self._each_symbol(params, lambda s: {"symbol": s, "price": num(self.book.price(s))})

    def _quote(self, symbol: str) -> tuple[Decimal, Decimal, Decimal]:
        """(bid, ask, tick): a one-tick spread around the simulated price."""
        tick = Decimal(self._filters[symbol]["PRICE_FILTER"]["tickSize"])
        price = self.book.price(symbol)
        return price - tick, price + tick, tick

    def _ticker_24hr(self, params: dict[str, str]) -> web.Response:
        return self._each_symbol(params, self._stats)

    def _stats(self, symbol: str) -> dict[str, Any]:
        now = self.book.now_ms
        day = [r for r in closed_rows(symbol, "5m", now)[-300:] if r[0] >= now - DAY_MS]
        last = self.book.price(symbol)
        bid, ask, _ = self._quote(symbol)
        d = [[Decimal(repr(x)) for x in r[1:6]] for r in day]
        open_ = d[0][0] if d else last
        volume = sum((r[4] for r in d), Decimal(0))
        quote_volume = sum((r[4] * r[3] for r in d), Decimal(0)).quantize(Decimal("1e-8"))
        change = last - open_
        return {
            "symbol": symbol,
            "priceChange": num(change),
            "priceChangePercent": f"{change / open_ * 100:.3f}" if open_ else "0.000",
            "weightedAvgPrice": num((quote_volume / volume).quantize(Decimal("1e-8")) if volume else last),
            "prevClosePrice": num(d[0][0] if d else last),
            "lastPrice": num(last),
            "lastQty": "0.00000000",
            "bidPrice": num(bid),
            "bidQty": "10.00000000",
            "askPrice": num(ask),
            "askQty": "10.00000000",
            "openPrice": num(open_),
            "highPrice": num(max((r[1] for r in d), default=last)),
            "lowPrice": num(min((r[2] for r in d), default=last)),
            "volume": num(volume),
            "quoteVolume": num(quote_volume),
            "openTime": int(day[0][0]) if day else now - DAY_MS,
            "closeTime": now,
            "firstId": -1,
            "lastId": -1,
            "count": len(day),
        }

    def _book_ticker(self, params: dict[str, str]) -> web.Response:
        def one(s: str) -> dict[str, Any]:
            bid, ask, _ = self._quote(s)
            return {
                "symbol": s,
                "bidPrice": num(bid),
                "bidQty": "10.00000000",
                "askPrice": num(ask),
                "askQty": "10.00000000",
            }

        return self._each_symbol(params, one)

    def _depth(self, params: dict[str, str]) -> web.Response:
        symbol = self._symbol(params)
        assert symbol is not None
        bid, ask, _ = self._quote(symbol)
        body = {
            "lastUpdateId": self.book.now_ms,
            "bids": [[num(bid), "10.00000000"]],
            "asks": [[num(ask), "10.00000000"]],
        }
        return web.json_response(body)

    # -- trading -----------------------------------------------------------
    def _new_order(self, params: dict[str, str]) -> web.Response:
        symbol = self._symbol(params)
        assert symbol is not None
        side = params.get("side", "").lower()
        type_ = params.get("type", "").lower()
        if side not in ("buy", "sell"):
            raise SimError("invalid_side", params.get("side", ""))
        if type_ not in ("market", "limit"):
            raise SimError("invalid_type", params.get("type", ""))
        filters = self._filters[symbol]
        price: Decimal | None = None
        if type_ == "limit":
            for name in ("timeInForce", "quantity", "price"):
                if not params.get(name):
                    raise _Missing(name)
            if params["timeInForce"] != "GTC":
                return error(-1115, "Invalid timeInForce.")
            price = Decimal(params["price"])
            pf = filters["PRICE_FILTER"]
            if (
                price < Decimal(pf["minPrice"])
                or price > Decimal(pf["maxPrice"])
                or price % Decimal(pf["tickSize"])
            ):
                raise SimError("invalid_price", str(price))
        if params.get("quantity"):
            qty = Decimal(params["quantity"])
        elif type_ == "market" and params.get("quoteOrderQty"):
            step = Decimal(filters["LOT_SIZE"]["stepSize"])
            qty = (Decimal(params["quoteOrderQty"]) / self.book.price(symbol) // step) * step
        else:
            raise _Missing("quantity")
        lot = filters["LOT_SIZE"]
        if qty < Decimal(lot["minQty"]) or qty > Decimal(lot["maxQty"]) or qty % Decimal(lot["stepSize"]):
            raise SimError("invalid_quantity", str(qty))
        notional = qty * (price if price is not None else self.book.price(symbol))
        if notional < Decimal(filters["NOTIONAL"]["minNotional"]):
            return error(-1013, "Filter failure: NOTIONAL")
        coid = params.get("newClientOrderId") or f"loopback-{len(self.book.orders) + 1}"
        order = self.book.place(coid, symbol, side, type_, qty, price)
        resp_type = params.get("newOrderRespType", "FULL")
        ack = {
            "symbol": symbol,
            "orderId": order.id,
            "orderListId": -1,
            "clientOrderId": order.client_order_id,
            "transactTime": order.created_ts,
        }
        if resp_type == "ACK":
            return web.json_response(ack)
        body = (
            ack
            | _order_fields(order)
            | {"workingTime": order.created_ts, "selfTradePreventionMode": "EXPIRE_MAKER"}
        )
        if resp_type == "FULL":
            body["fills"] = [
                {
                    "price": num(t.price),
                    "qty": num(t.qty),
                    "commission": num(t.fee),
                    "commissionAsset": t.fee_asset,
                    "tradeId": t.id,
                }
                for t in order.trades
            ]
        return web.json_response(body)

    def _lookup(self, params: dict[str, str]) -> SimOrder | None:
        symbol = self._symbol(params)
        if params.get("orderId"):
            order = self.book.find(order_id=int(params["orderId"]))
        elif params.get("origClientOrderId"):
            coid = params["origClientOrderId"]
            opened = [o for o in self.book.open_orders(symbol) if o.client_order_id == coid]
            order = opened[0] if opened else self.book.find(client_order_id=coid)
        else:
            raise _Missing("orderId")
        return order if order is not None and order.symbol == symbol else None

    def _get_order(self, params: dict[str, str]) -> web.Response:
        order = self._lookup(params)
        if order is None:
            return error(-2013, "Order does not exist.")
        return web.json_response(order_body(order))

    def _cancel_order(self, params: dict[str, str]) -> web.Response:
        order = self._lookup(params)
        if order is None or order.status != "open":
            return error(-2011, "Unknown order sent.")
        self.book.cancel(order)
        return web.json_response(cancel_body(order, params.get("newClientOrderId")))

    def _cancel_all(self, params: dict[str, str]) -> web.Response:
        symbol = self._symbol(params)
        orders = self.book.open_orders(symbol)
        if not orders:
            return error(-2011, "Unknown order sent.")
        return web.json_response([cancel_body(self.book.cancel(o), None) for o in orders])

    def _open_orders(self, params: dict[str, str]) -> web.Response:
        symbol = self._symbol(params, required=False)
        return web.json_response([order_body(o) for o in self.book.open_orders(symbol)])

    def _all_orders(self, params: dict[str, str]) -> web.Response:
        symbol = self._symbol(params)
        orders = [o for o in self.book.orders if o.symbol == symbol]
        return web.json_response([order_body(o) for o in _window(orders, params, lambda o: o.created_ts)])

    def _my_trades(self, params: dict[str, str]) -> web.Response:
        symbol = self._symbol(params)
        trades = [t for t in self.book.trades if t.symbol == symbol]
        if params.get("orderId"):
            trades = [t for t in trades if t.order_id == int(params["orderId"])]
        return web.json_response([trade_body(t) for t in _window(trades, params, lambda t: t.ts)])

    def _account(self, params: dict[str, str]) -> web.Response:
        fee_bp = int(self.book.taker_fee * 10_000)
        body = {
            "makerCommission": int(self.book.maker_fee * 10_000),
            "takerCommission": fee_bp,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": num(self.book.maker_fee),
                "taker": num(self.book.taker_fee),
                "buyer": "0.00000000",
                "seller": "0.00000000",
            },
            "canTrade": bool(self.restrictions.get("enableSpotAndMarginTrading", True)),
            "canWithdraw": bool(self.restrictions.get("enableWithdrawals", False)),
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self.book.now_ms,
            "accountType": "SPOT",
            "balances": [
                {"asset": a, "free": num(b.free), "locked": num(b.locked)}
                for a, b in self.book.balances.items()
            ],
            "permissions": ["SPOT"],
            "uid": 1,
        }
        return web.json_response(body)

    def _trade_fee(self, params: dict[str, str]) -> web.Response:
        symbols = [self._symbol(params)] if "symbol" in params else list(MARKETS)
        body = [
            {
                "symbol": s,
                "makerCommission": str(self.book.maker_fee),
                "takerCommission": str(self.book.taker_fee),
            }
            for s in symbols
        ]
        return web.json_response(body)


class _Missing(Exception):
    """A mandatory parameter is missing (Binance -1102)."""


def _strip_signature(raw: str) -> tuple[str, str | None]:
    """(``raw`` without its ``signature=`` parameter, the signature)."""
    keep, sig = [], None
    for part in raw.split("&") if raw else []:
        if part.startswith("signature="):
            sig = part[len("signature=") :]
        else:
            keep.append(part)
    return "&".join(keep), sig


@cache
def stamps(symbol: str, interval: str) -> list[int]:
    return [int(r[0]) for r in rows(symbol, interval)]


def closed_rows(symbol: str, interval: str, now_ms: int) -> list[list[float]]:
    """The rows of ``symbol``/``interval`` whose candle closed at or before ``now_ms`` (ts + step <= now)."""
    end = bisect.bisect_right(stamps(symbol, interval), now_ms - INTERVAL_MS[interval])
    return rows(symbol, interval)[:end]


def _window(items: list[Any], params: dict[str, str], ts_of: Callable[[Any], int]) -> list[Any]:
    """Binance's paging for allOrders/myTrades: fromId (id >=) or startTime/endTime, then the
    oldest ``limit`` of them; with neither, the newest ``limit`` (default 500, max 1000), oldest first."""
    limit = min(int(params.get("limit", 500)), 1000)
    if params.get("fromId"):
        return [x for x in items if x.id >= int(params["fromId"])][:limit]
    if params.get("startTime") or params.get("endTime"):
        lo = int(params.get("startTime", 0))
        hi = int(params.get("endTime", 2**62))
        return [x for x in items if lo <= ts_of(x) <= hi][:limit]
    return items[-limit:]


STATUS = {"filled": "FILLED", "cancelled": "CANCELED"}


def _status(o: SimOrder) -> str:
    if o.status == "open":
        return "PARTIALLY_FILLED" if o.filled else "NEW"
    return STATUS[o.status]


def _order_fields(o: SimOrder) -> dict[str, Any]:
    return {
        "price": num(o.price),
        "origQty": num(o.qty),
        "executedQty": num(o.filled),
        "origQuoteOrderQty": "0.00000000",
        "cummulativeQuoteQty": num(o.cost),
        "status": _status(o),
        "timeInForce": "GTC",
        "type": o.type.upper(),
        "side": o.side.upper(),
    }


def order_body(o: SimOrder) -> dict[str, Any]:
    """``GET /api/v3/order`` for ``o``."""
    return {
        "symbol": o.symbol,
        "orderId": o.id,
        "orderListId": -1,
        "clientOrderId": o.client_order_id,
        **_order_fields(o),
        "stopPrice": "0.00000000",
        "icebergQty": "0.00000000",
        "time": o.created_ts,
        "updateTime": o.updated_ts,
        "isWorking": True,
        "workingTime": o.created_ts,
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }


def cancel_body(o: SimOrder, new_coid: str | None) -> dict[str, Any]:
    """``DELETE /api/v3/order`` for ``o``: the cancel request's own id in ``clientOrderId``."""
    return {
        "symbol": o.symbol,
        "origClientOrderId": o.client_order_id,
        "orderId": o.id,
        "orderListId": -1,
        "clientOrderId": new_coid or f"cancel-{o.id}",
        "transactTime": o.updated_ts,
        **_order_fields(o),
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }


def trade_body(t: Trade) -> dict[str, Any]:
    """One row of ``GET /api/v3/myTrades``."""
    return {
        "symbol": t.symbol,
        "id": t.id,
        "orderId": t.order_id,
        "orderListId": -1,
        "price": num(t.price),
        "qty": num(t.qty),
        "quoteQty": num(t.cost),
        "commission": num(t.fee),
        "commissionAsset": t.fee_asset,
        "time": t.ts,
        "isBuyer": t.side == "buy",
        "isMaker": t.maker,
        "isBestMatch": True,
    }


class _UserStream:
    """One websocket connection: answers and events leave in order through one queue."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.subscription: int | None = None

    async def send_loop(self) -> None:
        while (msg := await self.queue.get()) is not None:
            if self.ws.closed:
                continue
            await self.ws.send_json(msg)


def execution_reports(o: SimOrder, trades: list[Trade], now_ms: int) -> list[dict[str, Any]]:
    """Binance ``executionReport`` events for an order change: NEW (no trades, open), one TRADE per
    trade (cumulative figures as of that trade), or CANCELED."""
    base = {
        "e": "executionReport",
        "s": o.symbol,
        "c": o.client_order_id,
        "S": o.side.upper(),
        "o": o.type.upper(),
        "f": "GTC",
        "q": num(o.qty),
        "p": num(o.price),
        "P": "0.00000000",
        "F": "0.00000000",
        "g": -1,
        "C": "",
        "r": "NONE",
        "i": o.id,
        "I": 0,
        "M": False,
        "O": o.created_ts,
        "Q": "0.00000000",
    }
    zero = {"l": "0.00000000", "L": "0.00000000", "n": "0", "N": None, "t": -1, "m": False, "Y": "0.00000000"}
    if not trades:
        kind = "CANCELED" if o.status == "cancelled" else "NEW"
        if kind == "CANCELED":
            base["C"], base["c"] = o.client_order_id, f"cancel-{o.id}"
        figures = {"z": num(o.filled), "Z": num(o.cost), "X": _status(o), "w": o.status == "open"}
        return [base | zero | figures | {"E": now_ms, "T": o.updated_ts, "x": kind}]
    filled = o.filled - sum((t.qty for t in trades), Decimal(0))
    cost = o.cost - sum((t.cost for t in trades), Decimal(0))
    out = []
    for i, t in enumerate(trades):
        filled += t.qty
        cost += t.cost
        last = i == len(trades) - 1
        status = _status(o) if last else "PARTIALLY_FILLED"
        out.append(
            base
            | {
                "E": now_ms,
                "T": t.ts,
                "x": "TRADE",
                "X": status,
                "l": num(t.qty),
                "z": num(filled),
                "L": num(t.price),
                "n": num(t.fee),
                "N": t.fee_asset,
                "t": t.id,
                "w": status in ("NEW", "PARTIALLY_FILLED"),
                "m": t.maker,
                "Z": num(cost),
                "Y": num(t.cost),
            }
        )
    return out


# -- a separate process ----------------------------------------------------------


async def _main(args: argparse.Namespace) -> None:
    balances = dict(args.balance) if args.balance else None
    server = BinanceLoopback(
        start_ms=args.start_ms,
        balances=balances,
        split_trades=args.split_trades,
        seed=args.seed,
        wall_time=args.wall_time,
    )
    await serve_until_signal(server, args.port)


def main(argv: list[str] | None = None) -> None:
    parser = process_parser("python -m loopback.binance", __doc__.split("\n")[0])
    parser.add_argument("--split-trades", type=int, default=1)
    parser.add_argument("--wall-time", action="store_true", help="GET /api/v3/time answers the wall clock")
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
