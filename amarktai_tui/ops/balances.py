"""Balances across exchanges: free, used and total per asset, valued in the account's quote currency.

Which exchanges: every exchange with a key in the keyring (registry order: luno, binance, kucoin,
valr, ovex), or the ones asked for. Each is read concurrently through its own ccxt client
(``exchanges.clients.make_client`` with its ``[exchanges.<id>]`` sandbox, api_url and timeout_s),
and each under its own deadline (``DEADLINE_FACTOR`` x its ``timeout_s``: a read is a few calls in
a row), so one slow or failing exchange never holds up or blanks the others. Every client is
closed. The app reads; it never moves funds (its keys hold no withdrawal rights).

Per exchange, in order: ``load_markets``, ``fetch_balance`` (``latency_ms``: its HTTP round
trip, not counting the time ccxt's rate limiter held it back), then the
tickers the valuation needs (``fetch_tickers`` for those symbols where the exchange has it, else
``fetch_ticker`` each; a failed batch falls back to one call per symbol).

Valuation, in the quote currency ``[general] quote_currency`` (``quote``):
- a ticker's price is its ``last``, else ``close``, else the mid of ``bid`` and ``ask``;
- an asset's price in ``quote`` comes from the exchange's own markets, the first route that has
  prices: 1 for the quote itself; the direct pair ``ASSET/QUOTE``; the inverse pair
  ``QUOTE/ASSET`` (1 / price); via USDT (``ASSET`` in USDT x USDT in ``QUOTE``, each leg direct or
  inverse);
- ``value`` = total x price, rounded to 1e-8 (half-even); ``total_value`` is the sum of the
  priced assets' values. An asset with no route or no price has ``value`` None and is named in
  ``unpriced`` (never counted as zero): ``total_value`` then leaves it out, and says so there.

Quantities are ``Decimal`` from the exchange's numbers via ``str`` (ccxt returns floats or
strings), never float arithmetic; in JSON they are plain decimal strings without trailing zeros.
Assets whose free, used and total are all zero are left out.

Errors are one line per exchange (the error class and the message, every credential value of that
exchange scrubbed, query strings cut: ``vault.scrub``); ``ok`` False means the balance could not
be read. A balance read whose prices failed stays ``ok`` with the price error in ``error``.

JSON (``BalancesReport.to_json``, what ``amarktai balances --json`` prints; decimals are
strings, times ms since epoch UTC)::

    {"quote": "USDT",
     "exchanges": [
       {"exchange": "binance", "ok": true, "error": "",
        "assets": [{"asset": "BTC", "free": "0.5", "used": "0", "total": "0.5",
                    "value": "9847.935"}, ...],               # value null: unpriced
        "total_value": "10847.935",                           # null when ok is false
        "unpriced": ["XYZ"],
        "fetched_ms": 1700000000000,                          # null when ok is false
        "latency_ms": 12,                                     # the balance call; null when ok is false
        "api_health": null}]}                                 # a live broker's ApiHealth, else null

``api_health`` (when a live broker runs in the same process, ``TradingEngine.api_health()``):
``{"state", "consecutive_failures", "last_error", "retry_in_s", "latency_p50_ms",
"latency_p99_ms", "calls", "errors"}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from amarktai_tui.config import Settings
from amarktai_tui.exchanges.api_breaker import ApiHealth
from amarktai_tui.exchanges.registry import EXCHANGES
from amarktai_tui.vault.scrub import scrub

log = logging.getLogger(__name__)

BRIDGE = "USDT"
"""The currency a price may go through when neither the direct nor the inverse pair is listed."""
DEADLINE_FACTOR = 4
"""An exchange's whole read (markets, balance, tickers) must end within this many ``timeout_s``."""
Q8 = Decimal("1e-8")
NO_WITHDRAWALS = "No transfers between exchanges: the app holds no withdrawal rights."
"""What the Balances screen and ``amarktai balances`` say under the figures."""
_ZERO = Decimal(0)


class UnknownExchangeError(ValueError):
    """An exchange id that is not one of the five platforms (bad usage: the CLI exits 2)."""


def _wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Clock:
    """Where times come from: ``wall_ms`` (ms since epoch UTC) stamps a read, ``monotonic``
    (seconds) times it. Tests pass fixed ones for a repeatable screen."""

    wall_ms: Callable[[], int] = _wall_ms
    monotonic: Callable[[], float] = time.perf_counter


SYSTEM_CLOCK = Clock()


@dataclass(frozen=True, slots=True)
class AssetBalance:
    """One asset on one exchange: quantities in the asset's units, ``value`` in the quote currency
    (None: no price)."""

    asset: str
    free: Decimal
    used: Decimal
    total: Decimal
    value: Decimal | None

    def to_json(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "free": _s(self.free),
            "used": _s(self.used),
            "total": _s(self.total),
            "value": None if self.value is None else _s(self.value),
        }


