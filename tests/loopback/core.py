"""Exchange-agnostic simulation behind the loopback exchange servers.

``Book`` is one account on a simulated spot exchange: balances (free and locked
per asset), orders and trades, on a clock that only moves when the test moves it
(``set_time``). Prices come from real candles (freqtrade JSON rows
``[ts_ms, open, high, low, close, volume]``), with the same fill rule as the
app's paper broker (``amarktai_tui/exchanges/paper.py``, without its slippage):

- the price "now" is the open of the candle containing ``now_ms``, so with
  ``now_ms`` = the close of candle t a market order fills at t+1's open;
- a market order fills at once at that price, as taker;
- a limit order that crosses that price at once (buy: price <= limit; sell:
  price >= limit) fills at once at the price, as taker; else it rests with its
  funds locked, and each candle that closes while the clock moves forward fills
  it: at the candle's open as taker if the candle opened through the limit
  (only candles that opened after the order was placed), else at the limit as
  maker if the candle's range reached it (buy: low <= limit; sell: high >= limit);
- fees are charged in the quote currency: rate x notional.

Every fill is cut into ``split_trades`` trades (equal parts of 1e-8 base units,
the last takes the remainder), so clients see multi-trade orders. Quantities,
prices and notionals are rounded to 1e-8, fees to 1e-12 (ROUND_HALF_EVEN).

``Faults`` injects transport failures (503, 429, held responses, truncated JSON,
processed-but-lost responses) and ``fault_middleware`` applies them in front of
an aiohttp app; ``control_routes`` adds the ``/_ctl/*`` routes tests and other
processes use to move the clock, inject faults and read the state back.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import contextlib
import fnmatch
import random
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any, Self

from aiohttp import web
from aiohttp.typedefs import Middleware

Q8 = Decimal("1e-8")
Q12 = Decimal("1e-12")
FAULT_KINDS = ("5xx", "429", "timeout", "malformed", "lost")


def q8(x: Decimal) -> Decimal:
    """``x`` rounded to 1e-8 (quantities, prices, notionals), half-even."""
    return x.quantize(Q8, rounding=ROUND_HALF_EVEN)


def q12(x: Decimal) -> Decimal:
    """``x`` rounded to 1e-12 (fees), half-even."""
    return x.quantize(Q12, rounding=ROUND_HALF_EVEN)


def to_decimal(x: float | int | str) -> Decimal:
    """A number read from a candle file as the Decimal of its shortest repr (19695.87 stays exact)."""
    return Decimal(x) if isinstance(x, str) else Decimal(repr(x))


class SimError(Exception):
    """A request the simulated exchange refuses.

    ``code`` is exchange-agnostic (``insufficient_funds``, ``invalid_quantity``,
    ``invalid_price``, ``invalid_side``, ``invalid_type``, ``unknown_symbol``,
    ``duplicate_order``, ``order_not_open``); each HTTP layer maps it to its own
    exchange's error body. ``http_status`` is the status most exchanges use.
    """

    def __init__(self, code: str, message: str, http_status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status


@dataclass
class Trade:
    """One fill. ``qty`` base units, ``price`` quote per base, ``fee`` in ``fee_asset`` (the quote)."""

    id: int
    order_id: int
    client_order_id: str
    symbol: str
    side: str  # 'buy' | 'sell'
    qty: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str
    maker: bool
    ts: int  # ms since epoch UTC, simulated clock

    @property
    def cost(self) -> Decimal:
        """Notional in quote: qty x price rounded to 1e-8 (fee not included)."""
        return q8(self.qty * self.price)


@dataclass
class SimOrder:
    """An order as the simulated exchange keeps it. ``cost`` is the filled notional in quote, fees excluded."""

    id: int
    client_order_id: str
    symbol: str
    side: str  # 'buy' | 'sell'
    type: str  # 'market' | 'limit'
    qty: Decimal
    price: Decimal | None
    status: str  # 'open' | 'filled' | 'cancelled'
    filled: Decimal
    cost: Decimal
    created_ts: int
    updated_ts: int
    trades: list[Trade] = field(default_factory=list)
    locked: Decimal = Decimal(0)  # funds held for a resting order (quote for buys, base for sells)

    @property
    def fee(self) -> Decimal:
        return sum((t.fee for t in self.trades), Decimal(0))

    @property
    def average(self) -> Decimal | None:
        return q8(self.cost / self.filled) if self.filled else None


@dataclass
class Balance:
    """One asset's balance: ``free`` can be spent, ``locked`` is held by open orders."""

    free: Decimal = Decimal(0)
    locked: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True)
