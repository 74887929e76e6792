"""A loopback OVEX API v2 server (the RFQ subset ``amarktai_tui.exchanges.adapters.ovex`` uses) on ``loopback.core``.

Real ccxt (our ``Ovex`` adapter) talks to it over HTTP on 127.0.0.1: point a
client at it with ``make_client("ovex", {"bearer_key": key}, api_url=server.url)``.

Routes (docs.ovex.io "OVEX Public API", API_V2; parameters as the ovex-py
client documents them; see the adapter's module doc for what is assumed):

- ``GET /api/v2/markets`` (public): ``id``, ``name``, ``base_currency``,
  ``quote_currency``, ``base_precision``, ``quote_precision``, ``rfq_enabled``,
  ``indicative_pricing``, as OVEX lists them;
- ``GET /api/v2/rfq/get_quote?market&side&from_amount|to_amount``: a quote for
  ``quote_ttl_ms`` of the simulated clock (``requested_at``/``expires_at`` in
  seconds); without an Authorization header the quote has no ``quote_token``
  and a ``message`` (as OVEX answers anonymous callers);
- ``POST /api/v2/rfq/accept_quote`` (``quote_token`` in a JSON body, a form or
  the query): places a market order in the ``core.Book`` at the quoted rate and
  returns the RFQ trade; a quote is accepted at most once, and strictly before
  ``expires_at``;
- ``GET /api/v2/rfq/trades?limit&order_by&timestamp&from&to`` (``timestamp``
  seconds: trades before it; ``from``/``to``: trade ids after/before);
- ``GET /api/v2/accounts``: ``[{currency, balance, locked}]``.

Private routes need ``Authorization: Bearer <api_key>`` (else 401). Errors are
``{"error": <text>, "error_code": <code>}`` (the shape ovex-py reads), status
400 for ``invalid_market``, ``invalid_params``, ``invalid_amount``,
``invalid_quote``, ``quote_expired``, ``insufficient_balance`` (codes assumed:
OVEX publishes none we could find).

Prices: the real 5m candles of ``shared/data/binance`` on ``core.Book``'s
simulated clock. ``btczar`` is BTC/USDT x 18 (a fixed USDT/ZAR rate, not a real
rand series: the data set has no rand book); ``btcusdt`` and ``ethusdt`` are
the USDT files as they are. A quote is all-inclusive like OVEX's: the rate is the
candle price (``Book.price``) plus ``spread`` (a fraction, default 0.002) for a
buy, minus it for a sell, rounded to 1e-8; the Book charges no fee. Amounts:
base as requested (or quote / rate, rounded down to 1e-8), quote = base x rate
rounded to 1e-8, exactly what the balances move by.

``quote_ttl_ms`` (default 10,000, as in a recorded OVEX quote) runs on the
simulated clock: move it with ``book.set_time`` or ``POST /_ctl/time``;
``stall_quotes(ms, count)`` advances it by ``ms`` right after each of the next
``count`` quotes (a client slower than the quote's life, deterministically).

Run as a separate process::

    python -m loopback.ovex --port 0 --start-ms MS --balance ZAR=1000000

prints ``LISTENING http://127.0.0.1:PORT`` and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web

from loopback.core import (
    Q8,
    Book,
    Faults,
    LoopbackServer,
    SimError,
    SimOrder,
    control_routes,
    fault_middleware,
    process_parser,
    q8,
    serve_until_signal,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ZAR_PER_USDT = Decimal(18)
"""The fixed rate ``btczar`` is priced at: BTC/USDT x 18."""
API = "/api/v2"


@dataclass(frozen=True)
class Market:
    """One OVEX market as the loopback serves it."""

    id: str
    base: str  # upper case, as the Book keeps assets
    quote: str
    source: str  # data file stem under shared/data/binance
    scale: Decimal
    base_precision: int
    quote_precision: int


MARKETS = {
    m.id: m
    for m in (
        Market("btczar", "BTC", "ZAR", "BTC_USDT", ZAR_PER_USDT, 8, 2),
        Market("btcusdt", "BTC", "USDT", "BTC_USDT", Decimal(1), 8, 6),
        Market("ethusdt", "ETH", "USDT", "ETH_USDT", Decimal(1), 8, 6),
    )
}
LONG_NAMES = {"BTC": "Bitcoin", "ETH": "Ether", "ZAR": "South African Rands", "USDT": "Tether"}


@cache
def _raw(source: str) -> list[list[Any]]:
    return json.loads((DATA / "binance" / f"{source}-5m.json").read_text())  # type: ignore[no-any-return]


class _ScaledRow:
    """One freqtrade row with its prices (indexes 1-4) times ``scale``, computed when read."""

    __slots__ = ("_row", "_scale")

    def __init__(self, row: list[Any], scale: Decimal) -> None:
        self._row, self._scale = row, scale

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self._row)))]
        x = self._row[i]
        return str(Decimal(repr(x)) * self._scale) if 1 <= i <= 4 else x


class _ScaledRows(Sequence[Any]):
    """Freqtrade rows with prices scaled lazily: ``core.Book`` reads a candle only when it needs it."""

    def __init__(self, raw: list[list[Any]], scale: Decimal) -> None:
        self._raw, self._scale = raw, scale

    def __len__(self) -> int:
        return len(self._raw)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [_ScaledRow(r, self._scale) for r in self._raw[i]]
        return _ScaledRow(self._raw[i], self._scale)


def rows(market_id: str) -> Sequence[Any]:
    """Freqtrade rows ``[ts_ms, o, h, l, c, v]`` for ``market_id``, prices scaled (Decimal strings when scaled)."""
    m = MARKETS[market_id]
    raw = _raw(m.source)
    return raw if m.scale == 1 else _ScaledRows(raw, m.scale)


def num(d: Decimal | int | str) -> str:
    """A plain decimal string without trailing zeros ("0.27735707", "500000")."""
    text = format(Decimal(d).normalize(), "f")
    return "0" if text in ("-0", "") else text


def iso(ms: int) -> str:
    """ms since epoch UTC as ISO 8601 with milliseconds (``2021-01-01T00:00:00.000Z``)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def error(message: str, code: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message, "error_code": code}, status=status)


