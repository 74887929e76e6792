"""A loopback KuCoin spot REST server (what ccxt 4.5's ``kucoin`` calls for spot) on ``loopback.core``.

Real ccxt talks to it over HTTP on 127.0.0.1: point a client at it with
``make_client("kucoin", {"api_key", "api_secret", "passphrase"}, api_url=server.url)``.
Pairs ``BTC-USDT`` and ``ETH-USDT``, priced from the real 5m candles of
``shared/data/binance`` on the simulated clock of ``core.Book``. Symbol limits
(increments, minimum sizes) are illustrative, in KuCoin's shapes.

Served (paths as ccxt builds them; KuCoin API docs, kucoin.com/docs-new):
- public: ``GET /api/v1/timestamp``, ``/api/v3/currencies``, ``/api/v2/symbols``,
  ``/api/v1/market/allTickers`` (ccxt reads the fee rates there) and
  ``/api/v1/contracts/active`` (the futures list load_markets asks for: empty);
- private, asked by ``load_markets`` with keys: ``GET /api/ua/v1/account/mode``
  (a classic account, not unified), ``/api/v3/margin/symbols`` and
  ``/api/v1/isolated/symbols`` (empty: no margin), ``/api/v1/hf/accounts/opened``
  (``true``: the account trades on KuCoin's current "HF" spot endpoints, so ccxt
  uses them; the classic ``/api/v1/orders`` ones are under "Abandoned Endpoints");
- ``GET /api/v1/accounts`` (balances, account type ``trade_hf``),
  ``GET /api/v1/trade-fees?symbols=`` (fetch_trading_fee);
- orders (docs-new "Spot Trading > Orders"): ``POST /api/v1/hf/orders``
  (``clientOid`` optional, letters, digits, ``_`` and ``-``, up to 40 characters;
  answers ``{orderId, clientOid}``), ``GET /api/v1/hf/orders/{orderId}`` and
  ``/api/v1/hf/orders/client-order/{clientOid}`` (``symbol`` required; a closed
  order is found for 3 x 24 h after it closed, as the docs' "Get HF order
  details" say, older ones "do not exist"), ``DELETE`` of the same two paths,
  ``GET /api/v1/hf/orders/active`` (a list) and ``/api/v1/hf/orders/done``
  (``{lastId, items}``, newest first, ``limit`` default 20, max 100),
  ``GET /api/v1/hf/fills`` ("Get HF Filled List": ``{lastId, items}``, newest
  first, ``limit`` default and max 100, ``orderId`` filter).

Answers use KuCoin's envelope: ``{"code": "200000", "data": ...}``; errors
``{"code": "<code>", "msg": "<text>"}`` with KuCoin's codes (kucoin.com/docs
"Errors Code > Spot Errors Code"; docs-new "Error Code" gateway table): 200004
"Balance insufficient!" (HTTP 200: KuCoin answers business errors in the body),
400100 for a bad parameter, 404000 for an unknown path (HTTP 404), 429000 for a
429 fault. KuCoin's docs give no text for an unknown order; a lookup answers
400100 "order not exist." and a cancel 400100
"order_not_exist_or_not_allow_to_cancel", texts KuCoin has sent (both are in
ccxt's kucoin error table; ccxt issue 24154). A ``clientOid`` of an *open* order
is refused with 400100 "validation.createOrder.clientOidDuplicated" (as reported
in JKorf/Kucoin.Net issue 120); KuCoin enforces the uniqueness on active orders
only (Kucoin/kucoin-api-docs issue 468), so an id is reusable once its order closed.

Private calls are checked as kucoin.com/docs-new/authentication describes:
headers ``KC-API-KEY``, ``KC-API-TIMESTAMP`` (ms, within 5 s of the wall clock:
ccxt signs with the wall clock), ``KC-API-KEY-VERSION`` 2 (or 3),
``KC-API-PASSPHRASE`` = base64(HMAC-SHA256(secret, passphrase)) and
``KC-API-SIGN`` = base64(HMAC-SHA256(secret, timestamp + METHOD + path with its
query, not URL-encoded + body)). Failures answer HTTP 401 (as KuCoin's gateway does) with 400001 (a header
missing), 400002 (timestamp), 400003 (key), 400004 (passphrase), 400005
(signature), 400009 (key version).

Fees: 0.1% maker and taker (LV0), charged in the quote currency (``feeCurrency``
of the symbols). Fill ids: ``tradeId`` is the sim trade id (ccxt's trade id),
the item ``id`` a separate sequence, so a mix-up shows.

Run as a separate process::

    python -m loopback.kucoin --port 0 --start-ms MS --balance USDT=100000

prints ``LISTENING http://127.0.0.1:PORT`` and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

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


@dataclass(frozen=True)
class Symbol:
    """One KuCoin spot symbol as ``GET /api/v2/symbols`` lists it (limits illustrative)."""

    symbol: str
    base: str
    quote: str
    source: str  # data file stem under shared/data/binance
    base_min: Decimal
    base_increment: Decimal
    price_increment: Decimal
    min_funds: Decimal


SYMBOLS = {
    s.symbol: s
    for s in (
        Symbol("BTC-USDT", "BTC", "USDT", "BTC_USDT", Decimal("0.00001"), Decimal("1e-8"), Decimal("0.1"),
               Decimal("0.1")),
        Symbol("ETH-USDT", "ETH", "USDT", "ETH_USDT", Decimal("0.0001"), Decimal("1e-7"), Decimal("0.01"),
               Decimal("0.1")),
    )
}  # fmt: skip
BASE_MAX = Decimal(10_000_000_000)
CLIENT_OID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
TIMESTAMP_WINDOW_MS = 5_000
ORDER_ID_HEAD = "66b033cd"  # 8 hex digits, then 16 of the sim order id: KuCoin's 24-hex order ids
ACCOUNT_ID_HEAD = "5bd6e928"  # the same shape for account ids
FILL_ITEM_BASE = 2_678_765_000  # the fills' own ``id`` sequence, apart from trade ids
DONE_LOOKBACK_MS = 3 * 24 * 3_600_000  # single-order lookups see closed orders this far back

GATEWAY = {  # code -> message (docs-new "Error Code", gateway table; 400001: the classic docs' text)
    "400001": (
        "Any of KC-API-KEY, KC-API-SIGN, KC-API-TIMESTAMP, KC-API-PASSPHRASE is missing in your request header"
    ),
    "400002": "Invalid KC-API-TIMESTAMP.",
    "400003": "KC-API-KEY does not exist.",
    "400004": "Invalid KC-API-PASSPHRASE.",
    "400005": "Invalid KC-API-SIGN.",
    "400009": "Invalid KC-API-KEY-VERSION.",
}
ERRORS = {  # SimError code -> (KuCoin code, msg)
    "insufficient_funds": ("200004", "Balance insufficient!"),
    "duplicate_order": ("400100", "validation.createOrder.clientOidDuplicated"),
    "unknown_symbol": ("400100", "Unsupported trading pair."),
    "invalid_quantity": ("400100", "Order size increment invalid."),
    "invalid_price": ("400100", "Price increment invalid."),
    "invalid_side": ("400100", "Parameter Error: side"),
    "invalid_type": ("400100", "Parameter Error: type"),
    "order_not_open": ("400100", "order_not_exist_or_not_allow_to_cancel"),
}
NOT_FOUND = ("400100", "order not exist.")


@cache
def rows(symbol: str) -> list[list[float]]:
    """Freqtrade rows ``[ts_ms, o, h, l, c, v]`` of ``symbol``'s 5m candles (read once per process)."""
    path = DATA / "binance" / f"{SYMBOLS[symbol].source}-5m.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def num(d: Decimal | int | None) -> str:
    """KuCoin's number format: a plain decimal string without trailing zeros ("0.01", "43639.89")."""
    if d is None:
        return "0"
    text = format(Decimal(d).normalize(), "f")
    return "0" if text in ("-0", "") else text


