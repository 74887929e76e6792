"""Where the Adjuster's changes land: the running engine (``EngineTarget``) or, with no engine
running, the ledger alone (``LedgerTarget``, the CLI under the engine lock).

Each target gives the bot's record, whether it trades live, the time rows are stamped with
(engine time; ledger time offline), ``check_spawn`` (would a ``spawn`` be refused now: the DNA
completed with the new bot's name) and ``apply(rec, field, value, why, exact=...)``, which makes
the change and returns ``(the value now in force, a note)``; see ``autonomy.changes`` for what
each field does. Raises ``AdjustmentError`` (one line) or the engine's ``EngineError``.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Any, Protocol

from amarktai_tui.domain.enums import BotState, LifecycleStage, TradingMode
from amarktai_tui.engine.events import EventBus
from amarktai_tui.engine.spec import BotSpec, EngineError
from amarktai_tui.ledger.store import BotRecord, LedgerStore
from amarktai_tui.strategies.registry import make_strategy

if TYPE_CHECKING:
    from amarktai_tui.engine.engine import TradingEngine

__all__ = ["AdjustmentError", "EngineTarget", "LedgerTarget", "Target"]


class AdjustmentError(EngineError):
    """An accept/reject/revert (or a change to an unknown bot) that cannot be done; one line."""


class Target(Protocol):
    """Where an Adjuster's decisions land (``EngineTarget`` or ``LedgerTarget``)."""

    store: LedgerStore
    bus: EventBus

    def now(self) -> int: ...
    def record(self, bot_id: int) -> BotRecord: ...
    def trades_live(self, rec: BotRecord) -> bool: ...
    def check_spawn(self, rec: BotRecord, dna: dict[str, Any], *, from_pool: bool) -> dict[str, Any]: ...
    async def apply(
        self, rec: BotRecord, field: str, value: Any, why: str, *, exact: bool
    ) -> tuple[Any, str]: ...


