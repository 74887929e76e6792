"""EngineCore: the one loop for replay, backtest, paper and live.

    MarketFeed -> candle -> staggered orders due -> broker fills
               -> breaker marks -> BotRunner.on_candle for every bot on that stream
               -> OrderIntent -> pipeline (risk.pipeline: idempotency, fee coverage,
                  limits, breakers, staggerer) -> refused | queued | submitted
               -> orders written (pending, or rejected with the gate) -> Broker
               -> events on the bus

The engine owns the only writer connection (``LedgerStore``). Every write
of a tick goes into one ``WriteBatch`` and one transaction. Engine time is
the close time of the newest candle processed (ms UTC), so replay and
backtest run on a simulated clock. ``engine.TradingEngine`` adds the user commands.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING

from amarktai_tui.domain.enums import BotState, LifecycleStage, OrderState, Side, TradingMode
from amarktai_tui.domain.types import Candle, Fill, Order, OrderIntent, split_pair, timeframe_to_ms
from amarktai_tui.engine.events import (
    BotCreated,
    BotStateChanged,
    BreakerTripped,
    CapitalChanged,
    EngineStopped,
    EngineTick,
    EquitySampled,
    EventBus,
    FeedStatusChanged,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    StageChanged,
)
from amarktai_tui.engine.reconcile import reconcile_live
from amarktai_tui.engine.risk_state import gauges_json, restore_risk
from amarktai_tui.engine.runner import BotRunner
from amarktai_tui.engine.snapshots import snapshot_rows
from amarktai_tui.engine.spec import BotSpec, record_of
from amarktai_tui.engine.stages import StageKeeper
from amarktai_tui.exchanges.base import Broker, BrokerUpdate
from amarktai_tui.exchanges.live import CcxtBroker
from amarktai_tui.exchanges.markets import market_rules
from amarktai_tui.exchanges.paper import PaperBroker, to_decimal
from amarktai_tui.exchanges.registry import EXCHANGES, exchange_info
from amarktai_tui.ledger.store import RISK_KV, BotRecord, LedgerStore, NewOrder, WriteBatch
from amarktai_tui.market.base import MarketFeed
from amarktai_tui.risk.allocator import (
    Allocation,
    AllocationPlan,
    AllocatorSettings,
    BotPerformance,
    plan_allocation,
)
from amarktai_tui.risk.breakers import Reading, Trip
from amarktai_tui.risk.gates import CostModel, Gate, Refusal
from amarktai_tui.risk.kelly import kelly_fraction
from amarktai_tui.risk.pipeline import Decision, Outcome, Pipeline, PipelineSettings, duplicate_refusal
from amarktai_tui.risk.sizing import Exposure, SizeResult, entry_quantity
from amarktai_tui.risk.staggerer import ExchangeLimits
from amarktai_tui.strategies.registry import make_strategy

if TYPE_CHECKING:
    from amarktai_tui.autonomy.regime import RegimeBook

log = logging.getLogger(__name__)

_DAY_MS = 86_400_000
COMMIT_EVERY = 512  # candles per tick transaction in a fast replay
COMMIT_AFTER_S = 0.25  # wall seconds after which pending writes commit regardless
YIELD_AFTER_S = 0.01  # wall seconds of work after which the loop lets other tasks run

RefusalEntry = tuple[int, str, OrderIntent, Refusal]
"""(engine time ms, bot name, the intent, the refusal): one line of the Refusals table."""


class EngineCore:
    """Runs bots over a feed through the risk pipeline, writes the ledger, publishes events.

    Construct (as ``TradingEngine``), ``await start(specs)``, then
    ``await run(feed)``; ``flush(final=True)`` at the end writes a final
    equity snapshot.
    """

    def __init__(
        self,
        store: LedgerStore,
        broker: Broker,
        *,
        bus: EventBus | None = None,
        quote_currency: str = "USDT",
        slippage: Decimal = Decimal("0.0005"),
        snapshot_interval: str = "1h",
        mode: TradingMode = TradingMode.PAPER,
        wall_clock_ms: Callable[[], int] | None = None,
        risk: PipelineSettings | None = None,
        realtime: bool = False,
        allocator: AllocatorSettings | None = None,
        allocate_every: str | None = None,
        run_stages: frozenset[LifecycleStage] | None = None,
    ) -> None:
        self.store = store
        self.run_stages = run_stages  # a live session runs only the bots at these stages (ops.mode)
        self.broker = broker
        self.bus = bus or EventBus()
        self.quote_currency = quote_currency
        self.slippage = slippage
        self.mode = mode
        self.realtime = realtime  # a live feed: queued orders are released on the wall clock too
        self.snapshot_ms = timeframe_to_ms(snapshot_interval)
        self._wall = wall_clock_ms
        self.risk = risk or PipelineSettings()
        self.allocator = allocator or AllocatorSettings()
        self._alloc_ms = timeframe_to_ms(allocate_every) if allocate_every else 0
        self._next_alloc: int | None = None
        self._alloc_due = False
        self.pipeline = Pipeline(
            self.risk,
            self._cost_model,
            {ex: ExchangeLimits(i.max_in_flight, int(i.min_gap_s * 1000)) for ex, i in EXCHANGES.items()},
        )
        self.board = self.pipeline.board
        self.refusals: deque[RefusalEntry] = deque(maxlen=200)  # the latest pipeline refusals, newest last
        self.trip_log: list[Trip] = []  # trips since start-up (history is in the ledger)
        self._costs: dict[tuple[str, str], CostModel] = {}
        self._held: dict[str, OrderIntent] = {}
        self._last_close: dict[str, float] = {}  # pair -> close of its newest candle
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
        self.pool = Decimal(0)  # account capital not allocated to any bot (quote)
        self._restored_day: int | None = None  # the UTC day of a restored day_start_equity
        self.candles_seen = 0
        self.fills_seen = 0
        self.fill_log: list[Fill] = []  # every fill of this ledger, oldest first (UI tables, today's PnL)
        self.feed: MarketFeed | None = None
        self.running = False
        self._write_task: asyncio.Future[None] | None = None
        self._write_lock = asyncio.Lock()
        self._snapshots_until = 0  # newest snapshot time already in the ledger
        self._snap_fills: dict[int, int] = {}  # bot id -> fills in its last row (-1: it was long)
        self.bus.subscribe(StageChanged, self._on_stage_changed)
        # autonomy (issue 8): scale of an entry's size for a runner, (0, reason) to refuse it; None = 1
        self.size_hook: Callable[[BotRunner], tuple[Decimal, str]] | None = None
        self.regimes: RegimeBook | None = None  # each stream's market regime (autonomy.regime.attach_regimes)
        self.stages = StageKeeper(self)  # lifecycle stages: tallies, eligibility, quarantine (engine.stages)

    # -- start-up -----------------------------------------------------------
    async def start(self, specs: Iterable[BotSpec] = ()) -> None:
        """Load bots from the ledger, create missing ``specs``, rebuild lots, balances and risk state."""
        records = {r.name: r for r in await self.store.load_bots()}
        self._snapshots_until = await self.store.last_snapshot_ts()
        created_ts = self.clock_ms()  # a resumed replay's bots are made in its market time
        for spec in specs:
            if spec.name in records:
                continue
            rec = record_of(spec)
            rec.id = await self.store.insert_bot(rec, created_ts, spec.capital, split_pair(spec.pair)[1])
            records[rec.name] = rec
            self.bus.publish(BotCreated(created_ts, rec.id, rec.name))
        funding = await self.store.funding_by_bot()
        self.pool = await self.store.account_pool()
        for rec in sorted(records.values(), key=lambda r: r.id):
            if self.run_stages is None or rec.stage in self.run_stages:
                self._add_runner(rec, funding.get(rec.id, Decimal(0)))
        state = await self.store.load_risk_state()
        await restore_risk(self, state, await self.store.load_fills())
        for runner in self.runners.values():  # a stop asked before a restart still closes the position
            if runner.rec.state is BotState.STOPPED and runner.long and runner.exit_requested is None:
                runner.exit_requested = runner.rec.state_reason or "bot stopped by user"
        await self.stages.restore()
        for runner in self.runners.values():
            self.broker.set_balance(runner.rec.id, runner.cash, runner.book.position_qty)
        if isinstance(self.broker, PaperBroker):
            await self._resume_orders()
        elif isinstance(self.broker, CcxtBroker):  # live: pending/open orders resolved before any bot trades
            self.broker.remember_fills(f.fill_id for f in self.fill_log)
            self.broker.start_tracking()
            await reconcile_live(self, self.broker)

    def _add_runner(self, rec: BotRecord, funding: Decimal) -> BotRunner:
        strategy = make_strategy(rec.strategy, rec.params)
        runner = BotRunner(
            rec,
            strategy,
            funding=funding,
            taker_fee=self.broker.fee_rate(rec.exchange, rec.pair, maker=False),
            slippage=self.slippage,
        )
        runner.sizer = self._size_entry
        self.runners[rec.id] = runner
        self._by_stream.setdefault((rec.pair, rec.timeframe), []).append(runner)
        return runner

    def apply_broker_updates(self) -> None:
        """Apply what a live broker reported on its own (fills, acknowledgements, outcomes)."""
        for upd in self.broker.drain():
            self._on_update(upd)

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
                if self._alloc_due:
                    self._alloc_due = False
                    self.allocate_now(self.allocation_plan(), actor="engine")
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
            if self.regimes is not None:
                need = max(need, self.regimes.warmup)
            if not need:
                continue
            try:
                history = await feed.history(pair, tf, need)
            except Exception as exc:  # a failed backfill delays signals; it must not stop the engine
                log.warning("warm-up history for %s %s failed: %s", pair, tf, exc)
                continue
            regimes = self.regimes
            for c in history:
                if regimes is not None:
                    regimes.observe(c.ts + timeframe_to_ms(tf), c)
                for r in runners:
                    try:
                        r.warm(c)
                    except Exception as exc:
                        self._fail(r, exc)

    def process(self, c: Candle) -> None:
        """Handle one closed candle synchronously: queued orders, fills, marks, decisions, snapshots."""
        tf = self._tf_ms.get(c.timeframe)
        if tf is None:
            tf = self._tf_ms[c.timeframe] = timeframe_to_ms(c.timeframe)
        close_ts = c.ts + tf
        if close_ts > self.now_ms:
            self._advance_clock(close_ts)
        self.candles_seen += 1
        self._last_close[c.pair] = c.close
        if self._held:
            self._release_due(close_ts - 1)  # staggered submissions that fall inside this candle
        for upd in self.broker.on_candle(c):
            self._on_update(upd)
        if self.regimes is not None:  # before the bots: an entry is sized by its own candle's regime
            self.regimes.observe(self.now_ms, c)
        runners = self._by_stream.get((c.pair, c.timeframe))
        if runners:
            board = self.board
            price = c.close
            marked = False
            for runner in runners:
                if runner.long and (runner.last_ts is None or c.ts > runner.last_ts):
                    after = runner.resume_after
                    if after is None or c.ts > after:  # candles before a restart point are warm-up only
                        marked = True
                        if board.mark_bot(runner.rec.id, runner.equity_f(price)):
                            runner.mark = price
                            self._check_bot(runner, "equity mark")
                try:
                    intent = runner.on_candle(c)
                except Exception as exc:  # one bot's bug never stops the others
                    self._fail(runner, exc)
                    continue
                if intent is not None:
                    self._route(intent)
            if marked and board.mark_account():
                self._check_account("equity mark")
        self.bus.publish(EngineTick(self.now_ms, c))

    def _advance_clock(self, close_ts: int) -> None:
        if self._next_snap is None:
            self._next_snap = (close_ts // self.snapshot_ms + 1) * self.snapshot_ms
        elif close_ts > self._next_snap:
            self._snapshot()  # everything up to the previous close is in
            self._expire_stale()
            self._next_snap = (self.now_ms // self.snapshot_ms + 1) * self.snapshot_ms
        self.now_ms = close_ts
        if self._alloc_ms:
            self._schedule_allocation(close_ts)
        day = close_ts // _DAY_MS
        if day != self._day:
            restored = self.day_start_equity if self._day is None and self._restored_day == day else None
            self._day = day
            self.day_start_equity = restored if restored is not None else self.account_equity()
            self.board.set_day_start(self.day_start_equity)

    def _schedule_allocation(self, close_ts: int) -> None:
        """Run the allocator every ``allocate_every`` of market time (applied at the next flush)."""
        if self._next_alloc is None:
            self._next_alloc = (close_ts // self._alloc_ms + 1) * self._alloc_ms
        elif close_ts >= self._next_alloc:
            self._next_alloc = (close_ts // self._alloc_ms + 1) * self._alloc_ms
            self._alloc_due = True

    # -- the pipeline -----------------------------------------------------
    def _route(self, it: OrderIntent) -> Decision:
        """Run an intent through the pipeline; submit, queue or record the refusal."""
        reduces = it.side is Side.SELL
        d = self.pipeline.check(it, self.now_ms, reduces=reduces)
        if d.outcome is Outcome.GO:
            self._go(it, self.now_ms)
        elif d.outcome is Outcome.HOLD:
            self._held[it.client_order_id] = it
            self.runners[it.bot_id].in_flight = it.client_order_id
        elif d.outcome is Outcome.REFUSED:
            assert d.refusal is not None
            self._refuse(it, d.refusal)
        else:
            log.info("duplicate intent %s ignored (first: %s)", it.client_order_id, d.first_state)
        return d

    def submit_intent(self, it: OrderIntent) -> SubmitResult:
        """Submit an intent from outside the candle path (commands, tests); idempotent by client order id.

        A second submission of a known intent creates nothing and reports the
        first one's state: filled (with its fill), in flight, or rejected.
        """
        d = self._route(it)
        if d.outcome is Outcome.DUPLICATE:
            assert d.first_state is not None
            fill = next((f for f in self.fill_log if f.client_order_id == it.client_order_id), None)
            return SubmitResult(d.first_state, duplicate_refusal(d.first_state).reason, True, fill)
        state = self.pipeline.known.get(it.client_order_id, OrderState.PENDING)
        why = d.refusal.reason if d.refusal is not None else ""
        return SubmitResult(state, why, False, None)

    def _go(self, it: OrderIntent, at: int) -> None:
        if it.side is Side.BUY and self.run_stages is not None:
            stage = self.runners[it.bot_id].rec.stage
            if stage not in self.run_stages:  # left stage live during a live session: exits only
                self._refuse(
                    it, Refusal(Gate.BREAKER, f"stage {stage.value}: no new entry in a live session")
                )
                return
        self.pipeline.counter.record_order(it.bot_id, at)
        broker = self.broker
        if not isinstance(broker, PaperBroker):
            self._intents.append(it)
            return
        order = self._pending_order(it, at)
        self.pipeline.staggerer.begin(it.exchange)
        upd = broker.accept(order)
        self.pipeline.staggerer.done(it.exchange)
        self._acknowledged(order, upd)

    def _refuse(self, it: OrderIntent, refusal: Refusal) -> None:
        now = self.now_ms
        order = _order(it, OrderState.REJECTED, self._decided(it), now)
        self._batch.new_orders.append(
            NewOrder(
                order, it.decision_ts, it.edge_bps, refusal.reason, refusal.gate.value, dict(refusal.figures)
            )
        )
        self.pipeline.known[it.client_order_id] = OrderState.REJECTED
        runner = self.runners[it.bot_id]
        if runner.in_flight == it.client_order_id:
            runner.in_flight = None
        self.refusals.append((now, runner.rec.name, it, refusal))
        self.bus.publish(
            OrderRejected(
                now,
                it.bot_id,
                it.client_order_id,
                it.pair,
                it.side,
                OrderState.REJECTED,
                refusal.reason,
                refusal.gate.value,
                dict(refusal.figures),
            )
        )

    def _release_due(self, until: int) -> None:
        """Submit queued orders whose staggering slot comes at or before ``until``."""
        for rel in self.pipeline.staggerer.release(until):
            it = rel.item
            if self._held.pop(it.client_order_id, None) is None:
                continue  # dropped meanwhile (a halt)
            runner = self.runners[it.bot_id]
            runner.in_flight = None
            refusal = rel.refusal or self.pipeline.recheck(it, reduces=it.side is Side.SELL)
            if refusal is not None:
                self._refuse(it, refusal)
            else:
                self._go(it, rel.at)

    def _decided(self, it: OrderIntent) -> int:
        """The decision candle's close (ms UTC): when the order came to exist in market time."""
        return it.decision_ts + self.runners[it.bot_id].tf_ms

    # -- sizing -------------------------------------------------------------
    def last_close(self, pair: str) -> Decimal | None:
        """Close (quote per base) of ``pair``'s newest candle, None before its first."""
        price = self._last_close.get(pair)
        return None if price is None else Decimal(str(price))

    def _size_entry(self, runner: BotRunner, price: Decimal) -> SizeResult:
        """Entry size for ``runner`` at about ``price``: risk mode or Kelly, exposure caps, market rules."""
        rec = runner.rec
        multiplier = rec.size_multiplier
        hook = self.size_hook
        if hook is not None:  # autonomy: the regime's scale, or 0 with the reason (no entry)
            scale, why = hook(runner)
            if scale <= 0:
                return SizeResult(Decimal(0), why)
            multiplier *= scale
        fraction = None
        if rec.sizing == "kelly":
            st = runner.stats
            fraction = kelly_fraction(
                trades=st.trades, wins=st.wins, gross_win=st.gross_win, gross_loss=st.gross_loss
            ).fraction
        # Binary floats here: the caps bind on a notional that sizing then divides by
        # (1 + fee + slippage + 1% buffer), far more than float rounding can move it.
        base = split_pair(rec.pair)[0]
        px = float(price)
        last = self._last_close
        asset = exch = equity = 0.0
        exchanges = set()
        for r in self.runners.values():
            exchanges.add(r.rec.exchange)
            if not r.long:
                equity += r.flat_f
                continue
            mark = px if r.rec.pair == rec.pair else (r.mark or 0.0)  # later bots still hold the last close
            equity += r.equity_f(mark)
            notional = r.qty_f * mark
            if split_pair(r.rec.pair)[0] == base:
                asset += notional
            if r.rec.exchange == rec.exchange:
                exch += notional
        # buys on their way (in flight, queued by the staggerer, not yet sent) count too
        pending = [(o.pair, o.exchange, o.quantity) for o in self._inflight.values() if o.side is Side.BUY]
        pending += [
            (it.pair, it.exchange, it.quantity)
            for it in itertools.chain(self._held.values(), self._intents)
            if it.side is Side.BUY
        ]
        for pair, exchange, qty in pending:
            notional = float(qty) * (px if pair == rec.pair else last.get(pair, 0.0))
            if split_pair(pair)[0] == base:
                asset += notional
            if exchange == rec.exchange:
                exch += notional
        rules = market_rules(rec.exchange, rec.pair)
        return entry_quantity(
            capital=rec.capital,
            cash=runner.cash,
            price=price,
            risk_mode=rec.risk_mode,
            taker_fee=runner.fee_rate,
            slippage=runner.slippage,
            qty_step=rules.amount_step,
            min_notional=rules.min_notional,
            fraction=fraction,
            exposure=Exposure(to_decimal(equity), to_decimal(asset), to_decimal(exch), len(exchanges)),
            caps=self.risk.caps,
            multiplier=multiplier,
        )

    def _cost_model(self, exchange: str, pair: str) -> CostModel:
        key = (exchange, pair)
        cm = self._costs.get(key)
        if cm is None:
            spread = self.risk.spread_bps.get(exchange, exchange_info(exchange).spread_bps)
            cm = self._costs[key] = CostModel(
                maker_fee=self.broker.fee_rate(exchange, pair, maker=True),
                taker_fee=self.broker.fee_rate(exchange, pair, maker=False),
                spread_bps=spread,
                slippage_bps=self.risk.slippage_bps,
                safety_bps=self.risk.safety_bps,
                min_edge_bps=self.risk.min_edge_bps,
            )
        return cm

    # -- capital allocation (risk.allocator) -----------------------------------
    def allocation_plan(self) -> AllocationPlan:
        """What the allocator would do now (a preview; nothing changes). Figures in quote."""
        perf = []
        for r in self.runners.values():
            eq = r.equity()
            roi = (eq - r.funding) / r.funding if r.funding > 0 else Decimal(0)
            perf.append(
                BotPerformance(
                    r.rec.id,
                    r.rec.name,
                    r.rec.risk_mode,
                    r.rec.capital,
                    eq,
                    r.stats.trades,
                    r.stats.wins,
                    roi,
                )
            )
        return plan_allocation(perf, self.account_equity() + self.pool, self.allocator)

    def allocate_now(self, plan: AllocationPlan, actor: str = "user") -> list[Allocation]:
        """Apply a plan's changes: each is a pair of ``allocation`` ledger events (bot +d, account -d).

        A bot gives back at most its free cash (capital tied up in a position
        stays). Equity moves with the capital, so breakers see no loss (their
        marks move too). Returns the changes applied, with the capital actually set.
        """
        done: list[Allocation] = []
        now = self.clock_ms()
        for a in plan.changes:
            r = self.runners.get(a.bot_id)
            if r is None:
                continue
            delta = a.new_capital - r.rec.capital
            if delta < 0 and -delta > r.cash:
                delta = -r.cash
            if not delta:
                continue
            new = r.rec.capital + delta
            cur = split_pair(r.rec.pair)[1]
            note = f"allocator ({actor}): {a.tier} {r.rec.capital} -> {new}"
            self._batch.events.append((now, r.rec.id, "allocation", delta, cur, note))
            self._batch.events.append((now, None, "allocation", -delta, cur, f"{note} (from the pool)"))
            self._batch.capital[r.rec.id] = new
            r.add_funding(delta)
            self._snap_fills.pop(r.rec.id, None)  # equity moved without a fill: a row at the next snapshot
            self.pool -= delta
            self.board.flow(r.rec.id, delta)
            if self.day_start_equity is not None:
                self.day_start_equity += delta
            self.broker.set_balance(r.rec.id, r.cash, r.book.position_qty)
            old, r.rec.capital = r.rec.capital, new
            self.bus.publish(CapitalChanged(now, r.rec.id, r.rec.name, old, new, note))
            done.append(replace(a, new_capital=new))
        return done

    # -- breakers -------------------------------------------------------------
    def _check_bot(self, runner: BotRunner, cause: str) -> None:
        trip = self.board.check_bot_drawdown(runner.rec.id, runner.equity(), self.now_ms, cause)
        if trip is not None:
            self._tripped(trip)

    def _check_account(self, cause: str) -> None:
        for trip in self.board.check_account(self.account_equity(), self.now_ms, cause):
            self._tripped(trip)

    def _tripped(self, trip: Trip) -> None:
        """Persist a trip, stop new risk on the bots it covers, tell everyone."""
        self._batch.trips.append(trip)
        self.trip_log.append(trip)
        covered = [self.runners[trip.bot_id]] if trip.bot_id is not None else list(self.runners.values())
        for r in covered:
            if r.rec.state is BotState.RUNNING:
                self._set_state(r, BotState.CIRCUIT_TRIPPED, f"breaker {trip.breaker}: {trip.message}")
        self._cancel_entries({r.rec.id for r in covered})
        name = self.runners[trip.bot_id].rec.name if trip.bot_id is not None else None
        log.warning("breaker %s tripped (%s): %s", trip.breaker, name or "account", trip.message)
        self.bus.publish(BreakerTripped(self.now_ms, trip, name))

    def _cancel_entries(self, bot_ids: set[int]) -> None:
        """Withdraw buy orders of these bots: queued ones are refused, resting paper ones cancelled."""
        for it in self.pipeline.staggerer.drop(lambda i: i.bot_id in bot_ids and i.side is Side.BUY):
            self._held.pop(it.client_order_id, None)
            refusal = self.board.gate(it.bot_id, reduces=False)
            if refusal is not None:
                self._refuse(it, refusal)
        for coid, order in list(self._inflight.items()):
            # a live broker's cancel is asynchronous: requested here, its outcome comes through drain()
            if order.bot_id in bot_ids and order.side is Side.BUY and self.broker.cancel_now(coid):
                self._on_update(BrokerUpdate(coid, OrderState.CANCELLED, reason="cancelled: breaker tripped"))

    def _record_error(self, runner: BotRunner, source: str, message: str) -> None:
        self._batch.errors.append((self.now_ms or self.clock_ms(), runner.rec.id, source, message[:500]))
        trip = self.board.on_error(runner.rec.id, self.now_ms or self.clock_ms(), f"{source} error")
        if trip is not None:
            self._tripped(trip)

    def _expire_stale(self) -> None:
        """Gate A's time limit: pending/open orders older than ``pending_ttl_ms`` expire."""
        limit = self.now_ms - self.risk.pending_ttl_ms
        for coid, order in list(self._inflight.items()):
            if order.created_ts < limit and self.broker.cancel_now(coid):
                hours = self.risk.pending_ttl_ms / 3_600_000
                self._on_update(BrokerUpdate(coid, OrderState.EXPIRED, reason=f"expired after {hours:g} h"))

    # -- broker updates -----------------------------------------------------------
    def _on_update(self, upd: BrokerUpdate) -> None:
        order = self._inflight.get(upd.client_order_id)
        if order is None:
            log.warning("update for unknown order %s ignored", upd.client_order_id)
            return
        runner = self.runners[order.bot_id]
        now = self.now_ms
        if upd.fill is not None:  # paper: the whole order; live: one trade of it, maybe partial
            self._filled(runner, upd.fill)
        if upd.state is OrderState.PENDING:  # live: its fate is unknown for now and being looked up
            if upd.reason:
                self._record_error(runner, "exchange", upd.reason)
            return
        self.pipeline.known[order.client_order_id] = upd.state
        xid = upd.exchange_order_id
        if upd.state is OrderState.OPEN:
            if order.state is not OrderState.OPEN or xid:
                self._inflight[upd.client_order_id] = replace(order, state=OrderState.OPEN)
                self._batch.order_updates.append((order.client_order_id, OrderState.OPEN, "", now, xid))
            return
        del self._inflight[upd.client_order_id]
        runner.in_flight = None
        if upd.state is OrderState.FILLED:
            self._batch.order_updates.append((order.client_order_id, OrderState.FILLED, "", now, xid))
            if runner.rec.state is BotState.STOPPED:  # stopped while its buy was in flight: close it
                runner.exit_requested = (
                    (runner.exit_requested or "bot stopped by user") if runner.long else None
                )
        else:
            self._batch.order_updates.append((order.client_order_id, upd.state, upd.reason, now, None))
            gate = Gate.BROKER.value if upd.state is OrderState.REJECTED else ""
            self.bus.publish(
                OrderRejected(
                    now,
                    runner.rec.id,
                    order.client_order_id,
                    order.pair,
                    order.side,
                    upd.state,
                    upd.reason,
                    gate,
                )
            )
            if upd.state is OrderState.REJECTED:  # the broker refused it: an error, not a risk decision
                self._record_error(runner, "broker", upd.reason)

    def _filled(self, runner: BotRunner, raw: Fill) -> None:
        runner.closed_pnl = None
        fill = runner.apply_fill(raw)
        self.fills_seen += 1
        self._batch.fills.append(fill)
        self.fill_log.append(fill)
        bot_id = runner.rec.id
        self.bus.publish(
            OrderFilled(
                self.now_ms, bot_id, fill.client_order_id, fill.pair, fill.side, fill.quantity, fill.price,
                fill.fee, fill.realised_pnl,
            )
        )  # fmt: skip
        board = self.board
        equity = runner.equity()
        if board.mark_bot(bot_id, float(equity)):
            self._check_bot(runner, f"fill {fill.client_order_id}")
        if runner.closed_pnl is not None:
            self.pipeline.counter.record_exit(bot_id, fill.ts)
            trip = board.on_trade_closed(
                bot_id, runner.closed_pnl, self.now_ms, f"fill {fill.client_order_id}"
            )
            if trip is not None:
                self._tripped(trip)
        if board.mark_account():
            self._check_account(f"fill {fill.client_order_id}")

    def _pending_order(self, it: OrderIntent, at: int | None = None) -> Order:
        """Record ``it`` as a pending order in the batch and mark its bot in flight.

        ``created_ts`` is the decision candle's close (the paper broker fills
        at the first open at or after it); ``updated_ts`` the submission time
        (later when the staggerer held it).
        """
        order = _order(it, OrderState.PENDING, self._decided(it), self.now_ms if at is None else at)
        self._batch.new_orders.append(NewOrder(order, it.decision_ts, it.edge_bps))
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

    async def _commit(self) -> None:
        """External broker: commit the pending rows first (write-ahead), then submit them."""
        new = [self._pending_order(it) for it in self._intents]
        self._intents.clear()
        self._mark_positions()
        batch, self._batch = self._batch, WriteBatch()
        await self.store.write(batch)  # the rows exist before the broker sees them
        for order in new:
            self.pipeline.staggerer.begin(order.exchange)
            try:
                upd = await self.broker.submit(order)
            finally:
                self.pipeline.staggerer.done(order.exchange)
            self._acknowledged(order, upd)

    def _mark_positions(self) -> None:
        """Persist every bot's last processed candle and the breakers' gauges with the tick."""
        now = self.now_ms
        for r in self.runners.values():
            self._batch.bot_updates[r.rec.id] = (r.rec.state, r.rec.state_reason, r.last_ts, now)
        self._batch.kv[RISK_KV] = gauges_json(self)

    async def _flush_when_idle(self) -> None:
        """Commit pending writes when no candle has come for a while (a replay that ended, a quiet feed).

        With a real-time feed it also releases staggered orders on the wall clock.
        """
        seen = -1
        state = self.feed.status().state if self.feed is not None else None
        while True:
            await asyncio.sleep(COMMIT_AFTER_S if not self._held else 0.05)
            if self.broker.external:
                self.apply_broker_updates()
            if self.realtime and self._held:
                self._release_due(max(self.now_ms, self._wall_ms()))
                if self._intents:
                    await self._commit()
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
        rows, per_bot, total = snapshot_rows(ts, self.runners.values(), self._snap_fills, len(self.fill_log))
        self._batch.snapshots.extend(rows)
        self.board.sync_account(total)  # the float running sum re-based on the exact figure
        self.bus.publish(EquitySampled(ts, total, per_bot))

    def open_order(self, bot_id: int) -> Order | None:
        """The bot's order in flight (pending, open, or waiting for a staggering slot), if any."""
        runner = self.runners.get(bot_id)
        if runner is None or runner.in_flight is None:
            return None
        return self._inflight.get(runner.in_flight)

    def account_equity(self) -> Decimal:
        """Sum of the bots' equity (quote). Capital the allocator holds back (``pool``) is not in it."""
        return sum((r.equity() for r in self.runners.values()), Decimal(0))

    def today_pnl(self) -> Decimal:
        start = self.day_start_equity
        return Decimal(0) if start is None else self.account_equity() - start

    def breaker_readings(self) -> list[Reading]:
        """Every breaker's threshold, value, headroom and status now (account first)."""
        return self.board.readings(self.now_ms or self.clock_ms())

    def limit_usage(self) -> dict[str, object]:
        """Gate C's counters now: orders today per bot and account against their limits, burst windows."""
        now = self.now_ms or self.clock_ms()
        c = self.pipeline.counter
        lim = self.risk.limits
        return {
            "account_orders_today": c.account_today(now),
            "account_limit": lim.account_trades_per_day,
            "bot_limit": lim.bot_trades_per_day,
            "bots": {r.rec.name: c.bot_today(r.rec.id, now) for r in self.runners.values()},
            "burst_limit": self.risk.burst_orders,
            "burst_window_ms": self.risk.burst_window_ms,
            "burst": {ex: self.pipeline.staggerer.burst_usage(ex, now) for ex in EXCHANGES},
            "queued": self.pipeline.staggerer.waiting(),
        }

    def _fail(self, runner: BotRunner, exc: Exception) -> None:
        """A bot's strategy raised: ERROR with the reason (once; the bot then sits out)."""
        if runner.rec.state is not BotState.ERROR:
            log.warning("bot %s: strategy raised", runner.rec.name, exc_info=exc)
            why = f"strategy raised {type(exc).__name__}: {exc}"
            self._set_state(runner, BotState.ERROR, why)
            self._record_error(runner, "strategy", why)

    def _on_stage_changed(self, ev: StageChanged) -> None:
        """A live session runs only the bots at its stages: a bot that leaves them is paused (it opens
        nothing new; its exits still go to the live broker, so a real position is never trapped)."""
        if self.run_stages is None or ev.new in self.run_stages:
            return
        runner = self.runners.get(ev.bot_id)
        if runner is not None and runner.rec.state is BotState.RUNNING:
            self._set_state(runner, BotState.PAUSED, f"stage {ev.new.value}: paused in the live session")

    def _set_state(self, runner: BotRunner, new: BotState, reason: str) -> None:
        old = runner.rec.state
        runner.rec.state = new
        runner.rec.state_reason = reason
        self._batch.bot_updates[runner.rec.id] = (new, reason, runner.last_ts, self.now_ms or self.clock_ms())
        self.bus.publish(BotStateChanged(self.now_ms, runner.rec.id, runner.rec.name, old, new, reason))

    def clock_ms(self) -> int:
        """Engine time (ms UTC): the newest candle's close. Before a run's first candle: for a
        replay or a backtest 1 ms after the ledger's own time (its newest snapshot, the bots' last
        candle close), so what a restarted replay records before its first candle (a capital move,
        a state change) stays in market time, after the snapshots already written and in the next
        one (``ledger verify`` agrees); with a live feed, or on a fresh ledger, the wall clock."""
        if self.now_ms:
            return self.now_ms
        if not self.realtime:
            held = self.ledger_time()
            if held:
                return held + 1
        return self._wall_ms()

    def ledger_time(self) -> int:
        """The newest time the ledger already holds (ms UTC): its newest equity snapshot or a bot's
        last candle close, whichever is later; 0 on a fresh ledger."""
        closes = (
            r.rec.last_candle_ts + r.tf_ms for r in self.runners.values() if r.rec.last_candle_ts is not None
        )
        return max(self._snapshots_until, *closes, 0)

    def _wall_ms(self) -> int:
        if self._wall is not None:
            return self._wall()
        return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """What ``submit_intent`` did: the order's state, why, whether it was a duplicate, its fill if filled."""

    state: OrderState
    reason: str
    duplicate: bool
    fill: Fill | None


def _order(it: OrderIntent, state: OrderState, created: int, updated: int) -> Order:
    return Order(
        client_order_id=it.client_order_id, bot_id=it.bot_id, exchange=it.exchange, pair=it.pair,
        side=it.side, order_type=it.order_type, quantity=it.quantity, limit_price=it.limit_price,
        state=state, created_ts=created, updated_ts=updated, reason=it.reason,
    )  # fmt: skip
