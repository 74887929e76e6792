"""The engine's side of the bot lifecycle (``engine.promotion`` decides; this keeps the figures and acts).

``StageKeeper`` lives on the engine (``engine.stages``) and listens on its bus:

- a new bot's first stage (paper_training) starts at the close of the first
  candle it sees (``bots.stage_ts``, market time);
- every closed round trip (``OrderFilled`` that brings a bot flat) and every
  equity snapshot (``EquitySampled``) update the bot's track tally, then the
  bot is evaluated: a paper_training bot meeting every promotion criterion
  becomes eligible_for_live (actor ``engine``); a live bot below a live floor
  goes back to paper_training (actor ``engine``). Eligibility never goes live
  by itself: only ``promote`` does, for a person (actor ``user`` or ``cli``);
- a bot breaker trip (``BreakerTripped`` with a bot scope) puts the bot in
  quarantined, from any stage. Release rule: when the last trip on that bot is
  reset (``BreakerReset``) it returns to paper_training, never straight to the
  stage it had: it must earn eligibility again on a new paper track. Account
  trips (halt, account drawdown, daily loss) change no stage;
- ``promote`` (eligible_for_live -> live) and ``demote`` (live or
  eligible_for_live -> paper_training) are the user's commands.

Every change is written with the tick's batch (``ledger.store.StageChange``:
``bots.stage``/``stage_ts`` and an append-only ``stage_changes`` row in one
transaction) and published as ``StageChanged``. The row's ``figures`` holds
``{"checks": [...], "basis": {...}, "pnl", "equity"}``: the criteria as measured
in the stage left, and the new track's basis, so a restart rebuilds the tally
exactly (``restore``) and ``amarktai bots stages`` can measure from the ledger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from amarktai_tui.domain.enums import LifecycleStage, Side
from amarktai_tui.domain.types import Fill
from amarktai_tui.engine.events import (
    BotCreated,
    BreakerReset,
    BreakerTripped,
    EngineTick,
    EquitySampled,
    OrderFilled,
    StageChanged,
)
from amarktai_tui.engine.promotion import (
    Basis,
    DemotionFloors,
    PromotionCriteria,
    StageTally,
    Verdict,
    evaluate_demotion,
    evaluate_promotion,
    tally_from_history,
)
from amarktai_tui.engine.spec import EngineError
from amarktai_tui.ledger.pnl import trades_from_fills
from amarktai_tui.ledger.store import StageChange

if TYPE_CHECKING:
    from amarktai_tui.config import PromotionConfig
    from amarktai_tui.engine.core import EngineCore
    from amarktai_tui.engine.runner import BotRunner
    from amarktai_tui.risk.breakers import Trip

log = logging.getLogger(__name__)

PAPER = LifecycleStage.PAPER_TRAINING
ELIGIBLE = LifecycleStage.ELIGIBLE_FOR_LIVE
LIVE = LifecycleStage.LIVE
QUARANTINED = LifecycleStage.QUARANTINED

PROMOTERS = frozenset({"user", "cli"})
"""Who may promote a bot to live: a person (TUI or CLI), never the engine or the AI."""


@dataclass(frozen=True, slots=True)
class StageRules:
    """The promotion criteria and the live demotion floors in force."""

    criteria: PromotionCriteria = field(default_factory=PromotionCriteria)
    floors: DemotionFloors = field(default_factory=DemotionFloors)


def rules_from(cfg: PromotionConfig) -> StageRules:
    """``[promotion]`` from config as ``StageRules``."""
    return StageRules(
        PromotionCriteria(
            min_days=cfg.min_days,
            min_trades=cfg.min_trades,
            min_win_rate=cfg.min_win_rate,
            min_return=cfg.min_return,
            max_drawdown=cfg.max_drawdown,
            min_profit_factor=cfg.min_profit_factor,
        ),
        DemotionFloors(max_drawdown=cfg.live_max_drawdown, min_return=cfg.live_min_return),
    )


def verdict_for(
    stage: LifecycleStage, tally: StageTally, fig_args: dict[str, Any], rules: StageRules
) -> Verdict | None:
    """The verdict that applies to a bot in ``stage``: the promotion criteria on its paper track
    (paper_training, eligible_for_live), the live floors on its live track, none when quarantined.
    ``fig_args``: ``StageTally.figures``'s keyword arguments."""
    if stage is QUARANTINED:
        return None
    fig = tally.figures(**fig_args)
    if stage is LIVE:
        return evaluate_demotion(fig, rules.floors)
    return evaluate_promotion(fig, rules.criteria)