class EngineTarget:
    """The running engine: its commands apply each change (module doc of ``autonomy.changes``)."""

    def __init__(self, engine: TradingEngine) -> None:
        self.engine = engine
        self.store = engine.store
        self.bus = engine.bus

    def now(self) -> int:
        """Engine time; before a run's first candle the engine's clock (a replay: the ledger's time)."""
        return self.engine.clock_ms()

    def record(self, bot_id: int) -> BotRecord:
        runner = self.engine.runners.get(bot_id)
        if runner is None:
            raise AdjustmentError(f"no bot with id {bot_id} in this engine")
        return runner.rec

    def trades_live(self, rec: BotRecord) -> bool:
        return rec.stage is LifecycleStage.LIVE or self.engine.mode is TradingMode.LIVE

    def check_spawn(self, rec: BotRecord, dna: dict[str, Any], *, from_pool: bool) -> dict[str, Any]:
        """``dna`` (bounded) with the new bot's ``name`` (the DNA's, else ``<sponsor>-<n>``); raises
        EngineError (one line) when the account trades live, the name is taken, the exchange is at
        its cap or 45 bots exist, the market or strategy is unknown, or (``from_pool``) the account
        pool holds less than the DNA's capital."""
        if self.engine.mode is TradingMode.LIVE:
            raise AdjustmentError("spawn: the account trades live; new bots are spawned on paper only")
        out = {**dna, "name": dna.get("name") or self._free_name(rec.name)}
        self.engine.check_new_bot(_spec(out), from_pool=from_pool)
        return out

    def _free_name(self, base: str) -> str:
        names = {r.rec.name for r in self.engine.runners.values()}
        return next(f"{base}-{n}" for n in range(2, 10_000) if f"{base}-{n}" not in names)

    async def apply(
        self, rec: BotRecord, field: str, value: Any, why: str, *, exact: bool
    ) -> tuple[Any, str]:
        e = self.engine
        if field == "params":
            return await e.set_bot_params(rec.id, value), ""
        if field == "risk_mode":
            await e.set_bot_fields(rec.id, dict(value))
            return value, ""
        if field in ("size_multiplier", "stop_loss", "take_profit"):
            await e.set_bot_fields(rec.id, {field: value})
            return value, ""
        if field == "state":
            await e.set_bot_state(rec.id, BotState(value), why)
            return value, ""
        if field == "capital":
            return await self._capital(rec, value, exact=exact)
        if field == "spawn":
            return await self._spawn(rec, value)
        return await self._replace(rec, value, why)

    async def _capital(self, rec: BotRecord, target: Decimal, *, exact: bool) -> tuple[Decimal, str]:
        from amarktai_tui.risk.allocator import Allocation, AllocationPlan, Tier

        e = self.engine
        runner = e.runners[rec.id]
        old = rec.capital
        delta, note = target - old, ""
        if delta > e.pool:
            note = f"capital {target} limited by the account pool ({e.pool})"
            delta = max(e.pool, Decimal(0))
        elif -delta > runner.cash:
            note = f"capital {target} limited by {rec.name}'s free cash ({runner.cash})"
            delta = -max(runner.cash, Decimal(0))
        if note and exact:
            raise AdjustmentError(f"{rec.name}: {note}; it cannot be restored now")
        if not delta:
            raise AdjustmentError(f"{rec.name}: {note or 'capital unchanged'}")
        new = old + delta
        why = f"autonomy: capital {old} -> {new}"
        plan = AllocationPlan(
            (Allocation(rec.id, rec.name, Tier.UNRANKED, None, old, target, new, True, why),),
            e.account_equity() + e.pool,
            e.pool,
        )
        done = await e.apply_allocation(plan, actor="engine")
        return (done[0].new_capital if done else old), note

    async def _spawn(self, rec: BotRecord, dna: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """A new paper bot from ``dna``, its whole capital from the account pool (refused, not
        limited, when the pool holds less); nothing else changes."""
        dna = self.check_spawn(rec, dna, from_pool=True)
        new = await self.engine.create_bot(_spec(dna), from_pool=True)
        return {**dna, "bot_id": new.rec.id, "name": new.rec.name}, ""

    async def _replace(self, rec: BotRecord, dna: dict[str, Any], why: str) -> tuple[dict[str, Any], str]:
        from amarktai_tui.risk.allocator import Allocation, AllocationPlan, Tier

        e = self.engine
        runner = e.runners[rec.id]
        free = min(max(runner.cash, Decimal(0)), rec.capital)
        capital, note = dna["capital"], ""
        if capital > e.pool + free:
            note = f"capital {capital} limited to the pool and {rec.name}'s free cash ({e.pool + free})"
            capital = (e.pool + free).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
        if capital <= 0:
            raise AdjustmentError(f"replace: the account pool and {rec.name} hold no capital for a new bot")
        spec = _spec({**dna, "name": dna.get("name") or self._free_name(rec.name), "capital": capital})
        e.check_new_bot(spec)  # refusals (names, caps, markets) before anything changes
        if rec.state is not BotState.STOPPED:
            await e.set_bot_state(rec.id, BotState.STOPPED, why)
        if free > 0:
            back = f"autonomy: {rec.name} retired, free cash back to the pool"
            plan = AllocationPlan(
                (Allocation(rec.id, rec.name, Tier.UNRANKED, None, rec.capital, rec.capital - free,
                            rec.capital - free, True, back),),
                e.account_equity() + e.pool, e.pool,
            )  # fmt: skip
            await e.apply_allocation(plan, actor="engine")
        capital = min(capital, e.pool)
        new = await e.create_bot(replace(spec, capital=capital), from_pool=True)
        return {**dna, "capital": capital, "bot_id": new.rec.id, "name": new.rec.name}, note


def _spec(dna: dict[str, Any]) -> BotSpec:
    """The BotSpec of a bounded DNA dict with its ``name`` (``bounds.clamp_dna``)."""
    return BotSpec(
        name=dna["name"], exchange=dna["exchange"], pair=dna["pair"], timeframe=dna["timeframe"],
        strategy=dna["strategy"], params=dict(dna["params"]), risk_mode=dna["risk_mode"],
        capital=dna["capital"], stop_loss=dna["stop_loss"], take_profit=dna["take_profit"],
        trailing_stop=dna["trailing_stop"], dna_id=dna.get("dna_id"),
    )  # fmt: skip


class LedgerTarget:
    """No engine runs (the CLI holds the engine lock): the ``bots`` rows, through ``store``."""

    def __init__(self, store: LedgerStore, bots: list[BotRecord], now_ms: int, live: bool) -> None:
        self.store = store
        self.bus = EventBus()
        self.bots = {b.id: b for b in bots}
        self._now = now_ms
        self.live = live

    def now(self) -> int:
        return self._now

    def record(self, bot_id: int) -> BotRecord:
        rec = self.bots.get(bot_id)
        if rec is None:
            raise AdjustmentError(f"no bot with id {bot_id}")
        return rec

    def trades_live(self, rec: BotRecord) -> bool:
        return rec.stage is LifecycleStage.LIVE or self.live

    def check_spawn(self, rec: BotRecord, dna: dict[str, Any], *, from_pool: bool) -> dict[str, Any]:
        raise AdjustmentError("spawn: money moves only in a running engine: start the engine")

    async def apply(
        self, rec: BotRecord, field: str, value: Any, why: str, *, exact: bool
    ) -> tuple[Any, str]:
        from amarktai_tui.engine.lifecycle import check_transition
        from amarktai_tui.ledger.store import WriteBatch

        if field in ("capital", "replace", "spawn"):
            raise AdjustmentError(f"{field}: money moves only in a running engine: start the engine")
        now = self._now
        if field == "params":
            try:
                params = dict(make_strategy(rec.strategy, {**rec.params, **value}).params)
            except ValueError as exc:
                raise AdjustmentError(str(exc).strip().splitlines()[0]) from None
            await self.store.set_bot_params(rec.id, params, now)
            rec.params = params
            return params, ""
        if field == "state":
            new = BotState(value)
            try:
                check_transition(rec.state, new)
            except ValueError as exc:
                raise AdjustmentError(f"{rec.name}: {exc}") from None
            if new is BotState.RUNNING:
                state = await self.store.load_risk_state()
                if any(t.bot_id in (None, rec.id) for t in state.active_trips):
                    raise AdjustmentError(f"{rec.name}: a breaker covering it is tripped; reset it first")
            await self.store.write(WriteBatch(bot_updates={rec.id: (new, why, None, now)}))
            rec.state, rec.state_reason = new, why
            return value, ""
        fields = dict(value) if field == "risk_mode" else {field: value}
        await self.store.set_bot_fields(rec.id, fields, now)
        for k, v in fields.items():
            setattr(rec, k, v)
        return value, ""
