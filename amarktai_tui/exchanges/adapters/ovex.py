"""OVEX for ccxt: a request-for-quote desk behind the ccxt async interface.

ccxt (4.5.x) ships no OVEX class; :class:`Ovex` subclasses
``ccxt.async_support.Exchange`` so that ``make_client("ovex", ...)`` returns
something the rest of the app treats like a built-in.

Sources
-------
- OVEX Public API (Postman collection), https://docs.ovex.io/ ("API_V2"):
  base ``https://www.ovex.io/api/v2``; ``Authorization: Bearer <API key>``
  (keys expire after 365 days); global rate limit 100 requests / 10 s,
  400 / 60 s, 3000 / 10 min; ``GET /markets`` (public; ids ``xxxyyy``
  such as ``btczar``; an authorised call lists the markets of the key's
  jurisdiction).
- The endpoint list and parameters below are also documented in the ovex-py
  client (PyPI ``ovex-py`` 0.1.0, ``ovex_python/client.py``), which quotes the
  same collection: ``GET /rfq/get_quote`` (``market``, ``side``, exactly one
  of ``from_amount``/``to_amount``; "a strict all inclusive quote"),
  ``POST /rfq/accept_quote`` (``quote_token``), ``GET /rfq/trades``
  (``limit`` default 50, ``order_by`` default desc, ``timestamp`` in seconds:
  only trades before it, ``from``/``to``: trade ids), ``GET /accounts``
  (``currency``, ``balance``, ``locked`` per currency); errors are JSON
  ``{"error": ..., "error_code": ...}``.
- The quote response shape (``market``, ``side``, ``from_currency``,
  ``from_amount``, ``to_currency``, ``to_amount``, ``rate``,
  ``requested_at``/``expires_at`` in seconds since the epoch, ``quote_token``
  when authenticated) is from a recorded OVEX response
  (github.com/TinoMuzambi/OVEXAssessment ``app/data/rfq.json``); the markets
  shape (``id``, ``base_currency``, ``quote_currency``, ``base_precision``,
  ``quote_precision``, ``rfq_enabled``) from the same repository's
  ``app/data/markets.json``.

Assumed (not found in any public document we could read)
---------------------------------------------------------
- The body of a successful ``accept_quote`` and the items of ``rfq/trades``:
  modelled as the quote's fields plus ``id`` (the trade id), ``quote_token``,
  ``state`` and ``created_at`` (ISO 8601), like the Peatio-style trades of
  OVEX's API v2. Where ``quote_token`` is absent from a trade we match on
  market, side, amount and time instead (see :meth:`Ovex.fetch_order`).
- The ``error_code`` values ``quote_expired``, ``insufficient_balance``,
  ``invalid_market``, ``invalid_amount``, ``invalid_quote`` (and HTTP 400 for
  them); the broad matches on the message ("expired", "insufficient") are there
  to catch OVEX's real wording.
- Client order ids: neither ``get_quote`` nor ``accept_quote`` documents one,
  so none is sent. A ``clientOrderId`` is kept in the returned order only, and
  this client remembers which quote tokens it sent for it (in memory, for the
  client's lifetime, the last ``MAX_REMEMBERED`` ids) so that :meth:`Ovex.fetch_order` can find the trade
  after a lost response. After a restart the caller passes ``side``,
  ``amount`` and ``since`` instead.

Fees: the quote is all-inclusive, so the fee sits inside the price; orders and
trades report a fee of 0 in the quote currency (``registry.py`` models OVEX's
spread as a 0.20% taker fee for paper trading).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import ccxt
import ccxt.async_support as ccxt_async
from ccxt.base.decimal_to_precision import TICK_SIZE

LIMIT_REFUSAL = (
    "OVEX trades by request-for-quote: market orders only; "
    "choose a market order (the price is fixed by the quote when it is accepted)"
)
"""The one-line refusal for a limit order on OVEX (bot creation and ``create_order``)."""

API_BASE = "https://www.ovex.io/api/v2"
"""OVEX API v2 base URL (docs.ovex.io, OVEX Public API, API_V2)."""

MAX_REMEMBERED = 10_000
"""Client order ids whose quote tokens a client remembers (oldest forgotten first)."""


def check_order_type(order_type: str) -> str | None:
    """The refusal message if OVEX cannot take ``order_type`` orders, else None.

    ``order_type``: ``"market"`` (accepted: None) or ``"limit"`` (refused: the
    one-line :data:`LIMIT_REFUSAL`). Any other type is refused with the same message.
    Pure: no I/O.
    """
    return None if order_type.lower() == "market" else LIMIT_REFUSAL


class QuoteExpired(ccxt.InvalidOrder):  # type: ignore[misc]
    """OVEX refused to accept a quote because it had expired: nothing was traded."""


@dataclass(slots=True)
class _Attempt:
    """What this client sent for one client order id: enough to find its trade later."""

    market_id: str
    side: str
    amount: str  # base currency, as sent
    tokens: list[str] = field(default_factory=list)
    requested_ms: int | None = None  # server time of the first quote, ms since epoch


class Ovex(ccxt_async.Exchange):  # type: ignore[misc]
    """OVEX (ovex.io) as a ccxt async exchange: RFQ market orders, balances, markets, trade history.

    Unified methods: ``fetch_markets``, ``fetch_balance``, ``fetch_ticker`` (from
    two quotes), ``create_order`` (market only: quote, then accept),
    ``fetch_order``, ``fetch_closed_orders``, ``fetch_my_trades``. Amounts are base
    currency; prices are quote currency per unit of base. See the module doc for
    sources and assumptions.
    """

    def describe(self) -> Any:
        """ccxt's exchange description, extended with OVEX's facts (see the module doc)."""
        return self.deep_extend(
            super().describe(),
            {
                "id": "ovex",
                "name": "OVEX",
                "countries": ["ZA"],
                "version": "v2",
                "rateLimit": 100,  # 100 requests / 10 s (docs.ovex.io, global rate limit)
                "pro": False,
                "certified": False,
                "has": {
                    "CORS": None,
                    "spot": True,
                    "margin": False,
                    "swap": False,
                    "future": False,
                    "option": False,
                    "cancelOrder": False,
                    "createOrder": True,
                    "createMarketOrder": True,
                    "createLimitOrder": False,
                    "fetchBalance": True,
                    "fetchClosedOrders": True,
                    "fetchMarkets": True,
                    "fetchMyTrades": True,
                    "fetchOpenOrders": False,
                    "fetchOrder": True,
                    "fetchOrderBook": False,
                    "fetchTicker": True,
                    "fetchTickers": False,
                    "fetchTradingFees": False,
                    "sandbox": False,
                },
                "urls": {
                    "logo": "https://www.ovex.io/favicon.ico",
                    "api": {"public": API_BASE, "private": API_BASE},
                    "www": "https://www.ovex.io",
                    "doc": ["https://docs.ovex.io/"],
                },
                "api": {
                    "public": {"get": {"markets": 1, "currencies": 1}},
                    "private": {
                        "get": {"accounts": 1, "rfq/get_quote": 1, "rfq/trades": 1},
                        "post": {"rfq/accept_quote": 1},
                    },
                },
                "requiredCredentials": {"apiKey": True, "secret": False},
                "precisionMode": TICK_SIZE,
                "options": {
                    "requoteOnExpiry": 1,  # new quotes requested after an expired one
                    "tickerAmount": "1",  # base amount quoted by fetch_ticker
                    "tradesPageLimit": 100,
                    "tradesMaxPages": 10,
                },
                "httpExceptions": {
                    "400": ccxt.BadRequest,
                    "401": ccxt.AuthenticationError,
                    "403": ccxt.PermissionDenied,
                    "404": ccxt.BadRequest,
                    "405": ccxt.BadRequest,
                    "408": ccxt.RequestTimeout,
                    "409": ccxt.BadRequest,
                    "410": ccxt.BadRequest,
                    "418": ccxt.DDoSProtection,
                    "422": ccxt.BadRequest,
                    "429": ccxt.RateLimitExceeded,
                    "500": ccxt.ExchangeNotAvailable,
                    "501": ccxt.ExchangeNotAvailable,
                    "502": ccxt.ExchangeNotAvailable,
                    "503": ccxt.ExchangeNotAvailable,
                    "504": ccxt.RequestTimeout,
                    "520": ccxt.ExchangeNotAvailable,
                    "521": ccxt.ExchangeNotAvailable,
                    "522": ccxt.ExchangeNotAvailable,
                    "525": ccxt.ExchangeNotAvailable,
                    "530": ccxt.ExchangeNotAvailable,
                },
                "exceptions": {
                    "exact": {
                        "quote_expired": QuoteExpired,
                        "insufficient_balance": ccxt.InsufficientFunds,
                        "insufficient_funds": ccxt.InsufficientFunds,
                        "invalid_market": ccxt.BadSymbol,
                        "invalid_amount": ccxt.InvalidOrder,
                        "invalid_quote": ccxt.InvalidOrder,
                        "unauthorized": ccxt.AuthenticationError,
                        "forbidden": ccxt.PermissionDenied,
                    },
                    "broad": {
                        "expired": QuoteExpired,
                        "insufficient": ccxt.InsufficientFunds,
                        "KYC": ccxt.PermissionDenied,
                    },
                },
            },
        )

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config or {})
        self._attempts: dict[str, _Attempt] = {}

    # ----------------------------------------------------------------- transport

    def sign(
        self,
        path: str,
        api: Any = "public",
        method: str = "GET",
        params: Any = None,
        headers: Any = None,
        body: Any = None,
    ) -> dict[str, Any]:
        """URL, headers and body for one call: ``<api base>/<path>``, bearer auth when a key is set.

        GET parameters go in the query string; POST parameters as a JSON body.
        Private calls without an API key raise ccxt's AuthenticationError.
        """
        section = api[0] if isinstance(api, list) else api
        params = params or {}
        url = self.urls["api"][section] + "/" + path
        request_headers: dict[str, str] = {}
        if section == "private":
            self.check_required_credentials()
        if self.apiKey:  # public calls too: markets depend on the key's jurisdiction
            request_headers["Authorization"] = "Bearer " + self.apiKey
        request_body = None
        if method == "GET":
            if params:
                url += "?" + self.urlencode(params)
        else:
            request_headers["Content-Type"] = "application/json"
            request_body = self.json(params)
        return {"url": url, "method": method, "body": request_body, "headers": request_headers}

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
        """Raise the ccxt error for an OVEX error body or status; None when the response is usable.

        ``{"error", "error_code"}`` bodies map through ``exceptions`` (exact code,
        then broad message), else by status: 400/404/422 BadRequest, 401
        AuthenticationError, 403 PermissionDenied, 429 RateLimitExceeded, 5xx
        ExchangeNotAvailable (504: RequestTimeout). A 2xx body that is not JSON
        raises BadResponse (for ``create_order``: outcome unknown, look it up).
        """
        feedback = f"{self.id} {method} {url} {code} {body[:200] if body else ''}"
        if isinstance(response, dict) and response.get("error") is not None:
            error = response.get("error")
            message = error if isinstance(error, str) else self.json(error)
            error_code = self.safe_string(response, "error_code")
            if error_code is not None:
                self.throw_exactly_matched_exception(self.exceptions["exact"], error_code, feedback)
            self.throw_broadly_matched_exception(self.exceptions["broad"], message, feedback)
            status_class = self.httpExceptions.get(str(code))
            if status_class is not None:
                raise status_class(feedback)
            raise ccxt.ExchangeError(feedback)
        if code >= 400:
            status_class = self.httpExceptions.get(str(code))
            if status_class is None:
                status_class = ccxt.ExchangeNotAvailable if code >= 500 else ccxt.BadRequest
            raise status_class(feedback)
        if response is None:
            raise ccxt.BadResponse(f"{feedback}: the response is not JSON")

    async def _call(self, api: str, method: str, path: str, params: dict[str, Any] | None = None) -> Any:
        return await self.request(path, [api], method, params or {})

    # ------------------------------------------------------------------ markets

    async def fetch_markets(self, params: dict[str, Any] | None = None) -> list[Any]:
        """Every OVEX market as a ccxt spot market (``GET /markets``, docs.ovex.io).

        ``active`` is OVEX's ``rfq_enabled``; precision is a tick size
        (``10**-base_precision`` for amounts, ``10**-quote_precision`` for prices).
        Fees are inside the quoted price, so ``taker``/``maker`` are None.
        """
        response = await self._call("public", "GET", "markets", params)
        if not isinstance(response, list):
            raise ccxt.BadResponse(f"{self.id} fetch_markets: expected a list")
        return [self._parse_market(m) for m in response]

    def _parse_market(self, m: dict[str, Any]) -> Any:
        base_id = self.safe_string_lower(m, "base_currency")
        quote_id = self.safe_string_lower(m, "quote_currency")
        base = self.safe_currency_code(base_id.upper() if base_id else None)
        quote = self.safe_currency_code(quote_id.upper() if quote_id else None)
        return self.safe_market_structure(
            {
                "id": self.safe_string(m, "id"),
                "lowercaseId": self.safe_string(m, "id"),
                "symbol": f"{base}/{quote}",
                "base": base,
                "quote": quote,
                "baseId": base_id,
                "quoteId": quote_id,
                "type": "spot",
                "spot": True,
                "margin": False,
                "swap": False,
                "future": False,
                "option": False,
                "contract": False,
                "active": self.safe_bool(m, "rfq_enabled", True),
                "taker": None,
                "maker": None,
                "precision": {
                    "amount": self.parse_number(self.parse_precision(self.safe_string(m, "base_precision"))),
                    "price": self.parse_number(self.parse_precision(self.safe_string(m, "quote_precision"))),
                },
                "limits": {
                    "amount": {"min": None, "max": None},
                    "price": {"min": None, "max": None},
                    "cost": {"min": None, "max": None},
                    "leverage": {"min": None, "max": None},
                },
                "created": None,
                "info": m,
            }
        )

    # ------------------------------------------------------------------ balance

    async def fetch_balance(self, params: dict[str, Any] | None = None) -> Any:
        """Balances per currency (``GET /accounts``): free = ``balance``, used = ``locked``.

        Amounts are in each currency's own units. Raises AuthenticationError
        without a (valid) bearer key.
        """
        response = await self._call("private", "GET", "accounts", params)
        if not isinstance(response, list):
            raise ccxt.BadResponse(f"{self.id} fetch_balance: expected a list")
        result: dict[str, Any] = {"info": response}
        for account in response:
            currency_id = self.safe_string(account, "currency")
            if currency_id is None:
                continue
            code = self.safe_currency_code(currency_id.upper())
            entry = self.account()
            entry["free"] = self.safe_string(account, "balance")
            entry["used"] = self.safe_string(account, "locked")
            result[code] = entry
        return self.safe_balance(result)

    # ------------------------------------------------------------------- quotes

    async def request_quote(self, symbol: str, side: str, amount: Any) -> dict[str, Any]:
        """A firm quote for ``amount`` (base currency) of ``symbol`` on ``side`` (``GET /rfq/get_quote``).

        Buy quotes fix ``to_amount`` (base received), sell quotes ``from_amount``
        (base given), so the base amount is exact and the quote amount carries
        the price. Returns OVEX's quote dict (``quote_token``, ``rate``,
        ``requested_at``/``expires_at`` in seconds since the epoch, ...).
        """
        await self.load_markets()
        market = self.market(symbol)
        side = side.lower()
        if side not in ("buy", "sell"):
            raise ccxt.InvalidOrder(f"{self.id} side must be 'buy' or 'sell', got {side!r}")
        request: dict[str, Any] = {"market": market["id"], "side": side}
        request["to_amount" if side == "buy" else "from_amount"] = self.amount_to_precision(symbol, amount)
        response = await self._call("private" if self.apiKey else "public", "GET", "rfq/get_quote", request)
        if not isinstance(response, dict):
            raise ccxt.BadResponse(f"{self.id} get_quote: expected an object")
        return response

    async def fetch_ticker(self, symbol: str, params: dict[str, Any] | None = None) -> Any:
        """Ask and bid from a buy and a sell quote for ``params['amount']`` (default ``options['tickerAmount']``).

        Quotes have no side effects; the prices are all-inclusive (fee and spread
        inside), for that size. ``last`` is the mid. Timestamp: the quote's
        ``requested_at`` (server time).
        """
        params = params or {}
        amount = params.get("amount", self.options["tickerAmount"])
        buy = await self.request_quote(symbol, "buy", amount)
        sell = await self.request_quote(symbol, "sell", amount)
        ask = self._quote_price(buy, self.market(symbol))
        bid = self._quote_price(sell, self.market(symbol))
        mid = str((ask + bid) / 2) if ask is not None and bid is not None else None
        timestamp = self._seconds_to_ms(buy.get("requested_at"))
        return self.safe_ticker(
            {
                "symbol": symbol,
                "timestamp": timestamp,
                "datetime": self.iso8601(timestamp) if timestamp is not None else None,
                "ask": str(ask) if ask is not None else None,
                "bid": str(bid) if bid is not None else None,
                "last": mid,
                "close": mid,
                "info": {"buy": buy, "sell": sell},
            }
        )

    # ------------------------------------------------------------------- orders

    async def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: float,
        price: float | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """A market order of ``amount`` (base currency): request a quote, then accept it.

        If OVEX reports the quote expired before acceptance (or it is already past
        its time to live here), a new quote is requested and accepted, once
        (``options['requoteOnExpiry']``). The order comes back ``closed`` with
        ``filled`` = amount, ``average`` = the quoted rate (quote currency per
        base), ``cost`` = the quote-currency amount and a fee of 0 (inside the
        price). ``params['clientOrderId']`` is not sent (OVEX documents no such
        field) but kept in the order, and remembered for :meth:`fetch_order`.

        Raises InvalidOrder for ``type`` 'limit' (:data:`LIMIT_REFUSAL`),
        QuoteExpired (an InvalidOrder: nothing traded) when the new quote expires
        too, InsufficientFunds, BadRequest, AuthenticationError; a NetworkError or
        BadResponse from ``accept_quote`` means the outcome is unknown: look the
        order up with :meth:`fetch_order` before trying again.
        """
        refusal = check_order_type(type)
        if refusal is not None:
            raise ccxt.InvalidOrder(refusal)
        params = dict(params or {})
        client_order_id = params.pop("clientOrderId", None)
        await self.load_markets()
        market = self.market(symbol)
        if Decimal(str(amount)) <= 0:
            raise ccxt.InvalidOrder(f"{self.id} create_order: amount must be above 0")
        amount_str = self.amount_to_precision(symbol, amount)
        attempt = _Attempt(market_id=market["id"], side=side.lower(), amount=amount_str)
        if client_order_id is not None:
            self._attempts[str(client_order_id)] = attempt
            while len(self._attempts) > MAX_REMEMBERED:
                del self._attempts[next(iter(self._attempts))]
        requotes = int(self.options.get("requoteOnExpiry", 1))
        while True:
            quote = await self.request_quote(symbol, side, amount_str)
            received = time.monotonic()
            token = self.safe_string(quote, "quote_token")
            if token is None:
                message = self.safe_string(quote, "message", "no quote_token in the quote")
                raise ccxt.AuthenticationError(f"{self.id} get_quote: {message}")
            attempt.tokens.append(token)
            if attempt.requested_ms is None:
                attempt.requested_ms = self._seconds_to_ms(quote.get("requested_at"))
            try:
                if self._expired_locally(quote, received):
                    raise QuoteExpired(f"{self.id} quote expired before it could be accepted")
                trade = await self._call("private", "POST", "rfq/accept_quote", {"quote_token": token})
            except QuoteExpired:
                if requotes <= 0:
                    raise
                requotes -= 1
                continue
            if not isinstance(trade, dict):
                raise ccxt.BadResponse(f"{self.id} accept_quote: expected an object")
            merged = {**quote, **trade}
            merged.setdefault("quote_token", token)
            return self._parse_rfq_order(merged, market, client_order_id)

    def _expired_locally(self, quote: dict[str, Any], received: float) -> bool:
        """True if the quote's time to live (``expires_at - requested_at``) has passed since we received it."""
        requested = self.safe_string(quote, "requested_at")
        expires = self.safe_string(quote, "expires_at")
        if requested is None or expires is None:
            return False
        ttl_s = float(Decimal(expires) - Decimal(requested))
        return time.monotonic() - received >= ttl_s

    async def fetch_order(
        self, id: str | None, symbol: str | None = None, params: dict[str, Any] | None = None
    ) -> Any:
        """The order (an RFQ trade) with trade ``id``, or for ``params['clientOrderId']``.

        Reads ``GET /rfq/trades`` newest first, up to ``options['tradesMaxPages']``
        pages of ``options['tradesPageLimit']``. By client order id: the trade
        whose ``quote_token`` is one this client accepted for it; else the oldest
        trade on the same market, side and amount at or after the first quote's
        time. After a restart (the id is not remembered) pass ``side``, ``amount``
        (base) and ``since`` (ms, server time) in ``params``. Limits: OVEX keeps
        no client order id, so two identical orders in the same window cannot be
        told apart after a restart. Raises OrderNotFound if no trade matches (once
        the quote has expired that means the order was not executed).
        """
        params = dict(params or {})
        client_order_id = params.pop("clientOrderId", None)
        await self.load_markets()
        market = self.market(symbol) if symbol is not None else None
        if id is None and client_order_id is None:
            raise ccxt.ArgumentsRequired(f"{self.id} fetch_order needs an id or params['clientOrderId']")
        attempt = self._attempts.get(str(client_order_id)) if client_order_id is not None else None
        if id is None and attempt is None:
            if market is None or "side" not in params or "amount" not in params:
                raise ccxt.OrderNotFound(
                    f"{self.id} client order id {client_order_id} is not known to this client; "
                    "pass symbol and params side, amount and since to match the trade"
                )
            attempt = _Attempt(
                market_id=market["id"],
                side=str(params["side"]).lower(),
                amount=self.amount_to_precision(market["symbol"], params["amount"]),
                requested_ms=self.safe_integer(params, "since"),
            )
        trades = await self._rfq_trades(since=attempt.requested_ms if attempt else None)
        found = None
        if id is not None:
            found = next((t for t in trades if self.safe_string(t, "id") == str(id)), None)
        elif attempt is not None:
            found = self._match_attempt(trades, attempt)
        if found is None:
            raise ccxt.OrderNotFound(f"{self.id} no RFQ trade for order {id or client_order_id}")
        trade_market = self._market_of(found) or market
        return self._parse_rfq_order(found, trade_market, client_order_id)

    def _match_attempt(self, trades: list[dict[str, Any]], attempt: _Attempt) -> dict[str, Any] | None:
        by_token = [t for t in trades if self.safe_string(t, "quote_token") in attempt.tokens]
        if by_token:
            return by_token[0]
        candidates = []
        for t in trades:
            if attempt.tokens and self.safe_string(t, "quote_token") is not None:
                continue  # another quote's trade: ours would carry one of our tokens
            if (
                self.safe_string(t, "market") != attempt.market_id
                or self.safe_string(t, "side") != attempt.side
            ):
                continue
            base_amount, _ = self._amounts(t)
            if base_amount is None or base_amount != Decimal(attempt.amount):
                continue
            ts = self.parse8601(self.safe_string(t, "created_at"))
            if attempt.requested_ms is not None and (ts is None or ts < attempt.requested_ms):
                continue
            candidates.append((ts or 0, t))
        return min(candidates, key=lambda c: c[0])[1] if candidates else None

    async def fetch_closed_orders(
        self,
        symbol: str | None = None,
        since: int | None = None,
        limit: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> list[Any]:
        """Every RFQ trade as a closed market order (``GET /rfq/trades``), oldest first; see :meth:`fetch_my_trades`."""
        await self.load_markets()
        market = self.market(symbol) if symbol is not None else None
        rows = await self._rfq_trades(market["id"] if market else None, since)
        orders = [self._parse_rfq_order(t, self._market_of(t) or market, None) for t in reversed(rows)]
        orders.sort(key=lambda o: o["timestamp"] or 0)
        return self.filter_by_since_limit(orders, since, limit)  # type: ignore[no-any-return]

    async def fetch_my_trades(
        self,
        symbol: str | None = None,
        since: int | None = None,
        limit: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> list[Any]:
        """This account's RFQ trades (``GET /rfq/trades``), oldest first.

        ``since``: ms since epoch (server time), filtered here (OVEX's
        ``timestamp`` filter means "before"). Reads newest first, paging with
        ``to`` (trade id), at most ``options['tradesMaxPages']`` pages; the market
        filter is applied here (none is documented). Fee 0: inside the price.
        """
        await self.load_markets()
        market = self.market(symbol) if symbol is not None else None
        rows = await self._rfq_trades(market["id"] if market else None, since)
        trades = [self._parse_rfq_trade(t, self._market_of(t) or market) for t in reversed(rows)]
        trades.sort(key=lambda t: t["timestamp"] or 0)
        return self.filter_by_since_limit(trades, since, limit)  # type: ignore[no-any-return]

    async def _rfq_trades(
        self, market_id: str | None = None, since: int | None = None
    ) -> list[dict[str, Any]]:
        """RFQ trades newest first, paged by trade id, stopping at ``since`` (ms) or the page cap."""
        page_limit = int(self.options["tradesPageLimit"])
        out: list[dict[str, Any]] = []
        to_id: str | None = None
        for _ in range(int(self.options["tradesMaxPages"])):
            request: dict[str, Any] = {"limit": page_limit, "order_by": "desc"}
            if to_id is not None:
                request["to"] = to_id
            page = await self._call("private", "GET", "rfq/trades", request)
            if not isinstance(page, list):
                raise ccxt.BadResponse(f"{self.id} rfq/trades: expected a list")
            out.extend(page)
            oldest = page[-1] if page else None
            if len(page) < page_limit or oldest is None:
                break
            oldest_ts = self.parse8601(self.safe_string(oldest, "created_at"))
            if since is not None and oldest_ts is not None and oldest_ts < since:
                break
            to_id = self.safe_string(oldest, "id")
        if market_id is not None:
            out = [t for t in out if self.safe_string(t, "market") == market_id]
        return out

    # ------------------------------------------------------------------ parsing

    def _market_of(self, row: dict[str, Any]) -> Any:
        market_id = self.safe_string(row, "market")
        if market_id is None or self.markets_by_id is None or market_id not in self.markets_by_id:
            return None
        return self.safe_market(market_id)

    def _amounts(self, row: dict[str, Any]) -> tuple[Decimal | None, Decimal | None]:
        """(base amount, quote amount) of a quote or trade, from its side."""
        from_amount = self.safe_string(row, "from_amount")
        to_amount = self.safe_string(row, "to_amount")
        if from_amount is None or to_amount is None:
            return None, None
        if self.safe_string(row, "side") == "buy":
            return Decimal(to_amount), Decimal(from_amount)
        return Decimal(from_amount), Decimal(to_amount)

    def _quote_price(self, row: dict[str, Any], market: Any) -> Decimal | None:
        """Quote currency per unit of base: OVEX's ``rate``, else quote amount / base amount."""
        rate = self.safe_string(row, "rate")
        if rate is not None and Decimal(rate) > 0:
            return Decimal(rate)
        base_amount, quote_amount = self._amounts(row)
        if base_amount and quote_amount is not None:
            return quote_amount / base_amount
        return None

    def _seconds_to_ms(self, value: Any) -> int | None:
        if value is None:
            return None
        return int(Decimal(str(value)) * 1000)

    def _row_timestamp(self, row: dict[str, Any]) -> int | None:
        created = self.safe_string(row, "created_at")
        if created is not None:
            parsed = self.parse8601(created)
            if parsed is not None:
                return int(parsed)
        return self._seconds_to_ms(row.get("requested_at"))

    def _parse_rfq_order(self, row: dict[str, Any], market: Any, client_order_id: Any) -> Any:
        base_amount, quote_amount = self._amounts(row)
        price = self._quote_price(row, market)
        timestamp = self._row_timestamp(row)
        symbol = market["symbol"] if market is not None else None
        state = self.safe_string(row, "state", "done")
        status = {"done": "closed", "completed": "closed", "filled": "closed", "failed": "rejected"}.get(
            state or "done", "closed"
        )
        return self.safe_order(
            {
                "id": self.safe_string(row, "id"),
                "clientOrderId": client_order_id,
                "timestamp": timestamp,
                "datetime": self.iso8601(timestamp) if timestamp is not None else None,
                "lastTradeTimestamp": timestamp,
                "symbol": symbol,
                "type": "market",
                "timeInForce": "IOC",
                "postOnly": False,
                "side": self.safe_string(row, "side"),
                "price": str(price) if price is not None else None,
                "average": str(price) if price is not None else None,
                "amount": str(base_amount) if base_amount is not None else None,
                "filled": str(base_amount) if base_amount is not None else None,
                "remaining": "0",
                "cost": str(quote_amount) if quote_amount is not None else None,
                "status": status,
                "fee": {
                    "cost": self.parse_number("0"),
                    "currency": market["quote"] if market is not None else None,
                },
                "trades": [],
                "info": row,
            },
            market,
        )

    def _parse_rfq_trade(self, row: dict[str, Any], market: Any) -> Any:
        base_amount, quote_amount = self._amounts(row)
        price = self._quote_price(row, market)
        timestamp = self._row_timestamp(row)
        return self.safe_trade(
            {
                "id": self.safe_string(row, "id"),
                "order": self.safe_string(row, "id"),
                "timestamp": timestamp,
                "datetime": self.iso8601(timestamp) if timestamp is not None else None,
                "symbol": market["symbol"] if market is not None else None,
                "type": "market",
                "side": self.safe_string(row, "side"),
                "takerOrMaker": "taker",
                "price": str(price) if price is not None else None,
                "amount": str(base_amount) if base_amount is not None else None,
                "cost": str(quote_amount) if quote_amount is not None else None,
                "fee": {
                    "cost": self.parse_number("0"),
                    "currency": market["quote"] if market is not None else None,
                },
                "info": row,
            },
            market,
        )