def order_id(n: int) -> str:
    """A sim order id as a KuCoin-style 24-hex order id (and back with ``sim_id``)."""
    return f"{ORDER_ID_HEAD}{n:016x}"


def sim_id(text: str) -> int | None:
    if len(text) != 24 or not text.startswith(ORDER_ID_HEAD):
        return None
    try:
        return int(text[8:], 16)
    except ValueError:
        return None


def b64_hmac(secret: str, text: str) -> str:
    """base64(HMAC-SHA256(secret, text)): KuCoin's signature and v2 passphrase."""
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()).decode()


def ok(data: Any) -> web.Response:
    return web.json_response({"code": "200000", "data": data})


def error(code: str, msg: str, status: int = 200) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)


class _Reply(Exception):
    """Answer the request with this KuCoin error."""

    def __init__(self, code: str, msg: str, status: int = 200) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


Private = Callable[[web.Request, dict[str, Any]], web.Response]


class KucoinLoopback(LoopbackServer):
    """One KuCoin spot (HF) account served on 127.0.0.1 (see the module doc).

    ``balances``: asset -> free amount at the start (default 100,000 USDT).
    ``split_trades``: trades per fill. ``seed``: seed of random fault rates set
    over ``/_ctl/faults`` without one. Attributes: ``book`` (core.Book),
    ``faults`` (core.Faults), ``requests`` ((method, path) of every request but
    ``/_ctl/*``), ``url`` once started.
    """

    def __init__(
        self,
        *,
        start_ms: int,
        balances: dict[str, Decimal] | None = None,
        api_key: str = "loopback-key",
        secret: str = "loopback-secret",
        passphrase: str = "loopback-passphrase",
        split_trades: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.book = Book(
            {s: (m.base, m.quote) for s, m in SYMBOLS.items()},
            {s: rows(s) for s in SYMBOLS},
            balances if balances is not None else {"USDT": Decimal(100_000)},
            start_ms=start_ms,
            split_trades=split_trades,
        )
        self.faults = Faults(seed=seed)
        self.api_key = api_key
        self.secret = secret
        self.passphrase = passphrase

    @property
    def credentials(self) -> dict[str, str]:
        """The vault fields ``make_client("kucoin", ...)`` takes for this account."""
        return {"api_key": self.api_key, "api_secret": self.secret, "passphrase": self.passphrase}

    # -- lifecycle ---------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[self.record, _url_not_found, fault_middleware(self.faults, _fault_response)]
        )
        control_routes(app, self.book, self.faults)
        public: list[tuple[str, Callable[[], web.Response]]] = [
            ("/api/v1/timestamp", lambda: ok(self.book.now_ms)),
            ("/api/v3/currencies", _currencies),
            ("/api/v2/symbols", _symbols),
            ("/api/v1/market/allTickers", self._all_tickers),
            ("/api/v1/contracts/active", lambda: ok([])),
        ]
        for path, fn in public:
            app.router.add_get(path, _public(fn))
        private: list[tuple[str, str, Private]] = [
            ("GET", "/api/ua/v1/account/mode", lambda r, p: ok({"selfAccountMode": "CLASSIC"})),
            ("GET", "/api/v3/margin/symbols", lambda r, p: ok({"timestamp": self.book.now_ms, "items": []})),
            ("GET", "/api/v1/isolated/symbols", lambda r, p: ok([])),
            ("GET", "/api/v1/hf/accounts/opened", lambda r, p: ok(True)),
            ("GET", "/api/v1/accounts", self._accounts),
            ("GET", "/api/v1/trade-fees", self._trade_fees),
            ("POST", "/api/v1/hf/orders", self._new_order),
            ("GET", "/api/v1/hf/orders/active", self._active),
            ("GET", "/api/v1/hf/orders/done", self._done),
            ("GET", "/api/v1/hf/fills", self._fills),
            ("GET", "/api/v1/hf/orders/client-order/{clientOid}", self._get_order),
            ("DELETE", "/api/v1/hf/orders/client-order/{clientOid}", self._cancel),
            ("GET", "/api/v1/hf/orders/{orderId}", self._get_order),
            ("DELETE", "/api/v1/hf/orders/{orderId}", self._cancel),
        ]
        for method, path, handler in private:
            app.router.add_route(method, path, self._private(handler))
        return app

    # -- plumbing ----------------------------------------------------------
    def _private(self, fn: Private) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            body = await request.text()
            refused = self._authenticate(request, body)
            if refused is not None:
                return refused
            params: dict[str, Any] = dict(request.query)
            try:
                if body:
                    loaded = json.loads(body)
                    if not isinstance(loaded, dict):
                        raise _Reply("400100", "Parameter Error: the body must be a JSON object")
                    params.update(loaded)
                return fn(request, params)
            except _Reply as e:
                return error(e.code, e.msg, e.status)
            except SimError as e:
                return error(*ERRORS.get(e.code, ("400100", e.message)))
            except (InvalidOperation, ValueError, TypeError) as e:
                return error("400100", f"Parameter Error: {e}")

        return handler

    def _authenticate(self, request: web.Request, body: str) -> web.Response | None:
        """None when the request is signed as the module doc says, else the gateway's refusal."""
        h = request.headers
        key, ts, sign, phrase = (h.get(f"KC-API-{n}", "") for n in ("KEY", "TIMESTAMP", "SIGN", "PASSPHRASE"))
        if not (key and ts and sign and phrase):
            return error("400001", GATEWAY["400001"], 401)
        if h.get("KC-API-KEY-VERSION") not in ("2", "3"):
            return error("400009", GATEWAY["400009"], 401)
        if not ts.isdigit() or abs(int(ts) - int(time.time() * 1000)) > TIMESTAMP_WINDOW_MS:
            return error("400002", GATEWAY["400002"], 401)
        if not hmac.compare_digest(key, self.api_key):
            return error("400003", GATEWAY["400003"], 401)
        if not hmac.compare_digest(phrase, b64_hmac(self.secret, self.passphrase)):
            return error("400004", GATEWAY["400004"], 401)
        prehash = ts + request.method.upper() + unquote(request.raw_path) + body
        if not hmac.compare_digest(sign, b64_hmac(self.secret, prehash)):
            return error("400005", GATEWAY["400005"], 401)
        return None

    def _symbol(self, params: dict[str, Any]) -> Symbol:
        name = params.get("symbol")
        if not name:
            raise _Reply("400100", "Parameter Error: symbol is required")
        if name not in SYMBOLS:
            raise SimError("unknown_symbol", str(name))
        return SYMBOLS[name]

    # -- public --------------------------------------------------------------
    def _all_tickers(self) -> web.Response:
        tickers = []
        for s, m in SYMBOLS.items():
            price = self.book.price(s)
            tickers.append(
                {
                    "symbol": s,
                    "symbolName": s,
                    "buy": num(price - m.price_increment),
                    "bestBidSize": "10",
                    "sell": num(price + m.price_increment),
                    "bestAskSize": "10",
                    "last": num(price),
                    "takerFeeRate": num(self.book.taker_fee),
                    "makerFeeRate": num(self.book.maker_fee),
                    "takerCoefficient": "1",
                    "makerCoefficient": "1",
                }
            )
        return ok({"time": self.book.now_ms, "ticker": tickers})

    # -- account -------------------------------------------------------------
    def _accounts(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        wanted, currency = params.get("type"), params.get("currency")
        if wanted not in (None, "trade_hf"):
            return ok([])  # the funds sit in the HF trading account
        rows_ = [
            {
                "id": f"{ACCOUNT_ID_HEAD}{i:016x}",
                "currency": asset,
                "type": "trade_hf",
                "balance": num(b.total),
                "available": num(b.free),
                "holds": num(b.locked),
            }
            for i, (asset, b) in enumerate(self.book.balances.items(), start=1)
            if currency in (None, asset)
        ]
        return ok(rows_)

    def _trade_fees(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        names = [n for n in str(params.get("symbols", "")).split(",") if n]
        if not names:
            raise _Reply("400100", "Parameter Error: symbols is required")
        for n in names:
            if n not in SYMBOLS:
                raise SimError("unknown_symbol", n)
        fees = {"takerFeeRate": num(self.book.taker_fee), "makerFeeRate": num(self.book.maker_fee)}
        return ok([{"symbol": n, **fees} for n in names])

    # -- orders --------------------------------------------------------------
    def _new_order(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        m = self._symbol(params)
        side, type_ = params.get("side"), params.get("type")
        if side not in ("buy", "sell"):
            raise SimError("invalid_side", str(side))
        if type_ not in ("limit", "market"):
            raise SimError("invalid_type", str(type_))
        coid = params.get("clientOid")
        if coid is None:
            coid = f"loopback-{len(self.book.orders) + 1}"
        elif not isinstance(coid, str) or not CLIENT_OID.match(coid):
            raise _Reply("400100", "Parameter Error: clientOid")
        if params.get("postOnly") or params.get("hidden") or params.get("iceberg"):
            raise _Reply("400100", "Parameter Error: postOnly, hidden and iceberg are not served here")
        if params.get("timeInForce", "GTC") != "GTC":
            raise _Reply("400100", "Parameter Error: timeInForce (GTC only here)")
        price: Decimal | None = None
        if type_ == "limit":
            price = Decimal(str(params.get("price") or "0"))
            if price <= 0 or price % m.price_increment:
                raise SimError("invalid_price", str(price))
        if params.get("size") is not None:
            qty = Decimal(str(params["size"]))
        elif type_ == "market" and params.get("funds") is not None:
            funds = Decimal(str(params["funds"]))
            qty = funds / self.book.price(m.symbol) // m.base_increment * m.base_increment
        else:
            raise _Reply("400100", "Parameter Error: size is required")
        if qty % m.base_increment:
            raise _Reply("400100", "Order size increment invalid.")
        if qty < m.base_min or qty > BASE_MAX:
            raise _Reply("400100", "Order size below the minimum requirement.")
        if qty * (price or self.book.price(m.symbol)) < m.min_funds:
            raise _Reply("400100", "Order funds below the minimum requirement.")
        order = self.book.place(coid, m.symbol, side, type_, qty, price)
        return ok({"orderId": order_id(order.id), "clientOid": order.client_order_id})

    def _find(self, request: web.Request, params: dict[str, Any]) -> SimOrder | None:
        """The order named by the path (``orderId`` or ``clientOid``) in ``symbol``; None if unknown."""
        m = self._symbol(params)
        coid = request.match_info.get("clientOid")
        if coid is not None:
            mine = [o for o in self.book.orders if o.client_order_id == coid and o.symbol == m.symbol]
            opened = [o for o in mine if o.status == "open"]
            found = opened[0] if opened else (mine[-1] if mine else None)
        else:
            n = sim_id(request.match_info["orderId"])
            found = self.book.find(order_id=n) if n is not None else None
        return found if found is not None and found.symbol == m.symbol else None

    def _get_order(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        order = self._find(request, params)
        if order is None or (
            order.status != "open" and order.updated_ts < self.book.now_ms - DONE_LOOKBACK_MS
        ):
            return error(*NOT_FOUND)
        return ok(order_body(order))

    def _cancel(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        order = self._find(request, params)
        if order is None or order.status != "open":
            return error(*ERRORS["order_not_open"])
        self.book.cancel(order)
        if "clientOid" in request.match_info:
            return ok({"clientOid": order.client_order_id})
        return ok({"orderId": order_id(order.id)})

    def _active(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        m = self._symbol(params)
        return ok([order_body(o) for o in self.book.open_orders(m.symbol)])

    def _done(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        m = self._symbol(params)
        done = [o for o in self.book.orders if o.symbol == m.symbol and o.status != "open"]
        done = _filtered(done, params, lambda o: o.id, lambda o: o.updated_ts)
        page = _page(done, params, default=20)
        return ok({"lastId": page[-1].id if page else 0, "items": [order_body(o) for o in page]})

    def _fills(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        m = self._symbol(params)
        trades = [t for t in self.book.trades if t.symbol == m.symbol]
        if params.get("orderId"):  # "if orderId is specified, please ignore the other query parameters"
            n = sim_id(str(params["orderId"]))
            trades = [t for t in trades if t.order_id == n]
        else:
            trades = _filtered(trades, params, lambda t: FILL_ITEM_BASE + t.id, lambda t: t.ts)
        page = _page(trades, params, default=100)
        types = {o.id: o.type for o in self.book.orders}
        items = [fill_body(t, types[t.order_id]) for t in page]
        return ok({"lastId": FILL_ITEM_BASE + page[-1].id if page else 0, "items": items})


def _filtered(
    items: list[Any], params: dict[str, Any], seq: Callable[[Any], int], ts: Callable[[Any], int]
) -> list[Any]:
    """The ``side``, ``startAt``/``endAt`` (ms) and ``lastId`` (older than) filters of a listing."""
    out = items
    if params.get("side"):
        out = [x for x in out if x.side == params["side"]]
    if params.get("startAt"):
        out = [x for x in out if ts(x) >= int(params["startAt"])]
    if params.get("endAt"):
        out = [x for x in out if ts(x) <= int(params["endAt"])]
    if params.get("lastId"):
        out = [x for x in out if seq(x) < int(params["lastId"])]
    return out


def _page(items: list[Any], params: dict[str, Any], *, default: int) -> list[Any]:
    """The newest ``limit`` (default ``default``, max 100) of ``items`` (oldest first), newest first."""
    limit = min(int(params.get("limit") or default), 100)
    if limit < 1:
        raise _Reply("400100", "Parameter Error: limit")
    return list(reversed(items))[:limit]


def order_body(o: SimOrder) -> dict[str, Any]:
    """An HF order as ``GET /api/v1/hf/orders/{orderId}`` answers it (docs-new "Get Order By OrderId")."""
    active = o.status == "open"
    remain = o.qty - o.filled if active else Decimal(0)
    cancelled = o.qty - o.filled if o.status == "cancelled" else Decimal(0)
    return {
        "id": order_id(o.id),
        "clientOid": o.client_order_id,
        "symbol": o.symbol,
        "opType": "DEAL",
        "type": o.type,
        "side": o.side,
        "price": num(o.price),
        "size": num(o.qty),
        "funds": "0",
        "dealSize": num(o.filled),
        "dealFunds": num(o.cost),
        "remainSize": num(remain),
        "remainFunds": "0",
        "cancelledSize": num(cancelled),
        "cancelledFunds": "0",
        "fee": num(o.fee),
        "feeCurrency": SYMBOLS[o.symbol].quote,
        "stp": None,
        "timeInForce": "GTC",
        "postOnly": False,
        "hidden": False,
        "iceberg": False,
        "visibleSize": "0",
        "cancelAfter": 0,
        "channel": "API",
        "remark": None,
        "tags": None,
        "cancelExist": o.status == "cancelled",
        "createdAt": o.created_ts,
        "lastUpdatedAt": o.updated_ts,
        "tradeType": "TRADE",
        "inOrderBook": active,
        "active": active,
    }


def fill_body(t: Trade, order_type: str) -> dict[str, Any]:
    """One item of ``GET /api/v1/hf/fills`` (docs "Get HF Filled List": numeric ``id`` and ``tradeId``)."""
    return {
        "id": FILL_ITEM_BASE + t.id,
        "symbol": t.symbol,
        "tradeId": t.id,
        "orderId": order_id(t.order_id),
        "counterOrderId": order_id(0),
        "side": t.side,
        "liquidity": "maker" if t.maker else "taker",
        "forceTaker": False,
        "price": num(t.price),
        "size": num(t.qty),
        "funds": num(t.cost),
        "fee": num(t.fee),
        "feeRate": num(t.fee / t.cost) if t.cost else "0",
        "feeCurrency": t.fee_asset,
        "stop": "",
        "tradeType": "TRADE",
        "taxRate": "0",
        "tax": "0",
        "type": order_type,
        "createdAt": t.ts,
    }


def _public(fn: Callable[[], web.Response]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return fn()

    return handler


def _currencies() -> web.Response:
    names = {"BTC": ("Bitcoin", "btc"), "ETH": ("Ethereum", "eth"), "USDT": ("Tether", "eth")}
    data = [
        {
            "currency": c,
            "name": c,
            "fullName": full,
            "precision": 8,
            "confirms": None,
            "contractAddress": None,
            "isMarginEnabled": False,
            "isDebitEnabled": False,
            "chains": [
                {
                    "chainName": chain.upper(),
                    "chainId": chain,
                    "withdrawalMinSize": "0.001",
                    "depositMinSize": None,
                    "withdrawFeeRate": "0",
                    "withdrawalMinFee": "0.0005",
                    "isWithdrawEnabled": True,
                    "isDepositEnabled": True,
                    "confirms": 3,
                    "preConfirms": 1,
                    "withdrawPrecision": 8,
                    "maxWithdraw": None,
                    "maxDeposit": None,
                    "needTag": False,
                    "contractAddress": "",
                }
            ],
        }
        for c, (full, chain) in names.items()
    ]
    return ok(data)


def _symbols() -> web.Response:
    data = [
        {
            "symbol": m.symbol,
            "name": m.symbol,
            "baseCurrency": m.base,
            "quoteCurrency": m.quote,
            "feeCurrency": m.quote,
            "market": "USDS",
            "baseMinSize": num(m.base_min),
            "quoteMinSize": num(m.min_funds),
            "baseMaxSize": num(BASE_MAX),
            "quoteMaxSize": "99999999",
            "baseIncrement": num(m.base_increment),
            "quoteIncrement": "0.000001",
            "priceIncrement": num(m.price_increment),
            "priceLimitRate": "0.1",
            "minFunds": num(m.min_funds),
            "isMarginEnabled": False,
            "enableTrading": True,
            "feeCategory": 1,
            "makerFeeCoefficient": "1.00",
            "takerFeeCoefficient": "1.00",
            "st": False,
        }
        for m in SYMBOLS.values()
    ]
    return ok(data)


def _fault_response(kind: str) -> web.Response:
    if kind == "429":
        body = {"code": "429000", "msg": "Too Many Requests"}
        return web.json_response(body, status=429, headers={"Retry-After": "1"})
    return web.Response(status=503, text="Service Unavailable")


@web.middleware
async def _url_not_found(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """KuCoin's 404 body for a path it does not serve (so a missing endpoint is named in ccxt's error)."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return error("404000", f"Url Not Found: {request.method} {request.path}", 404)
    except web.HTTPMethodNotAllowed:
        return error("404000", f"Url Not Found: {request.method} {request.path}", 404)


# -- a separate process ----------------------------------------------------------


async def _main(args: argparse.Namespace) -> None:
    server = KucoinLoopback(
        start_ms=args.start_ms,
        balances=dict(args.balance) if args.balance else None,
        split_trades=args.split_trades,
        seed=args.seed,
    )
    await serve_until_signal(server, args.port)


def main(argv: list[str] | None = None) -> None:
    parser = process_parser("python -m loopback.kucoin", __doc__.split("\n")[0])
    parser.add_argument("--split-trades", type=int, default=1)
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