class _Reply(Exception):
    def __init__(self, message: str, code: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.code, self.status = message, code, status


class OvexBook(Book):
    """``core.Book`` filling a market order at a quoted rate instead of the candle price."""

    _at: Decimal | None = None

    def price(self, symbol: str) -> Decimal:
        return self._at if self._at is not None else super().price(symbol)

    def place_at(self, coid: str, symbol: str, side: str, qty: Decimal, rate: Decimal) -> SimOrder:
        """A market order of ``qty`` base filled at ``rate`` (funds checked at that rate)."""
        self._at = rate
        try:
            return self.place(coid, symbol, side, "market", qty, None)
        finally:
            self._at = None


@dataclass
class Quote:
    """A quote as issued: amounts in base/quote units, times in ms of the simulated clock."""

    token: str | None
    market: Market
    side: str
    base_amount: Decimal
    quote_amount: Decimal
    rate: Decimal
    requested_ms: int
    expires_ms: int
    trade_id: int | None = None

    def json(self) -> dict[str, Any]:
        buy = self.side == "buy"
        m = self.market
        out: dict[str, Any] = {
            "market": m.id,
            "side": self.side,
            "from_currency": (m.quote if buy else m.base).lower(),
            "from_amount": num(self.quote_amount if buy else self.base_amount),
            "to_currency": (m.base if buy else m.quote).lower(),
            "to_amount": num(self.base_amount if buy else self.quote_amount),
            "rate": num(self.rate),
            "rate_is_from_currency": buy,
            "requested_at": self.requested_ms / 1000,
            "expires_at": self.expires_ms / 1000,
            "is_prefunded": False,
            "sn": None,
        }
        if self.token is not None:
            out["quote_token"] = self.token
        else:
            out["message"] = "You must be authenticated and fully KYC verified to receive a quote token."
        return out


class OvexLoopback(LoopbackServer):
    """One OVEX account served on 127.0.0.1 (see the module doc).

    ``balances``: asset (upper case) -> free amount at the start (default
    1,000,000 ZAR and 100,000 USDT). ``api_key``: the bearer token accepted.
    ``quote_ttl_ms``: a quote's life on the simulated clock. ``spread``: the
    quote's markup over the candle price, a fraction. ``seed``: seeds quote
    tokens and random fault rates set over ``/_ctl/faults`` without one.
    Attributes: ``book`` (``OvexBook``), ``faults`` (core.Faults), ``quotes``
    (token -> Quote), ``requests`` ((method, path) of every request but
    ``/_ctl/*``), ``url`` once started.
    """

    def __init__(
        self,
        *,
        start_ms: int,
        balances: dict[str, Decimal] | None = None,
        api_key: str = "loopback-bearer",
        quote_ttl_ms: int = 10_000,
        spread: Decimal = Decimal("0.002"),
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.book = OvexBook(
            {m.id: (m.base, m.quote) for m in MARKETS.values()},
            {m.id: rows(m.id) for m in MARKETS.values()},  # type: ignore[misc]
            balances if balances is not None else {"ZAR": Decimal(1_000_000), "USDT": Decimal(100_000)},
            start_ms=start_ms,
            taker_fee=Decimal(0),
            maker_fee=Decimal(0),
        )
        self.faults = Faults(seed=seed)
        self.api_key = api_key
        self.quote_ttl_ms = quote_ttl_ms
        self.spread = Decimal(spread)
        self.quotes: dict[str, Quote] = {}
        self._rng = random.Random(seed)
        self._stalls: list[int] = []  # ms to advance the clock after each of the next quotes
        self._quote_of_trade: dict[int, Quote] = {}

    # -- lifecycle ---------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.record, fault_middleware(self.faults)])
        control_routes(app, self.book, self.faults)
        app.router.add_post("/_ctl/quote_stall", self._ctl_stall)
        app.router.add_get(f"{API}/markets", self._markets)
        app.router.add_get(f"{API}/rfq/get_quote", self._get_quote)
        app.router.add_post(f"{API}/rfq/accept_quote", self._private(self._accept))
        app.router.add_get(f"{API}/rfq/trades", self._private(self._trades))
        app.router.add_get(f"{API}/accounts", self._private(self._accounts))
        return app

    def stall_quotes(self, ms: int, count: int = 1) -> None:
        """Right after each of the next ``count`` quotes, move the clock ``ms`` forward."""
        self._stalls.extend([int(ms)] * count)

    # -- plumbing ----------------------------------------------------------

    def _authorised(self, request: web.Request) -> bool | None:
        """True for the right bearer token, False for a wrong one, None when there is no header."""
        header = request.headers.get("Authorization")
        if header is None:
            return None
        scheme, _, token = header.partition(" ")
        return scheme == "Bearer" and token == self.api_key

    @staticmethod
    def _unauthorised() -> web.Response:
        return error("Unauthorized: invalid or expired API key", "unauthorized", 401)

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.method != "GET" and request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if not isinstance(body, dict):
                    raise _Reply("the body must be a JSON object", "invalid_params")
                params.update(body)
            else:
                params.update(await request.post())
        return params

    def _private(
        self, fn: Callable[[dict[str, Any]], web.Response]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            if self._authorised(request) is not True:
                return self._unauthorised()
            try:
                return fn(await self._params(request))
            except _Reply as r:
                return error(r.message, r.code, r.status)
            except (InvalidOperation, ValueError, TypeError) as e:
                return error(f"invalid parameters: {e}", "invalid_params")

        return handler

    async def _ctl_stall(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            self.stall_quotes(int(body["ms"]), int(body.get("count", 1)))
        except (ValueError, KeyError, TypeError) as e:
            return web.json_response({"error": str(e)}, status=400)
        return web.json_response({"ok": True})

    # -- routes ------------------------------------------------------------
    async def _markets(self, request: web.Request) -> web.Response:
        if self._authorised(request) is False:
            return self._unauthorised()
        return web.json_response([market_json(m) for m in MARKETS.values()])

    async def _get_quote(self, request: web.Request) -> web.Response:
        authorised = self._authorised(request)
        if authorised is False:
            return self._unauthorised()
        try:
            quote = self._quote(dict(request.query), with_token=authorised is True)
        except _Reply as r:
            return error(r.message, r.code, r.status)
        except (InvalidOperation, ValueError, TypeError) as e:
            return error(f"invalid parameters: {e}", "invalid_params")
        body = quote.json()
        if self._stalls:
            self.book.set_time(self.book.now_ms + self._stalls.pop(0))
        return web.json_response(body)

    def _quote(self, params: dict[str, Any], *, with_token: bool) -> Quote:
        market = MARKETS.get(str(params.get("market", "")).lower())
        if market is None:
            raise _Reply(f"market {params.get('market')!r} is not available", "invalid_market")
        side = str(params.get("side", "buy")).lower()
        if side not in ("buy", "sell"):
            raise _Reply(f"side must be buy or sell, got {side!r}", "invalid_params")
        from_amount, to_amount = params.get("from_amount"), params.get("to_amount")
        if not from_amount and not to_amount:
            raise _Reply("specify either from_amount or to_amount", "invalid_amount")
        price = self.book.price(market.id)
        rate = q8(price * (1 + self.spread) if side == "buy" else price * (1 - self.spread))
        # from_amount wins when both are given (ovex-py: "from_amount is used for quoting")
        given, is_from = (
            (Decimal(str(from_amount)), True) if from_amount else (Decimal(str(to_amount)), False)
        )
        if given <= 0:
            raise _Reply(f"the amount must be above 0, got {given}", "invalid_amount")
        base_side = (side == "buy") != is_from  # buy: to is base; sell: from is base
        if base_side:
            base = given.quantize(Decimal(10) ** -market.base_precision, rounding=ROUND_DOWN)
        else:
            base = (given / rate).quantize(Q8, rounding=ROUND_DOWN)
        if base <= 0:
            raise _Reply(f"the amount {given} is below the market's precision", "invalid_amount")
        token = uuid.UUID(int=self._rng.getrandbits(128), version=4).hex if with_token else None
        quote = Quote(
            token=token,
            market=market,
            side=side,
            base_amount=base,
            quote_amount=q8(base * rate),
            rate=rate,
            requested_ms=self.book.now_ms,
            expires_ms=self.book.now_ms + self.quote_ttl_ms,
        )
        if token is not None:
            self.quotes[token] = quote
        return quote

    def _accept(self, params: dict[str, Any]) -> web.Response:
        token = params.get("quote_token")
        quote = self.quotes.get(str(token)) if token else None
        if quote is None:
            raise _Reply("quote_token is missing or unknown", "invalid_quote")
        if quote.trade_id is not None:
            raise _Reply("this quote has already been accepted", "invalid_quote")
        if self.book.now_ms >= quote.expires_ms:
            raise _Reply("the quote has expired: request a new one", "quote_expired")
        try:
            order = self.book.place_at(str(token), quote.market.id, quote.side, quote.base_amount, quote.rate)
        except SimError as e:
            if e.code == "insufficient_funds":
                raise _Reply(f"insufficient balance: {e.message}", "insufficient_balance") from None
            raise _Reply(e.message, "invalid_params") from None
        trade = order.trades[0]
        quote.trade_id = trade.id
        self._quote_of_trade[trade.id] = quote
        return web.json_response(self._trade_json(trade.id))

    def _trade_json(self, trade_id: int) -> dict[str, Any]:
        quote = self._quote_of_trade[trade_id]
        trade = next(t for t in self.book.trades if t.id == trade_id)
        body = quote.json()
        for key in ("requested_at", "expires_at", "is_prefunded", "sn"):
            body.pop(key, None)
        return {"id": trade_id, **body, "state": "done", "created_at": iso(trade.ts)}

    def _trades(self, params: dict[str, Any]) -> web.Response:
        ids = sorted(self._quote_of_trade)
        if params.get("timestamp"):
            before_ms = int(Decimal(str(params["timestamp"])) * 1000)
            ids = [i for i in ids if self._ts(i) < before_ms]
        if params.get("from"):
            ids = [i for i in ids if i > int(params["from"])]
        if params.get("to"):
            ids = [i for i in ids if i < int(params["to"])]
        if str(params.get("order_by", "desc")).lower() != "asc":
            ids.reverse()
        limit = int(params.get("limit", 50))
        if limit <= 0:
            raise _Reply(f"limit must be above 0, got {limit}", "invalid_params")
        return web.json_response([self._trade_json(i) for i in ids[:limit]])

    def _ts(self, trade_id: int) -> int:
        return next(t.ts for t in self.book.trades if t.id == trade_id)

    def _accounts(self, params: dict[str, Any]) -> web.Response:
        wanted = str(params["currency"]).upper() if params.get("currency") else None
        return web.json_response(
            [
                {"currency": asset.lower(), "balance": num(b.free), "locked": num(b.locked)}
                for asset, b in sorted(self.book.balances.items())
                if wanted is None or asset == wanted
            ]
        )


def market_json(m: Market) -> dict[str, Any]:
    return {
        "id": m.id,
        "name": f"{m.base}/{m.quote}",
        "base_currency": m.base.lower(),
        "quote_currency": m.quote.lower(),
        "base_precision": m.base_precision,
        "quote_precision": m.quote_precision,
        "rfq_enabled": True,
        "indicative_pricing": False,
        "base_currency_long": LONG_NAMES.get(m.base, m.base),
        "quote_currency_long": LONG_NAMES.get(m.quote, m.quote),
    }


# -- a separate process ----------------------------------------------------------


async def _main(args: argparse.Namespace) -> None:
    balances = dict(args.balance) if args.balance else None
    server = OvexLoopback(
        start_ms=args.start_ms,
        balances=balances,
        api_key=args.api_key,
        quote_ttl_ms=args.quote_ttl_ms,
        seed=args.seed,
    )
    await serve_until_signal(server, args.port)


def main(argv: list[str] | None = None) -> None:
    parser = process_parser("python -m loopback.ovex", __doc__.split("\n")[0])
    parser.add_argument("--api-key", default="loopback-bearer")
    parser.add_argument("--quote-ttl-ms", type=int, default=10_000)
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
