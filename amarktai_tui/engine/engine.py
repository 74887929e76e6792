"""TradingEngine: the loop (``core.EngineCore``) plus the user's commands.

Commands come from the TUI, the CLI (through the control socket) and, after
the user confirms, the AI console. Each changes state through the same
helpers as the loop, flushes, and publishes events. Errors the user can fix
raise ``EngineError`` with a one-line reason.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from decimal import Decimal

from amarktai_tui.domain.enums import BotState, RiskMode, Side, TradingMode
from amarktai_tui.domain.types import Candle, split_pair, timeframe_to_ms
from amarktai_tui.engine.core import EngineCore, RefusalEntry, SubmitResult
from amarktai_tui.engine.events import BotCreated, BreakerReset, ModeSwitched
from amarktai_tui.engine.lifecycle import check_transition
from amarktai_tui.engine.runner import BotRunner
from amarktai_tui.engine.spec import BotSpec, EngineError, record_of
from amarktai_tui.exchanges.api_breaker import ApiHealth
from amarktai_tui.exchanges.live import CcxtBroker
from amarktai_tui.exchanges.registry import TOTAL_BOT_CAP, exchange_info, order_type_refusal
from amarktai_tui.ledger.store import StageChange, TripReset
from amarktai_tui.ops.backup import backup_on_engine
from amarktai_tui.risk.allocator import Allocation, AllocationPlan
from amarktai_tui.risk.breakers import Breaker, Trip
from amarktai_tui.strategies.exits import ExitRules, PositionExitTracker
from amarktai_tui.strategies.registry import make_strategy

__all__ = ["BotSpec", "EngineError", "RefusalEntry", "ResetResult", "SubmitResult", "TradingEngine"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ResetResult:
    """A reset: the trip that was cleared, and the new trip when its condition still held."""

    trip: Trip
    retripped: Trip | None


class TradingEngine(EngineCore):
    """The engine with its user commands (see ``core.EngineCore`` for the loop)."""

    async def close(self) -> None:
        """Close the live broker's exchange sessions (a paper broker has none), then the ledger."""
        if isinstance(self.broker, CcxtBroker):
            await self.broker.close()
        await self.store.close()

    async def switch_to_paper(self, actor: str, reason: str) -> bool:
        """Record the account's switch to paper (``ops.mode``); a live engine then stops at once, so no
        further live order leaves. False (nothing recorded) when the account already is on paper."""
        if await self.store.trading_mode() == TradingMode.PAPER.value:
            return False
        await backup_on_engine(self, "mode_switch")  # in a thread; a failure is logged, never blocks this
        await self.store.record_mode_switch(
            int(time.time() * 1000), TradingMode.LIVE.value, TradingMode.PAPER.value, actor, reason
        )
        self.bus.publish(ModeSwitched(self.now_ms, TradingMode.LIVE, TradingMode.PAPER, actor, reason))
        if self.mode is TradingMode.LIVE:
            log.warning("switched to paper by %s (%s): the live engine stops", actor, reason)
            self.stop()
        return True

    def api_health(self) -> dict[str, ApiHealth]:
        """Each exchange API's breaker state, last error and call latency (exchange id -> health);
        empty for a paper broker, which calls no exchange API."""
        if isinstance(self.broker, CcxtBroker):
            return self.broker.health()
        return {}

    def runner_by_name(self, name: str) -> BotRunner:
        for r in self.runners.values():
            if r.rec.name == name:
                return r
        raise EngineError(f"no bot named {name!r}")

    async def set_bot_state(self, bot_id: int, new: BotState, reason: str = "") -> None:
        """Move a bot along the lifecycle table; raises EngineError on a disallowed move.

        A bot covered by a tripped breaker cannot be resumed: reset the trip.
        """
        runner = self.runners.get(bot_id)
        if runner is None:
            raise EngineError(f"no bot with id {bot_id}")
        name, old = runner.rec.name, runner.rec.state
        if new is BotState.CIRCUIT_TRIPPED:
            raise EngineError(f"{name}: a {old.value} bot becomes {new.value} only when a breaker trips")
        try:
            check_transition(old, new)
        except ValueError as exc:
            raise EngineError(f"{name}: {exc}") from None
        if new is BotState.RUNNING and (trip := self.board.covering(bot_id)) is not None:
            raise EngineError(
                f"{name}: a {old.value} bot cannot become {new.value} while breaker {trip.breaker}"
                f" (trip {trip.id}) is tripped; reset it first"
            )
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
            if r.rec.state is BotState.PAUSED and self.board.covering(r.rec.id) is None:
                self._set_state(r, BotState.RUNNING, "resume all")
                n += 1
        await self.flush()
        return n

    def check_new_bot(self, spec: BotSpec, *, from_pool: bool = False) -> None:
        """Raise EngineError with the reason when ``create_bot(spec, from_pool=...)`` would refuse it."""
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
        if from_pool and spec.capital > self.pool:
            raise EngineError(f"the account pool holds {self.pool}; {spec.capital} cannot come from it")
        refusal = order_type_refusal(spec.exchange, spec.order_type)
        if refusal:
            raise EngineError(refusal)

    async def create_bot(self, spec: BotSpec, *, from_pool: bool = False) -> BotRunner:
        """Create and fund a bot (paper); raises EngineError with the reason when it cannot.

        ``from_pool``: its capital comes out of the account pool (an account-level ``allocation``
        event of -capital, written right after the bot and its funding), so the account's total
        (funding + pool) is unchanged; refused when the pool holds less.
        """
        self.check_new_bot(spec, from_pool=from_pool)
        rec = record_of(spec)
        now = self.clock_ms()
        quote = split_pair(spec.pair)[1]
        rec.id = await self.store.insert_bot(rec, now, spec.capital, quote)
        runner = self._add_runner(rec, spec.capital)
        self.board.add_bot(rec.id, 0.0)
        self.board.flow(rec.id, spec.capital)  # new capital is funding, not today's profit
        if self.day_start_equity is not None:
            self.day_start_equity += spec.capital
        self.broker.set_balance(rec.id, spec.capital)
        if self.board.covering(rec.id) is not None:
            self._set_state(runner, BotState.CIRCUIT_TRIPPED, "an account breaker is tripped")
        if from_pool:
            note = f"capital of {rec.name} from the pool"
            self._batch.events.append((now, None, "allocation", -spec.capital, quote, note))
            self.pool -= spec.capital
            await self.flush()
        self.bus.publish(BotCreated(now, rec.id, rec.name))
        return runner

    async def set_bot_params(self, bot_id: int, params: dict[str, object]) -> dict[str, object]:
        """Change some of a bot's strategy parameters (``params`` merged over its current ones) and
        write them at once; returns the new effective parameters.

        The strategy is rebuilt and warms up again on the candles that follow (no signal until
        then); lots, cash and run state are unchanged. Raises EngineError for an unknown bot, an
        unknown parameter or a value out of its range (the message names it and the range).
        """
        runner = self.runners.get(bot_id)
        if runner is None:
            raise EngineError(f"no bot with id {bot_id}")
        merged = {**runner.rec.params, **params}
        try:
            strategy = make_strategy(runner.rec.strategy, merged)
        except ValueError as exc:  # StrategyParamError: names the parameter and its range
            raise EngineError(str(exc)) from None
        runner.strategy = strategy
        runner.rec.params = merged
        await self.store.set_bot_params(bot_id, merged, self.clock_ms())
        return dict(strategy.params)

    async def set_bot_fields(self, bot_id: int, fields: dict[str, object]) -> None:
        """Change some of a bot's settings and write them at once: ``risk_mode`` (RiskMode or its
        value), ``size_multiplier`` (Decimal > 0), ``stop_loss``/``take_profit``/``trailing_stop``
        (Decimal fractions 0 < x < 1, or None = off). Used by ``autonomy.changes``.

        The next entry is sized with the new risk mode and multiplier. New exit rules apply to an
        open position at once: its trigger levels are recomputed from its entry price (the price of
        the buy fill that opened it) and the highest price seen so far is kept. Raises EngineError
        for an unknown bot, another key or a bad value (nothing changed then).
        """
        runner = self.runners.get(bot_id)
        if runner is None:
            raise EngineError(f"no bot with id {bot_id}")
        allowed = ("risk_mode", "size_multiplier", "stop_loss", "take_profit", "trailing_stop")
        bad = [k for k in fields if k not in allowed]
        if bad:
            raise EngineError(f"{', '.join(bad)}: not a bot setting that can be changed here")
        rec = runner.rec
        risk_mode, multiplier = rec.risk_mode, rec.size_multiplier
        exits: dict[str, Decimal | None] = {
            "stop_loss": rec.stop_loss, "take_profit": rec.take_profit, "trailing_stop": rec.trailing_stop
        }  # fmt: skip
        try:
            for key, v in fields.items():
                if key == "risk_mode":
                    risk_mode = RiskMode(v.value if isinstance(v, RiskMode) else str(v))
                elif key == "size_multiplier":
                    if not isinstance(v, Decimal) or not v.is_finite() or v <= 0:
                        raise ValueError(f"size_multiplier={v!r}: must be a Decimal > 0")
                    multiplier = v
                elif v is None or isinstance(v, Decimal):
                    exits[key] = v
                else:
                    raise ValueError(f"{key}={v!r}: must be a Decimal fraction or None")
            rules = ExitRules(exits["stop_loss"], exits["take_profit"], exits["trailing_stop"])
        except ValueError as exc:
            raise EngineError(f"{rec.name}: {exc}") from None
        rec.risk_mode, rec.size_multiplier = risk_mode, multiplier
        rec.stop_loss, rec.take_profit = rules.stop_loss, rules.take_profit
        rec.trailing_stop = rules.trailing_stop
        if fields.keys() & exits.keys():
            runner.tracker = self._exit_tracker(runner, rules)
        written = {"risk_mode": risk_mode, "size_multiplier": multiplier, **exits}
        await self.store.set_bot_fields(bot_id, {k: written[k] for k in fields}, self.clock_ms())

    def _exit_tracker(self, runner: BotRunner, rules: ExitRules) -> PositionExitTracker | None:
        """A tracker with ``rules`` for ``runner``, following its open position (if any) from the
        entry fill's price and the old tracker's peak."""
        if rules.stop_loss is None and rules.take_profit is None and rules.trailing_stop is None:
            return None
        tracker = PositionExitTracker(rules)
        if not runner.long:
            return tracker
        bot_id = runner.rec.id
        entry = next(
            (f.price for f in reversed(self.fill_log)
             if f.bot_id == bot_id and f.side is Side.BUY and f.ts == runner.entry_ts),
            None,
        )  # fmt: skip
        if entry is None:  # no fill for the position's entry time: its cost per unit stands in
            qty = runner.book.position_qty
            entry = runner.book.cost_basis / qty if qty else None
        if entry is None or entry <= 0:
            return tracker
        tracker.on_entry(float(entry))  # as the runner does on the fill
        old = runner.tracker.peak if runner.tracker is not None else None
        if old is not None and old > float(entry):  # raise the peak: a check on a one-price candle
            rec = runner.rec
            tracker.check(Candle(rec.pair, rec.timeframe, runner.entry_ts, old, old, old, old, 0.0))
        return tracker

    # -- lifecycle stages (engine.stages) ----------------------------------------
    def bot_by_ref(self, ref: str | int) -> BotRunner:
        """A bot by id (an int), or by name, else by id (a string like ``"3"``); EngineError when none."""
        if not isinstance(ref, int):
            for r in self.runners.values():
                if r.rec.name == ref:
                    return r
        if isinstance(ref, int) or ref.isdigit():
            runner = self.runners.get(int(ref))
            if runner is not None:
                return runner
        raise EngineError(f"no bot named or numbered {str(ref)!r} in this engine")

    async def promote_bot(self, bot_id: int, actor: str, reason: str) -> StageChange:
        """eligible_for_live -> live, asked by a person (actor user or cli); recorded and written at once.

        Raises EngineError (one line) for any other stage, actor, or an empty reason.
        """
        change = self.stages.promote(bot_id, actor, reason)
        await self.flush()
        return change

    async def demote_bot(self, bot_id: int, actor: str, reason: str) -> StageChange:
        """live or eligible_for_live -> paper_training (a new paper track); recorded and written at once.

        Raises EngineError (one line) for paper_training or quarantined bots, or an empty reason.
        """
        change = self.stages.demote(bot_id, actor, reason)
        await self.flush()
        return change

    # -- capital allocation ---------------------------------------------------
    async def apply_allocation(self, plan: AllocationPlan, actor: str = "user") -> list[Allocation]:
        """Apply a plan (see ``EngineCore.allocate_now``) and write it at once."""
        done = self.allocate_now(plan, actor)
        await self.flush()
        return done

    # -- breakers --------------------------------------------------------------
    async def halt(self, reason: str = "emergency stop", actor: str = "user") -> Trip | None:
        """Emergency stop: no bot opens anything until ``resume``; exits and stops keep working.

        Open and queued entry orders are withdrawn. Returns the halt trip, or
        None when the account was already halted.
        """
        trip = self.board.halt(self.clock_ms(), f"{reason} (by {actor})", actor)
        if trip is not None:
            self._tripped(trip)
        await self.flush()
        return trip

    async def resume(self, reason: str = "resumed", actor: str = "user") -> ResetResult | None:
        """Clear an emergency stop (a recorded reset of the halt trip); None when not halted."""
        trip = self.board.active.get((Breaker.HALT, None))
        if trip is None:
            return None
        return await self.reset_breaker(trip.id, reason, actor)

    async def reset_breaker(self, trip_id: int, reason: str, actor: str = "user") -> ResetResult:
        """Reset a trip by id with a reason (recorded: who, when, why), then re-evaluate at once.

        Raises EngineError when the reason is empty or no such trip is active.
        A breaker whose condition still holds trips again (``retripped``).
        """
        reason = reason.strip()
        if not reason:
            raise EngineError("a reset needs a reason")
        now = self.clock_ms()
        try:
            trip = self.board.reset(trip_id, now)
        except KeyError:
            raise EngineError(f"no active trip with id {trip_id}") from None
        self._batch.resets.append(TripReset(trip.id, now, actor, reason))
        again = self._reevaluate(trip)
        for r in self.runners.values():
            if r.rec.state is BotState.CIRCUIT_TRIPPED and self.board.covering(r.rec.id) is None:
                self._set_state(r, BotState.RUNNING, f"breaker reset by {actor}: {reason}")
        log.warning("breaker %s (trip %d) reset by %s: %s", trip.breaker, trip.id, actor, reason)
        self.bus.publish(BreakerReset(now, trip, actor, reason, again))
        await self.flush()
        return ResetResult(trip, again)

    def _reevaluate(self, trip: Trip) -> Trip | None:
        board = self.board
        now = self.clock_ms()
        cause = f"re-evaluated after the reset of trip {trip.id}"
        new: Trip | None = None
        if trip.bot_id is not None:
            runner = self.runners[trip.bot_id]
            if trip.breaker is Breaker.BOT_DRAWDOWN:
                new = board.check_bot_drawdown(trip.bot_id, runner.equity(), now, cause)
            elif trip.breaker is Breaker.ERROR_STORM:
                new = board.check_errors(trip.bot_id, now, cause)
            elif trip.breaker is Breaker.CONSECUTIVE_LOSSES:
                new = board.check_streak(trip.bot_id, now, cause)
        elif trip.breaker is not Breaker.HALT:
            for t in board.check_account(self.account_equity(), now, cause):
                if t.breaker is trip.breaker:
                    new = t
                else:
                    self._tripped(t)
        if new is not None:
            new = replace(new, message=f"still holds after reset: {new.message}")
            board.active[(new.breaker, new.bot_id)] = new
            self._tripped(new)
        return new
