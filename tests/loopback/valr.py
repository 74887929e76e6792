"""A loopback VALR REST server (the subset ``amarktai_tui.exchanges.adapters.valr`` uses) on ``loopback.core``.

Real ccxt (our ``Valr`` adapter) talks to it over HTTP on 127.0.0.1: point a
client at it with ``make_client("valr", creds, api_url=server.url)``.

Pairs: ``BTCZAR``, ``BTCUSDT``, ``ETHUSDT`` (VALR lists all three; docs.valr.com
examples use BTCZAR and BTCUSDT). Prices are the real 5m candles of
``shared/data/binance`` on the simulated clock of ``core.Book``; BTCZAR is
BTC/USDT x 18 (a fixed USDT/ZAR rate, not a real rand series: the data set has
no rand book). Pair limits (tick, decimals, min/max amounts) are illustrative.

Answers follow docs.valr.com (the "VALR API" reference) in paths, field names
and shapes: numbers are decimal strings, times ISO 8601 UTC with milliseconds,
order ids UUID strings. Private calls must carry ``X-VALR-API-KEY``,
``X-VALR-TIMESTAMP`` and ``X-VALR-SIGNATURE`` = hex HMAC-SHA512 of
``timestamp + VERB + path-with-query + body + sub-account id`` (no key: 403; a
wrong key or signature: 401; the timestamp is not compared with any clock).
Errors are ``{"code": <int>, "message": <text>}``: -21 "Unsupported Currency
Pair" and -11 "Invalid Request, ..." as VALR answers them; order lookups and
cancels of unknown orders answer 404 "Order not found" (code -1: VALR publishes
no code for it). v2 order placement that fails for a business reason
(insufficient balance, a post-only order that would match, a customerOrderId
of an open order) answers 201 ``{orderId, code, message}`` as docs.valr.com
describes; the failed order is then found by its ids with status "Failed"
(except for the duplicate id, whose lookup keeps finding the open order).

Fees follow VALR's currency rule (docs.valr.com "Place limit order"): a taker
pays in base when buying and in quote when selling, a maker in quote when
buying and in base when selling; rates: ZAR pairs maker 0.18% / taker 0.35%,
USDT pairs 0.08% / 0.10% (valr.com/en/fees, tier 1). ``core.Book`` charges
quote only, so ``ValrBook`` overrides its fill step.

Buckets (candles) are the closed ones up to the simulated now, newest first,
aggregated from the 5m data (``periodSeconds`` 300 and its multiples up to 86400).

Run as a separate process::

    python -m loopback.valr --port 0 --start-ms MS --balance ZAR=1000000

prints ``LISTENING http://127.0.0.1:PORT`` and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

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
    q8,
    q12,
    serve_until_signal,
    to_decimal,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ZAR_PER_USDT = Decimal(18)
"""The fixed rate BTCZAR is priced at: BTC/USDT x 18."""


@dataclass(frozen=True)
class Pair:
    """One VALR currency pair as the loopback serves it (limits illustrative)."""

    symbol: str
    base: str
    quote: str
    source: str  # data file stem under shared/data/binance
    scale: Decimal
    tick: Decimal
    min_base: Decimal
    max_base: Decimal
    min_quote: Decimal
    max_quote: Decimal
    maker_fee: Decimal
    taker_fee: Decimal


PAIRS = {
    p.symbol: p
    for p in (
        Pair("BTCZAR", "BTC", "ZAR", "BTC_USDT", ZAR_PER_USDT, Decimal(1), Decimal("0.0001"), Decimal(2),
             Decimal(10), Decimal(2_100_000), Decimal("0.0018"), Decimal("0.0035")),
        Pair("BTCUSDT", "BTC", "USDT", "BTC_USDT", Decimal(1), Decimal("0.01"), Decimal("0.0001"), Decimal(2),
             Decimal(1), Decimal(120_000), Decimal("0.0008"), Decimal("0.001")),
        Pair("ETHUSDT", "ETH", "USDT", "ETH_USDT", Decimal(1), Decimal("0.01"), Decimal("0.001"), Decimal(100),
             Decimal(1), Decimal(120_000), Decimal("0.0008"), Decimal("0.001")),
    )
}  # fmt: skip
BASE_DECIMALS = 8
STEP_MS = 300_000
CUSTOMER_ORDER_ID = re.compile(r"^[A-Za-z0-9-]{1,50}$")
INVALID = (-11, "Invalid Request, please check your request and try again")  # as VALR answers it
UNSUPPORTED_PAIR = (-21, "Unsupported Currency Pair")  # as VALR answers it
NOT_FOUND = (-1, "Order not found")
BUSINESS_FAILURES = {  # SimError code -> message of a v2 201 failure
    "insufficient_funds": "Insufficient Balance",
    "duplicate_order": "Non-unique customerOrderId",
}


@cache
def _raw(source: str) -> list[list[float]]:
    return json.loads((DATA / "binance" / f"{source}-5m.json").read_text())  # type: ignore[no-any-return]


@cache
def rows(symbol: str) -> list[list[float]]:
    """Freqtrade rows ``[ts_ms, o, h, l, c, v]`` of ``symbol``'s 5m candles, prices x the pair's scale.

    Scaled prices are floats rounded to 1e-8, whose shortest repr is exactly
    Decimal(price) x scale for this data (2-decimal prices; checked in the VALR tests).
    """
    pair = PAIRS[symbol]
    raw = _raw(pair.source)
    if pair.scale == 1:
        return raw
    k = float(pair.scale)
    return [[r[0], *(round(x * k, 8) for x in r[1:5]), r[5]] for r in raw]


@cache
def stamps(symbol: str) -> list[int]:
    return [int(r[0]) for r in rows(symbol)]


def closed_rows(symbol: str, now_ms: int) -> list[list[float]]:
    """The 5m rows of ``symbol`` that closed at or before ``now_ms``."""
    return rows(symbol)[: bisect.bisect_right(stamps(symbol), now_ms - STEP_MS)]


def num(d: Decimal | int | str | None) -> str:
    """VALR's number format: a plain decimal string without trailing zeros ("0.033333", "62829")."""
    if d is None:
        return "0"
    text = format(Decimal(d).normalize(), "f")
    return "0" if text in ("-0", "") else text


