"""The one door every automatic change to a bot goes through: ``Adjuster``.

Optimisation, learning, regimes, evolution, the autopilot, self-healing, the AI and the user's own
``amarktai autonomy``/``optimize --apply`` submit a ``Change``; the Adjuster decides, applies through
the engine's own commands and appends one row of ``bot_adjustments`` per decision
(``autonomy.adjust_store``), publishing ``BotAdjusted`` for each (the audit log records it):

1. a protected figure (``bounds.PROTECTED_FIELDS``; a params change naming one of
   ``bounds.PROTECTED_PARAMS``) -> ``refused``, nothing changes;
2. source ``evolution`` or ``autopilot`` on a live bot (stage live, or an engine trading live) ->
   ``refused`` (paper only);
3. the value is brought within the bounds (``bounds.clamp``); a value that cannot be -> ``refused``;
   a value equal to the bot's current one -> ``refused`` ("no change"); a ``spawn`` the engine would
   refuse now (below) -> ``refused``;
4. expert mode -> ``proposed`` (nothing changes until ``accept``; an identical pending proposal is
   not repeated: the existing one is returned); autonomous mode -> applied -> ``applied``, or
   ``refused`` with the engine's reason when the engine refuses it.

``accept`` clamps the proposal again (the bounds may have changed), applies it and appends
``accepted``; ``reject`` appends ``rejected``; ``revert`` puts the row's ``before`` back exactly,
through the same engine commands, without the bounds (it restores what the bot had, which the user
or the bounds once allowed), and appends ``reverted``. These three raise ``AdjustmentError`` (one
line, nothing written) for an unknown id, a row in the wrong status or already answered, or a change
the engine refuses now. A ``replace`` or a ``spawn`` is not revertible (stop the new bot instead:
its capital is then the user's to move, and a revert could not give back exactly what was spent).

How each field is applied (engine): params -> ``set_bot_params`` (the strategy restarts its warm-up);
risk_mode, size_multiplier, stop_loss, take_profit -> ``set_bot_fields``; state ->
``set_bot_state``; capital -> an ``AllocationPlan`` through ``apply_allocation``: money moves only
between the account pool and the bot (a pair of ``allocation`` ledger events), an increase is
limited to what the pool holds and a decrease to the bot's free cash (a revert must restore exactly,
or it is refused); replace -> the bot is stopped (if it is not), its free cash up to its capital goes
back to the pool, and a new paper bot is created from the DNA with ``create_bot(from_pool=True)``
(capital limited to what the pool then holds); spawn -> a new paper bot is created from the DNA with
``create_bot(from_pool=True)``, its whole capital taken from the account pool, nothing retired.
So the account's total (funding + pool) never changes.

``spawn`` (the autopilot's new bot from an evolved DNA; any source may submit one): ``bot_id`` is the
sponsor, the bot whose lineage or exits the DNA comes from (the autopilot: yesterday's top earner);
every row of the spawn names the sponsor, and the applied/accepted row's ``after`` carries the new
bot's ``bot_id`` and ``name``. The DNA's missing keys are taken from the sponsor and it is bounded as
a ``replace`` DNA (``bounds.clamp_dna``); the name is the DNA's, else ``<sponsor>-<n>``. Refused
(one line) when the account trades live (a spawned bot is always a paper bot), the name is taken,
the exchange is at its bot cap or 45 bots exist, the market or strategy is unknown, or, when it is
applied (autonomous mode, or an accept), the account pool holds less than the DNA's capital (the
amount is never reduced). A proposal is checked against the pool only when accepted: the autopilot
proposes the sweeps that fill the pool first, and the user accepts them in that order.

With no engine running, ``Adjuster.offline`` works on a ``LedgerStore`` opened under the engine lock
(the CLI): params, risk_mode, size_multiplier, exits and state are written to ``bots`` (the next
engine loads them); capital, replace and spawn need the engine and are refused.

The running Adjuster of an engine: ``adjuster_for(engine)`` (``autonomy.service.start_autonomy``
attaches it); the TUI and the control socket find it there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amarktai_tui.autonomy import adjust_store
from amarktai_tui.autonomy.adjust_store import TOOK_EFFECT, Adjustment, NewRow, dumps
from amarktai_tui.autonomy.bounds import (
    CHANGE_FIELDS,
    NEW_BOT_FIELDS,
    PROTECTED_FIELDS,
    PROTECTED_PARAMS,
    SOURCES,
    Bounds,
    BoundsRefusal,
    clamp,
    coerce,
)
from amarktai_tui.autonomy.settings import AutonomySettings
from amarktai_tui.autonomy.targets import AdjustmentError, EngineTarget, LedgerTarget, Target
from amarktai_tui.domain.enums import BotState, TradingMode
from amarktai_tui.engine.events import BotAdjusted, EventBus
from amarktai_tui.engine.spec import EngineError
from amarktai_tui.ledger.store import BotRecord, LedgerStore
from amarktai_tui.strategies.registry import make_strategy

if TYPE_CHECKING:
    from amarktai_tui.engine.engine import TradingEngine

__all__ = [
    "Adjuster",
    "Adjustment",
    "AdjustmentError",
    "Change",
    "adjuster_for",
    "attach",
    "detach",
]

log = logging.getLogger("amarktai.autonomy")
PAPER_ONLY_SOURCES = ("evolution", "autopilot")


@dataclass(frozen=True)
class Change:
    """What a process wants changed on bot ``bot_id``: ``field`` (``bounds.CHANGE_FIELDS``, or a
    protected name, which is refused) set to ``after``, by ``source`` (``bounds.SOURCES``), because
    ``reason`` (non-empty, shown to the user). ``after``: params -> dict merged over the current
    params; risk_mode -> RiskMode (or its value); size_multiplier -> Decimal; stop_loss,
    take_profit -> Decimal fraction (or None: refused by the bounds); capital -> Decimal quote (the
    bot's new capital); state -> 'paused' | 'running' | 'stopped'; replace -> a DNA dict
    (``bounds.REPLACE_KEYS``); spawn -> a DNA dict too (a new paper bot funded from the account pool;
    ``bot_id`` the sponsor, module doc). Raises ValueError for an unknown source or an empty reason."""

    bot_id: int
    source: str
    field: str
    after: Any
    reason: str

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown change source {self.source!r}; expected one of {', '.join(SOURCES)}")
        if not self.reason.strip():
            raise ValueError("a change needs a reason")


# -- the Adjuster ---------------------------------------------------------------------------------


def _current(rec: BotRecord, field: str) -> Any:
    """The bot's value of ``field`` now, in the form a row records (Decimals stay Decimal)."""
    if field == "params":
        try:
            return dict(make_strategy(rec.strategy, rec.params).params)
        except ValueError:
            return dict(rec.params)
    if field == "risk_mode":
        return {"risk_mode": rec.risk_mode, "size_multiplier": rec.size_multiplier}
    if field == "state":
        return rec.state.value
    if field == "spawn":
        return None  # nothing was there before: a new bot
    if field == "replace":
        keys = ("name", "exchange", "pair", "timeframe", "strategy", "params", "risk_mode", "capital",
                "stop_loss", "take_profit", "trailing_stop", "dna_id")  # fmt: skip
        return {k: getattr(rec, k) for k in keys}
    return getattr(rec, field, None)


def _typed(field: str, value: Any) -> Any:
    """A row's JSON value (or a clamped value) as the typed value the engine takes; for comparing and
    for a revert. Raises BoundsRefusal when it does not parse."""
    if field == "risk_mode":
        if not isinstance(value, dict):
            raise BoundsRefusal(f"risk_mode: expected {{risk_mode, size_multiplier}}, got {value!r}")
        return {
            "risk_mode": coerce("risk_mode", value.get("risk_mode")),
            "size_multiplier": coerce("size_multiplier", value.get("size_multiplier")),
        }
    if field == "state":
        try:
            return BotState(value).value
        except ValueError:
            raise BoundsRefusal(f"state: {value!r} is not a bot state") from None
    return coerce(field, value)


def _same(field: str, a: Any, b: Any) -> bool:
    try:
        return bool(_typed(field, json.loads(dumps(a))) == _typed(field, json.loads(dumps(b))))
    except (BoundsRefusal, ValueError):
        return False


_ADJUSTERS: dict[int, Adjuster] = {}
"""id(engine) -> its running Adjuster (``attach``)."""


def attach(engine: object, adjuster: Adjuster) -> None:
    """Make ``adjuster`` the one ``adjuster_for(engine)`` returns (``start_autonomy`` does this)."""
    _ADJUSTERS[id(engine)] = adjuster


def detach(engine: object) -> None:
    _ADJUSTERS.pop(id(engine), None)


def adjuster_for(engine: object) -> Adjuster | None:
    """The Adjuster running beside ``engine`` (the TUI, the control socket), if any."""
    return _ADJUSTERS.get(id(engine))


class Adjuster:
    """Decides, applies and records every change to a bot (module doc). One decision at a time."""

    def __init__(
        self, engine: TradingEngine | None, settings: AutonomySettings, *, _target: Target | None = None
    ) -> None:
        if _target is None:
            if engine is None:
                raise ValueError("an Adjuster needs an engine (or use Adjuster.offline)")
            _target = EngineTarget(engine)
        self._t = _target
        self.engine = engine
        self.settings = settings
        self._lock = asyncio.Lock()
        self._readers = threading.local()  # one read-only connection per thread, kept (cheap reads)
        self._opened: list[sqlite3.Connection] = []

    def close(self) -> None:
        """Close the read connections (the Adjuster's reads open them again when used)."""
        opened, self._opened = self._opened, []
        self._readers = threading.local()
        for conn in opened:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    @classmethod
    async def offline(cls, store: LedgerStore, settings: AutonomySettings, now_ms: int) -> Adjuster:
        """An Adjuster over the ledger alone (no engine runs; the caller holds the engine lock):
        rows stamped ``now_ms`` (ledger time); ``bus`` is its own (subscribe for ``BotAdjusted``)."""
        live = await store.trading_mode() == TradingMode.LIVE.value
        return cls(None, settings, _target=LedgerTarget(store, await store.load_bots(), now_ms, live))

    @property
    def mode(self) -> str:
        """``expert`` or ``autonomous`` (``[autonomy] mode``)."""
        return self.settings.mode

    @property
    def bounds(self) -> Bounds:
        return Bounds.from_settings(self.settings.bounds)

    @property
    def bus(self) -> EventBus:
        """Where ``BotAdjusted`` is published (the engine's bus; an offline Adjuster's own)."""
        return self._t.bus

    # -- reads (a read-only connection per thread, kept: a WAL reader sees each new commit) --------
    def _read(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        if conn is None:
            conn = self._readers.conn = adjust_store.connect(self._t.store.path)
            self._opened.append(conn)
        return conn

    def history(
        self, bot_id: int | None = None, limit: int = 100, status: str | None = None
    ) -> list[Adjustment]:
        """Rows newest first, of one bot or all, at most ``limit``."""
        return adjust_store.history(self._read(), bot_id=bot_id, status=status, limit=limit)

    def pending(self, bot_id: int | None = None) -> list[Adjustment]:
        """Proposals not yet accepted or rejected, oldest first."""
        return adjust_store.pending(self._read(), bot_id=bot_id)

    def get(self, adjustment_id: int) -> Adjustment | None:
        return adjust_store.get(self._read(), adjustment_id)

    # -- decisions -------------------------------------------------------------------------------
    async def submit(self, change: Change, actor: str = "engine") -> Adjustment:
        """Decide on ``change`` (module doc, steps 1-4) and return its row. Raises AdjustmentError
        only for a bot this engine does not run (no row can name it)."""
        async with self._lock:
            return await self._submit(change, actor)

    async def _submit(self, c: Change, actor: str) -> Adjustment:
        rec = self._t.record(c.bot_id)
        field = c.field
        before = _current(rec, field) if field in CHANGE_FIELDS else None

        async def refuse(why: str) -> Adjustment:
            return await self._row(rec, c.source, field, before, c.after, f"{c.reason} [refused: {why}]",
                                   "refused", actor)  # fmt: skip

        if field.lower() in PROTECTED_FIELDS or (
            field not in CHANGE_FIELDS and field.lower() in PROTECTED_PARAMS
        ):
            return await refuse(f"{field} is protected: no automatic process changes it")
        if field == "params" and isinstance(c.after, dict):
            named = sorted(k for k in c.after if str(k).lower() in PROTECTED_PARAMS)
            if named:
                return await refuse(f"{', '.join(named)}: protected, not a strategy parameter")
        if c.source in PAPER_ONLY_SOURCES and self._t.trades_live(rec):
            return await refuse(f"{c.source} changes paper bots only; {rec.name} trades live")
        try:
            value, note = clamp(field, c.after, rec, self.bounds)
        except BoundsRefusal as exc:
            return await refuse(str(exc))
        if field == "spawn":
            try:  # caps, name, market, a live account; the pool when it is applied now
                value = self._t.check_spawn(rec, value, from_pool=self.mode != "expert")
            except EngineError as exc:
                return await refuse(str(exc).strip().splitlines()[0])
        if field not in NEW_BOT_FIELDS and _same(field, value, before):
            return await refuse(f"no change: within the bounds {field} stays {dumps(before)}")
        reason = c.reason + (f" [{note}]" if note else "")
        if self.mode == "expert":
            for p in self.pending(c.bot_id):
                if p.field == field and p.source == c.source and p.after == json.loads(dumps(value)):
                    return p
            return await self._row(rec, c.source, field, before, value, reason, "proposed", actor)
        try:
            applied, more = await self._t.apply(
                rec, field, value, self._why(c.source, c.reason, actor), exact=False
            )
        except EngineError as exc:
            return await refuse(str(exc).strip().splitlines()[0])
        reason += f" [{more}]" if more else ""
        return await self._row(rec, c.source, field, before, applied, reason, "applied", actor)

    async def accept(self, adjustment_id: int, actor: str = "user") -> Adjustment:
        """Apply a pending proposal, clamped to the bounds now; its ``accepted`` row (``ref_id`` = the
        proposal). Raises AdjustmentError (nothing written) when it is no pending proposal, its bot is
        live and the source paper-only, it no longer fits the bounds, or the engine refuses it."""
        async with self._lock:
            p = self._pending(adjustment_id)
            rec = self._t.record(p.bot_id)
            if p.source in PAPER_ONLY_SOURCES and self._t.trades_live(rec):
                raise AdjustmentError(f"#{p.id}: {p.source} changes paper bots only; {rec.name} trades live")
            try:
                asked = (
                    p.after.get("risk_mode")
                    if p.field == "risk_mode" and isinstance(p.after, dict)
                    else p.after
                )
                value, note = clamp(p.field, asked, rec, self.bounds)  # a risk mode's multiplier: fitted anew
            except BoundsRefusal as exc:
                raise AdjustmentError(f"#{p.id}: {exc}") from None
            before = _current(rec, p.field)
            applied, more = await self._apply(
                rec, p.field, value, self._why(p.source, p.reason, actor), exact=False
            )
            notes = "; ".join(n for n in (note, more) if n)
            reason = f"accepted #{p.id}: {p.reason}" + (f" [{notes}]" if notes else "")
            return await self._row(rec, p.source, p.field, before, applied, reason, "accepted", actor, p.id)

    async def reject(self, adjustment_id: int, actor: str = "user") -> Adjustment:
        """Answer a pending proposal with ``rejected``; nothing changes. AdjustmentError when it is
        no pending proposal."""
        async with self._lock:
            p = self._pending(adjustment_id)
            rec = self._t.record(p.bot_id)
            return await self._row(rec, p.source, p.field, p.before, p.after, f"rejected #{p.id}: {p.reason}",
                                   "rejected", actor, p.id)  # fmt: skip

    async def withdraw(self, adjustment_id: int, why: str) -> Adjustment:
        """The process that proposed ``adjustment_id`` takes it back (its finding no longer holds):
        a ``rejected`` row by actor ``engine``, reason ``withdrawn #id: why``; nothing changes.
        AdjustmentError when it is no pending proposal (the user answered it meanwhile)."""
        async with self._lock:
            p = self._pending(adjustment_id)
            rec = self._t.record(p.bot_id)
            return await self._row(rec, p.source, p.field, p.before, p.after, f"withdrawn #{p.id}: {why}",
                                   "rejected", "engine", p.id)  # fmt: skip

    async def revert(self, adjustment_id: int, actor: str = "user") -> Adjustment:
        """Put back the ``before`` of an applied or accepted change, exactly (no bounds); its
        ``reverted`` row. AdjustmentError when the row took no effect, was reverted already, is a
        replace or a spawn, or the engine refuses the old value now (e.g. capital the pool no longer holds)."""
        async with self._lock:
            conn = self._read()
            row = adjust_store.get(conn, adjustment_id)
            done = row is not None and any(a.status == "reverted" for a in adjust_store.answers(conn, row.id))
            if row is None:
                raise AdjustmentError(f"no adjustment #{adjustment_id}")
            if row.status not in TOOK_EFFECT:
                raise AdjustmentError(
                    f"#{row.id} is {row.status}: only an applied or accepted change can be reverted"
                )
            if done:
                raise AdjustmentError(f"#{row.id} was reverted already")
            if row.field in NEW_BOT_FIELDS:
                raise AdjustmentError(f"#{row.id} spawned a new bot: stop that bot instead of reverting")
            rec = self._t.record(row.bot_id)
            try:
                value = _typed(row.field, row.before)
            except BoundsRefusal as exc:
                raise AdjustmentError(f"#{row.id}: its before value does not parse: {exc}") from None
            before = _current(rec, row.field)
            why = self._why(row.source, f"revert of #{row.id}", actor)
            applied, _ = await self._apply(rec, row.field, value, why, exact=True)
            return await self._row(rec, row.source, row.field, before, applied, f"revert of #{row.id}: {row.reason}",
                                   "reverted", actor, row.id)  # fmt: skip

    # -- helpers ------------------------------------------------------------------------------------
    def _pending(self, adjustment_id: int) -> Adjustment:
        conn = self._read()
        p = adjust_store.get(conn, adjustment_id)
        answered = p is not None and any(
            a.status in ("accepted", "rejected") for a in adjust_store.answers(conn, p.id)
        )
        if p is None:
            raise AdjustmentError(f"no adjustment #{adjustment_id}")
        if p.status != "proposed":
            raise AdjustmentError(f"#{p.id} is {p.status}, not a proposal")
        if answered:
            raise AdjustmentError(f"#{p.id} was answered already")
        return p

    async def _apply(
        self, rec: BotRecord, field: str, value: Any, why: str, *, exact: bool
    ) -> tuple[Any, str]:
        try:
            return await self._t.apply(rec, field, value, why, exact=exact)
        except AdjustmentError:
            raise
        except EngineError as exc:
            raise AdjustmentError(str(exc).strip().splitlines()[0]) from None

    @staticmethod
    def _why(source: str, reason: str, actor: str) -> str:
        """A state change's reason: the audit log reads its actor from ``by <actor>``."""
        return f"{reason} (autonomy {source}, by {actor})"

    async def _row(
        self, rec: BotRecord, source: str, field: str, before: Any, after: Any, reason: str, status: str,
        actor: str, ref_id: int | None = None,
    ) -> Adjustment:  # fmt: skip
        ts = self._t.now()
        b, a = dumps(before), _dumps_lenient(after)
        row = NewRow(ts, rec.id, source, field, b, a, reason, status, actor, ref_id)
        row_id = await adjust_store.insert(self._t.store, row)
        adj = Adjustment(row_id, ts, rec.id, rec.name, source, field, json.loads(b), json.loads(a), reason,
                         status, actor, ref_id)  # fmt: skip
        log.info("adjustment #%d %s: %s %s %s -> %s (%s)", row_id, status, rec.name, field, b, a, reason)
        self._t.bus.publish(
            BotAdjusted(ts, row_id, rec.id, rec.name, source, field, b, a, reason, status, actor, ref_id)
        )
        return adj


def _dumps_lenient(value: Any) -> str:
    """A refused change's ``after`` may be anything a caller passed: its JSON, else its repr as a string."""
    try:
        return dumps(value)
    except (TypeError, ValueError):
        return json.dumps(repr(value))