def track_basis(stage_ts: int | None, last: StageChange | None, first_fill_ts: int | None) -> Basis | None:
    """Where a bot's current track starts: the basis its newest stage change recorded, else its
    first stage's start (``stage_ts``), else (a bot from before stages were recorded) its first
    fill; None when it has not started (no candle seen yet)."""
    if last is not None:
        return Basis.from_json(last.figures.get("basis")) or Basis(stage_ts or last.ts)
    if stage_ts is not None:
        return Basis(stage_ts)  # the first track: pnl 0, the first equity point sets the peak
    return None if first_fill_ts is None else Basis(first_fill_ts)


def change_figures(verdict: Verdict | None, basis: Basis, pnl: Decimal, equity: Decimal) -> dict[str, Any]:
    """A stage change's ``figures``: the checks of the stage left, the new track's basis, pnl and equity now."""
    return {
        "checks": [] if verdict is None else verdict.as_json(),
        "basis": basis.as_json(),
        "pnl": str(pnl),
        "equity": str(equity),
    }


def promotion_refusal(
    name: str, stage: LifecycleStage, actor: str, reason: str, verdict: Verdict | None
) -> str | None:
    """Why ``actor`` may not promote bot ``name`` to live now (one line), or None when it may."""
    if actor not in PROMOTERS:
        return f"{name}: only a person promotes a bot to live (actor user or cli, not {actor!r})"
    if not reason.strip():
        return f"{name}: a promotion needs a reason"
    if stage is not ELIGIBLE:
        why = f" ({verdict.summary()})" if verdict is not None and stage is PAPER else ""
        return f"{name} is {stage.value}: only an eligible_for_live bot can be promoted{why}"
    return None


def demotion_refusal(name: str, stage: LifecycleStage, reason: str) -> str | None:
    """Why bot ``name`` cannot be demoted to paper_training now (one line), or None when it can."""
    if not reason.strip():
        return f"{name}: a demotion needs a reason"
    if stage is PAPER:
        return f"{name} is paper_training already"
    if stage is QUARANTINED:
        return f"{name} is quarantined: it returns to paper_training when its breaker trip is reset"
    return None


