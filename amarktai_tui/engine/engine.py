"""TradingEngine: the one loop for replay, backtest, paper and (later) live.

    MarketFeed -> candle -> broker fills (orders from earlier candles)
               -> BotRunner.on_candle for every bot on that stream (plain loop)
               -> OrderIntents -> orders written pending (one transaction)
               -> Broker.submit -> open | rejected
               -> events on the bus

The engine owns the only writer connection (``LedgerStore``). Every write
of a tick goes into one ``WriteBatch`` and one transaction. Engine time is
the close time of the newest candle processed (ms UTC), so replay and
backtest run on a simulated clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from amarktai_tui.domain.enums import BotState, LifecycleStage, OrderState, RiskMode, TradingMode
from amarktai_tui.domain.types import Candle, Fill, Order, OrderIntent, split_pair, timeframe_to_ms
from amarktai_tui.engine.events import (
    BotCreated,
    BotStateChanged,
    EngineStopped,
    EngineTick,
    EquitySampled,
    EventBus,
    FeedStatusChanged,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
)
from amarktai_tui.engine.lifecycle import check_transition
from amarktai_tui.engine.runner import BotRunner
from amarktai_tui.exchanges.base import BrokerUpdate
from amarktai_tui.exchanges.paper import PaperBroker
from amarktai_tui.exchanges.registry import TOTAL_BOT_CAP, exchange_info
from amarktai_tui.ledger.store import BotRecord, LedgerStore, SnapshotRow, WriteBatch
from amarktai_tui.market.base import MarketFeed
from amarktai_tui.strategies.registry import make_strategy

log = logging.getLogger(__name__)

_DAY_MS = 86_400_000
COMMIT_EVERY = 512  # candles per tick transaction in a fast replay
COMMIT_AFTER_S = 0.25  # wall seconds after which pending writes commit regardless
YIELD_AFTER_S = 0.01  # wall seconds of work after which the loop lets other tasks run


@dataclass(frozen=True, slots=True)
class BotSpec:
    """What it takes to create a bot (from config, the new-bot form, or demo defaults)."""

    name: str
    exchange: str
    pair: str
    timeframe: str
    strategy: str
    params: dict[str, object]
    risk_mode: RiskMode
    capital: Decimal
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    trailing_stop: Decimal | None = None


class EngineError(RuntimeError):
    """A command the engine cannot carry out (message says why, for the user)."""


class TradingEngine:
    """Runs bots over a feed, writes the ledger, publishes events.

    Construct, ``await start(specs)``, then ``await run(feed)``; commands
    (pause, resume, stop, create) may be awaited at any time from the UI.
    ``await close()`` flushes and writes a final equity snapshot.
    """

    def __init__(
        self,
        store: LedgerStore,
        broker: PaperBroker,
        *,
        bus: EventBus | None = None,
        quote_currency: str = "USDT",
        slippage: Decimal = Decimal("0.0005"),
        snapshot_interval: str = "1h",
        mode: TradingMode = TradingMode.PAPER,
        wall_clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.store = store
        self.broker = broker
        self.bus = bus or EventBus()
        self.quote_currency = quote_currency
        self.slippage = slippage
        self.mode = mode
        self.snapshot_ms = timeframe_to_ms(snapshot_interval)
        self._wall = wall_clock_ms
        self.runners: dict[int, BotRunner] = {}
        self._by_stream: dict[tuple[str, str], list[BotRunner]] = {}
        self._inflight: dict[str, Order] = {}
        self._intents: list[OrderIntent] = []
        self._batch = WriteBatch()
        self._tf_ms: dict[str, int] = {}
        self.now_ms = 0
        self._next_snap: int | None = None
        self._day: int | None = None
        self.day_start_equity: Decimal | None = None
        self.candles_seen = 0
        self.fills_seen = 0
        self.fill_log: list[Fill] = []  # every fill of this ledger, oldest first (UI tables, today's PnL)
        self.feed: MarketFeed | None = None
        self.running = False
        self._write_task: asyncio.Future[None] | None = None
        self._write_lock = asyncio.Lock()
        self._snapshots_until = 0  # newest snapshot time already in the ledger
        self._snap_fills: dict[int, int] = {}  # bot id -> fills in its last row (-1: it was long)

    # -- start-up -----------------------------------------------------------
    async def start(self, specs: Iterable[BotSpec] = ()) -> None:
        """Load bots from the ledger, create missing ``specs``, rebuild lots and balances from fills."""
        records = {r.name: r for r in await self.store.load_bots()}
        created_ts = self._clock()
        for spec in specs:
            if spec.name in records:
                continue
            rec = _record(spec)
            rec.id = await self.store.insert_bot(rec, created_ts, spec.capital, split_pair(spec.pair)[1])
            records[rec.name] = rec
            self.bus.publish(BotCreated(created_ts, rec.id, rec.name))
        self._snapshots_until = await self.store.last_snapshot_ts()
        funding = await self.store.funding_by_bot()
        for rec in sorted(records.values(), key=lambda r: r.id):
            self._add_runner(rec, funding.get(rec.id, Decimal(0)))
        for fill in await self.store.load_fills():
            runner = self.runners.get(fill.bot_id)
            if runner is not None:
                runner.apply_fill(fill)  # rebuild lots, cash and stats from the ledger
                self.fill_log.append(fill)
                runner.resume_after = max(runner.resume_after or 0, fill.ts)
        for runner in self.runners.values():
            self.broker.set_balance(runner.rec.id, runner.cash, runner.book.position_qty)
        await self._resume_orders()

    def _add_runner(self, rec: BotRecord, funding: Decimal) -> BotRunner:
        strategy = make_strategy(rec.strategy, rec.params)
        runner = BotRunner(
            rec,
            strategy,
            funding=funding,
            taker_fee=self.broker.fee_rate(rec.exchange, rec.pair, maker=False),
            slippage=self.slippage,
        )
        self.runners[rec.id] = runner
        self._by_stream.setdefault((rec.pair, rec.timeframe), []).append(runner)
        return runner

    async def _resume_orders(self) -> None:
        """Orders left pending/open by a previous run go back to the broker under the same id."""
        for order in await self.store.load_active_orders():
            runner = self.runners.get(order.bot_id)
            if runner is None:
                continue
            runner.in_flight = order.client_order_id
            self._inflight[order.client_order_id] = order
            upd = await self.broker.submit(order)
            self._on_update(upd)

    # -- the loop ---------------------------------------------------------
    async def run(self, feed: MarketFeed) -> None:
        """Consume ``feed`` until it ends or ``stop`` is called; flush at the end.

        A tick's writes commit together. With a fast replay, a tick groups the
        candles processed since the last commit, up to ``COMMIT_EVERY`` candles
        or ``COMMIT_AFTER_S`` seconds of wall time, whichever comes first; with
        a real-time feed every candle is its own tick.
        """
        self.feed = feed
        self.running = True
        self.bus.publish(FeedStatusChanged(self.now_ms, feed.status()))
        await self.warm_up(feed)
        idle_flusher = asyncio.ensure_future(self._flush_when_idle())
        since = 0
        last = yielded = time.monotonic()
        try:
            async for candle in feed.candles():
                self.process(candle)
                since += 1
                if self._intents:  # an external broker: pending rows commit before it is called
                    await self._commit()
                    since, last = 0, time.monotonic()
                    continue
                now = time.monotonic()
                if since >= COMMIT_EVERY or now - last >= COMMIT_AFTER_S:
                    await self._write_behind()
                    since, last = 0, now
                if now - yielded >= YIELD_AFTER_S:  # keep a UI on the same loop responsive
                    await asyncio.sleep(0)
                    yielded = time.monotonic()
                if not self.running:
                    break
        finally:
            self.running = False
            idle_flusher.cancel()
            await self.flush(final=True)
            self.bus.publish(FeedStatusChanged(self.now_ms, feed.status()))
            self.bus.publish(EngineStopped(self.now_ms, "feed ended"))

    async def warm_up(self, feed: MarketFeed) -> None:
        """Backfill each stream's warm-up history (exchange feeds) into its bots' strategies.

        A bot that already acted on candles (``resume_after``) warms on the
        history too; candles it has seen are skipped by time. Replay feeds
        return no history: their bots warm up on the first candles of the file.
        """
        for (pair, tf), runners in self._by_stream.items():
            need = max((r.strategy.warmup for r in runners), default=0)
            if not need:
                continue
            try:
                history = await feed.history(pair, tf, need)
            except Exception as exc:  # a failed backfill delays signals; it must not stop the engine
                log.warning("warm-up history for %s %s failed: %s", pair, tf, exc)
                continue
            for c in history:
                for r in runners:
                    try:
                        r.warm(c)
                    except Exception as exc:
                        self._fail(r, exc)

    def process(self, c: Candle) -> None:
        """Handle one closed candle synchronously: fills, decisions, snapshots."""
        tf = self._tf_ms.get(c.timeframe)
        if tf is None:
            tf = self._tf_ms[c.timeframe] = timeframe_to_ms(c.timeframe)
        close_ts = c.ts + tf
        if close_ts > self.now_ms:
            self._advance_clock(close_ts)
        self.candles_seen += 1
        for upd in self.broker.on_candle(c):
            self._on_update(upd)
        runners = self._by_stream.get((c.pair, c.timeframe))
        if runners:
            for runner in runners:
                try:
                    intent = runner.on_candle(c)
                except Exception as exc:  # one bot's bug never stops the others
                    self._fail(runner, exc)
                    continue
                if intent is not None:
                    if self.broker.external:
                        self._intents.append(intent)
                    else:
                        self._submit_internal(intent)
        self.bus.publish(EngineTick(self.now_ms, c))

    def _advance_clock(self, close_ts: int) -> None:
        if self._next_snap is None:
            self._next_snap = (close_ts // self.snapshot_ms + 1) * self.snapshot_ms
        elif close_ts > self._next_snap:
            self._snapshot()  # everything up to the previous close is in
            self._next_snap = (self.now_ms // self.snapshot_ms + 1) * self.snapshot_ms
        self.now_ms = close_ts
        day = close_ts // _DAY_MS
        if day != self._day:
            self._day = day
            self.day_start_equity = self.account_equity()

    def _on_update(self, upd: BrokerUpdate) -> None:
        order = self._inflight.get(upd.client_order_id)
        if order is None:
            log.warning("update for unknown order %s ignored", upd.client_order_id)
            return
        runner = self.runners[order.bot_id]
        now = self.now_ms
        if upd.state is OrderState.OPEN:
            self._batch.order_updates.append((order.client_order_id, OrderState.OPEN, "", now, None))
            return
        del self._inflight[upd.client_order_id]
        runner.in_flight = None
        if upd.state is OrderState.FILLED and upd.fill is not None:
            fill = runner.apply_fill(upd.fill)
            self.fills_seen += 1
            self._batch.fills.append(fill)
            self.fill_log.append(fill)
            self._batch.order_updates.append((order.client_order_id, OrderState.FILLED, "", now, None))
            self.bus.publish(
                OrderFilled(
                    now,
                    runner.rec.id,
                    fill.client_order_id,
                    fill.pair,
                    fill.side,
                    fill.quantity,
                    fill.price,
                    fill.fee,
                    fill.realised_pnl,
                )
            )
            if runner.rec.state is BotState.STOPPED:  # stopped while its buy was in flight: close it
                runner.exit_requested = (
                    (runner.exit_requested or "bot stopped by user") if runner.long else None
                )
        else:
            self._batch.order_updates.append((order.client_order_id, upd.state, upd.reason, now, None))
            self.bus.publish(
                OrderRejected(
                    now, runner.rec.id, order.client_order_id, order.pair, order.side, upd.state, upd.reason
                )
            )

    def _pending_order(self, it: OrderIntent) -> Order:
        """Record ``it`` as a pending order in the batch and mark its bot in flight."""
        now = self.now_ms
        order = Order(
            client_order_id=it.client_order_id, bot_id=it.bot_id, exchange=it.exchange, pair=it.pair,
            side=it.side, order_type=it.order_type, quantity=it.quantity, limit_price=it.limit_price,
            state=OrderState.PENDING, created_ts=now, updated_ts=now, reason=it.reason,
        )  # fmt: skip
        self._batch.new_orders.append((order, it.decision_ts, it.edge_bps))
        runner = self.runners[it.bot_id]
        runner.in_flight = order.client_order_id
        self._inflight[order.client_order_id] = order
        return order

    def _acknowledged(self, order: Order, upd: BrokerUpdate) -> None:
        self._on_update(upd)
        if upd.state is OrderState.OPEN:
            self.bus.publish(
                OrderSubmitted(
                    self.now_ms,
                    order.bot_id,
                    order.client_order_id,
                    order.pair,
                    order.side,
                    order.quantity,
                    order.reason,
                )
            )

    def _submit_internal(self, it: OrderIntent) -> None:
        """Paper: the pending row and its acknowledgement land in the same tick transaction."""
        assert isinstance(self.broker, PaperBroker)
        order = self._pending_order(it)
        self._acknowledged(order, self.broker.accept(order))

    async def _commit(self) -> None:
        """External broker: commit the pending rows first (write-ahead), then submit them."""
        new = [self._pending_order(it) for it in self._intents]
        self._intents.clear()
        self._mark_positions()
        batch, self._batch = self._batch, WriteBatch()
        await self.store.write(batch)  # the rows exist before the broker sees them
        for order in new:
            self._acknowledged(order, await self.broker.submit(order))

    def _mark_positions(self) -> None:
        """Persist every bot's last processed candle with the tick (a restart resumes after it)."""
        now = self.now_ms
        for r in self.runners.values():
            self._batch.bot_updates[r.rec.id] = (r.rec.state, r.rec.state_reason, r.last_ts, now)

    async def _flush_when_idle(self) -> None:
        """Commit pending writes when no candle has come for a while (a replay that ended, a quiet feed)."""
        seen = -1
        state = self.feed.status().state if self.feed is not None else None
        while True:
            await asyncio.sleep(COMMIT_AFTER_S)
            if self.candles_seen == seen and self._batch:
                await self._write_behind()
            seen = self.candles_seen
            if self.feed is not None and (status := self.feed.status()).state != state:
                state = status.state
                self.bus.publish(FeedStatusChanged(self.now_ms, status))

    async def _write_behind(self) -> None:
        """Commit the tick in the background while the loop goes on (paper broker only).

        At most one write is in flight; the next tick waits for it, so an error
        surfaces one tick later and writes stay in order. The database is
        always a consistent cut at a tick boundary (each batch is one
        transaction); a crash loses at most the ticks not yet committed, which
        a restart replays deterministically from the bots' last committed candle.
        """
        async with self._write_lock:
            if self._write_task is not None:
                await self._write_task
            self._mark_positions()
            batch, self._batch = self._batch, WriteBatch()
            self._write_task = asyncio.ensure_future(self.store.write(batch))

    async def flush(self, *, final: bool = False) -> None:
        """Write whatever is pending; ``final`` also writes every bot's position in time and a snapshot."""
        async with self._write_lock:
            if self._write_task is not None:
                task, self._write_task = self._write_task, None
                await task
        if self._intents:
            await self._commit()
        if final and self.now_ms:
            self._snapshot()
        if self.now_ms:
            self._mark_positions()
        batch, self._batch = self._batch, WriteBatch()  # the loop may add to a new batch meanwhile
        await self.store.write(batch)

    def stop(self) -> None:
        """Ask the run loop to end after the current candle (and the feed to stop)."""
        self.running = False
        if self.feed is not None:
            self.feed.stop()

    # -- snapshots and figures -------------------------------------------------
    def _snapshot(self) -> None:
        ts = self.now_ms
        if not ts or ts <= self._snapshots_until:
            return  # a restart re-warming over times a previous run already recorded
        tot_eq = tot_real = tot_unreal = tot_fees = Decimal(0)
        per_bot: dict[int, Decimal] = {}
        zero = Decimal(0)
        for r in self.runners.values():
            st = r.stats
            bot_id = r.rec.id
            if r.long:
                unreal = r.unrealised()
                eq = r.funding + st.realised + unreal
                qty = r.book.position_qty
            else:  # flat: equity moves only with a fill, so a row is written only when fills changed
                unreal, qty = zero, zero
                eq = r.flat_equity()
            if r.long or self._snap_fills.get(bot_id) != st.fills:
                self._batch.snapshots.append(
                    SnapshotRow(ts, bot_id, eq, st.realised, unreal, st.fees, qty, r.mark_price(), st.fills)
                )
                self._snap_fills[bot_id] = -1 if r.long else st.fills
            per_bot[bot_id] = eq
            tot_eq += eq
            tot_real += st.realised
            tot_unreal += unreal
            tot_fees += st.fees
        self._batch.snapshots.append(
            SnapshotRow(
                ts, None, tot_eq, tot_real, tot_unreal, tot_fees, Decimal(0), None, len(self.fill_log)
            )
        )
        self.bus.publish(EquitySampled(ts, tot_eq, per_bot))

    def open_order(self, bot_id: int) -> Order | None:
        """The bot's order in flight (pending or open), if any."""
        runner = self.runners.get(bot_id)
        if runner is None or runner.in_flight is None:
            return None
        return self._inflight.get(runner.in_flight)

    def account_equity(self) -> Decimal:
        return sum((r.equity() for r in self.runners.values()), Decimal(0))

    def today_pnl(self) -> Decimal:
        start = self.day_start_equity
        return Decimal(0) if start is None else self.account_equity() - start

    # -- commands (UI, CLI, later the AI console after confirmation) ----------
    def runner_by_name(self, name: str) -> BotRunner:
        for r in self.runners.values():
            if r.rec.name == name:
                return r
        raise EngineError(f"no bot named {name!r}")

    async def set_bot_state(self, bot_id: int, new: BotState, reason: str = "") -> None:
        """Move a bot along the lifecycle table; raises EngineError on a disallowed move."""
        runner = self.runners.get(bot_id)
        if runner is None:
            raise EngineError(f"no bot with id {bot_id}")
        try:
            check_transition(runner.rec.state, new)
        except ValueError as exc:
            raise EngineError(f"{runner.rec.name}: {exc}") from None
        if new is BotState.STOPPED and runner.long:
            runner.exit_requested = reason or "bot stopped by user"
        if new is BotState.RUNNING:
            runner.exit_requested = None
        self._set_state(runner, new, reason)
        await self.flush()

    async def pause_all(self) -> int:
        n = 0
        for r in self.runners.values():
            if r.rec.state is BotState.RUNNING:
                self._set_state(r, BotState.PAUSED, "pause all")
                n += 1
        await self.flush()
        return n

    async def resume_all(self) -> int:
        n = 0
        for r in self.runners.values():
            if r.rec.state is BotState.PAUSED:
                self._set_state(r, BotState.RUNNING, "resume all")
                n += 1
        await self.flush()
        return n

    async def create_bot(self, spec: BotSpec) -> BotRunner:
        """Create and fund a bot (paper); raises EngineError with the reason when it cannot."""
        if any(r.rec.name == spec.name for r in self.runners.values()):
            raise EngineError(f"a bot named {spec.name!r} exists already")
        try:
            info = exchange_info(spec.exchange)
            split_pair(spec.pair)
            timeframe_to_ms(spec.timeframe)
            make_strategy(spec.strategy, spec.params)
        except (KeyError, ValueError) as exc:
            raise EngineError(str(exc).strip("'\"")) from None
        on_exchange = sum(1 for r in self.runners.values() if r.rec.exchange == spec.exchange)
        if on_exchange >= info.bot_cap:
            raise EngineError(f"{spec.exchange} has {on_exchange} bots; its cap is {info.bot_cap}")
        if len(self.runners) >= TOTAL_BOT_CAP:
            raise EngineError(f"{len(self.runners)} bots exist; the limit is {TOTAL_BOT_CAP}")
        if spec.capital <= 0:
            raise EngineError("capital must be > 0")
        rec = _record(spec)
        now = self._clock()
        rec.id = await self.store.insert_bot(rec, now, spec.capital, split_pair(spec.pair)[1])
        runner = self._add_runner(rec, spec.capital)
        if self.day_start_equity is not None:  # new capital is funding, not today's profit
            self.day_start_equity += spec.capital
        self.broker.set_balance(rec.id, spec.capital)
        self.bus.publish(BotCreated(now, rec.id, rec.name))
        return runner

    def _fail(self, runner: BotRunner, exc: Exception) -> None:
        """A bot's strategy raised: ERROR with the reason (once; the bot then sits out)."""
        if runner.rec.state is not BotState.ERROR:
            log.warning("bot %s: strategy raised", runner.rec.name, exc_info=exc)
            self._set_state(runner, BotState.ERROR, f"strategy raised {type(exc).__name__}: {exc}")

    def _set_state(self, runner: BotRunner, new: BotState, reason: str) -> None:
        old = runner.rec.state
        runner.rec.state = new
        runner.rec.state_reason = reason
        self._batch.bot_updates[runner.rec.id] = (new, reason, runner.last_ts, self.now_ms or self._clock())
        self.bus.publish(BotStateChanged(self.now_ms, runner.rec.id, runner.rec.name, old, new, reason))

    def _clock(self) -> int:
        if self.now_ms:
            return self.now_ms
        if self._wall is not None:
            return self._wall()
        return int(time.time() * 1000)


def _record(spec: BotSpec) -> BotRecord:
    return BotRecord(
        id=0,
        name=spec.name,
        exchange=spec.exchange,
        pair=spec.pair,
        timeframe=spec.timeframe,
        strategy=spec.strategy,
        params=dict(spec.params),
        risk_mode=spec.risk_mode,
        capital=spec.capital,
        stop_loss=spec.stop_loss,
        take_profit=spec.take_profit,
        trailing_stop=spec.trailing_stop,
        state=BotState.RUNNING,
        state_reason="",
        stage=LifecycleStage.PAPER_TRAINING,
        last_candle_ts=None,
    )