@dataclass(frozen=True, slots=True)
class ExchangeBalances:
    """One exchange's read (see the module doc). ``latency_ms``: the balance call's round trip;
    ``health``: the live broker's view of this API, when one runs."""

    exchange: str
    ok: bool
    error: str = ""
    assets: tuple[AssetBalance, ...] = ()
    total_value: Decimal | None = None
    unpriced: tuple[str, ...] = ()
    fetched_ms: int | None = None
    latency_ms: int | None = None
    health: ApiHealth | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "exchange": self.exchange,
            "ok": self.ok,
            "error": self.error,
            "assets": [a.to_json() for a in self.assets],
            "total_value": None if self.total_value is None else _s(self.total_value),
            "unpriced": list(self.unpriced),
            "fetched_ms": self.fetched_ms,
            "latency_ms": self.latency_ms,
            "api_health": None if self.health is None else health_json(self.health),
        }


@dataclass(frozen=True, slots=True)
class BalancesReport:
    """Every exchange read, in registry order; ``quote`` is the valuation currency."""

    quote: str
    exchanges: tuple[ExchangeBalances, ...]

    @property
    def ok(self) -> bool:
        """Every exchange answered (vacuously true with none)."""
        return all(e.ok for e in self.exchanges)

    def to_json(self) -> dict[str, Any]:
        """The ``amarktai balances --json`` document (module doc)."""
        return {"quote": self.quote, "exchanges": [e.to_json() for e in self.exchanges]}


def health_json(h: ApiHealth) -> dict[str, Any]:
    """An ``ApiHealth`` as JSON (the exchange id is the enclosing object's)."""
    return {
        "state": h.state.value,
        "consecutive_failures": h.consecutive_failures,
        "last_error": h.last_error,
        "retry_in_s": h.retry_in_s,
        "latency_p50_ms": h.latency_p50_ms,
        "latency_p99_ms": h.latency_p99_ms,
        "calls": h.calls,
        "errors": h.errors,
    }


# -- which exchanges, with which keys --------------------------------------------------------------


def check_exchange_ids(requested: Sequence[str] | None) -> list[str] | None:
    """``requested`` deduplicated in registry order, or None (every exchange with a key).

    Raises UnknownExchangeError naming the first unknown id and the valid ones.
    """
    if not requested:
        return None
    for ex in requested:
        if ex not in EXCHANGES:
            raise UnknownExchangeError(f"unknown exchange {ex!r}; expected one of {', '.join(EXCHANGES)}")
    return [ex for ex in EXCHANGES if ex in requested]


def load_credentials(
    settings: Settings, data_dir: Path, exchanges: Sequence[str] | None = None
) -> dict[str, dict[str, str] | None]:
    """Exchange id -> its saved key fields from the keyring, in registry order.

    ``exchanges`` None: every exchange with a usable key saved. Given: each of them, None for one
    with nothing saved (its read then fails with a one-line hint). Blocks on the keyring (run it
    in a thread from async code); raises VaultUnavailable.
    """
    from amarktai_tui.vault.backend import open_backend
    from amarktai_tui.vault.providers import get_provider
    from amarktai_tui.vault.store import SecretStore

    store = SecretStore(open_backend(settings.keys, data_dir))
    wanted = list(EXCHANGES) if exchanges is None else list(exchanges)
    out: dict[str, dict[str, str] | None] = {}
    for ex in wanted:
        values = store.load(get_provider(ex))
        if values is not None or exchanges is not None:
            out[ex] = values
    return out


# -- reading ----------------------------------------------------------------------------------------