class _Candle:
    ts: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class _Series:
    """One symbol's candles, with Decimal prices parsed on first use."""

    def __init__(self, rows: list[list[float]], timeframe_ms: int) -> None:
        self.rows = rows
        self.stamps = [int(r[0]) for r in rows]
        self.tf = timeframe_ms
        self._cache: dict[int, _Candle] = {}

    def __getitem__(self, i: int) -> _Candle:
        c = self._cache.get(i)
        if c is None:
            r = self.rows[i]
            c = _Candle(int(r[0]), *(to_decimal(x) for x in r[1:6]))
            self._cache[i] = c
        return c

    def __len__(self) -> int:
        return len(self.stamps)

    def containing(self, ms: int) -> int | None:
        """Index of the candle with ts <= ms < ts + timeframe, if there is one."""
        i = bisect.bisect_right(self.stamps, ms) - 1
        return i if i >= 0 and self.stamps[i] + self.tf > ms else None

    def closing_in(self, after_ms: int, until_ms: int) -> range:
        """Indexes of the candles whose close (ts + timeframe) is in (after_ms, until_ms]."""
        lo = bisect.bisect_right(self.stamps, after_ms - self.tf)
        hi = bisect.bisect_right(self.stamps, until_ms - self.tf)
        return range(lo, max(lo, hi))


