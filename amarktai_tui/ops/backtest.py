"""Backtests: one strategy over candle files, through the same engine path as a replay.

``run_backtest(settings, request, run_dir)`` builds the user's settings with one bot per data
stream (pair and timeframe from ``--pair``/``--timeframe`` or the file name, as ``--replay``
does) running ``request.strategy`` with ``request.params``, and runs ``engine.setup.open_engine``
+ ``engine.run(feed)`` over a ``ReplayFeed`` at speed 0 until the data ends: the same
strategies, risk pipeline, breakers and paper broker as ``amarktai --daemon --replay``, on the
simulated clock (engine time = the close time of the newest candle). Everything else comes from
the user's config: ``[paper]`` fees and slippage, ``[risk]`` gates and breakers, ``[allocator]``,
``[engine]`` snapshot interval, ``[market] exchange``; configured ``[[bots]]`` are not run.
Capital per bot: ``request.capital``, else the ``[[bots]] capital`` default (1000 quote).

``run_dir`` must hold no ledger: the run writes a fresh one there (a temporary directory, or
``--keep DIR``). No control socket, no services, no keyring; the caller decides about logging.

The result (``BacktestResult``) is read back from that ledger through ``ledger.profits``
``ProfitService``: the account figures and metrics, per-bot figures, closed trades with their
average entry and exit prices, open positions, the equity curve, and the breaker trips.

Errors: ``BacktestUsageError`` (unknown strategy, bad params, bad ``--pair``/``--timeframe``,
too many files, a ``run_dir`` that already holds a ledger) and ``market.errors.CandleFileError``
(missing or malformed data file) are bad usage, raised before any ledger is written; anything
else raised is a runtime failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from amarktai_tui.config import BotSettings, Settings
from amarktai_tui.domain.types import Candle, split_pair, timeframe_to_ms
from amarktai_tui.ledger import reader
from amarktai_tui.ledger.profits import BotProfit, Point, ProfitFigures, ProfitService, fill_fee
from amarktai_tui.ledger.reader import FillRow, TripRow
from amarktai_tui.ledger.schema import connect_readonly
from amarktai_tui.locations import db_path
from amarktai_tui.market.base import FeedStatus, MarketFeed
from amarktai_tui.market.errors import CandleFileError
from amarktai_tui.market.names import pair_timeframe_from_name, parse_file_name
from amarktai_tui.strategies.base import StrategyParamError
from amarktai_tui.strategies.registry import make_strategy

ZERO = Decimal(0)
ProgressFn = Callable[[float, int], None]
"""``(fraction done 0..1, candles in all files)``, called about every ``PROGRESS_EVERY_S``."""
PROGRESS_EVERY_S = 0.1


class BacktestUsageError(ValueError):
    """Bad backtest input; ``str()`` is one line naming the flag and what is wrong."""


@dataclass(frozen=True, slots=True)
class BacktestRequest:
    """What to run: a built-in strategy (``strategies.registry``) with ``params`` (unchecked user
    input; missing ones take their defaults) over candle ``files``; ``pair``/``timeframe`` override
    the file names; ``capital`` per bot in quote (None = the ``[[bots]]`` default); ``risk_mode``
    a ``RiskMode`` value (None = the ``[[bots]]`` default; evolution sets its DNA's);
    ``stop_loss``/``take_profit`` fractions (None = the ``[[bots]]`` defaults; the optimiser sets
    them); ``trade_from_ms``: candles opening before it (ms UTC) only warm the strategy up, as an
    exchange feed's history does (no orders), and trading starts with the first candle at or after
    it (None = every candle is traded; a walk-forward window starts here)."""

    strategy: str
    files: tuple[str, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    pair: str | None = None
    timeframe: str | None = None
    capital: Decimal | None = None
    risk_mode: str | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    trade_from_ms: int | None = None


@dataclass(frozen=True, slots=True)
class TradeRow:
    """A closed round trip of one bot, flat to flat (long only): times ms UTC; ``qty`` base bought
    (== sold); ``entry_price``/``exit_price`` quantity-weighted averages of the buys/sells;
    ``pnl`` the sum of the sells' realised PnL (quote, fees included); ``fees`` all its fees in
    quote; ``return_`` = pnl / (cost of the buys incl. fees), a fraction."""

    bot: str
    pair: str
    side: str
    entry_ts: int
    exit_ts: int
    qty: Decimal
    entry_price: Decimal
    exit_price: Decimal
    pnl: Decimal
    fees: Decimal
    return_: float | None


@dataclass(frozen=True, slots=True)
class OpenPosition:
    """A position still open when the data ended: base ``qty``, average entry (quote per base),
    the last mark price and the unrealised PnL at it (quote), first buy time ms UTC."""

    bot: str
    pair: str
    entry_ts: int
    qty: Decimal
    entry_price: Decimal | None
    mark: Decimal | None
    unrealised: Decimal


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """One data file: the bot that traded it, its pair and timeframe."""

    file: str
    bot: str
    pair: str
    timeframe: str


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """A finished backtest (see the module doc). ``start_ms``/``end_ms``: the first candle's open
    and the last candle's close (ms UTC); ``elapsed_s`` wall seconds of the run (engine only);
    ``figures`` account figures at ``end_ms`` (``ProfitFigures``: money Decimal quote, metrics in
    ``figures.stats``); ``equity`` the account equity curve ``[(ts ms, quote)]``; ``trips`` the
    circuit-breaker trips of the run, oldest first (a tripped bot stops opening positions)."""

    strategy: str
    params: dict[str, Any]
    exchange: str
    quote: str
    capital_per_bot: Decimal
    streams: list[StreamInfo]
    start_ms: int
    end_ms: int
    candles: int
    fills: int
    elapsed_s: float
    figures: ProfitFigures
    bots: list[BotProfit]
    trades: list[TradeRow]
    open_positions: list[OpenPosition]
    equity: list[Point]
    trips: list[TripRow]

    @property
    def bot_candles_per_s(self) -> float:
        """Candles handed to bots per wall second (one candle feeds the one bot of its stream)."""
        return self.candles / self.elapsed_s if self.elapsed_s > 0 else 0.0


# -- input ---------------------------------------------------------------------------------


def parse_params(text: str | None) -> dict[str, Any]:
    """``--params`` JSON text as a dict (None or empty = ``{}``). Raises BacktestUsageError."""
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BacktestUsageError(f"--params is not valid JSON: {exc.msg} at character {exc.pos}") from None
    if not isinstance(value, dict):
        raise BacktestUsageError('--params must be a JSON object, e.g. \'{"fast": 10, "slow": 30}\'')
    return value


def effective_params(strategy: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The strategy's parameters with defaults filled in. Raises BacktestUsageError naming the
    unknown strategy (listing the valid ones) or the bad parameter (value and allowed range)."""
    try:
        return dict(make_strategy(strategy, params).params)
    except StrategyParamError as exc:
        raise BacktestUsageError(str(exc).splitlines()[0]) from None


def resolve_streams(files: Sequence[str], pair: str | None, timeframe: str | None) -> list[tuple[str, str]]:
    """``(pair, timeframe)`` of each file as the replay loader names them: the overrides, else the
    file name. Raises BacktestUsageError (a bad override) or CandleFileError (a name saying neither)."""
    for flag, value, check in (("--pair", pair, split_pair), ("--timeframe", timeframe, timeframe_to_ms)):
        try:
            if value is not None:
                check(value)
        except ValueError as exc:
            raise BacktestUsageError(f"{flag}: {exc}") from None
    out = []
    for f in files:
        if not os.path.isfile(f):
            raise CandleFileError(f, "no such file")
        if pair is None or timeframe is None:
            named = parse_file_name(f) or pair_timeframe_from_name(f)  # the latter raises CandleFileError
            out.append((pair or named[0], timeframe or named[1]))
        else:
            out.append((pair, timeframe))
    return out


def bot_name(pair: str, timeframe: str) -> str:
    """``BTC/USDT``, ``1h`` -> ``btc-usdt-1h`` (a valid, per-stream unique ``[[bots]] name``)."""
    return f"{pair.replace('/', '-')}-{timeframe}".lower()


def backtest_settings(
    settings: Settings, request: BacktestRequest, streams: Sequence[tuple[str, str]]
) -> Settings:
    """``settings`` with ``[[bots]]`` replaced by one bot per stream running the request's strategy.

    Raises BacktestUsageError when the streams exceed the exchange's bot cap, or a bot is invalid.
    """
    from amarktai_tui.exchanges.registry import exchange_info

    exchange = settings.market.exchange
    cap = exchange_info(exchange).bot_cap
    if len(streams) > cap:
        raise BacktestUsageError(f"--data: {len(streams)} files, but {exchange} runs at most {cap} bots")
    bots = []
    for pair, tf in streams:
        fields: dict[str, Any] = {
            "name": bot_name(pair, tf),
            "exchange": exchange,
            "pair": pair,
            "timeframe": tf,
            "strategy": request.strategy,
            "params": dict(request.params),
        }
        if request.capital is not None:
            fields["capital"] = request.capital
        if request.risk_mode is not None:
            fields["risk_mode"] = request.risk_mode
        for exit_ in ("stop_loss", "take_profit"):
            if getattr(request, exit_) is not None:
                fields[exit_] = getattr(request, exit_)
        try:
            bots.append(BotSettings(**fields))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise BacktestUsageError(f"bot {fields['name']}: {str(exc).splitlines()[-1].strip()}") from None
    return settings.model_copy(update={"bots": bots})


# -- the run ---------------------------------------------------------------------------------


async def run_backtest(
    settings: Settings,
    request: BacktestRequest,
    run_dir: Path,
    *,
    on_progress: ProgressFn | None = None,
) -> BacktestResult:
    """Run ``request`` into a fresh ledger in ``run_dir`` and read the result back (module doc).

    ``on_progress(fraction, total candles)`` is called while the run goes on and once at 1.0.
    Raises BacktestUsageError or CandleFileError (bad usage, nothing written), else runtime errors.
    """
    from amarktai_tui.engine.events import EngineTick, EventBus
    from amarktai_tui.engine.setup import ReplayArgs, open_engine
    from amarktai_tui.locations import lock_path
    from amarktai_tui.market.replay import ReplayFeed
    from amarktai_tui.ops.lock import EngineLock

    params = effective_params(request.strategy, request.params)
    streams = resolve_streams(request.files, request.pair, request.timeframe)
    bt_settings = backtest_settings(settings, request, streams)
    if db_path(run_dir).exists():
        raise BacktestUsageError(
            f"{run_dir} already holds a ledger; a backtest needs a new or empty directory"
        )
    replay = ReplayArgs(list(request.files), request.pair, request.timeframe, speed=0.0, until_end=True)
    bus = EventBus()
    first: list[int] = []

    def on_first(ev: EngineTick) -> None:  # the first candle's open time; then no more calls
        first.append(ev.candle.ts)
        unsubscribe()

    unsubscribe = bus.subscribe(EngineTick, on_first)
    with EngineLock(lock_path(run_dir)):
        engine, feed = await open_engine(bt_settings, run_dir, replay, bus)
        total = feed.total if isinstance(feed, ReplayFeed) else 0
        if request.trade_from_ms is not None:
            feed = _TradeFrom(feed, request.trade_from_ms)
        reporter = None
        if on_progress is not None:
            reporter = asyncio.ensure_future(_report_progress(feed.status, total, on_progress))
        t0 = time.perf_counter()
        try:
            await engine.run(feed)
        finally:
            elapsed = time.perf_counter() - t0
            if reporter is not None:
                reporter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reporter
            await engine.close()
    if on_progress is not None:
        on_progress(1.0, total)
    infos = [StreamInfo(f, bot_name(p, tf), p, tf) for f, (p, tf) in zip(request.files, streams, strict=True)]
    start_ms = first[0] if first else engine.now_ms
    return read_result(
        run_dir,
        strategy=request.strategy,
        params=params,
        settings=bt_settings,
        streams=infos,
        start_ms=start_ms,
        end_ms=engine.now_ms,
        candles=engine.candles_seen,
        elapsed_s=elapsed,
    )


class _TradeFrom:
    """``feed`` whose candles opening before ``ts`` are warm-up history (``history()``), not traded."""

    def __init__(self, feed: MarketFeed, ts: int) -> None:
        self._feed, self._ts = feed, ts
        self._it = feed.candles().__aiter__()
        self._before: list[Candle] | None = None
        self._next: Candle | None = None

    @property
    def streams(self) -> list[tuple[str, str]]:
        return self._feed.streams

    def status(self) -> FeedStatus:
        return self._feed.status()

    def stop(self) -> None:
        self._feed.stop()

    async def _split(self) -> list[Candle]:
        if self._before is None:
            self._before = []
            async for c in self._it:
                if c.ts >= self._ts:
                    self._next = c
                    break
                self._before.append(c)
        return self._before

    async def history(self, pair: str, timeframe: str, limit: int) -> list[Candle]:
        before = [c for c in await self._split() if c.pair == pair and c.timeframe == timeframe]
        return before[-limit:] if limit > 0 else []

    async def candles(self) -> AsyncIterator[Candle]:
        await self._split()
        if self._next is not None:
            yield self._next
            async for c in self._it:
                yield c


async def _report_progress(status: Callable[[], Any], total: int, on_progress: ProgressFn) -> None:
    while True:
        on_progress(float(status().progress or 0.0), total)
        await asyncio.sleep(PROGRESS_EVERY_S)


def read_result(
    run_dir: Path,
    *,
    strategy: str,
    params: dict[str, Any],
    settings: Settings,
    streams: list[StreamInfo],
    start_ms: int,
    end_ms: int,
    candles: int,
    elapsed_s: float,
) -> BacktestResult:
    """The ``BacktestResult`` of the finished ledger in ``run_dir`` (read-only)."""
    conn = connect_readonly(str(db_path(run_dir)))
    try:
        svc = ProfitService.read(conn)
        trips = sorted(reader.breaker_trips(conn), key=lambda t: (t.ts, t.id))
    finally:
        conn.close()
    names = {b.id: b.name for b, _ in svc.bots}
    fills = svc.fills()
    trades, opened = trade_rows(fills, names)
    capital = settings.bots[0].capital if settings.bots else ZERO
    equity, _ = svc.equity_curve("all", end_ms)
    quotes = {split_pair(s.pair)[1] for s in streams}
    return BacktestResult(
        strategy=strategy,
        params=params,
        exchange=settings.market.exchange,
        quote=quotes.pop() if len(quotes) == 1 else settings.general.quote_currency,
        capital_per_bot=capital,
        streams=streams,
        start_ms=start_ms,
        end_ms=end_ms,
        candles=candles,
        fills=len(fills),
        elapsed_s=elapsed_s,
        figures=svc.figures(end_ms),
        bots=svc.by_bot(start_ms, end_ms + 1),
        trades=trades,
        open_positions=_open_positions(svc, opened),
        equity=equity,
        trips=trips,
    )


@dataclass(slots=True)
class _Walk:
    entry_ts: int
    bought: Decimal = ZERO
    buy_value: Decimal = ZERO
    sold: Decimal = ZERO
    sell_value: Decimal = ZERO
    pnl: Decimal = ZERO
    fees: Decimal = ZERO
    cost: Decimal = ZERO


def trade_rows(fills: Sequence[FillRow], names: Mapping[int, str]) -> tuple[list[TradeRow], dict[int, int]]:
    """Closed trades (by exit time) from fills in ledger order, per (bot, exchange, pair) from flat
    to flat; and, per bot with a position left open, the time of the buy that opened it."""
    open_: dict[tuple[int, str, str], _Walk] = {}
    out: list[TradeRow] = []
    for f in fills:
        key = (f.bot_id, f.exchange, f.pair)
        fee = fill_fee(f)
        w = open_.get(key)
        if w is None:
            w = open_[key] = _Walk(entry_ts=f.ts)
        w.fees += fee
        if f.side == "buy":
            w.bought += f.quantity
            w.buy_value += f.quantity * f.price
            w.cost += f.quantity * f.price + fee
        else:
            w.sold += f.quantity
            w.sell_value += f.quantity * f.price
            w.pnl += f.realised_pnl
        if w.bought and w.sold == w.bought:
            out.append(
                TradeRow(
                    bot=names.get(f.bot_id, str(f.bot_id)),
                    pair=f.pair,
                    side="long",
                    entry_ts=w.entry_ts,
                    exit_ts=f.ts,
                    qty=w.bought,
                    entry_price=w.buy_value / w.bought,
                    exit_price=w.sell_value / w.sold,
                    pnl=w.pnl,
                    fees=w.fees,
                    return_=float(w.pnl / w.cost) if w.cost else None,
                )
            )
            del open_[key]
    out.sort(key=lambda t: t.exit_ts)
    return out, {bot_id: w.entry_ts for (bot_id, _, _), w in open_.items()}


def _open_positions(svc: ProfitService, opened: Mapping[int, int]) -> list[OpenPosition]:
    return [
        OpenPosition(
            bot=b.name,
            pair=b.pair,
            entry_ts=opened.get(b.id, 0),
            qty=fig.position,
            entry_price=fig.avg_entry,
            mark=fig.mark,
            unrealised=fig.unrealised,
        )
        for b, fig in svc.bots
        if fig.position > 0
    ]