async def read_balances(
    settings: Settings,
    data_dir: Path,
    exchanges: Sequence[str] | None = None,
    *,
    health: Mapping[str, ApiHealth] | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> BalancesReport:
    """Keys from the keyring (in a thread), then ``fetch_balances``. Raises VaultUnavailable."""
    credentials = await asyncio.to_thread(load_credentials, settings, data_dir, exchanges)
    return await fetch_balances(settings, credentials, health=health, clock=clock)


async def fetch_balances(
    settings: Settings,
    credentials: Mapping[str, Mapping[str, str] | None],
    *,
    health: Mapping[str, ApiHealth] | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> BalancesReport:
    """Read every exchange in ``credentials`` (id -> key fields; None: no key saved) concurrently.

    Never raises for an exchange's failure: it is that exchange's ``error``. ``health``: the live
    broker's ``ApiHealth`` per exchange, attached to each read.
    """
    quote = settings.general.quote_currency
    reads = await asyncio.gather(
        *(
            fetch_exchange(settings, ex, creds, quote, clock=clock, health=(health or {}).get(ex))
            for ex, creds in credentials.items()
        )
    )
    return BalancesReport(quote, tuple(reads))


async def fetch_exchange(
    settings: Settings,
    exchange_id: str,
    credentials: Mapping[str, str] | None,
    quote: str,
    *,
    clock: Clock = SYSTEM_CLOCK,
    health: ApiHealth | None = None,
) -> ExchangeBalances:
    """One exchange's read (module doc); failures come back as ``ok`` False with a one-line error."""
    if credentials is None:
        hint = f"no API key saved for {exchange_id}: run `amarktai keys set {exchange_id}`"
        return ExchangeBalances(exchange_id, False, hint, health=health)
    from amarktai_tui.exchanges.clients import make_client

    conf = settings.exchange(exchange_id)
    secrets = [v for v in credentials.values() if v]
    deadline = DEADLINE_FACTOR * conf.timeout_s
    until = asyncio.get_running_loop().time() + deadline
    client: Any = None
    try:
        try:
            async with asyncio.timeout_at(until):
                client = make_client(
                    exchange_id,
                    credentials,
                    sandbox=conf.sandbox,
                    api_url=conf.api_url,
                    timeout_s=conf.timeout_s,
                )
                await client.load_markets()
                round_trips = _time_requests(client, clock)
                raw = await client.fetch_balance()
                latency_ms = round(sum(round_trips) * 1000)
                fetched_ms = clock.wall_ms()
                held = parse_balance(raw)
        except Exception as exc:
            error = _late(deadline, "no balance") if _expired(exc, until) else describe(exc, secrets)
            return ExchangeBalances(exchange_id, False, error, health=health)
        symbols = set(client.symbols or ())
        needed = {s for asset, *_ in held for s in route_symbols(asset, quote, symbols)}
        try:
            async with asyncio.timeout_at(until):  # prices share the deadline; the balance stands
                prices, price_error = await fetch_prices(client, needed, secrets)
        except TimeoutError:
            prices, price_error = {}, _late(deadline, "no prices")
    finally:
        if client is not None:
            try:
                await client.close()
            except Exception as exc:  # the read is done; a failed close changes nothing shown
                log.debug("%s: closing the client failed: %s", exchange_id, describe(exc, secrets))
    assets = value_assets(held, quote, symbols, prices)
    unpriced = tuple(sorted(a.asset for a in assets if a.value is None))
    total = sum((a.value for a in assets if a.value is not None), _ZERO)
    error = f"prices: {price_error}" if unpriced and price_error else ""
    return ExchangeBalances(
        exchange_id,
        True,
        error,
        assets,
        total,
        unpriced,
        fetched_ms,
        latency_ms,
        health,
    )


def _expired(exc: Exception, until: float) -> bool:
    """``exc`` is our deadline passing (not a timeout inside ccxt, which names itself)."""
    return isinstance(exc, TimeoutError) and asyncio.get_running_loop().time() >= until


def _late(deadline: float, what: str) -> str:
    return f"TimeoutError: {what} within {deadline:g} s ({DEADLINE_FACTOR} x timeout_s)"


def _time_requests(client: Any, clock: Clock) -> list[float]:
    """Record the duration (s) of each HTTP request ``client`` makes from now on, in the returned list.

    Wraps the client's ``fetch`` (ccxt's one HTTP call, after its rate limiter), so a latency is
    the exchange's round trip, not the time the rate limiter held the call back.
    """
    durations: list[float] = []
    fetch = client.fetch

    async def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = clock.monotonic()
        try:
            return await fetch(*args, **kwargs)
        finally:
            durations.append(clock.monotonic() - t0)

    client.fetch = timed
    return durations


def describe(exc: BaseException, secrets: Sequence[str]) -> str:
    """``ErrorClass: message`` on one line, at most 160 characters of message, secrets scrubbed."""
    text = scrub(str(exc), secrets, limit=160)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- balances and prices ----------------------------------------------------------------------------


def parse_balance(raw: Mapping[str, Any]) -> list[tuple[str, Decimal, Decimal, Decimal]]:
    """ccxt's ``fetch_balance`` result as ``(asset, free, used, total)``, assets sorted, all-zero
    ones left out. A missing total is free + used; a missing free or used is 0."""
    free = raw.get("free") or {}
    used = raw.get("used") or {}
    totals = raw.get("total") or {}
    out = []
    for asset in sorted(set(free) | set(used) | set(totals)):
        f, u = dec(free.get(asset)), dec(used.get(asset))
        t = dec(totals[asset]) if totals.get(asset) is not None else f + u
        if f or u or t:
            out.append((asset, f, u, t))
    return out


def routes(asset: str, quote: str, symbols: Collection[str]) -> list[tuple[tuple[str, bool], ...]]:
    """The ways to price ``asset`` in ``quote`` with the listed ``symbols``, best first: chains of
    ``(symbol, inverted)`` legs (direct, inverse, then via USDT; module doc). Empty for the quote."""
    if asset == quote:
        return []

    def legs(base: str, to: str) -> list[tuple[str, bool]]:
        out = []
        if f"{base}/{to}" in symbols:
            out.append((f"{base}/{to}", False))
        if f"{to}/{base}" in symbols:
            out.append((f"{to}/{base}", True))
        return out

    found: list[tuple[tuple[str, bool], ...]] = [(leg,) for leg in legs(asset, quote)]
    if BRIDGE not in (asset, quote):
        found += [(a, b) for a in legs(asset, BRIDGE) for b in legs(BRIDGE, quote)]
    return found


def route_symbols(asset: str, quote: str, symbols: Collection[str]) -> set[str]:
    """Every symbol some route of ``asset`` uses (the tickers worth fetching)."""
    return {sym for route in routes(asset, quote, symbols) for sym, _ in route}


def price_in(
    asset: str, quote: str, symbols: Collection[str], prices: Mapping[str, Decimal]
) -> Decimal | None:
    """``asset``'s price in ``quote`` (quote units per asset unit) by the first route whose every leg
    has a positive price in ``prices`` (symbol -> price); 1 for the quote itself; None if none."""
    if asset == quote:
        return Decimal(1)
    for route in routes(asset, quote, symbols):
        p = Decimal(1)
        for sym, inverted in route:
            x = prices.get(sym)
            if x is None or x <= 0:
                break
            p = p / x if inverted else p * x
        else:
            return p
    return None


def value_assets(
    held: Sequence[tuple[str, Decimal, Decimal, Decimal]],
    quote: str,
    symbols: Collection[str],
    prices: Mapping[str, Decimal],
) -> tuple[AssetBalance, ...]:
    """Each held asset with its value (total x price, 1e-8 half-even), largest value first, the
    unpriced last (then by asset)."""
    out = []
    for asset, f, u, t in held:
        p = price_in(asset, quote, symbols, prices)
        value = None if p is None else (t * p).quantize(Q8, rounding=ROUND_HALF_EVEN)
        out.append(AssetBalance(asset, f, u, t, value))
    out.sort(key=lambda a: (a.value is None, -(a.value or _ZERO), a.asset))
    return tuple(out)


def ticker_price(ticker: Mapping[str, Any]) -> Decimal | None:
    """A ccxt ticker's price: ``last``, else ``close``, else the mid of ``bid`` and ``ask``."""
    for key in ("last", "close"):
        if ticker.get(key):
            return dec(ticker[key])
    bid, ask = ticker.get("bid"), ticker.get("ask")
    if bid and ask:
        return (dec(bid) + dec(ask)) / 2
    return None


async def fetch_prices(
    client: Any, symbols: Collection[str], secrets: Sequence[str]
) -> tuple[dict[str, Decimal], str]:
    """Symbol -> price for ``symbols`` (module doc), and the first error met ("" if none).

    A symbol whose ticker failed or had no price is left out.
    """
    prices: dict[str, Decimal] = {}
    errors: list[str] = []
    wanted = sorted(symbols)
    if not wanted:
        return prices, ""
    one_by_one = not client.has.get("fetchTickers")
    if not one_by_one:
        try:
            tickers = await client.fetch_tickers(wanted)
        except Exception as exc:
            errors.append(describe(exc, secrets))
            one_by_one = True
        else:
            for sym in wanted:
                p = ticker_price(tickers.get(sym) or {})
                if p is not None:
                    prices[sym] = p
    if one_by_one:
        answers = await asyncio.gather(*(client.fetch_ticker(s) for s in wanted), return_exceptions=True)
        for sym, answer in zip(wanted, answers, strict=True):
            if isinstance(answer, asyncio.CancelledError):
                raise answer
            if isinstance(answer, BaseException):
                errors.append(describe(answer, secrets))
                continue
            p = ticker_price(answer or {})
            if p is not None:
                prices[sym] = p
    return prices, errors[0] if errors else ""


def dec(x: Any) -> Decimal:
    """A ccxt number (float, int or numeric string; None is 0) as the Decimal of its ``str``."""
    if x is None:
        return _ZERO
    if isinstance(x, Decimal):
        return x
    try:
        return Decimal(str(x))
    except InvalidOperation:
        raise ValueError(f"not a number: {x!r}") from None


def _s(d: Decimal) -> str:
    """A Decimal as a plain string, no exponent, no trailing zeros (``2.0`` -> ``2``, ``1E-7`` ->
    ``0.0000001``)."""
    return format(d.normalize(), "f")