def iso(ms: int) -> str:
    """ms since epoch UTC as VALR's ISO 8601 (``2025-07-17T08:53:00.620Z``)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def error(code: int, message: str, status: int = 400) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


ORDER_ID_PREFIX = 0x0198_0000 << 96
TRADE_ID_PREFIX = 0x0199_0000 << 96


def order_uuid(n: int) -> str:
    """A sim order id as a VALR-style UUID string (and back with ``sim_id``)."""
    return str(uuid.UUID(int=ORDER_ID_PREFIX | n))


def trade_uuid(n: int) -> str:
    return str(uuid.UUID(int=TRADE_ID_PREFIX | n))


def sim_id(text: str) -> int | None:
    """The sim order number inside an ``order_uuid``; None for anything else."""
    try:
        value = uuid.UUID(text).int
    except ValueError:
        return None
    return value & ((1 << 96) - 1) if value >> 96 == ORDER_ID_PREFIX >> 96 else None


class ValrBook(Book):
    """``core.Book`` with VALR's fees: per-pair rates and the fee currency rule (module doc)."""

    def _fill(self, order: SimOrder, price: Decimal, *, maker: bool, ts: int) -> list[Trade]:
        pair = PAIRS[order.symbol]
        base, quote = pair.base, pair.quote
        rate = pair.maker_fee if maker else pair.taker_fee
        buy = order.side == "buy"
        in_base = buy != maker  # taker buy, maker sell
        self._unlock(order)
        made = []
        for part in self._parts(order.qty):
            cost = q8(part * price)
            fee = q12(part * rate) if in_base else q12(cost * rate)
            trade = Trade(
                id=self._next_trade_id,
                order_id=order.id,
                client_order_id=order.client_order_id,
                symbol=order.symbol,
                side=order.side,
                qty=part,
                price=price,
                fee=fee,
                fee_asset=base if in_base else quote,
                maker=maker,
                ts=ts,
            )
            self._next_trade_id += 1
            base_fee, quote_fee = (fee, Decimal(0)) if in_base else (Decimal(0), fee)
            if buy:
                self.balances[quote].free -= cost + quote_fee
                self.balances[base].free += part - base_fee
            else:
                self.balances[base].free -= part + base_fee
                self.balances[quote].free += cost - quote_fee
            order.filled += part
            order.cost += cost
            order.trades.append(trade)
            self.trades.append(trade)
            made.append(trade)
        order.status = "filled"
        order.updated_ts = ts
        return made