class StageKeeper:
    """Per-bot track tallies and every automatic stage change (see the module docstring)."""

    def __init__(self, engine: EngineCore, rules: StageRules | None = None) -> None:
        self.engine = engine
        self.rules = rules or StageRules()
        self.tallies: dict[int, StageTally] = {}
        self._unstarted: set[int] = set()  # bots whose first stage starts at their first candle
        self._unwatch: Callable[[], None] | None = None
        bus = engine.bus
        bus.subscribe(OrderFilled, self._on_fill)
        bus.subscribe(EquitySampled, self._on_equity)
        bus.subscribe(BreakerTripped, self._on_trip)
        bus.subscribe(BreakerReset, self._on_reset)
        bus.subscribe(BotCreated, self._on_created)

    # -- start-up -------------------------------------------------------------------------------
    async def restore(self) -> None:
        """Rebuild every bot's tally from the ledger, then apply trips and resets recorded while the
        engine was not running (a tripped bot is quarantined; a quarantined bot with no trip left
        is released). Called by ``EngineCore.start`` after the fills are replayed."""
        eng = self.engine
        latest = await eng.store.latest_stage_changes()
        fills: dict[int, list[Fill]] = {}
        for f in eng.fill_log:
            fills.setdefault(f.bot_id, []).append(f)
        for runner in eng.runners.values():
            rec = runner.rec
            basis = self._basis(runner, latest.get(rec.id), fills.get(rec.id, []))
            if basis is None:
                self._unstarted.add(rec.id)
                continue
            points = await eng.store.equity_points(rec.id, basis.since)
            self.tallies[rec.id] = tally_from_history(basis, trades_from_fills(fills.get(rec.id, [])), points)
        self._watch_ticks()
        for runner in eng.runners.values():
            trip = self._bot_trip(runner.rec.id)
            if trip is not None and runner.rec.stage is not QUARANTINED:
                self._quarantine(runner, trip)
            elif trip is None and runner.rec.stage is QUARANTINED:
                self.change(
                    runner,
                    PAPER,
                    "engine",
                    "released: its breaker trip was reset while the engine was not running",
                )

    def _basis(self, runner: BotRunner, last: StageChange | None, fills: list[Fill]) -> Basis | None:
        rec = runner.rec
        basis = track_basis(rec.stage_ts, last, min((f.ts for f in fills), default=None))
        if basis is not None and rec.stage_ts is None:  # recorded, so `bots stages` measures the same
            rec.stage_ts = basis.since
            self.engine._batch.stage_starts[rec.id] = basis.since
        return basis

    # -- figures for the views and commands ------------------------------------------------------
    def verdict(self, bot_id: int) -> Verdict | None:
        """The bot's verdict now (``verdict_for``); a bot that has seen no candle shows empty figures."""
        runner = self.engine.runners.get(bot_id)
        if runner is None:
            return None
        tally = self.tallies.get(bot_id) or StageTally(Basis(0))
        return verdict_for(runner.rec.stage, tally, self._fig_args(runner), self.rules)

    def _fig_args(self, runner: BotRunner) -> dict[str, Any]:
        last = runner.last_ts if runner.last_ts is not None else runner.rec.last_candle_ts
        return {
            "last_close_ts": None if last is None else last + runner.tf_ms,
            "pnl": runner.equity() - runner.funding,
            "capital": runner.rec.capital,
        }

    # -- the user's commands ---------------------------------------------------------------------
    def promote(self, bot_id: int, actor: str, reason: str) -> StageChange:
        """eligible_for_live -> live, for a person only. Raises EngineError (one line) otherwise."""
        runner = self._runner(bot_id)
        refusal = promotion_refusal(runner.rec.name, runner.rec.stage, actor, reason, self.verdict(bot_id))
        if refusal is not None:
            raise EngineError(refusal)
        return self.change(runner, LIVE, actor, reason.strip())

    def demote(self, bot_id: int, actor: str, reason: str) -> StageChange:
        """live or eligible_for_live -> paper_training. Raises EngineError (one line) otherwise."""
        runner = self._runner(bot_id)
        refusal = demotion_refusal(runner.rec.name, runner.rec.stage, reason)
        if refusal is not None:
            raise EngineError(refusal)
        return self.change(runner, PAPER, actor, reason.strip())

    def _runner(self, bot_id: int) -> BotRunner:
        runner = self.engine.runners.get(bot_id)
        if runner is None:
            raise EngineError(f"no bot with id {bot_id}")
        return runner

    # -- the change itself ------------------------------------------------------------------------
    def change(self, runner: BotRunner, to: LifecycleStage, actor: str, reason: str) -> StageChange:
        """Move ``runner``'s bot to ``to`` now: the batch gets the audit row, the bus ``StageChanged``.

        The stage left is measured into the row's figures; a new track starts
        unless the bot becomes eligible_for_live (its paper track goes on).
        """
        rec = runner.rec
        old = rec.stage
        ts = self._now(runner)
        verdict = self.verdict(rec.id)
        equity = runner.equity()
        pnl = equity - runner.funding
        tally = self.tallies.get(rec.id)
        if to is ELIGIBLE and tally is not None:
            basis = tally.basis
        else:
            basis = Basis(ts, pnl, equity)
            self.tallies[rec.id] = StageTally(basis)
        figures = change_figures(verdict, basis, pnl, equity)
        change = StageChange(rec.id, ts, old, to, actor, reason, figures)
        self.engine._batch.stage_changes.append(change)
        self.engine._batch.stage_starts.pop(rec.id, None)
        rec.stage, rec.stage_ts = to, ts
        self._unstarted.discard(rec.id)
        summary = "" if verdict is None else verdict.summary()
        log.warning("bot %s: stage %s -> %s by %s: %s", rec.name, old.value, to.value, actor, reason)
        self.engine.bus.publish(StageChanged(ts, rec.id, rec.name, old, to, actor, reason, summary))
        return change

    def _now(self, runner: BotRunner) -> int:
        """Engine time; before the first candle of a run, the ledger's (the bot's last close, the
        newest snapshot), so a replay's stages stay in market time; else the wall clock."""
        eng = self.engine
        if eng.now_ms:
            return eng.now_ms
        last = runner.rec.last_candle_ts
        ledger = max(eng.ledger_time(), 0 if last is None else last + runner.tf_ms)
        return ledger or eng.clock_ms()

    # -- bus handlers -------------------------------------------------------------------------------
    def _watch_ticks(self) -> None:
        if self._unstarted and self._unwatch is None:
            self._unwatch = self.engine.bus.subscribe(EngineTick, self._on_tick)

    def _on_created(self, e: BotCreated) -> None:
        runner = self.engine.runners.get(e.bot_id)
        if runner is not None and runner.rec.stage_ts is None:  # a bot made while the engine runs
            self._unstarted.add(e.bot_id)
            self._watch_ticks()

    def _on_tick(self, e: EngineTick) -> None:
        c = e.candle
        for runner in self.engine._by_stream.get((c.pair, c.timeframe), ()):
            rec = runner.rec
            if rec.id in self._unstarted:
                self._unstarted.discard(rec.id)
                since = c.ts + runner.tf_ms
                rec.stage_ts = since
                self.engine._batch.stage_starts[rec.id] = since
                self.tallies[rec.id] = StageTally(Basis(since, runner.equity() - runner.funding))
        if not self._unstarted and self._unwatch is not None:
            self._unwatch()
            self._unwatch = None

    def _on_fill(self, e: OrderFilled) -> None:
        if e.side is not Side.SELL:
            return
        runner = self.engine.runners.get(e.bot_id)
        if runner is None or runner.closed_pnl is None:  # not the fill that closed a round trip
            return
        tally = self.tallies.get(e.bot_id)
        if tally is not None:
            tally.add_trade(runner.closed_pnl)
        self._evaluate(runner)

    def _on_equity(self, e: EquitySampled) -> None:
        for bot_id, equity in e.bots.items():
            tally = self.tallies.get(bot_id)
            if tally is not None and e.ts >= tally.since:
                tally.mark(equity)
        for runner in list(self.engine.runners.values()):
            self._evaluate(runner)

    def _evaluate(self, runner: BotRunner) -> None:
        stage = runner.rec.stage
        if stage is not PAPER and stage is not LIVE:
            return
        tally = self.tallies.get(runner.rec.id)
        if tally is None:
            return
        v = verdict_for(stage, tally, self._fig_args(runner), self.rules)
        if v is None or (v.ok if stage is LIVE else not v.ok):
            return
        if stage is PAPER:
            self.change(runner, ELIGIBLE, "engine", f"met every promotion criterion: {v.summary()}")
        else:
            failed = ", ".join(c.progress for c in v.failing)
            self.change(runner, PAPER, "engine", f"below a live floor: {failed}")

    def _on_trip(self, e: BreakerTripped) -> None:
        trip = e.trip
        if trip.bot_id is None:
            return
        runner = self.engine.runners.get(trip.bot_id)
        if runner is not None and runner.rec.stage is not QUARANTINED:
            self._quarantine(runner, trip)

    def _quarantine(self, runner: BotRunner, trip: Trip) -> None:
        self.change(
            runner, QUARANTINED, "engine", f"breaker {trip.breaker} tripped (trip {trip.id}): {trip.message}"
        )

    def _on_reset(self, e: BreakerReset) -> None:
        trip = e.trip
        if trip.bot_id is None:
            return
        runner = self.engine.runners.get(trip.bot_id)
        if runner is None or runner.rec.stage is not QUARANTINED or self._bot_trip(trip.bot_id) is not None:
            return
        why = f"released: trip {trip.id} ({trip.breaker}) reset by {e.actor}: {e.reason}"
        self.change(runner, PAPER, e.actor, why)

    def _bot_trip(self, bot_id: int) -> Trip | None:
        """An active trip of this bot's own breakers (account trips do not quarantine)."""
        return next((t for (_, b), t in self.engine.board.active.items() if b == bot_id), None)
