"""CcxtBroker: live orders through ccxt (or our ccxt-style adapters), never lost and never doubled.

The order's life, and the rules that keep the ledger equal to the exchange:

1. The engine writes the order (state ``pending``, with its client order id)
   and commits before ``submit`` is called (write-ahead). A crash from here
   on leaves a pending row that reconciliation resolves by that id.
2. ``submit`` sends ``create_order`` with the client order id under the
   exchange's own name (Binance ``newClientOrderId``, KuCoin ``clientOid``,
   Luno ``client_order_id``, VALR ``customerOrderId``; ``registry.ExchangeInfo``).
   - The exchange answered: ``open`` with its order id; fills follow.
   - A definite refusal (InsufficientFunds, InvalidOrder, AuthenticationError,
     PermissionDenied, BadRequest, BadSymbol, AccountSuspended, NotSupported):
     ``rejected`` with the reason. Never retried.
   - DuplicateOrderId: the exchange already has it; treated as placed.
   - Anything else (a timeout, a 5xx, a 429, a malformed or lost response):
     the order is *unknown*, never failed. It stays ``pending``; the tracker
     looks it up by client order id. Found: tracked as open. Not found after
     ``resubmit_grace_s``: sent again with the *same* client order id (so the
     exchange can refuse a double), at most ``max_sends`` times in all.
3. The tracker looks up open and unknown orders every ``poll_interval_s``,
   and at once the order it was just told about: a submission, a cancel, or an
   update pushed over the exchange's websocket (``order_stream``, ccxt.pro
   ``watch_orders``, where the exchange has one). While an exchange's stream
   stays connected, its full passes slow to ``ws_poll_interval_s`` (a safety
   net); a dropped or new connection brings a full pass at once. New fills are fetched with
   ``fetch_my_trades`` and become ``Fill`` rows keyed ``<exchange>:<trade id>``,
   so each lands in the ledger once whatever the restarts. Fees are as the
   exchange reports them; a fee charged in the base asset on a buy reduces the
   quantity received and is recorded at the fill price in the quote currency
   (so the ledger's position equals the exchange balance and the cost is the
   quote actually paid).
4. Reads (lookups, trades, balances) retry with exponential backoff and full
   jitter (AWS Architecture Blog, "Exponential Backoff and Jitter", 2015);
   writes are never retried blindly: only the unknown-order rule above.
5. Every call goes through the exchange's ``ApiBreaker``: while it is open no
   order is sent (``rejected``, "API breaker open") and lookups wait.

Updates reach the engine through ``drain()``; the engine applies them on its
own loop, so ledger writes stay in the engine's single writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ccxt.base.errors import (
    AccountSuspended,
    AuthenticationError,
    BadRequest,
    BadResponse,
    BadSymbol,
    DuplicateOrderId,
    InsufficientFunds,
    InvalidOrder,
    NetworkError,
    NotSupported,
    OrderNotFound,
    PermissionDenied,
)

from amarktai_tui.domain.enums import OrderState, OrderType, Side
from amarktai_tui.domain.types import Candle, Fill, Order, split_pair
from amarktai_tui.exchanges.api_breaker import ApiBreaker, ApiHealth
from amarktai_tui.exchanges.base import BrokerUpdate
from amarktai_tui.exchanges.errors import why as _why
from amarktai_tui.exchanges.order_stream import OrderStream, supports_order_stream
from amarktai_tui.exchanges.registry import exchange_info

log = logging.getLogger(__name__)

DEFINITE_REFUSALS: tuple[type[Exception], ...] = (
    InsufficientFunds,
    AuthenticationError,
    PermissionDenied,
    BadSymbol,
    BadRequest,
    AccountSuspended,
    NotSupported,
    InvalidOrder,  # after DuplicateOrderId and OrderNotFound, its subclasses, are handled
)
"""Exchange answers that mean "this order was not placed and will not be": never retried."""

BUSINESS_REFUSALS: tuple[type[Exception], ...] = (InsufficientFunds, InvalidOrder, BadSymbol)
"""Refusals of one order that say nothing about the API's health (not counted by the breaker)."""

FEE_STEP = Decimal("1e-12")
MISSING_LOOKUPS = 3
"""Lookups in a row that must miss an acknowledged order before it counts as unknown (then resent after
the grace, under the same id, which the exchange refuses if it has the order after all)."""