@dataclass
class _Failed:
    """An order VALR accepted an id for and then failed (status "Failed")."""

    uuid: str
    seq: int
    customer_id: str
    symbol: str
    side: str
    type: str
    qty: Decimal
    price: Decimal | None
    reason: str
    ts: int


class _Reply(Exception):
    """Answer the request with this error body."""

    def __init__(self, code: int, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class ValrLoopback(LoopbackServer):
    """One VALR account served on 127.0.0.1 (see the module doc).

    ``balances``: asset -> free amount at the start (default 1,000,000 ZAR and
    100,000 USDT). ``seed``: seed of random fault rates set over
    ``/_ctl/faults`` without one. ``permissions``: what the key may do, as
    ``GET /v1/account/api-keys/current`` lists it (default view and trade).
    Attributes: ``book`` (``ValrBook``), ``faults`` (core.Faults),
    ``permissions`` (a list: tests may change it), ``requests`` ((method, path)
    of every request but ``/_ctl/*``), ``url`` once started.
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
        permissions: tuple[str, ...] = ("View access", "Trade"),
    ) -> None:
        super().__init__()
        self.start_ms = start_ms
        self.permissions = list(permissions)
        self.book = ValrBook(
            {s: (p.base, p.quote) for s, p in PAIRS.items()},
            {s: rows(s) for s in PAIRS},
            balances if balances is not None else {"ZAR": Decimal(1_000_000), "USDT": Decimal(100_000)},
            start_ms=start_ms,
            # the dearest rates, for core's funds check before a fill; the fills use ValrBook's per-pair rates
            taker_fee=Decimal("0.0035"),
            maker_fee=Decimal("0.0018"),
            split_trades=split_trades,
        )
        self.faults = Faults(seed=seed)
        self.api_key = api_key
        self.secret = secret
        self._seq = 0
        self._seq_of: dict[int, int] = {}  # sim order id -> placement sequence
        self._meta: dict[int, tuple[bool, str]] = {}  # sim order id -> (postOnly, timeInForce)
        self._failed: dict[str, _Failed] = {}  # failed order uuid -> record
        self._next_failed = 1

    # -- lifecycle ---------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.record, fault_middleware(self.faults, self._fault_response)])
        control_routes(app, self.book, self.faults)
        public: list[tuple[str, Callable[[web.Request], web.Response]]] = [
            ("/v1/public/pairs", self._pairs),
            ("/v1/public/{pair}/marketsummary", self._summary),
            ("/v1/public/{pair}/orderbook", self._orderbook),
            ("/v1/public/{pair}/buckets", self._buckets),
        ]
        for path, fn in public:
            app.router.add_get(path, self._public(fn))
        private: list[tuple[str, str, Callable[[web.Request, dict[str, Any]], web.Response]]] = [
            ("GET", "/v1/account/balances", self._balances),
            ("GET", "/v1/account/api-keys/current", self._api_key_info),
            ("GET", "/v1/account/{pair}/tradehistory", self._trade_history),
            ("GET", "/v1/orders/open", self._open_orders),
            ("GET", "/v1/orders/history/summary/orderid/{orderId}", self._summary_by_id),
            ("GET", "/v1/orders/{pair}/orderid/{orderId}", self._status_by_id),
            ("GET", "/v1/orders/{pair}/customerorderid/{customerOrderId}", self._status_by_customer_id),
            ("POST", "/v2/orders/limit", self._limit_order),
            ("POST", "/v2/orders/market", self._market_order),
            ("DELETE", "/v2/orders/order", self._cancel),
        ]
        for method, path, pfn in private:
            app.router.add_route(method, path, self._private(pfn))
        return app

    # -- plumbing ----------------------------------------------------------

    @staticmethod
    def _fault_response(kind: str) -> web.Response:
        if kind == "429":  # docs.valr.com "Rate Limiting": 429 with x-valr-ratelimited: true
            headers = {"Retry-After": "1", "x-valr-ratelimited": "true"}
            return web.json_response(
                {"code": -1, "message": "Rate limit exceeded"}, status=429, headers=headers
            )
        return web.Response(status=503, text="Service Unavailable")

    def _public(
        self, fn: Callable[[web.Request], web.Response]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            try:
                return fn(request)
            except _Reply as r:
                return error(r.code, r.message, r.status)

        return handler

    def _private(
        self, fn: Callable[[web.Request, dict[str, Any]], web.Response]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            key = request.headers.get("X-VALR-API-KEY")
            if not key:
                return error(-11268, "API key header missing: X-VALR-API-KEY", 403)
            timestamp = request.headers.get("X-VALR-TIMESTAMP", "")
            signature = request.headers.get("X-VALR-SIGNATURE", "")
            body = (await request.read()).decode()
            subaccount = request.headers.get("X-VALR-SUB-ACCOUNT-ID", "")
            message = f"{timestamp}{request.method.upper()}{request.raw_path}{body}{subaccount}"
            expected = hmac.new(self.secret.encode(), message.encode(), hashlib.sha512).hexdigest()
            if (
                key != self.api_key
                or not timestamp.isdigit()
                or not hmac.compare_digest(expected, signature.lower())
            ):
                return error(-1, "Unauthorized: invalid API key or request signature", 401)
            try:
                params: dict[str, Any] = json.loads(body) if body else {}
                if not isinstance(params, dict):
                    raise _Reply(*INVALID)
                return fn(request, params)
            except _Reply as r:
                return error(r.code, r.message, r.status)
            except SimError as e:
                code, msg = UNSUPPORTED_PAIR if e.code == "unknown_symbol" else INVALID
                return error(code, msg, 400)
            except (InvalidOperation, ValueError, TypeError):
                return error(*INVALID)

        return handler

    @staticmethod
    def _pair(name: str | None) -> Pair:
        pair = PAIRS.get(name or "")
        if pair is None:
            raise _Reply(*UNSUPPORTED_PAIR)
        return pair

    # -- public ------------------------------------------------------------
    def _pairs(self, request: web.Request) -> web.Response:
        return web.json_response([pair_json(p) for p in PAIRS.values()])

    def _quote(self, pair: Pair) -> tuple[Decimal, Decimal]:
        """(bid, ask): one tick either side of the simulated price."""
        price = self.book.price(pair.symbol)
        return price - pair.tick, price + pair.tick

    def _summary(self, request: web.Request) -> web.Response:
        pair = self._pair(request.match_info["pair"])
        now = self.book.now_ms
        day = [r for r in closed_rows(pair.symbol, now)[-288:] if r[0] >= now - 86_400_000]
        d = [[to_decimal(x) for x in r[1:6]] for r in day]
        last = self.book.price(pair.symbol)
        prev = d[0][0] if d else last
        bid, ask = self._quote(pair)
        body = {
            "currencyPair": pair.symbol,
            "askPrice": num(ask),
            "bidPrice": num(bid),
            "lastTradedPrice": num(last),
            "previousClosePrice": num(prev),
            "baseVolume": num(sum((r[4] for r in d), Decimal(0))),
            "quoteVolume": num(q8(sum((r[4] * r[3] for r in d), Decimal(0)))),
            "highPrice": num(max((r[1] for r in d), default=last)),
            "lowPrice": num(min((r[2] for r in d), default=last)),
            "created": iso(now),
            "changeFromPrevious": num(((last - prev) / prev * 100).quantize(Decimal("0.01")))
            if prev
            else "0",
        }
        return web.json_response(body)

    def _orderbook(self, request: web.Request) -> web.Response:
        pair = self._pair(request.match_info["pair"])
        bid, ask = self._quote(pair)

        def level(side: str, price: Decimal) -> dict[str, Any]:
            return {
                "side": side,
                "quantity": "1",
                "price": num(price),
                "currencyPair": pair.symbol,
                "orderCount": 1,
            }

        body = {
            "Asks": [level("sell", ask)],
            "Bids": [level("buy", bid)],
            "LastChange": iso(self.book.now_ms),
            "SequenceNumber": self.book.now_ms // 1000,
        }
        return web.json_response(body)

    def _buckets(self, request: web.Request) -> web.Response:
        pair = self._pair(request.match_info["pair"])
        q = request.query
        period = int(q.get("periodSeconds", "60"))
        if period < 300 or period > 86_400 or period % 300:
            raise _Reply(*INVALID)  # the data is 5m: 60 cannot be served
        step = period * 1000
        now = self.book.now_ms
        end_ms = int(q["endTime"]) * 1000 if "endTime" in q else now
        start_ms = int(q["startTime"]) * 1000 if "startTime" in q else end_ms - 300 * step
        if (end_ms - start_ms) // step > 300:
            raise _Reply(*INVALID)  # "A maximum of 300 buckets can be returned per call"
        limit = min(int(q.get("limit", "300")), 300)
        groups: dict[int, list[list[Any]]] = {}
        lo = bisect.bisect_left(stamps(pair.symbol), start_ms - start_ms % step)
        for r in closed_rows(pair.symbol, now)[lo:]:
            if r[0] > end_ms:
                break
            groups.setdefault(int(r[0]) - int(r[0]) % step, []).append(r)
        out = []
        for ts in sorted(groups, reverse=True):
            if ts < start_ms or ts + step > now:  # only closed buckets, none from the simulated future
                continue
            g = [[to_decimal(x) for x in r[1:6]] for r in groups[ts]]
            volume = sum((x[4] for x in g), Decimal(0))
            out.append(
                {
                    "currencyPairSymbol": pair.symbol,
                    "bucketPeriodInSeconds": period,
                    "startTime": iso(ts)[:-5] + "Z",
                    "open": num(g[0][0]),
                    "high": num(max(x[1] for x in g)),
                    "low": num(min(x[2] for x in g)),
                    "close": num(g[-1][3]),
                    "volume": num(volume),
                    "quoteVolume": num(q8(sum((x[4] * x[3] for x in g), Decimal(0)))),
                }
            )
        return web.json_response(out[:limit])

    # -- account -------------------------------------------------------------
    def _balances(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        stamp = iso(self.book.now_ms)
        body = [
            {
                "currency": a,
                "available": num(b.free),
                "reserved": num(b.locked),
                "total": num(b.total),
                "updatedAt": stamp,
            }
            for a, b in self.book.balances.items()
        ]
        return web.json_response(body)

    def _api_key_info(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        """docs.valr.com "Get current API key info": label, permissions ("View access", "Trade",
        "Withdraw", ...) and when it was added; the IP and withdrawal-address lists are left out
        (VALR returns them only when the key has them)."""
        body = {"label": "loopback key", "permissions": self.permissions, "addedAt": iso(self.start_ms)}
        return web.json_response(body)

    def _trade_history(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        pair = self._pair(request.match_info["pair"])
        skip = int(request.query.get("skip", "0"))
        limit = min(int(request.query.get("limit", "100")), 100)
        trades = [t for t in reversed(self.book.trades) if t.symbol == pair.symbol][skip : skip + limit]
        return web.json_response([trade_json(t) for t in trades])

    # -- orders --------------------------------------------------------------
    def _open_orders(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        return web.json_response([self._open_json(o) for o in self.book.open_orders()])

    def _find(
        self, symbol: str | None, *, order_id: str | None = None, customer_id: str | None = None
    ) -> Any:
        """The newest order (SimOrder or _Failed) with that id on ``symbol``; raises 404 if none."""
        candidates: list[tuple[int, Any]] = []
        if order_id is not None:
            n = sim_id(order_id)
            found = self.book.find(order_id=n) if n is not None else None
            if found is not None:
                candidates.append((self._seq_of.get(found.id, 0), found))
            if order_id in self._failed:
                candidates.append((self._failed[order_id].seq, self._failed[order_id]))
        else:
            found = self.book.find(client_order_id=customer_id)
            if found is not None:
                candidates.append((self._seq_of.get(found.id, 0), found))
            candidates += [(f.seq, f) for f in self._failed.values() if f.customer_id == customer_id]
        candidates = [c for c in candidates if symbol is None or c[1].symbol == symbol]
        if not candidates:
            raise _Reply(*NOT_FOUND, status=404)
        return max(candidates, key=lambda c: c[0])[1]

    def _status_by_id(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        pair = self._pair(request.match_info["pair"])
        return web.json_response(
            self._status_json(self._find(pair.symbol, order_id=request.match_info["orderId"]))
        )

    def _status_by_customer_id(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        pair = self._pair(request.match_info["pair"])
        order = self._find(pair.symbol, customer_id=request.match_info["customerOrderId"])
        return web.json_response(self._status_json(order))

    def _summary_by_id(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        order = self._find(None, order_id=request.match_info["orderId"])
        if isinstance(order, SimOrder) and order.status == "open":
            raise _Reply(*INVALID)  # docs.valr.com: only completed orders have a summary
        body = self._status_json(order)
        if isinstance(order, SimOrder):
            body |= {
                "averagePrice": num(order.average or 0),
                "total": num(order.cost),
                "totalExecutedQuantity": num(order.filled),
                "totalFee": num(order.fee),
                "feeCurrency": order.trades[0].fee_asset if order.trades else PAIRS[order.symbol].quote,
            }
        else:
            body |= {"averagePrice": "0", "total": "0", "totalExecutedQuantity": "0", "totalFee": "0",
                     "feeCurrency": PAIRS[order.symbol].quote}  # fmt: skip
        return web.json_response(body)

    def _limit_order(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        pair = self._pair(params.get("pair"))
        side, customer_id = self._side_and_id(params)
        qty = self._quantity(pair, params.get("quantity"))
        price = Decimal(str(params.get("price")))
        if price <= 0 or price % pair.tick:
            raise _Reply(*INVALID)
        tif = str(params.get("timeInForce", "GTC")).upper()
        if tif != "GTC":
            raise _Reply(-11, f"timeInForce {tif} is not supported by the loopback")
        post_only = params.get("postOnly") in (True, "true")
        now = self.book.price(pair.symbol)
        if post_only and (now <= price if side == "buy" else now >= price):
            return self._failure(
                customer_id, pair, side, "limit", qty, price, "Post only cancelled as it would have matched"
            )
        return self._place(customer_id, pair, side, "limit", qty, price, post_only, tif)

    def _market_order(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        pair = self._pair(params.get("pair"))
        side, customer_id = self._side_and_id(params)
        if ("baseAmount" in params) == ("quoteAmount" in params):
            raise _Reply(*INVALID)  # exactly one of them (docs.valr.com)
        if "baseAmount" in params:
            qty = self._quantity(pair, params["baseAmount"])
        else:
            spend = Decimal(str(params["quoteAmount"]))
            qty = self._quantity(pair, spend / self.book.price(pair.symbol))
        tif = str(params.get("timeInForce", "IOC")).upper()
        return self._place(customer_id, pair, side, "market", qty, None, False, tif)

    def _side_and_id(self, params: dict[str, Any]) -> tuple[str, str]:
        side = str(params.get("side", "")).lower()
        if side not in ("buy", "sell"):
            raise _Reply(*INVALID)
        customer_id = params.get("customerOrderId")
        if customer_id is None:
            self._seq += 1
            return side, f"loopback-{self._seq}"
        if not isinstance(customer_id, str) or not CUSTOMER_ORDER_ID.match(customer_id):
            raise _Reply(*INVALID)
        return side, customer_id

    @staticmethod
    def _quantity(pair: Pair, value: Any) -> Decimal:
        """Base amount truncated to the pair's decimals (docs.valr.com), within its limits."""
        qty = Decimal(str(value)).quantize(Decimal(1).scaleb(-BASE_DECIMALS), rounding=ROUND_DOWN)
        if not pair.min_base <= qty <= pair.max_base:
            raise _Reply(*INVALID)
        return qty

    def _place(
        self, customer_id: str, pair: Pair, side: str, type_: str, qty: Decimal, price: Decimal | None,
        post_only: bool, tif: str,
    ) -> web.Response:  # fmt: skip
        notional = qty * (price if price is not None else self.book.price(pair.symbol))
        if not pair.min_quote <= notional <= pair.max_quote:
            raise _Reply(*INVALID)
        try:
            order = self.book.place(customer_id, pair.symbol, side, type_, qty, price)
        except SimError as e:
            message = BUSINESS_FAILURES.get(e.code)
            if message is None:
                raise
            return self._failure(
                customer_id, pair, side, type_, qty, price, message, record=e.code != "duplicate_order"
            )
        self._seq += 1
        self._seq_of[order.id] = self._seq
        self._meta[order.id] = (post_only, tif)
        return web.json_response({"id": order_uuid(order.id)}, status=201)

    def _failure(
        self, customer_id: str, pair: Pair, side: str, type_: str, qty: Decimal, price: Decimal | None, message: str,
        *, record: bool = True,
    ) -> web.Response:  # fmt: skip
        """A v2 placement failure: 201 ``{orderId, code, message}``; the failed order kept for lookups."""
        self._seq += 1
        failed_id = str(uuid.UUID(int=(0x0197_0000 << 96) | self._next_failed))
        self._next_failed += 1
        if record:
            self._failed[failed_id] = _Failed(
                failed_id,
                self._seq,
                customer_id,
                pair.symbol,
                side,
                type_,
                qty,
                price,
                message,
                self.book.now_ms,
            )
        return web.json_response({"orderId": failed_id, "code": INVALID[0], "message": message}, status=201)

    def _cancel(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        pair = self._pair(params.get("pair"))
        if ("orderId" in params) == ("customerOrderId" in params):
            raise _Reply(*INVALID)  # one of them, not both (docs.valr.com)
        if "orderId" in params:
            order = self._find(pair.symbol, order_id=str(params["orderId"]))
        else:
            open_ = [
                o
                for o in self.book.open_orders(pair.symbol)
                if o.client_order_id == params["customerOrderId"]
            ]
            order = open_[0] if open_ else None
        if not isinstance(order, SimOrder) or order.status != "open":
            raise _Reply(*NOT_FOUND, status=404)
        self.book.cancel(order)
        return web.json_response({"id": order_uuid(order.id)})

    # -- bodies ----------------------------------------------------------------
    def _kind(self, order: SimOrder) -> str:
        post_only, _ = self._meta.get(order.id, (False, "GTC"))
        return "post-only limit" if post_only else order.type

    def _status_json(self, order: SimOrder | _Failed) -> dict[str, Any]:
        """``GET /v1/orders/{pair}/orderid/{id}`` for ``order``."""
        if isinstance(order, _Failed):
            return {
                "orderId": order.uuid,
                "orderStatusType": "Failed",
                "currencyPair": order.symbol,
                "originalPrice": num(order.price or 0),
                "remainingQuantity": num(order.qty),
                "originalQuantity": num(order.qty),
                "orderSide": order.side,
                "orderType": order.type,
                "failedReason": order.reason,
                "orderUpdatedAt": iso(order.ts),
                "orderCreatedAt": iso(order.ts),
                "customerOrderId": order.customer_id,
                "timeInForce": "GTC" if order.type == "limit" else "IOC",
            }
        status = {"filled": "Filled", "cancelled": "Cancelled"}.get(order.status)
        if status is None:
            status = "Partially Filled" if order.filled else "Placed"
        return {
            "orderId": order_uuid(order.id),
            "orderStatusType": status,
            "currencyPair": order.symbol,
            "originalPrice": num(order.price or 0),
            "remainingQuantity": num(0 if order.status == "filled" else order.qty - order.filled),
            "originalQuantity": num(order.qty),
            "orderSide": order.side,
            "orderType": self._kind(order),
            "failedReason": "",
            "orderUpdatedAt": iso(order.updated_ts),
            "orderCreatedAt": iso(order.created_ts),
            "customerOrderId": order.client_order_id,
            "timeInForce": self._meta.get(order.id, (False, "GTC"))[1],
        }

    def _open_json(self, o: SimOrder) -> dict[str, Any]:
        """One row of ``GET /v1/orders/open``."""
        return {
            "orderId": order_uuid(o.id),
            "side": o.side,
            "remainingQuantity": num(o.qty - o.filled),
            "price": num(o.price),
            "currencyPair": o.symbol,
            "createdAt": iso(o.created_ts),
            "originalQuantity": num(o.qty),
            "filledPercentage": f"{o.filled / o.qty * 100:.2f}",
            "customerOrderId": o.client_order_id,
            "updatedAt": iso(o.updated_ts),
            "status": "Partially Filled" if o.filled else "Placed",
            "type": self._kind(o),
            "timeInForce": self._meta.get(o.id, (False, "GTC"))[1],
        }


def pair_json(p: Pair) -> dict[str, Any]:
    """One row of ``GET /v1/public/pairs``."""
    return {
        "symbol": p.symbol,
        "baseCurrency": p.base,
        "quoteCurrency": p.quote,
        "shortName": f"{p.base}/{p.quote}",
        "active": True,
        "minBaseAmount": num(p.min_base),
        "maxBaseAmount": num(p.max_base),
        "minQuoteAmount": num(p.min_quote),
        "maxQuoteAmount": num(p.max_quote),
        "tickSize": num(p.tick),
        "baseDecimalPlaces": str(BASE_DECIMALS),
        "marginTradingAllowed": False,
        "currencyPairType": "SPOT",
    }


def trade_json(t: Trade) -> dict[str, Any]:
    """One row of ``GET /v1/account/{pair}/tradehistory``."""
    return {
        "price": num(t.price),
        "quantity": num(t.qty),
        "currencyPair": t.symbol,
        "tradedAt": iso(t.ts),
        "side": t.side,
        "sequenceId": t.id,
        "id": trade_uuid(t.id),
        "orderId": order_uuid(t.order_id),
        "fee": num(t.fee),
        "feeCurrency": t.fee_asset,
    }


# -- a separate process ----------------------------------------------------------


async def _main(args: argparse.Namespace) -> None:
    balances = dict(args.balance) if args.balance else None
    server = ValrLoopback(
        start_ms=args.start_ms, balances=balances, split_trades=args.split_trades, seed=args.seed
    )
    await serve_until_signal(server, args.port)


def main(argv: list[str] | None = None) -> None:
    parser = process_parser("python -m loopback.valr", __doc__.split("\n")[0])
    parser.add_argument("--split-trades", type=int, default=1)
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