class Book:
    """One account on a simulated spot exchange (see the module doc for the fill rules).

    ``markets``: symbol id (``BTCUSDT``) -> (base, quote). ``candles``: symbol id ->
    freqtrade rows of ``timeframe_ms`` candles. ``balances``: asset -> free amount
    at the start. ``start_ms``: the clock (ms since epoch UTC). Fee rates are
    fractions of the notional (0.001 = 0.1%).
    """

    def __init__(
        self,
        markets: dict[str, tuple[str, str]],
        candles: dict[str, list[list[float]]],
        balances: dict[str, Decimal],
        *,
        start_ms: int,
        taker_fee: Decimal = Decimal("0.001"),
        maker_fee: Decimal = Decimal("0.001"),
        split_trades: int = 1,
        timeframe_ms: int = 300_000,
    ) -> None:
        if split_trades < 1:
            raise ValueError(f"split_trades must be >= 1, got {split_trades}")
        self.markets = dict(markets)
        self.series = {s: _Series(rows, timeframe_ms) for s, rows in candles.items()}
        self.now_ms = int(start_ms)
        self.taker_fee = Decimal(taker_fee)
        self.maker_fee = Decimal(maker_fee)
        self.split_trades = split_trades
        self.timeframe_ms = timeframe_ms
        self.balances: dict[str, Balance] = {}
        for base, quote in self.markets.values():
            self.balances.setdefault(base, Balance())
            self.balances.setdefault(quote, Balance())
        for asset, amount in balances.items():
            self.balances.setdefault(asset, Balance()).free = Decimal(amount)
        self.orders: list[SimOrder] = []
        self.trades: list[Trade] = []
        self.faults: Faults | None = None  # set by control_routes, shown in state()
        self._next_order_id = 100_001  # apart from trade ids, so a mix-up shows
        self._next_trade_id = 1
        self._coids: collections.Counter[str] = collections.Counter()
        self.listeners: list[Callable[[SimOrder, list[Trade]], None]] = []
        """Called with (order, its new trades) when an order is placed, fills or is cancelled
        (a websocket user stream pushes these)."""

    def _notify(self, order: SimOrder, trades: list[Trade]) -> None:
        for listener in self.listeners:
            listener(order, trades)

    # -- prices and time ---------------------------------------------------
    def price(self, symbol: str) -> Decimal:
        """The open of the candle containing ``now_ms`` (quote per base).

        In a gap in the data (an exchange outage), the open of the first candle
        after it, as the paper broker fills; after the data ends, the last close.
        Raises SimError(unknown_symbol) for a symbol without candles.
        """
        series = self._series(symbol)
        i = series.containing(self.now_ms)
        if i is not None:
            return series[i].open
        nxt = bisect.bisect_right(series.stamps, self.now_ms)
        if nxt < len(series):
            return series[nxt].open
        return series[len(series) - 1].close

    def set_time(self, ms: int) -> list[Trade]:
        """Move the clock forward to ``ms`` (ms since epoch UTC); returns the trades this made.

        Every candle closing in (old now, ms] is passed through, in close-time order
        across symbols, and resting limit orders fill against it (module doc).
        Raises ValueError if ``ms`` is before now.
        """
        ms = int(ms)
        if ms < self.now_ms:
            raise ValueError(f"the clock only moves forward: {ms} < now {self.now_ms}")
        resting = {o.symbol for o in self.orders if o.status == "open"}
        events: list[tuple[int, str, int]] = []
        for symbol in sorted(resting):
            series = self.series.get(symbol)
            if series is None:
                continue
            events.extend(
                (series.stamps[i] + series.tf, symbol, i) for i in series.closing_in(self.now_ms, ms)
            )
        events.sort()
        made: list[Trade] = []
        for _, symbol, i in events:
            candle = self.series[symbol][i]
            for order in [o for o in self.orders if o.status == "open" and o.symbol == symbol]:
                got = self._try_fill_on(order, candle)
                if got:
                    made.extend(got)
                    self._notify(order, got)
        self.now_ms = ms
        return made

    def _try_fill_on(self, order: SimOrder, c: _Candle) -> list[Trade]:
        assert order.price is not None
        limit = order.price
        buy = order.side == "buy"
        if c.ts > order.created_ts and (c.open <= limit if buy else c.open >= limit):
            return self._fill(order, c.open, maker=False, ts=c.ts)
        if c.low <= limit if buy else c.high >= limit:
            return self._fill(
                order, limit, maker=True, ts=max(order.created_ts, c.ts + self.timeframe_ms - 1)
            )
        return []

    # -- orders ------------------------------------------------------------
    def place(
        self,
        client_order_id: str,
        symbol: str,
        side: str,
        type: str,
        qty: Decimal,
        price: Decimal | None,
    ) -> SimOrder:
        """Accept a new order and fill what fills at once (module doc); returns it.

        ``qty`` in base units (a multiple of 1e-8, > 0); ``price`` the limit
        (quote per base, ignored for market orders). Raises SimError for an
        unknown symbol, a bad side/type/qty/price, a client order id equal to an
        OPEN order's (a coid reused after that order closed is accepted, as on
        Binance), and insufficient free funds (buy: qty x price x (1 + fee rate)
        of quote, at the limit for limit orders; sell: qty of base).
        """
        if symbol not in self.markets:
            raise SimError("unknown_symbol", f"unknown symbol {symbol!r}")
        if side not in ("buy", "sell"):
            raise SimError("invalid_side", f"side must be buy or sell, got {side!r}")
        if type not in ("market", "limit"):
            raise SimError("invalid_type", f"type must be market or limit, got {type!r}")
        qty = Decimal(qty)
        if qty <= 0 or qty != qty.quantize(Q8, rounding=ROUND_DOWN):
            raise SimError("invalid_quantity", f"quantity must be a positive multiple of 1e-8, got {qty}")
        limit: Decimal | None = None
        if type == "limit":
            if price is None or Decimal(price) <= 0:
                raise SimError("invalid_price", f"a limit order needs a price > 0, got {price}")
            limit = q8(Decimal(price))
        if any(o.client_order_id == client_order_id and o.status == "open" for o in self.orders):
            raise SimError("duplicate_order", f"client order id {client_order_id!r} is an open order's")
        base, quote = self.markets[symbol]
        now_price = self.price(symbol)
        crosses = limit is None or (now_price <= limit if side == "buy" else now_price >= limit)
        if side == "buy":
            at = now_price if type == "market" else limit
            assert at is not None
            need = self._quote_needed(
                qty, at, max(self.taker_fee, self.maker_fee) if limit else self.taker_fee
            )
            have, asset = self.balances[quote].free, quote
        else:
            need, have, asset = qty, self.balances[base].free, base
        if need > have:
            raise SimError(
                "insufficient_funds", f"needs {need} {asset}, {have} {asset} free", http_status=400
            )
        order = SimOrder(
            id=self._next_order_id,
            client_order_id=client_order_id,
            symbol=symbol,
            side=side,
            type=type,
            qty=qty,
            price=limit,
            status="open",
            filled=Decimal(0),
            cost=Decimal(0),
            created_ts=self.now_ms,
            updated_ts=self.now_ms,
        )
        self._next_order_id += 1
        self.orders.append(order)
        self._coids[client_order_id] += 1
        self._lock(order, need)
        self._notify(order, [])
        if crosses:
            self._notify(order, self._fill(order, now_price, maker=False, ts=self.now_ms))
        return order

    def cancel(self, order: SimOrder) -> SimOrder:
        """Cancel an open order and release its locked funds. Raises SimError(order_not_open) otherwise."""
        if order.status != "open":
            raise SimError("order_not_open", f"order {order.id} is {order.status}")
        self._unlock(order)
        order.status = "cancelled"
        order.updated_ts = self.now_ms
        self._notify(order, [])
        return order

    def find(self, *, order_id: int | None = None, client_order_id: str | None = None) -> SimOrder | None:
        """The order with ``order_id``, or the newest with ``client_order_id``; None if there is none."""
        for order in reversed(self.orders):
            if order_id is not None and order.id == order_id:
                return order
            if order_id is None and client_order_id is not None and order.client_order_id == client_order_id:
                return order
        return None

    def open_orders(self, symbol: str | None = None) -> list[SimOrder]:
        return [o for o in self.orders if o.status == "open" and (symbol is None or o.symbol == symbol)]

    def duplicate_client_order_ids(self) -> dict[str, int]:
        """Client order id -> number of orders accepted with it, for ids accepted more than once."""
        return {coid: n for coid, n in self._coids.items() if n > 1}

    # -- funds ---------------------------------------------------------------
    def _parts(self, qty: Decimal) -> list[Decimal]:
        n = min(self.split_trades, int(qty / Q8))
        part = (qty / n).quantize(Q8, rounding=ROUND_DOWN)
        return [part] * (n - 1) + [qty - part * (n - 1)]

    def _quote_needed(self, qty: Decimal, price: Decimal, rate: Decimal) -> Decimal:
        """Quote spent by a buy of ``qty`` at ``price``, trade by trade, fees included."""
        total = Decimal(0)
        for part in self._parts(qty):
            cost = q8(part * price)
            total += cost + q12(cost * rate)
        return total

    def _lock(self, order: SimOrder, amount: Decimal) -> None:
        base, quote = self.markets[order.symbol]
        bal = self.balances[quote if order.side == "buy" else base]
        bal.free -= amount
        bal.locked += amount
        order.locked = amount

    def _unlock(self, order: SimOrder) -> None:
        base, quote = self.markets[order.symbol]
        bal = self.balances[quote if order.side == "buy" else base]
        bal.locked -= order.locked
        bal.free += order.locked
        order.locked = Decimal(0)

    def _fill(self, order: SimOrder, price: Decimal, *, maker: bool, ts: int) -> list[Trade]:
        """Fill the whole order at ``price``: trades, balances, status."""
        base, quote = self.markets[order.symbol]
        rate = self.maker_fee if maker else self.taker_fee
        self._unlock(order)
        made = []
        for part in self._parts(order.qty):
            cost = q8(part * price)
            fee = q12(cost * rate)
            trade = Trade(
                id=self._next_trade_id,
                order_id=order.id,
                client_order_id=order.client_order_id,
                symbol=order.symbol,
                side=order.side,
                qty=part,
                price=price,
                fee=fee,
                fee_asset=quote,
                maker=maker,
                ts=ts,
            )
            self._next_trade_id += 1
            if order.side == "buy":
                self.balances[quote].free -= cost + fee
                self.balances[base].free += part
            else:
                self.balances[base].free -= part
                self.balances[quote].free += cost - fee
            order.filled += part
            order.cost += cost
            order.trades.append(trade)
            self.trades.append(trade)
            made.append(trade)
        order.status = "filled"
        order.updated_ts = ts
        return made

    def _series(self, symbol: str) -> _Series:
        series = self.series.get(symbol)
        if series is None:
            raise SimError("unknown_symbol", f"no candles for {symbol!r}")
        return series

    # -- snapshot ------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """A JSON-able snapshot: now_ms, orders (with their trades), trades, balances, duplicates, faults.

        Decimals are strings; balances are ``{asset: {"free": s, "locked": s}}``;
        ``faults`` counts the faults injected so far by kind.
        """
        return {
            "now_ms": self.now_ms,
            "orders": [order_json(o) for o in self.orders],
            "trades": [trade_json(t) for t in self.trades],
            "balances": {a: {"free": str(b.free), "locked": str(b.locked)} for a, b in self.balances.items()},
            "duplicates": self.duplicate_client_order_ids(),
            "faults": dict(self.faults.injected) if self.faults is not None else {},
        }


def trade_json(t: Trade) -> dict[str, Any]:
    return {
        "id": t.id,
        "order_id": t.order_id,
        "client_order_id": t.client_order_id,
        "symbol": t.symbol,
        "side": t.side,
        "qty": str(t.qty),
        "price": str(t.price),
        "fee": str(t.fee),
        "fee_asset": t.fee_asset,
        "maker": t.maker,
        "ts": t.ts,
    }


def order_json(o: SimOrder) -> dict[str, Any]:
    return {
        "id": o.id,
        "client_order_id": o.client_order_id,
        "symbol": o.symbol,
        "side": o.side,
        "type": o.type,
        "qty": str(o.qty),
        "price": None if o.price is None else str(o.price),
        "status": o.status,
        "filled": str(o.filled),
        "cost": str(o.cost),
        "created_ts": o.created_ts,
        "updated_ts": o.updated_ts,
        "trade_ids": [t.id for t in o.trades],
    }


# -- faults --------------------------------------------------------------------


@dataclass
class _Rule:
    kind: str
    count: int
    method: str | None
    path: str | None


def _matches(method: str | None, path: str | None, req_method: str, req_path: str) -> bool:
    if method is not None and method.upper() != req_method.upper():
        return False
    return path is None or fnmatch.fnmatchcase(req_path, path)


class Faults:
    """Transport faults for the next requests (counted) or at random (a seeded rate).

    Kinds: ``5xx`` (503, not processed), ``429`` (429 with Retry-After: 1, not
    processed), ``timeout`` (not processed; the response is held until the client
    gives up and disconnects), ``malformed`` (200 with truncated JSON; a write is
    not processed, a read is computed and its body cut in half), ``lost``
    (processed, then the response is held like ``timeout``). ``method`` filters
    on the HTTP method, ``path`` on the request path (an fnmatch pattern:
    ``/api/v3/order`` or ``/api/v3/*``). Counted faults are taken before the rate.
    """

    def __init__(self, seed: int = 0) -> None:
        """``seed``: the seed ``/_ctl/faults`` uses for a rate set without one."""
        self.seed = seed
        self._rules: list[_Rule] = []
        self._rate: tuple[float, tuple[str, ...], random.Random, str | None, str | None] | None = None
        self._release: asyncio.Event | None = None
        self.injected: collections.Counter[str] = collections.Counter()
        self.held = 0  # responses being held right now (timeout / lost)

    def add(self, kind: str, *, count: int = 1, method: str | None = None, path: str | None = None) -> None:
        """The next ``count`` requests matching ``method``/``path`` get fault ``kind``."""
        _check_kinds([kind])
        if count > 0:
            self._rules.append(_Rule(kind, count, method, path))

    def set_rate(
        self,
        rate: float,
        *,
        kinds: Sequence[str],
        seed: int,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Each matching request gets a fault with probability ``rate`` (0..1), its kind drawn from ``kinds``.

        Draws come from ``random.Random(seed)``, so a run is repeatable. Replaces
        any earlier rate; ``rate`` 0 turns it off.
        """
        _check_kinds(kinds)
        if not 0 <= rate <= 1:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        if rate == 0 or not kinds:
            self._rate = None
            return
        self._rate = (rate, tuple(kinds), random.Random(seed), method, path)

    def clear(self) -> None:
        """Drop every counted fault and the rate (the ``injected`` counts stay)."""
        self._rules.clear()
        self._rate = None

    def take(self, method: str, path: str) -> str | None:
        """The fault for this request, if any (and count it in ``injected``)."""
        for rule in self._rules:
            if _matches(rule.method, rule.path, method, path):
                rule.count -= 1
                if rule.count <= 0:
                    self._rules.remove(rule)
                self.injected[rule.kind] += 1
                return rule.kind
        if self._rate is not None:
            rate, kinds, rng, r_method, r_path = self._rate
            if _matches(r_method, r_path, method, path) and rng.random() < rate:
                kind = rng.choice(kinds)
                self.injected[kind] += 1
                return kind
        return None

    async def hold(self) -> None:
        """Wait until ``release()`` (the server stopping); the client disconnecting cancels the wait."""
        if self._release is None:
            self._release = asyncio.Event()
        self.held += 1
        try:
            await self._release.wait()
        finally:
            self.held -= 1

    def release(self) -> None:
        """Let every held response go (called when the server shuts down)."""
        if self._release is not None:
            self._release.set()


def _check_kinds(kinds: Sequence[str]) -> None:
    bad = [k for k in kinds if k not in FAULT_KINDS]
    if bad:
        raise ValueError(f"unknown fault kind(s) {bad}; known: {', '.join(FAULT_KINDS)}")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def default_fault_response(kind: str) -> web.Response:
    """A generic response for a ``5xx`` or ``429`` fault (exchange servers may pass their own bodies)."""
    if kind == "429":
        return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": "1"})
    return web.Response(status=503, text="Service Unavailable")


def fault_middleware(
    faults: Faults,
    response_for: Callable[[str], web.Response] = default_fault_response,
) -> Middleware:
    """An aiohttp middleware applying ``faults`` to every route except ``/_ctl/*``.

    ``response_for(kind)`` builds the response for ``5xx`` and ``429`` (a 429 must
    carry ``Retry-After``). Serve the app with ``serve()``: it turns on handler
    cancellation, so a held response ends when the client disconnects.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_ctl/") or request.headers.get("Upgrade", "").lower() == "websocket":
            return await handler(request)  # websockets have their own faults (drop, mute)
        kind = faults.take(request.method, request.path)
        if kind is None:
            return await handler(request)
        if kind in ("5xx", "429"):
            return response_for(kind)
        if kind == "timeout":
            await faults.hold()
            raise web.HTTPServiceUnavailable()
        if kind == "malformed":
            body = b'{"code":0,"msg":"'  # a write is not processed
            if request.method == "GET":  # reads have no side effects: cut the real body
                real = await handler(request)
                raw = real.body if isinstance(real, web.Response) and isinstance(real.body, bytes) else b""
                body = raw[: max(1, len(raw) // 2)] or body
            return web.Response(status=200, body=body, content_type="application/json")
        # lost: processed, then the answer never arrives
        await handler(request)
        await faults.hold()
        raise web.HTTPServiceUnavailable()

    return middleware


def control_routes(app: web.Application, book: Book, faults: Faults) -> None:
    """Add the ``/_ctl/*`` routes (never faulted) and release held responses on shutdown.

    - ``POST /_ctl/time {"ms": int}`` -> ``{"trades": n, "now_ms": ms}`` (``Book.set_time``);
    - ``POST /_ctl/faults {"kind", "count", "method", "path"}`` (``Faults.add``) or
      ``{"rate", "kinds", "seed", "method", "path"}`` (``Faults.set_rate``) -> ``{"ok": true}``;
    - ``POST /_ctl/faults/clear`` -> ``{"ok": true}``;
    - ``GET /_ctl/state`` -> ``Book.state()``.
    A bad body answers 400 ``{"error": "..."}``.
    """
    book.faults = faults

    async def set_time(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            trades = book.set_time(int(body["ms"]))
        except (ValueError, KeyError, TypeError) as e:
            return web.json_response({"error": str(e)}, status=400)
        return web.json_response({"trades": len(trades), "now_ms": book.now_ms})

    async def add_fault(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if "rate" in body:
                faults.set_rate(
                    float(body["rate"]),
                    kinds=list(body["kinds"]),
                    seed=int(body.get("seed", faults.seed)),
                    method=body.get("method"),
                    path=body.get("path"),
                )
            else:
                faults.add(
                    body["kind"],
                    count=int(body.get("count", 1)),
                    method=body.get("method"),
                    path=body.get("path"),
                )
        except (ValueError, KeyError, TypeError) as e:
            return web.json_response({"error": str(e)}, status=400)
        return web.json_response({"ok": True})

    async def clear_faults(request: web.Request) -> web.Response:
        faults.clear()
        return web.json_response({"ok": True})

    async def state(request: web.Request) -> web.Response:
        return web.json_response(book.state())

    async def on_shutdown(app: web.Application) -> None:
        faults.release()

    app.router.add_post("/_ctl/time", set_time)
    app.router.add_post("/_ctl/faults", add_fault)
    app.router.add_post("/_ctl/faults/clear", clear_faults)
    app.router.add_get("/_ctl/state", state)
    app.on_shutdown.append(on_shutdown)


async def serve(app: web.Application, port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on 127.0.0.1:``port`` (0: a free port); returns the runner and ``http://127.0.0.1:PORT``.

    Handlers are cancelled when their client disconnects (held fault responses
    end with the client's timeout). Stop with ``await runner.cleanup()``.
    """
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    bound = server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{bound}"


class LoopbackServer:
    """What every loopback exchange server shares: start/stop on 127.0.0.1, ``running()``, and
    ``requests`` ((method, path) of every request but ``/_ctl/*``, via the ``record`` middleware).

    Subclasses call ``super().__init__()`` and build their routes in ``app()``.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.url: str | None = None
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        raise NotImplementedError

    async def start(self, port: int = 0) -> str:
        """Serve on 127.0.0.1:``port`` (0: any free port); returns and sets ``url``."""
        self._runner, self.url = await serve(self.app(), port)
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, **kw: Any) -> AsyncIterator[Self]:
        """``async with Server.running(...) as server:`` started, stopped on exit."""
        server = cls(**kw)
        await server.start()
        try:
            yield server
        finally:
            await server.stop()

    @web.middleware
    async def record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith("/_ctl/"):
            self.requests.append((request.method, request.path))
        return await handler(request)


# -- a loopback server as its own process (``python -m loopback.<exchange>``) --------------------


def parse_balance(text: str) -> tuple[str, Decimal]:
    """``--balance ASSET=AMOUNT`` as ``(ASSET, Decimal(AMOUNT))``."""
    asset, _, amount = text.partition("=")
    if not asset or not amount:
        raise argparse.ArgumentTypeError(f"--balance wants ASSET=AMOUNT, got {text!r}")
    return asset.upper(), Decimal(amount)


def process_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The flags every loopback process takes: --port, --start-ms, --balance (repeatable), --seed."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--start-ms", type=int, required=True)
    parser.add_argument("--balance", type=parse_balance, action="append", metavar="ASSET=AMOUNT")
    parser.add_argument("--seed", type=int, default=0)
    return parser


async def serve_until_signal(server: LoopbackServer, port: int) -> None:
    """Serve on 127.0.0.1:``port``, print ``LISTENING <url>``, stop on SIGTERM or SIGINT."""
    url = await server.start(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"LISTENING {url}", flush=True)
    await stop.wait()
    await server.stop()