class ApiUnavailable(Exception):
    """The exchange's API breaker is open: no call was made."""


@dataclass(slots=True)
class _Tracked:
    order: Order
    exchange_order_id: str | None = None
    unknown_since: float | None = None  # monotonic s when the order became unknown; None = acknowledged
    sends: int = 0
    filled: Decimal = Decimal(0)  # quantity of the fills emitted (gross of base-asset fees)
    cancel: str = ""  # reason, when a cancel was asked for
    seen_filled: Decimal = Decimal(0)  # the exchange's filled quantity at the last lookup
    looked_up: bool = False  # found by a lookup since it was last sent (its fills are then known)
    lookups_missing: int = 0


@dataclass(frozen=True, slots=True)
class ReconcileOutcome:
    """One exchange's reconciliation at start-up (``CcxtBroker.reconcile``)."""

    exchange: str
    ok: bool
    resolved: int  # pending/open orders whose fate is now known or tracked
    recovered: int  # fills fetched that the ledger lacked
    resent: int  # pending orders the exchange never saw, sent again under the same id
    orders: dict[str, str]  # client order id -> what was found
    drift: dict[str, str]  # asset -> "ledger X, exchange Y" where the ledger holds more than the exchange
    error: str = ""

    def with_drift(self, drift: dict[str, str], error: str = "") -> ReconcileOutcome:
        ok = self.ok and not drift and not error
        return ReconcileOutcome(
            self.exchange,
            ok,
            self.resolved,
            self.recovered,
            self.resent,
            self.orders,
            drift,
            error or self.error,
        )


@dataclass(slots=True)
class BrokerCounters:
    """What the broker did since start (for the fault suite's figures and the UI)."""

    sends: int = 0
    resends: int = 0
    unknown: int = 0
    duplicates_refused: int = 0
    rejected: int = 0
    lookups: int = 0
    fills: int = 0
    read_retries: int = 0
    cancels: int = 0
    stream_events: int = 0  # websocket updates about followed orders
    by_error: dict[str, int] = field(default_factory=dict)


