"""VALR for ccxt: ``Valr``, a ``ccxt.async_support.Exchange`` subclass that behaves like a built-in.

ccxt (4.5.90) ships no VALR class. This one follows ccxt's own exchange
classes: ``describe()`` (urls, endpoint map with rate-limit costs, ``has``,
credentials, error tables), ``sign()``, ``handle_errors()`` and the unified
methods, each parsed into ccxt's unified structures with the ``safe_*`` helpers.

Source of every endpoint, field and rule: VALR's API reference, docs.valr.com
(the Postman collection "VALR API"; "Authentication", "Rate Limiting",
"Public", "Account", "Orders", "Order Status"). Symbols: VALR's ``BTCZAR`` is
ccxt's ``BTC/ZAR``; spot pairs only (``currencyPairType`` SPOT).

Rate limits (docs.valr.com "Rate Limiting"): 1,200 calls a minute per IP and
2,000 per API key, so ``rateLimit`` is 50 ms (20/s); ``/v1/public/*`` is 30 a
minute (cost 40 = 2 s), ``/v1/public/*/buckets`` 20 a second (cost 1).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any, cast
from urllib.parse import urlsplit

import ccxt.async_support as ccxt_async
from ccxt.base.decimal_to_precision import TICK_SIZE
from ccxt.base.errors import (
    ArgumentsRequired,
    AuthenticationError,
    BadRequest,
    BadResponse,
    BadSymbol,
    DuplicateOrderId,
    ExchangeError,
    ExchangeNotAvailable,
    InsufficientFunds,
    InvalidNonce,
    InvalidOrder,
    OrderImmediatelyFillable,
    OrderNotFound,
    PermissionDenied,
    RateLimitExceeded,
    RequestTimeout,
)
from ccxt.base.precise import Precise
from ccxt.base.types import Entry

Json = dict[str, Any]

API_ORIGIN = "https://api.valr.com"

CUSTOMER_ORDER_ID = re.compile(r"^[A-Za-z0-9-]{1,50}$")
"""docs.valr.com, v2 limit/market orders: ``customerOrderId`` is alphanumeric with dashes, <= 50 characters."""

FIAT = frozenset({"ZAR", "USD", "EUR", "GBP", "NGN"})


def sign_request(
    secret: str, timestamp_ms: int | str, verb: str, path: str, body: str = "", subaccount_id: str = ""
) -> str:
    """VALR's request signature: hex HMAC-SHA512 keyed by the API secret.

    The signed text is ``timestamp + VERB + path + body + subaccount_id``
    (docs.valr.com "Authentication": timestamp in ms since the epoch, the same
    value as the ``X-VALR-TIMESTAMP`` header; the verb upper case; the path with
    its query string, e.g. ``/v1/orders/BTCZAR/orderid/<id>``; the exact JSON
    body sent, or "" when there is none; the sub-account id, or "" for the
    primary account). Returns 128 lowercase hex characters.
    """
    message = f"{timestamp_ms}{verb.upper()}{path}{body}{subaccount_id}"
    return hmac.new(secret.encode(), message.encode(), hashlib.sha512).hexdigest()


def _public(path: str, cost: int = 40) -> Any:
    return Entry(path, ["public"], "GET", {"cost": cost})


def _private(path: str, method: str = "GET") -> Any:
    return Entry(path, ["private"], method, {"cost": 1})


class Valr(ccxt_async.Exchange):  # type: ignore[misc]
    """VALR (valr.com, South Africa) spot trading through ccxt's unified API.

    Options: ``options["subaccountId"]`` signs and sends every private call
    for that sub-account (header ``X-VALR-SUB-ACCOUNT-ID``);
    ``options["fetchOrderSummary"]`` (default True) makes ``fetch_order`` of a
    finished order also read its history summary for the average price, cost
    and fee (the order-status call has none of them).
    """

    # implicit API (ccxt's Entry descriptors, as in ccxt.abstract.*): docs.valr.com paths
    public_get_v1_public_pairs = publicGetV1PublicPairs = _public("v1/public/pairs")
    public_get_v1_public_pair_marketsummary = publicGetV1PublicPairMarketsummary = _public(
        "v1/public/{pair}/marketsummary"
    )
    public_get_v1_public_pair_orderbook = publicGetV1PublicPairOrderbook = _public(
        "v1/public/{pair}/orderbook"
    )
    public_get_v1_public_pair_buckets = publicGetV1PublicPairBuckets = _public("v1/public/{pair}/buckets", 1)
    private_get_v1_account_balances = privateGetV1AccountBalances = _private("v1/account/balances")
    # the calling key's label and permissions ("View access", "Trade", "Withdraw", ...)
    private_get_v1_account_api_keys_current = privateGetV1AccountApiKeysCurrent = _private(
        "v1/account/api-keys/current"
    )
    private_get_v1_account_pair_tradehistory = privateGetV1AccountPairTradehistory = _private(
        "v1/account/{pair}/tradehistory"
    )
    private_get_v1_orders_open = privateGetV1OrdersOpen = _private("v1/orders/open")
    private_get_v1_orders_pair_orderid_orderid = privateGetV1OrdersPairOrderidOrderId = _private(
        "v1/orders/{pair}/orderid/{orderId}"
    )
    private_get_v1_orders_pair_customerorderid_customerorderid = (
        privateGetV1OrdersPairCustomerorderidCustomerOrderId
    ) = _private("v1/orders/{pair}/customerorderid/{customerOrderId}")
    private_get_v1_orders_history_summary_orderid_orderid = privateGetV1OrdersHistorySummaryOrderidOrderId = (
        _private("v1/orders/history/summary/orderid/{orderId}")
    )
    private_post_v2_orders_limit = privatePostV2OrdersLimit = _private("v2/orders/limit", "POST")
    private_post_v2_orders_market = privatePostV2OrdersMarket = _private("v2/orders/market", "POST")
    private_delete_v2_orders_order = privateDeleteV2OrdersOrder = _private("v2/orders/order", "DELETE")

    def describe(self) -> Any:
        """ccxt's exchange description, extended the way ccxt's own classes do."""
        return self.deep_extend(
            super().describe(),
            {
                "id": "valr",
                "name": "VALR",
                "countries": ["ZA"],
                "rateLimit": 50,
                "version": "v1",
                "pro": False,
                "has": {
                    "CORS": None,
                    "spot": True,
                    "margin": False,
                    "swap": False,
                    "future": False,
                    "option": False,
                    "cancelOrder": True,
                    "createOrder": True,
                    "createMarketOrder": True,
                    "createLimitOrder": True,
                    "fetchBalance": True,
                    "fetchCurrencies": False,
                    "fetchMarkets": True,
                    "fetchMyTrades": True,
                    "fetchOHLCV": True,
                    "fetchOpenOrders": True,
                    "fetchOrder": True,
                    "fetchOrderBook": True,
                    "fetchTicker": True,
                    "fetchTickers": False,
                    "fetchTrades": False,
                    "fetchClosedOrders": False,
                    "fetchOrders": False,
                    "withdraw": False,
                },
                "timeframes": {
                    "1m": 60,
                    "5m": 300,
                    "15m": 900,
                    "30m": 1800,
                    "1h": 3600,
                    "6h": 21600,
                    "1d": 86400,
                },
                "urls": {
                    "api": {"public": API_ORIGIN, "private": API_ORIGIN},
                    "www": "https://www.valr.com",
                    "doc": ["https://docs.valr.com"],
                    "fees": "https://www.valr.com/en/fees",
                },
                "api": _endpoint_map(),
                "requiredCredentials": {"apiKey": True, "secret": True},
                "precisionMode": TICK_SIZE,
                "fees": {
                    # valr.com/en/fees tier 1; fiat-quoted pairs are dearer (set per market)
                    "trading": {"tierBased": True, "percentage": True, "maker": 0.0008, "taker": 0.001},
                },
                "options": {"subaccountId": None, "fetchOrderSummary": True},
                "exceptions": {
                    # codes seen in VALR's replies ({"code": <int>, "message": <str>})
                    "exact": {
                        "-11": BadRequest,  # "Invalid Request, please check your request and try again"
                        "-21": BadSymbol,  # "Unsupported Currency Pair"
                        "-111": BadSymbol,  # "Market summary not found" (inactive pair)
                        "-11268": AuthenticationError,  # "API key header missing: X-VALR-API-KEY"
                    },
                    # lower-cased substrings of "message"; docs.valr.com order failure reasons
                    "broad": {
                        "insufficient balance": InsufficientFunds,
                        "insufficient funds": InsufficientFunds,
                        "non-unique customerorderid": DuplicateOrderId,
                        "customerorderid already": DuplicateOrderId,
                        "duplicate customerorderid": DuplicateOrderId,
                        "slippage": InvalidOrder,  # "... would have matched outside of slippage price band"
                        "would have matched": OrderImmediatelyFillable,  # a post-only order
                        "insufficient liquidity": InvalidOrder,
                        "self-trade": InvalidOrder,
                        "unsupported currency pair": BadSymbol,
                        "request has expired": InvalidNonce,
                        "signature": AuthenticationError,
                        "api key": AuthenticationError,
                        "unauthorized": AuthenticationError,
                    },
                },
            },
        )

    # -- signing and errors ------------------------------------------------------------------
    def sign(
        self,
        path: str,
        api: Any = "public",
        method: str = "GET",
        params: Any = None,
        headers: Any = None,
        body: Any = None,
    ) -> Json:
        """The request for ``path``: URL, headers and JSON body; private calls signed per docs.valr.com.

        GET parameters go in the query string; other verbs send them as a
        compact JSON body. The signature covers the path with its query and
        the exact body (see ``sign_request``).
        """
        section = api[0] if isinstance(api, list) else api
        params = params or {}
        url_path = "/" + self.implode_params(path, params)
        query = self.omit(params, self.extract_params(path))
        request_body = ""
        if method == "GET":
            if query:
                url_path += "?" + self.urlencode(query)
        elif query:
            request_body = self.json(query)
        request_headers: dict[str, str] = {}
        if method != "GET":
            request_headers["Content-Type"] = "application/json"
        if section == "private":
            self.check_required_credentials()
            timestamp = str(self.milliseconds())
            subaccount = self.safe_string(self.options, "subaccountId", "") or ""
            request_headers["X-VALR-API-KEY"] = self.apiKey
            request_headers["X-VALR-SIGNATURE"] = sign_request(
                self.secret, timestamp, method, url_path, request_body, subaccount
            )
            request_headers["X-VALR-TIMESTAMP"] = timestamp
            if subaccount:
                request_headers["X-VALR-SUB-ACCOUNT-ID"] = subaccount
        url = self.urls["api"][section] + url_path
        return {"url": url, "method": method, "body": request_body or None, "headers": request_headers}

    def handle_errors(
        self,
        code: int,
        reason: str,
        url: str,
        method: str,
        headers: Any,
        body: str,
        response: Any,
        request_headers: Any,
        request_body: Any,
    ) -> None:
        """Map a VALR reply to ccxt's error classes; returns None when the reply is a success.

        VALR errors are ``{"code": <negative int>, "message": <text>}``; v2 order
        placement that fails synchronously answers 201 with ``{orderId, code,
        message}`` (docs.valr.com "Place limit order v2"). Order of tests: the
        message (most specific), the code, then the HTTP status: 429 ->
        RateLimitExceeded, 408 and 504 -> RequestTimeout, other 5xx ->
        ExchangeNotAvailable, 401 -> AuthenticationError, 403 ->
        PermissionDenied, 404 -> OrderNotFound on an order lookup or cancel
        else BadRequest, any other 4xx -> BadRequest. So no 4xx ever looks
        retryable (ccxt's default table maps 400/403/404 to ExchangeNotAvailable).
        A 2xx that is not JSON raises BadResponse. Messages carry the URL and
        the response body, never request headers (no key, no signature).
        """
        status = int(code)
        feedback = f"{self.id} {method} {url} {status} {body or ''}"[:600]
        error_shape = (
            isinstance(response, dict)
            and "message" in response
            and "code" in response
            and "id" not in response
        )
        if 200 <= status < 300:
            if response is None and body:
                raise BadResponse(f"{self.id} {method} {url} {status} malformed response: {body[:200]}")
            if not error_shape:
                return None
        elif status == 429:
            raise RateLimitExceeded(feedback)
        elif status in (408, 504):
            raise RequestTimeout(feedback)
        elif status >= 500:
            raise ExchangeNotAvailable(feedback)
        elif status < 400:
            return None
        lookup = _is_order_lookup(url, method)
        if isinstance(response, dict):
            message = (self.safe_string(response, "message") or "").lower()
            if message:
                if lookup and "not found" in message:
                    raise OrderNotFound(feedback)
                self.throw_broadly_matched_exception(self.exceptions["broad"], message, feedback)
            error_code = self.safe_string(response, "code")
            if error_code is not None:
                self.throw_exactly_matched_exception(self.exceptions["exact"], error_code, feedback)
        if status == 401:
            raise AuthenticationError(feedback)
        if status == 403:
            raise PermissionDenied(feedback)
        if status == 404:
            raise OrderNotFound(feedback) if lookup else BadRequest(feedback)
        if 400 <= status < 500:
            raise BadRequest(feedback)
        if method == "POST" and "/orders/" in url:
            raise InvalidOrder(feedback)
        raise ExchangeError(feedback)

    # -- public ----------------------------------------------------------------------------------
    async def fetch_markets(self, params: Any = None) -> list[Json]:
        """Spot markets from ``GET /v1/public/pairs`` (docs.valr.com "Currency pairs").

        Precision: amount ``10**-baseDecimalPlaces``, price ``tickSize``;
        limits: ``min/maxBaseAmount`` (base) and ``min/maxQuoteAmount`` (quote).
        Fees: tier-1 maker/taker, the fiat rate for a fiat quote (valr.com/en/fees).
        """
        response = await self.publicGetV1PublicPairs(params or {})
        markets: list[Json] = []
        for row in response:
            kind = self.safe_string(row, "currencyPairType", "SPOT")
            if kind != "SPOT":
                continue
            market_id = self.safe_string(row, "symbol")
            base = self.safe_currency_code(self.safe_string(row, "baseCurrency"))
            quote = self.safe_currency_code(self.safe_string(row, "quoteCurrency"))
            fiat = quote in FIAT
            markets.append(
                self.safe_market_structure(
                    {
                        "id": market_id,
                        "symbol": f"{base}/{quote}",
                        "base": base,
                        "quote": quote,
                        "baseId": self.safe_string(row, "baseCurrency"),
                        "quoteId": self.safe_string(row, "quoteCurrency"),
                        "type": "spot",
                        "spot": True,
                        "margin": self.safe_bool(row, "marginTradingAllowed", False),
                        "swap": False,
                        "future": False,
                        "option": False,
                        "contract": False,
                        "active": self.safe_bool(row, "active"),
                        "maker": 0.0018 if fiat else 0.0008,
                        "taker": 0.0035 if fiat else 0.001,
                        "precision": {
                            "amount": self.parse_number(
                                self.parse_precision(self.safe_string(row, "baseDecimalPlaces"))
                            ),
                            "price": self.safe_number(row, "tickSize"),
                        },
                        "limits": {
                            "amount": {
                                "min": self.safe_number(row, "minBaseAmount"),
                                "max": self.safe_number(row, "maxBaseAmount"),
                            },
                            "price": {"min": None, "max": None},
                            "cost": {
                                "min": self.safe_number(row, "minQuoteAmount"),
                                "max": self.safe_number(row, "maxQuoteAmount"),
                            },
                            "leverage": {"min": None, "max": None},
                        },
                        "created": None,
                        "info": row,
                    }
                )
            )
        return markets

    async def fetch_ticker(self, symbol: str, params: Any = None) -> Json:
        """Ticker from ``GET /v1/public/{pair}/marketsummary`` (docs.valr.com "Market summary").

        ``percentage`` is VALR's ``changeFromPrevious`` (percent vs the previous close).
        """
        await self.load_markets()
        market = self.market(symbol)
        response = await self.publicGetV1PublicPairMarketsummary(
            self.extend({"pair": market["id"]}, params or {})
        )
        return self.parse_ticker(response, market)

    def parse_ticker(self, ticker: Any, market: Any = None) -> Json:
        """A VALR market summary as a ccxt ticker."""
        market_id = self.safe_string_2(ticker, "currencyPair", "currencyPairSymbol")
        market = self.safe_market(market_id, market)
        timestamp = self.parse8601(self.safe_string(ticker, "created"))
        last = self.safe_string(ticker, "lastTradedPrice")
        return cast(
            Json,
            self.safe_ticker(
                {
                    "symbol": market["symbol"],
                    "timestamp": timestamp,
                    "datetime": self.iso8601(timestamp),
                    "high": self.safe_string(ticker, "highPrice"),
                    "low": self.safe_string(ticker, "lowPrice"),
                    "bid": self.safe_string(ticker, "bidPrice"),
                    "ask": self.safe_string(ticker, "askPrice"),
                    "last": last,
                    "close": last,
                    "previousClose": self.safe_string(ticker, "previousClosePrice"),
                    "percentage": self.safe_string(ticker, "changeFromPrevious"),
                    "baseVolume": self.safe_string(ticker, "baseVolume"),
                    "quoteVolume": self.safe_string(ticker, "quoteVolume"),
                    "info": ticker,
                },
                market,
            ),
        )

    async def fetch_order_book(self, symbol: str, limit: int | None = None, params: Any = None) -> Json:
        """Aggregated book from ``GET /v1/public/{pair}/orderbook`` (top 40 levels a side, docs.valr.com)."""
        await self.load_markets()
        market = self.market(symbol)
        response = await self.publicGetV1PublicPairOrderbook(
            self.extend({"pair": market["id"]}, params or {})
        )
        timestamp = self.parse8601(self.safe_string(response, "LastChange"))
        book = self.parse_order_book(
            response, market["symbol"], timestamp, "Bids", "Asks", "price", "quantity"
        )
        book["nonce"] = self.safe_integer(response, "SequenceNumber")
        if limit is not None:
            book["bids"] = book["bids"][:limit]
            book["asks"] = book["asks"][:limit]
        return cast(Json, book)

    async def fetch_ohlcv(
        self,
        symbol: str,
        timeframe: str = "1m",
        since: int | None = None,
        limit: int | None = None,
        params: Any = None,
    ) -> list[list[Any]]:
        """Candles from ``GET /v1/public/{pair}/buckets`` (docs.valr.com "Get price buckets").

        ``periodSeconds`` from ``timeframe`` (60 .. 86400); ``startTime`` and
        ``endTime`` are epoch seconds; at most 300 buckets a call, newest first
        on the wire, returned oldest first as ``[ms, open, high, low, close, base volume]``.
        """
        await self.load_markets()
        market = self.market(symbol)
        period = self.safe_integer(self.timeframes, timeframe)
        if period is None:
            raise BadRequest(f"{self.id} fetch_ohlcv() does not support timeframe {timeframe}")
        count = 300 if limit is None else min(int(limit), 300)
        request: Json = {"pair": market["id"], "periodSeconds": period, "limit": count}
        if since is not None:
            start = int(since) // 1000
            request["startTime"] = start
            request["endTime"] = start + period * count - 1
        response = await self.publicGetV1PublicPairBuckets(self.extend(request, params or {}))
        return cast(list[list[Any]], self.parse_ohlcvs(response, market, timeframe, since, limit))

    def parse_ohlcv(self, ohlcv: Any, market: Any = None) -> list[Any]:
        """One VALR bucket as ``[ms, open, high, low, close, volume]``."""
        return [
            self.parse8601(self.safe_string(ohlcv, "startTime")),
            self.safe_number(ohlcv, "open"),
            self.safe_number(ohlcv, "high"),
            self.safe_number(ohlcv, "low"),
            self.safe_number(ohlcv, "close"),
            self.safe_number(ohlcv, "volume"),
        ]

    # -- account ---------------------------------------------------------------------------------
    async def fetch_balance(self, params: Any = None) -> Json:
        """Balances from ``GET /v1/account/balances``: free = ``available``, used = ``reserved``, total = ``total``."""
        await self.load_markets()
        response = await self.privateGetV1AccountBalances(params or {})
        result: Json = {"info": response}
        for row in response:
            code = self.safe_currency_code(self.safe_string(row, "currency"))
            account = self.account()
            account["free"] = self.safe_string(row, "available")
            account["used"] = self.safe_string(row, "reserved")
            account["total"] = self.safe_string(row, "total")
            result[code] = account
        return cast(Json, self.safe_balance(result))

    # -- orders ----------------------------------------------------------------------------------
    async def create_order(
        self, symbol: str, type: str, side: str, amount: float, price: float | None = None, params: Any = None
    ) -> Json:
        """Place a limit or market order with ``POST /v2/orders/limit|market`` (docs.valr.com v2 orders).

        ``amount`` is base currency for both types (market: ``baseAmount``;
        pass ``params={"quoteAmount": ...}`` to spend a quote amount instead).
        The client order id comes from ``params`` ``clientOrderId`` or
        ``customerOrderId`` (alphanumeric and dashes, <= 50 characters, else
        InvalidOrder). Limit extras: ``postOnly``, ``timeInForce`` (GTC/IOC/FOK).
        VALR answers only the order id: the returned order has ``id``,
        ``clientOrderId`` and the request's fields, status unknown (None).
        """
        params = dict(params or {})
        await self.load_markets()
        market = self.market(symbol)
        customer_id = self.safe_string_2(params, "clientOrderId", "customerOrderId")
        params = self.omit(params, ["clientOrderId", "customerOrderId"])
        request: Json = {"side": side.upper(), "pair": market["id"]}
        if customer_id is not None:
            if not CUSTOMER_ORDER_ID.match(customer_id):
                raise InvalidOrder(
                    f"{self.id} customerOrderId must be 1-50 letters, digits or dashes: {customer_id!r}"
                )
            request["customerOrderId"] = customer_id
        if type == "limit":
            if price is None:
                raise ArgumentsRequired(f"{self.id} create_order() requires a price for a limit order")
            request["quantity"] = self.amount_to_precision(symbol, amount)
            request["price"] = self.price_to_precision(symbol, price)
            request["postOnly"] = bool(params.pop("postOnly", False))
            request["timeInForce"] = params.pop("timeInForce", "GTC")
            response = await self.privatePostV2OrdersLimit(self.extend(request, params))
        elif type == "market":
            quote_amount = params.pop("quoteAmount", None)
            if quote_amount is not None:
                request["quoteAmount"] = self.cost_to_precision(symbol, quote_amount)
            else:
                request["baseAmount"] = self.amount_to_precision(symbol, amount)
            response = await self.privatePostV2OrdersMarket(self.extend(request, params))
        else:
            raise InvalidOrder(f"{self.id} create_order() supports limit and market orders, not {type}")
        order = self.safe_order(
            {
                "id": self.safe_string(response, "id"),
                "clientOrderId": customer_id,
                "symbol": market["symbol"],
                "type": type,
                "side": side.lower(),
                "amount": self.safe_string(request, "quantity", self.safe_string(request, "baseAmount")),
                "price": self.safe_string(request, "price"),
                "status": None,
                "info": response,
            },
            market,
        )
        return cast(Json, order)

    async def cancel_order(self, id: str | None, symbol: str | None = None, params: Any = None) -> Json:
        """Cancel an open order with ``DELETE /v2/orders/order`` (docs.valr.com "Cancel order" v2).

        By ``id`` (VALR's orderId) or, with ``id`` None, by ``params``
        ``clientOrderId``/``customerOrderId``. ``symbol`` is required. An
        unknown or finished order raises OrderNotFound.
        """
        if symbol is None:
            raise ArgumentsRequired(f"{self.id} cancel_order() requires a symbol")
        await self.load_markets()
        market = self.market(symbol)
        params = dict(params or {})
        customer_id = self.safe_string_2(params, "clientOrderId", "customerOrderId")
        params = self.omit(params, ["clientOrderId", "customerOrderId"])
        request: Json = {"pair": market["id"]}
        if id is not None:
            request["orderId"] = id
        elif customer_id is not None:
            request["customerOrderId"] = customer_id
        else:
            raise ArgumentsRequired(f"{self.id} cancel_order() requires an id or a clientOrderId")
        response = await self.privateDeleteV2OrdersOrder(self.extend(request, params))
        order = self.safe_order(
            {
                "id": id,
                "clientOrderId": customer_id,
                "symbol": market["symbol"],
                "status": "canceled",
                "info": response,
            },
            market,
        )
        return cast(Json, order)

    async def fetch_order(self, id: str | None, symbol: str | None = None, params: Any = None) -> Json:
        """One order from ``GET /v1/orders/{pair}/orderid/{id}`` or ``.../customerorderid/{cid}``.

        With ``id`` None the client order id comes from ``params``
        ``clientOrderId``/``customerOrderId``. ``symbol`` is required (VALR's
        path names the pair). A finished order (filled, cancelled, failed) with
        ``options["fetchOrderSummary"]`` also reads
        ``GET /v1/orders/history/summary/orderid/{id}`` for ``average``,
        ``cost`` and ``fee``. Unknown orders raise OrderNotFound.
        """
        if symbol is None:
            raise ArgumentsRequired(f"{self.id} fetch_order() requires a symbol")
        await self.load_markets()
        market = self.market(symbol)
        params = dict(params or {})
        customer_id = self.safe_string_2(params, "clientOrderId", "customerOrderId")
        params = self.omit(params, ["clientOrderId", "customerOrderId"])
        if id is not None:
            response = await self.privateGetV1OrdersPairOrderidOrderId(
                self.extend({"pair": market["id"], "orderId": id}, params)
            )
        elif customer_id is not None:
            response = await self.privateGetV1OrdersPairCustomerorderidCustomerOrderId(
                self.extend({"pair": market["id"], "customerOrderId": customer_id}, params)
            )
        else:
            raise ArgumentsRequired(f"{self.id} fetch_order() requires an id or a clientOrderId")
        order = self.parse_order(response, market)
        if order["status"] in ("closed", "canceled", "rejected") and self.safe_bool(
            self.options, "fetchOrderSummary", True
        ):
            try:
                summary = await self.privateGetV1OrdersHistorySummaryOrderidOrderId({"orderId": order["id"]})
            except (OrderNotFound, BadRequest):
                return order  # not summarised (yet): the status alone
            return self.parse_order(self.extend(response, summary), market)
        return order

    async def fetch_open_orders(
        self,
        symbol: str | None = None,
        since: int | None = None,
        limit: int | None = None,
        params: Any = None,
    ) -> list[Json]:
        """Open orders from ``GET /v1/orders/open`` (all pairs; filtered to ``symbol`` when given)."""
        await self.load_markets()
        market = None if symbol is None else self.market(symbol)
        response = await self.privateGetV1OrdersOpen(params or {})
        orders = self.parse_orders(response, market, since, limit)
        return cast(list[Json], self.filter_by_symbol_since_limit(orders, symbol, since, limit))

    def parse_order(self, order: Any, market: Any = None) -> Json:
        """A VALR order (status, open-orders row or history summary) as a ccxt order.

        ``filled`` = ``totalExecutedQuantity`` else ``originalQuantity -
        remainingQuantity``; ``average`` = ``averagePrice``; ``cost`` = ``total``
        (quote); ``fee`` = ``totalFee`` in ``feeCurrency`` (the summary's fields).
        """
        market = self.safe_market(self.safe_string(order, "currencyPair"), market)
        kind = (self.safe_string_2(order, "orderType", "type") or "").lower()
        amount = self.safe_string_2(order, "originalQuantity", "quantity")
        remaining = self.safe_string(order, "remainingQuantity")
        filled = self.safe_string(order, "totalExecutedQuantity")
        if filled is None and amount is not None and remaining is not None:
            filled = Precise.string_sub(amount, remaining)
        price = self.safe_string_2(order, "originalPrice", "price")
        if price is not None and Precise.string_eq(price, "0"):
            price = None
        fee_cost = self.safe_number(order, "totalFee")
        fee = None
        if fee_cost is not None:
            fee = {
                "cost": fee_cost,
                "currency": self.safe_currency_code(self.safe_string(order, "feeCurrency")),
            }
        created = self.parse8601(self.safe_string_2(order, "orderCreatedAt", "createdAt"))
        return cast(
            Json,
            self.safe_order(
                {
                    "id": self.safe_string_2(order, "orderId", "id"),
                    "clientOrderId": self.safe_string(order, "customerOrderId"),
                    "timestamp": created,
                    "datetime": self.iso8601(created),
                    "lastTradeTimestamp": None,
                    "lastUpdateTimestamp": self.parse8601(
                        self.safe_string_2(order, "orderUpdatedAt", "updatedAt")
                    ),
                    "symbol": market["symbol"],
                    "type": "market" if "market" in kind else "limit" if "limit" in kind else kind or None,
                    "timeInForce": self.safe_string(order, "timeInForce"),
                    "postOnly": "post-only" in kind,
                    "side": self.safe_string_lower_2(order, "orderSide", "side"),
                    "price": price,
                    "amount": amount,
                    "filled": filled,
                    "remaining": remaining,
                    "average": self.safe_string(order, "averagePrice"),
                    "cost": self.safe_string(order, "total"),
                    "status": self.parse_order_status(self.safe_string_2(order, "orderStatusType", "status")),
                    "fee": fee,
                    "trades": None,
                    "info": order,
                },
                market,
            ),
        )

    def parse_order_status(self, status: str | None) -> str | None:
        """VALR's ``orderStatusType`` as ccxt's open/closed/canceled/rejected/expired."""
        if status is None:
            return None
        key = status.replace("_", " ").strip().lower()
        statuses = {
            "placed": "open",
            "active": "open",
            "partially filled": "open",
            "order modified": "open",
            "filled": "closed",
            "instant order completed": "closed",
            "cancelled": "canceled",
            "partially filled due to slippage": "canceled",
            "failed": "rejected",
            "expired": "expired",
        }
        return statuses.get(key, key)

    # -- trades ----------------------------------------------------------------------------------
    async def fetch_my_trades(
        self,
        symbol: str | None = None,
        since: int | None = None,
        limit: int | None = None,
        params: Any = None,
    ) -> list[Json]:
        """Own fills from ``GET /v1/account/{pair}/tradehistory`` (the latest 100 at most, docs.valr.com)."""
        if symbol is None:
            raise ArgumentsRequired(f"{self.id} fetch_my_trades() requires a symbol")
        await self.load_markets()
        market = self.market(symbol)
        request: Json = {"pair": market["id"]}
        if limit is not None:
            request["limit"] = min(int(limit), 100)
        response = await self.privateGetV1AccountPairTradehistory(self.extend(request, params or {}))
        return cast(list[Json], self.parse_trades(response, market, since, limit))

    def parse_trade(self, trade: Any, market: Any = None) -> Json:
        """One VALR account trade as a ccxt trade; the fee as VALR reports it.

        ``takerOrMaker`` is not on the wire; it follows from the fee currency
        (docs.valr.com "Place limit order": a maker pays in quote when buying
        and base when selling, a taker in base when buying and quote when selling).
        """
        market = self.safe_market(self.safe_string(trade, "currencyPair"), market)
        side = self.safe_string_lower(trade, "side")
        fee_currency = self.safe_currency_code(self.safe_string(trade, "feeCurrency"))
        taker_or_maker = None
        if fee_currency is not None and side in ("buy", "sell"):
            pays_base = fee_currency == market["base"]
            taker_or_maker = "taker" if pays_base == (side == "buy") else "maker"
        fee_cost = self.safe_string(trade, "fee")
        timestamp = self.parse8601(self.safe_string(trade, "tradedAt"))
        return cast(
            Json,
            self.safe_trade(
                {
                    "id": self.safe_string(trade, "id"),
                    "order": self.safe_string(trade, "orderId"),
                    "timestamp": timestamp,
                    "datetime": self.iso8601(timestamp),
                    "symbol": market["symbol"],
                    "type": None,
                    "side": side,
                    "takerOrMaker": taker_or_maker,
                    "price": self.safe_string(trade, "price"),
                    "amount": self.safe_string(trade, "quantity"),
                    "cost": None,
                    "fee": None if fee_cost is None else {"cost": fee_cost, "currency": fee_currency},
                    "info": trade,
                },
                market,
            ),
        )


def _is_order_lookup(url: str, method: str) -> bool:
    """True for the order-status paths and the cancel endpoints, where a 404 means "no such order"."""
    path = urlsplit(url).path
    if "/orderid/" in path or "/customerorderid/" in path:
        return True
    return method == "DELETE" and path.rstrip("/").endswith("/orders/order")


def _endpoint_map() -> dict[str, dict[str, dict[str, Any]]]:
    """ccxt's ``api`` table (section -> verb -> path -> {"cost"}), read from ``Valr``'s Entry descriptors."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for entry in vars(Valr).values():
        if isinstance(entry, Entry):
            table.setdefault(entry.api[0], {}).setdefault(entry.method.lower(), {})[entry.path] = entry.config
    return table