class CcxtBroker:
    """Live broker over one ccxt client per exchange. See the module doc for the order rules.

    ``clients``: exchange id -> async ccxt client (``exchanges.clients.make_client``).
    ``price_hint(pair)``: latest price (quote) for markets where a market buy is
    sized in quote (Luno). ``known_fill_ids``: fill ids already in the ledger.
    ``breaker_limits``: exchange id -> (failures, cooldown s) overriding the defaults.
    ``clock``: monotonic seconds; ``sleep``: awaitable pause (both injectable).
    """

    name = "live"
    external = True

    def __init__(
        self,
        clients: Mapping[str, Any],
        *,
        poll_interval_s: float = 2.0,
        ws_poll_interval_s: float = 30.0,
        order_streams: bool = True,
        resubmit_grace_s: float = 10.0,
        max_sends: int = 5,
        breaker_failures: int = 5,
        breaker_cooldown_s: float = 60.0,
        breaker_limits: Mapping[str, tuple[int, float]] | None = None,
        read_attempts: int = 4,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 8.0,
        price_hint: Callable[[str], Decimal | None] | None = None,
        known_fill_ids: Iterable[str] = (),
        fee_overrides: Mapping[str, tuple[Decimal, Decimal]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.clients = dict(clients)
        self.poll_interval_s = poll_interval_s
        self.ws_poll_interval_s = max(ws_poll_interval_s, poll_interval_s)
        self.resubmit_grace_s = resubmit_grace_s
        self.max_sends = max_sends
        self.read_attempts = read_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._price_hint = price_hint
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        limits = dict(breaker_limits or {})
        self.breakers = {
            ex: ApiBreaker(
                ex,
                failures=limits.get(ex, (breaker_failures, breaker_cooldown_s))[0],
                cooldown_s=limits.get(ex, (breaker_failures, breaker_cooldown_s))[1],
                clock=clock,
            )
            for ex in self.clients
        }
        self._fees: dict[str, tuple[Decimal, Decimal]] = dict(fee_overrides or {})
        self._pair_fees: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
        self._seen_fills: set[str] = set(known_fill_ids)
        self._tracked: dict[str, _Tracked] = {}
        self._updates: list[BrokerUpdate] = []
        self._wake = asyncio.Event()
        self._dirty: set[str] = set()  # client order ids to look up on the next pass
        self._due: dict[str, float] = {}  # exchange -> loop time its next full pass is due
        self._pass_conn: dict[str, int | None] = {}  # exchange -> stream connection of its last full pass
        self.streams: dict[str, OrderStream] = {
            ex: OrderStream(ex, c, self._on_stream_orders, self._on_stream_change)
            for ex, c in self.clients.items()
            if order_streams and supports_order_stream(c)
        }
        self._track_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.counters = BrokerCounters()

    # -- life cycle -------------------------------------------------------------
    async def start(self, *, load_fees: bool = True, track: bool = True) -> None:
        """Load every exchange's markets (retried) and, with a key, its own fee rates; start tracking.

        ``track=False`` leaves tracking to explicit ``track_once`` calls (deterministic tests).
        """
        for ex, client in self.clients.items():
            await self._read(ex, client.load_markets)
            if load_fees and client.apiKey and client.has.get("fetchTradingFees"):
                try:
                    fees = await self._read(ex, client.fetch_trading_fees)
                except Exception as exc:  # the table's published rates stay in use
                    log.warning(
                        "%s: fetch_trading_fees failed (%s); using the published rates", ex, _why(exc)
                    )
                else:
                    for symbol, f in fees.items():
                        if f.get("maker") is not None and f.get("taker") is not None:
                            self._pair_fees[(ex, symbol)] = (_dec(f["maker"]), _dec(f["taker"]))
        if track:
            self.start_tracking()

    def remember_fills(self, fill_ids: Iterable[str]) -> None:
        """Fill ids already in the ledger: trades with these ids are never emitted again."""
        self._seen_fills.update(fill_ids)

    def start_tracking(self) -> None:
        """Start the background tracker and every exchange's order stream."""
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._track_forever())
        for stream in self.streams.values():
            stream.start()

    async def close(self) -> None:
        """Stop tracking and the order streams; close every client's HTTP and websocket sessions."""
        for stream in self.streams.values():
            await stream.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for client in self.clients.values():
            await client.close()

    # -- the Broker protocol ---------------------------------------------------------
    def fee_rate(self, exchange: str, pair: str, *, maker: bool) -> Decimal:
        """The exchange's own rate for ``pair`` when fetched with a key, else the published table's."""
        got = self._pair_fees.get((exchange, pair)) or self._fees.get(exchange)
        if got is not None:
            return got[0] if maker else got[1]
        return exchange_info(exchange).fee_rate(pair, maker=maker)

    def set_balance(self, bot_id: int, cash: Decimal, base: Decimal = Decimal(0)) -> None:
        """Live balances are the exchange's; the engine's own figures are compared at reconciliation."""

    def on_candle(self, candle: Candle) -> list[BrokerUpdate]:
        return self.drain()

    def drain(self) -> list[BrokerUpdate]:
        """Updates gathered by submissions and the tracker since the last call, oldest first."""
        out, self._updates = self._updates, []
        return out

    @property
    def tracked(self) -> int:
        """Orders still followed (open or unknown)."""
        return len(self._tracked)

    def health(self) -> dict[str, ApiHealth]:
        return {ex: b.health() for ex, b in self.breakers.items()}

    @property
    def idle(self) -> bool:
        """No pass running and none asked for (the next one waits for a poke, an event or its timer)."""
        return not self._dirty and not self._wake.is_set() and not self._track_lock.locked()

    def stream_states(self) -> dict[str, str]:
        """Exchange -> its order stream's state (``live``, ``connecting``, ``down``) or ``polling``."""
        return {ex: self.streams[ex].state if ex in self.streams else "polling" for ex in self.clients}

    async def submit(self, order: Order) -> BrokerUpdate:
        """Send ``order`` (already committed as pending). Returns open, rejected, or pending (unknown)."""
        coid = order.client_order_id
        info = exchange_info(order.exchange)
        if len(coid) > info.coid_max_len:
            return self._reject(order, f"client order id longer than {info.name}'s {info.coid_max_len}")
        if order.order_type is OrderType.LIMIT and not info.supports_limit:
            return self._reject(order, f"{info.name} takes market orders only")
        tr = self._tracked.get(coid) or _Tracked(order)
        self._tracked[coid] = tr
        return await self._send(tr)

    async def cancel(self, client_order_id: str) -> BrokerUpdate:
        """Ask for a cancel now; the outcome (cancelled, or filled first) arrives through ``drain``."""
        self.request_cancel(client_order_id, "cancelled by request")
        await self.track_once()
        return BrokerUpdate(client_order_id, OrderState.PENDING, reason="cancel requested")

    def request_cancel(self, client_order_id: str, reason: str) -> bool:
        """Mark an order for cancelling on the tracker's next pass. False when it is not followed."""
        tr = self._tracked.get(client_order_id)
        if tr is None:
            return False
        tr.cancel = reason
        self._poke(client_order_id)
        return True

    def cancel_now(self, client_order_id: str) -> bool:
        """The paper broker cancels synchronously; a live cancel is asynchronous: requested, False."""
        self.request_cancel(client_order_id, "cancelled")
        return False

    # -- sending ------------------------------------------------------------------
    async def _send(self, tr: _Tracked) -> BrokerUpdate:
        order = tr.order
        ex = order.exchange
        coid = order.client_order_id
        breaker = self.breakers[ex]
        if not breaker.allow():
            if tr.sends == 0:
                return self._reject(order, f"{ex} API breaker open: {breaker.last_error}")
            return BrokerUpdate(coid, OrderState.PENDING, reason=f"unknown: {ex} API breaker open")
        client = self.clients[ex]
        info = exchange_info(ex)
        amount = order.quantity
        if order.order_type is OrderType.MARKET and order.side is Side.BUY and info.market_buy_in_quote:
            hint = self._price_hint(order.pair) if self._price_hint else None
            if hint is None:
                breaker.release_probe()
                return self._reject(order, f"no price to size a {info.name} market buy in quote")
            amount = amount * hint
        price = float(order.limit_price) if order.limit_price is not None else None
        tr.sends += 1
        tr.looked_up = False
        self.counters.sends += 1
        if tr.sends > 1:
            self.counters.resends += 1
        t0 = self._clock()
        try:
            resp = await client.create_order(
                order.pair,
                order.order_type.value,
                order.side.value,
                float(amount),
                price,
                {info.coid_param: coid},
            )
        except (DuplicateOrderId, InvalidOrder, BadRequest) as exc:  # KuCoin's duplicate is a BadRequest
            if not _is_duplicate(exc):
                return self._refused(tr, exc, t0)
            breaker.success(self._clock() - t0)
            self.counters.duplicates_refused += 1
            tr.unknown_since = None
            self._poke(coid)
            return BrokerUpdate(
                coid, OrderState.OPEN, reason="already at the exchange (duplicate id refused)"
            )
        except DEFINITE_REFUSALS as exc:
            return self._refused(tr, exc, t0)
        except Exception as exc:  # timeout, 5xx, 429, malformed or lost response: unknown, never failed
            self._count(exc)
            breaker.failure(_why(exc))
            return self._unknown(tr, exc)
        xid = _str_or_none((resp or {}).get("id"))
        if xid is None:  # an answer without the exchange's order id (an unreadable body) acknowledges nothing
            breaker.failure("create_order answered without an order id")
            return self._unknown(tr, ValueError("the exchange's answer had no order id"))
        breaker.success(self._clock() - t0)
        tr.unknown_since = None
        tr.exchange_order_id = xid
        self._poke(coid)
        return BrokerUpdate(coid, OrderState.OPEN, exchange_order_id=xid)

    def _refused(self, tr: _Tracked, exc: Exception, t0: float) -> BrokerUpdate:
        """A definite refusal: rejected, never retried (a refused resend stays unknown: the first may be out)."""
        breaker = self.breakers[tr.order.exchange]
        self._count(exc)
        if isinstance(exc, BUSINESS_REFUSALS):
            breaker.success(self._clock() - t0)
        else:
            breaker.failure(_why(exc))
        if tr.sends > 1:
            return self._unknown(tr, exc)
        return self._reject(tr.order, f"{exchange_info(tr.order.exchange).name} refused: {_why(exc)}")

    def _unknown(self, tr: _Tracked, exc: BaseException) -> BrokerUpdate:
        if tr.unknown_since is None:
            tr.unknown_since = self._clock()
            self.counters.unknown += 1
        self._poke(tr.order.client_order_id)
        return BrokerUpdate(tr.order.client_order_id, OrderState.PENDING, reason=f"unknown: {_why(exc)}")

    def _reject(self, order: Order, reason: str) -> BrokerUpdate:
        self.counters.rejected += 1
        self._tracked.pop(order.client_order_id, None)
        return BrokerUpdate(order.client_order_id, OrderState.REJECTED, reason=reason)

    def _count(self, exc: BaseException) -> None:
        name = type(exc).__name__
        self.counters.by_error[name] = self.counters.by_error.get(name, 0) + 1

    # -- tracking -------------------------------------------------------------------
    def _poke(self, client_order_id: str) -> None:
        """Look ``client_order_id`` up on the tracker's next pass, and wake the tracker now."""
        self._dirty.add(client_order_id)
        self._wake.set()

    def _on_stream_orders(self, orders: list[dict[str, Any]]) -> None:
        """Order updates from a websocket: the orders we follow are looked up at once."""
        for o in orders:
            coid = o.get("clientOrderId")
            if isinstance(coid, str) and coid in self._tracked:
                self.counters.stream_events += 1
                self._poke(coid)

    def _on_stream_change(self) -> None:
        """A stream failed: its exchange's orders are looked up now and polled fast until it is back."""
        self._due.clear()
        self._wake.set()

    def _interval(self, ex: str, conn: int | None) -> float:
        """Seconds to ``ex``'s next full pass: slow only while the same stream connection stays open
        and every order of ``ex`` is acknowledged (an unknown order, one the exchange did not find,
        or one being cancelled is never announced by the stream: it is polled)."""
        stream = self.streams.get(ex)
        if stream is None or conn is None or stream.connection() != conn:
            return self.poll_interval_s
        for tr in self._tracked.values():
            if tr.order.exchange == ex and (tr.unknown_since is not None or tr.lookups_missing or tr.cancel):
                return self.poll_interval_s
        return self.ws_poll_interval_s

    async def _track_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            wait = min((self._due.get(ex, now) - now for ex in self.clients), default=self.poll_interval_s)
            if wait > 0 and not self._wake.is_set():
                with contextlib.suppress(
                    TimeoutError
                ):  # asyncio.timeout, not wait_for: a cancel is never swallowed
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
            self._wake.clear()
            try:
                await self._pass(loop.time())
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad pass must not end tracking
                log.exception("order tracking pass failed")

    async def _pass(self, now: float) -> None:
        """Follow the orders poked since the last pass, and every order of each exchange that is due.

        An exchange whose stream reconnected since its last full pass is due at once (events may
        have been lost while it was down).
        """
        async with self._track_lock:
            due = set()
            for ex in self.clients:
                stream = self.streams.get(ex)
                reconnected = stream is not None and stream.connection() != self._pass_conn.get(ex)
                if now >= self._due.get(ex, now) or reconnected:
                    due.add(ex)
            conns = {ex: self.streams[ex].connection() if ex in self.streams else None for ex in due}
            dirty, self._dirty = self._dirty, set()
            for tr in list(self._tracked.values()):
                coid = tr.order.client_order_id
                if self._tracked.get(coid) is tr and (tr.order.exchange in due or coid in dirty):
                    await self._follow(tr)
            for ex in due:
                self._pass_conn[ex] = conns[ex]
                self._due[ex] = now + self._interval(ex, conns[ex])

    async def track_once(self) -> None:
        """One pass over every followed order: look it up, emit new fills, resolve or resend.

        Passes never overlap (the background tracker and an explicit call take turns).
        """
        async with self._track_lock:
            self._dirty.clear()
            for tr in list(self._tracked.values()):
                if self._tracked.get(tr.order.client_order_id) is tr:
                    await self._follow(tr)

    async def _follow(self, tr: _Tracked) -> None:
        order = tr.order
        ex = order.exchange
        coid = order.client_order_id
        try:
            found = await self._lookup(tr)
        except ApiUnavailable:
            return
        except Exception as exc:
            self._updates.append(BrokerUpdate(coid, OrderState.PENDING, reason=f"lookup failed: {_why(exc)}"))
            return
        if found is None:
            await self._not_found(tr)
            return
        was_unknown = tr.unknown_since is not None
        tr.unknown_since = None
        tr.looked_up = True
        tr.lookups_missing = 0
        xid = _str_or_none(found.get("id"))
        if xid and xid != tr.exchange_order_id:
            tr.exchange_order_id = xid
        if was_unknown:
            self._updates.append(BrokerUpdate(coid, OrderState.OPEN, exchange_order_id=xid))
        filled = _dec(found.get("filled") or 0)
        tr.seen_filled = filled
        if filled > tr.filled:
            try:
                await self._collect_fills(tr)
            except ApiUnavailable:
                return
            except Exception as exc:
                self._updates.append(BrokerUpdate(coid, OrderState.PENDING, reason=f"trades: {_why(exc)}"))
                return
        status = found.get("status")
        if status == "open" and tr.cancel:
            await self._cancel_at_exchange(tr)
            return
        if status in ("closed", "canceled", "cancelled", "expired", "rejected") and tr.filled >= filled:
            self._tracked.pop(coid, None)
            if status == "closed":
                self._updates.append(BrokerUpdate(coid, OrderState.FILLED, exchange_order_id=xid))
            elif status == "expired":
                self._updates.append(BrokerUpdate(coid, OrderState.EXPIRED, reason="expired at the exchange"))
            elif status == "rejected":
                self._updates.append(
                    BrokerUpdate(coid, OrderState.REJECTED, reason=f"{ex} rejected the order")
                )
            else:
                self._updates.append(
                    BrokerUpdate(coid, OrderState.CANCELLED, reason=tr.cancel or "cancelled at the exchange")
                )

    async def _not_found(self, tr: _Tracked) -> None:
        coid = tr.order.client_order_id
        if tr.unknown_since is None:  # acknowledged, yet the exchange does not find it (yet)
            tr.lookups_missing += 1
            if tr.lookups_missing >= MISSING_LOOKUPS:  # its acknowledgement is no longer believed
                tr.unknown_since = self._clock()
                self.counters.unknown += 1
            return
        if tr.cancel:  # never placed and no longer wanted
            if self._clock() - tr.unknown_since >= self.resubmit_grace_s:
                self._tracked.pop(coid, None)
                self._updates.append(
                    BrokerUpdate(coid, OrderState.CANCELLED, reason=tr.cancel + " (never placed)")
                )
            return
        if self._clock() - tr.unknown_since < self.resubmit_grace_s:
            return
        if tr.sends >= self.max_sends:
            self._tracked.pop(coid, None)
            self._updates.append(
                BrokerUpdate(
                    coid, OrderState.REJECTED, reason=f"not placed after {tr.sends} sends with the same id"
                )
            )
            return
        tr.unknown_since = self._clock()  # a fresh grace period for this send
        upd = await self._send(tr)
        if upd.state is not OrderState.PENDING:
            self._updates.append(upd)

    async def _cancel_at_exchange(self, tr: _Tracked) -> None:
        order = tr.order
        client = self.clients[order.exchange]
        params = {}
        info = exchange_info(order.exchange)
        if tr.exchange_order_id is None and info.coid_lookup_param:
            params[info.coid_lookup_param] = order.client_order_id
        self.counters.cancels += 1
        try:
            await self._call(order.exchange, client.cancel_order, tr.exchange_order_id, order.pair, params)
        except OrderNotFound:
            pass  # filled or cancelled meanwhile: the next lookup tells which
        except Exception as exc:
            log.info("cancel of %s failed (%s); will retry", order.client_order_id, _why(exc))
        self._poke(order.client_order_id)

    async def _lookup(self, tr: _Tracked) -> dict[str, Any] | None:
        """The exchange's order by client id (or exchange id); None when it has no such order."""
        order = tr.order
        ex = order.exchange
        client = self.clients[ex]
        info = exchange_info(ex)
        self.counters.lookups += 1
        try:
            if info.coid_lookup_param:
                got = await self._read(
                    ex, client.fetch_order, None, order.pair, {info.coid_lookup_param: order.client_order_id}
                )
            elif tr.exchange_order_id:
                got = await self._read(ex, client.fetch_order, tr.exchange_order_id, order.pair)
            else:
                got = None
                for listing in (client.fetch_open_orders, client.fetch_closed_orders):
                    rows = await self._read(ex, listing, order.pair)
                    got = next((o for o in rows if o.get("clientOrderId") == order.client_order_id), None)
                    if got is not None:
                        break
        except OrderNotFound:
            return None
        if got is not None and (got.get("id") is None or got.get("status") is None):
            raise BadResponse(f"{ex} order lookup answered without an id or status")  # unreadable: ask again
        if got is not None and got.get("clientOrderId") not in (None, order.client_order_id):
            log.warning("lookup of %s returned order %s", order.client_order_id, got.get("clientOrderId"))
            return None
        return got  # type: ignore[no-any-return]

    async def _collect_fills(self, tr: _Tracked) -> None:
        order = tr.order
        ex = order.exchange
        client = self.clients[ex]
        info = exchange_info(ex)
        params: dict[str, Any] = {}
        if info.trades_order_param and tr.exchange_order_id:
            params[info.trades_order_param] = tr.exchange_order_id
        trades = await self._read(ex, client.fetch_my_trades, order.pair, None, None, params)
        base, quote = split_pair(order.pair)
        for t in sorted(trades, key=lambda t: (t.get("timestamp") or 0, str(t.get("id")))):
            if tr.exchange_order_id and _str_or_none(t.get("order")) != tr.exchange_order_id:
                continue
            fill_id = f"{ex}:{t['id']}"
            if fill_id in self._seen_fills:
                continue
            self._seen_fills.add(fill_id)
            gross = _dec(t["amount"])
            tr.filled += gross
            self.counters.fills += 1
            self._updates.append(
                BrokerUpdate(
                    order.client_order_id, OrderState.OPEN, fill=_fill(order, t, fill_id, base, quote)
                )
            )

    # -- calls through the breaker -------------------------------------------------------
    async def _call(self, ex: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """One call through ``ex``'s breaker (no retry). Raises ApiUnavailable when it is open."""
        breaker = self.breakers[ex]
        if not breaker.allow():
            raise ApiUnavailable(f"{ex} API breaker open")
        t0 = self._clock()
        try:
            out = await fn(*args)
        except (OrderNotFound, *BUSINESS_REFUSALS):
            breaker.success(self._clock() - t0)
            raise
        except Exception as exc:
            self._count(exc)
            breaker.failure(_why(exc))
            raise
        breaker.success(self._clock() - t0)
        return out

    async def _read(self, ex: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """A read through the breaker, retried on network errors with backoff and full jitter."""
        for attempt in range(self.read_attempts):
            try:
                return await self._call(ex, fn, *args)
            except NetworkError:
                if attempt + 1 >= self.read_attempts:
                    raise
                self.counters.read_retries += 1
                cap = min(self.backoff_cap_s, self.backoff_base_s * 2**attempt)
                await self._sleep(self._rng.uniform(0, cap))
        raise AssertionError("unreachable")

    # -- reconciliation -------------------------------------------------------------------
    async def reconcile(self, active: Iterable[Order]) -> list[ReconcileOutcome]:
        """Resolve every pending/open order of the ledger by client id and fetch the fills it lacks.

        ``active``: the ledger's pending and open orders. Orders found are followed
        (their missing fills go to ``drain``); pending orders the exchange never
        saw are sent again under the same id; open ones it does not know are
        closed as cancelled. An exchange that cannot be reached gives ``ok=False``.
        Balances are compared afterwards (``balance_drift``), once the engine has
        applied the recovered fills.
        """
        by_ex: dict[str, list[Order]] = {ex: [] for ex in self.clients}
        for o in active:
            by_ex.setdefault(o.exchange, []).append(o)
        out = []
        for ex, orders in by_ex.items():
            if ex not in self.clients:
                out.append(ReconcileOutcome(ex, False, 0, 0, 0, {}, {}, f"no client for {ex}"))
                continue
            out.append(await self._reconcile_exchange(ex, orders))
        return out

    async def _reconcile_exchange(self, ex: str, orders: list[Order]) -> ReconcileOutcome:
        seen: dict[str, str] = {}
        resolved = resent = 0
        fills_before = self.counters.fills
        try:
            for order in orders:
                tr = _Tracked(order, exchange_order_id=order.exchange_order_id)
                found = await self._lookup(tr)
                if found is None:
                    if order.state is OrderState.OPEN:
                        seen[order.client_order_id] = "open in the ledger, unknown to the exchange"
                        self._updates.append(
                            BrokerUpdate(
                                order.client_order_id,
                                OrderState.CANCELLED,
                                reason="not found at the exchange on reconciliation",
                            )
                        )
                        continue
                    self._tracked[order.client_order_id] = tr
                    upd = await self._send(tr)
                    resent += 1
                    seen[order.client_order_id] = (
                        f"never reached the exchange: sent again ({upd.state.value})"
                    )
                    if upd.state is not OrderState.PENDING:
                        self._updates.append(upd)
                    resolved += 1
                    continue
                tr.exchange_order_id = _str_or_none(found.get("id"))
                self._tracked[order.client_order_id] = tr
                tr.unknown_since = self._clock()  # so that _follow reports it open
                await self._follow(tr)
                seen[order.client_order_id] = f"found: {found.get('status')}, filled {found.get('filled')}"
                resolved += 1
        except Exception as exc:
            return ReconcileOutcome(
                ex, False, resolved, self.counters.fills - fills_before, resent, seen, {}, _why(exc)
            )
        return ReconcileOutcome(ex, True, resolved, self.counters.fills - fills_before, resent, seen, {})

    def unsettled(self) -> bool:
        """Some followed order's effect on the balances may not be in the updates yet: it was sent and
        not found by a lookup since (a resend may have traded at once), or a lookup saw fills not yet
        fetched."""
        return any(not tr.looked_up or tr.seen_filled > tr.filled for tr in self._tracked.values())

    async def balance_drift(self, ex: str, positions: Mapping[str, Decimal]) -> dict[str, str]:
        """Assets where the ledger's bots hold more than ``ex``'s account total: {asset: "ledger X, exchange Y"}.

        ``positions``: asset -> quantity the ledger says the bots hold there. The
        account may hold more than the bots (other funds); only less is drift.
        Raises what the balance read raises (after its retries).
        """
        balance = await self._read(ex, self.clients[ex].fetch_balance)
        totals = balance.get("total") or {}
        drift = {}
        for asset, held in positions.items():
            if held <= 0:
                continue
            have = _dec(totals.get(asset) or 0)
            if have < held:
                drift[asset] = f"ledger {held}, exchange {have}"
        return drift


def _fill(order: Order, t: Mapping[str, Any], fill_id: str, base: str, quote: str) -> Fill:
    qty = _dec(t["amount"])
    price = _dec(t["price"])
    fee = t.get("fee") or {}
    fee_cost = _dec(fee.get("cost") or 0)
    currency = fee.get("currency") or quote
    if currency == base:  # charged in the asset bought: received less, and the fee is worth cost x price
        if order.side is Side.BUY:
            qty -= fee_cost
        fee_cost *= price
        currency = quote
    ts = t.get("timestamp")
    return Fill(
        fill_id=fill_id,
        client_order_id=order.client_order_id,
        bot_id=order.bot_id,
        exchange=order.exchange,
        pair=order.pair,
        side=order.side,
        quantity=qty,
        price=price,
        fee=fee_cost.quantize(FEE_STEP),
        fee_currency=currency,
        ts=int(ts) if ts is not None else order.updated_ts,
        liquidity="maker" if t.get("takerOrMaker") == "maker" else "taker",
    )


DUPLICATE_MARKERS = (
    "duplicate order",
    "duplicated",
    "already exists",
    "duplicate customerorderid",
    "clientoidduplicated",
)
"""How exchanges word a refused duplicate client order id where ccxt has no DuplicateOrderId mapping
(Binance -2010 "Duplicate order sent.", which ccxt maps to InvalidOrder; KuCoin 400100
"validation.createOrder.clientOidDuplicated", which ccxt maps to BadRequest)."""


def _is_duplicate(exc: Exception) -> bool:
    if isinstance(exc, DuplicateOrderId):
        return True
    msg = str(exc).lower()
    return any(m in msg for m in DUPLICATE_MARKERS)


def _dec(x: Any) -> Decimal:
    """A ccxt number (float or numeric string) as the Decimal of its shortest repr."""
    return x if isinstance(x, Decimal) else Decimal(str(x))


def _str_or_none(x: Any) -> str | None:
    return None if x is None else str(x)


__all__ = ["ApiUnavailable", "CcxtBroker", "ReconcileOutcome"]
