"""The audit log: what happened, when, who did it, to which bot, how serious it is.

Entries come from three places:

- the engine's bus: ``classify`` maps each engine event to at most one entry (a pure function of
  the event); the recorder (``AuditLog``, started beside the engine by ``ops.services``) stamps it
  with the wall clock, names the bot and writes it;
- CLI processes (``amarktai keys set|delete|test``, ``amarktai mode`` with no engine running):
  ``note_offline`` sends the entry to the running engine's recorder over the control socket
  (``{"cmd": "audit", "entry": ENTRY}``), or writes it itself under the engine lock when no engine
  runs (``ops.control.send_or_record``); a mode switch recorded under the lock writes its entry in
  the same connection (``record_in``);
- nothing else: the AI console, the TUI and the services act through the engine, whose events say
  what they did.

Times: ``ts`` is the wall clock (ms UTC) when the entry was recorded, so retention and the
compliance report count real days; an engine event's own time (market time: simulated in a replay)
is kept as ``details["engine_ts"]`` when it differs.

Writes: the recorder writes through its own ``sqlite3`` connection, in a worker thread, one short
transaction per batch (busy timeout 5 s): entries are buffered and written at most
``FLUSH_AFTER_S`` after they arrive, at once for a critical one, and at ``close``. SQLite serialises
these transactions with the engine's tick transactions (WAL), so neither waits on the event loop.
The engine's ``LedgerStore`` has no public way to run other SQL, and one SQL module
(``ops.audit_store``) serves the recorder, the offline path and the readers alike.

Events published before the services start (the bots created from the config when the engine
opens) are not seen by the recorder: at start it adds a ``bot_created`` entry (``details.source =
"ledger"``) for each bot of the ledger created within the retention window that has none. Fills
recovered by the start-up reconciliation of a live engine are in ``reconciliations``, not here.
``bot_deleted`` is a known type with no producer yet: bots are never deleted or retired.

The audit table is not part of the ledger: rows older than ``[audit] retention_days`` are pruned at
start and once a day. Key material never enters an entry: a key entry names the provider and at
most the masked key id (``••••`` and its last 4 characters).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from amarktai_tui.domain.enums import BotState, LifecycleStage, TradingMode
from amarktai_tui.engine.events import (
    AiAction,
    AiActionCancelled,
    AiActionConfirmed,
    AiActionExecuted,
    AiActionExpired,
    AiActionFailed,
    AiActionProposed,
    AiActionRefused,
    BackupCreated,
    BotAdjusted,
    BotCreated,
    BotQuarantined,
    BotStateChanged,
    BreakerReset,
    BreakerTripped,
    CapitalChanged,
    Event,
    EventBus,
    GenerationEvolved,
    ModeSwitched,
    OrderFilled,
    ReportSent,
    StageChanged,
)
from amarktai_tui.risk.breakers import Breaker

if TYPE_CHECKING:
    from amarktai_tui.config import Settings
    from amarktai_tui.engine.engine import TradingEngine

log = logging.getLogger("amarktai.audit")
_T = TypeVar("_T")


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


AUDIT_TYPES: tuple[str, ...] = (
    "bot_created",
    "bot_deleted",  # no producer yet: bots are never deleted or retired
    "bot_state_changed",
    "bot_stage_changed",  # a lifecycle stage change other than a promotion to live
    "bot_promoted_to_live",
    "paper_trade_executed",
    "live_trade_executed",
    "capital_changed",
    "capital_rebalance",
    "api_key_added",
    "api_key_deleted",
    "api_key_tested",
    "system_mode_changed",
    "emergency_stop_triggered",
    "breaker_tripped",
    "breaker_reset",
    "ai_action_proposed",
    "ai_action_confirmed",
    "ai_action_cancelled",
    "ai_action_expired",
    "ai_action_refused",
    "ai_action_executed",
    "ai_action_failed",
    "daily_report_sent",
    "report_sent",  # a weekly or monthly report
    "alert_sent",  # a batch of alert mails
    "backup_created",
    "bot_adjusted",  # autonomy: a change applied, accepted, rejected, reverted or refused (bot_adjustments)
    "adjustment_proposed",  # autonomy, expert mode: a change waiting for the user
    "bot_quarantined",
    "generation_evolved",
)
ACTORS: tuple[str, ...] = ("user", "ai", "engine", "autopilot", "cli")

_CRITICAL = frozenset(
    {
        "live_trade_executed",
        "system_mode_changed",
        "api_key_added",
        "api_key_deleted",
        "emergency_stop_triggered",
        "breaker_tripped",
        "breaker_reset",
        "bot_promoted_to_live",
    }
)
_WARNING = frozenset({"bot_deleted", "ai_action_refused", "ai_action_failed", "bot_quarantined"})
DEFAULT_SEVERITY: dict[str, Severity] = {
    t: Severity.CRITICAL if t in _CRITICAL else Severity.WARNING if t in _WARNING else Severity.INFO
    for t in AUDIT_TYPES
}
"""Each type's severity; a few entries are raised by what they say (a bot in error, a failed key
test, a demotion from live, a quarantine: warning)."""

FLUSH_AFTER_S = 1.0
"""An entry is written at most this long after it was recorded (a critical one at once)."""
BATCH_SIZE = 500
"""A buffer of this many entries is written at once."""
MAX_PENDING = 100_000
"""Entries kept for a retry while the database refuses writes; beyond that the oldest are dropped."""
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit entry: ``ts`` ms UTC (wall clock), ``type`` one of ``AUDIT_TYPES``, ``actor`` one
    of ``ACTORS``, the bot's id and name when it is about one, ``details`` JSON-ready (Decimals as
    strings)."""

    ts: int
    type: str
    severity: Severity
    actor: str
    bot_id: int | None
    bot: str | None
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """``{"ts", "time" (ISO 8601 UTC), "type", "severity", "actor", "bot_id", "bot", "details"}``."""
        return {
            "ts": self.ts,
            "time": iso_time(self.ts),
            "type": self.type,
            "severity": self.severity.value,
            "actor": self.actor,
            "bot_id": self.bot_id,
            "bot": self.bot,
            "details": self.details,
        }

    @classmethod
    def from_json(cls, obj: object) -> AuditEntry:
        """The entry of ``to_json``'s shape (``time`` ignored). Raises ValueError naming what is wrong."""
        if not isinstance(obj, dict):
            raise ValueError("an audit entry must be a JSON object")
        ts, kind, sev, actor = obj.get("ts"), obj.get("type"), obj.get("severity"), obj.get("actor")
        bot_id, bot, details = obj.get("bot_id"), obj.get("bot"), obj.get("details", {})
        if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
            raise ValueError("audit entry: ts must be ms UTC (an integer >= 0)")
        if kind not in AUDIT_TYPES:
            raise ValueError(f"audit entry: unknown type {kind!r}")
        if sev not in tuple(Severity):
            raise ValueError(f"audit entry: severity must be one of info, warning, critical, got {sev!r}")
        if actor not in ACTORS:
            raise ValueError(f"audit entry: actor must be one of {', '.join(ACTORS)}, got {actor!r}")
        if bot_id is not None and (not isinstance(bot_id, int) or isinstance(bot_id, bool)):
            raise ValueError("audit entry: bot_id must be an integer or null")
        if bot is not None and (not isinstance(bot, str) or len(bot) > 100):
            raise ValueError("audit entry: bot must be a name (at most 100 characters) or null")
        if not isinstance(details, dict):
            raise ValueError("audit entry: details must be a JSON object")
        return cls(ts, kind, Severity(sev), actor, bot_id, bot, details)


@dataclass(frozen=True, slots=True)
class AuditNoted(Event):
    """An entry made outside the engine (a CLI process, through the control socket), published on the
    engine's bus so the recorder writes it and the TUI's Audit pane shows it."""

    entry: AuditEntry


def iso_time(ts: int) -> str:
    """``1704067200000`` -> ``"2024-01-01T00:00:00.000Z"`` (ms UTC)."""
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts % 1000:03d}Z"


def wall_ms() -> int:
    """The wall clock, ms since the epoch UTC."""
    return int(time.time() * 1000)


# -- classification of engine events ------------------------------------------------------------

_Parts = tuple[str, Severity | None, str, int | None, str | None, dict[str, Any]]
"""(type, severity or None for the type's default, actor, bot_id, bot, details)"""
_BY = re.compile(r"\bby (user|ai|cli|engine|autopilot)\b")
_ALLOCATOR = re.compile(r"^allocator \((\w+)\)")
_AI_TYPES: dict[type[AiAction], str] = {
    AiActionProposed: "ai_action_proposed",
    AiActionConfirmed: "ai_action_confirmed",
    AiActionCancelled: "ai_action_cancelled",
    AiActionExpired: "ai_action_expired",
    AiActionRefused: "ai_action_refused",
    AiActionExecuted: "ai_action_executed",
    AiActionFailed: "ai_action_failed",
}


def actor_of(who: str) -> str:
    """An event's actor as an audit actor: ``user``, ``ai``, ``engine``, ``autopilot``, ``cli``; the
    AI console's slash commands (``commands``) are the user's; anything else is the engine."""
    who = who.strip().lower()
    if who in ACTORS:
        return who
    return "user" if who in ("commands", "tui") else "engine"


def _bot_created(e: BotCreated, live: bool) -> _Parts:
    return "bot_created", None, "engine", e.bot_id, e.name, {}


def _bot_state(e: BotStateChanged, live: bool) -> _Parts:
    m = _BY.search(e.reason)
    actor = m.group(1) if m else "user" if e.reason in ("pause all", "resume all") else "engine"
    sev = Severity.WARNING if e.new in (BotState.ERROR, BotState.CIRCUIT_TRIPPED) else None
    return "bot_state_changed", sev, actor, e.bot_id, e.name, {"from": e.old.value, "to": e.new.value,
                                                                  "reason": e.reason}  # fmt: skip


def _fill(e: OrderFilled, live: bool) -> _Parts:
    details = {
        "client_order_id": e.client_order_id,
        "pair": e.pair,
        "side": e.side.value,
        "quantity": str(e.quantity),
        "price": str(e.price),
        "fee": str(e.fee),
        "realised_pnl": str(e.realised_pnl),
    }
    kind = "live_trade_executed" if live else "paper_trade_executed"
    return kind, None, "engine", e.bot_id, None, details


def _capital(e: CapitalChanged, live: bool) -> _Parts:
    m = _ALLOCATOR.match(e.reason)
    details = {"old": str(e.old), "new": str(e.new), "delta": str(e.new - e.old), "reason": e.reason}
    if m:  # the allocator moved capital between the bots and the pool (engine.core.allocate_now)
        return "capital_rebalance", None, actor_of(m.group(1)), e.bot_id, e.name, details
    return "capital_changed", None, "engine", e.bot_id, e.name, details


def _stage(e: StageChanged, live: bool) -> _Parts:
    details = {"from": e.old.value, "to": e.new.value, "reason": e.reason, "summary": e.summary}
    if e.new is LifecycleStage.LIVE:
        return "bot_promoted_to_live", None, actor_of(e.actor), e.bot_id, e.name, details
    leaves_live = e.old is LifecycleStage.LIVE or e.new is LifecycleStage.QUARANTINED
    sev = Severity.WARNING if leaves_live else None
    return "bot_stage_changed", sev, actor_of(e.actor), e.bot_id, e.name, details


def _mode(e: ModeSwitched, live: bool) -> _Parts:
    details = {"from": e.old.value, "to": e.new.value} | ({"reason": e.reason} if e.reason else {})
    return "system_mode_changed", None, e.actor, None, None, details


def _trip_details(trip: Any) -> dict[str, Any]:
    return {
        "trip_id": trip.id,
        "breaker": trip.breaker.value,
        "scope": trip.scope.value,
        "threshold": str(trip.threshold),
        "value": str(trip.value),
        "cause": trip.cause,
        "message": trip.message,
    }


def _tripped(e: BreakerTripped, live: bool) -> _Parts:
    t = e.trip
    if t.breaker is Breaker.HALT:  # the halt's cause is who asked for it (engine.halt)
        return "emergency_stop_triggered", None, actor_of(t.cause), None, None, _trip_details(t)
    return "breaker_tripped", None, "engine", t.bot_id, e.bot_name, _trip_details(t)


def _reset(e: BreakerReset, live: bool) -> _Parts:
    t = e.trip
    details = {
        "trip_id": t.id,
        "breaker": t.breaker.value,
        "scope": t.scope.value,
        "reason": e.reason,
        "resumed_trading": t.breaker is Breaker.HALT,
        "retripped_trip_id": e.retripped.id if e.retripped is not None else None,
    }
    return "breaker_reset", None, actor_of(e.actor), t.bot_id, None, details


def _ai(e: AiAction, live: bool) -> _Parts:
    try:
        args: Any = json.loads(e.args) if e.args else {}
    except ValueError:
        args = e.args
    details = {"proposal": e.proposal, "tool": e.tool, "args": args, "detail": e.detail}
    return _AI_TYPES[type(e)], None, actor_of(e.actor), None, None, details


def _backup(e: BackupCreated, live: bool) -> _Parts:
    details = {"path": e.path, "size": e.size, "sha256": e.sha256, "reason": e.reason}
    return "backup_created", None, "user" if e.reason == "manual" else "engine", None, None, details


def _report(e: ReportSent, live: bool) -> _Parts:
    kind = {"daily": "daily_report_sent", "alert": "alert_sent"}.get(e.period, "report_sent")
    details = {"period": e.period, "recipients": list(e.recipients), "subject": e.subject}
    return kind, None, "engine", None, None, details


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _adjusted(e: BotAdjusted, live: bool) -> _Parts:
    """A ``bot_adjustments`` row (``autonomy.changes``); the autopilot's own rows are the autopilot's."""
    kind = "adjustment_proposed" if e.status == "proposed" else "bot_adjusted"
    actor = "autopilot" if e.source == "autopilot" else actor_of(e.actor)
    details = {"adjustment_id": e.adjustment_id, "source": e.source, "field": e.field, "status": e.status,
               "before": _json(e.before), "after": _json(e.after), "reason": e.reason, "ref_id": e.ref_id}  # fmt: skip
    return kind, None, actor, e.bot_id, e.name, details


def _quarantined(e: BotQuarantined, live: bool) -> _Parts:
    details = {"level": e.level, "rule": e.rule, "reason": e.reason, "until_ts": e.until_ts}
    return "bot_quarantined", None, "engine", e.bot_id, e.name, details


def _generation(e: GenerationEvolved, live: bool) -> _Parts:
    details = {"run": e.run, "generation": e.generation, "best_fitness": str(e.best_fitness),
               "mean_fitness": str(e.mean_fitness), "best_member": e.best_member}  # fmt: skip
    return "generation_evolved", None, "engine", None, None, details


_CLASSIFIERS: dict[type[Event], Callable[[Any, bool], _Parts]] = {
    BotCreated: _bot_created,
    BotStateChanged: _bot_state,
    OrderFilled: _fill,
    CapitalChanged: _capital,
    StageChanged: _stage,
    ModeSwitched: _mode,
    BreakerTripped: _tripped,
    BreakerReset: _reset,
    BackupCreated: _backup,
    ReportSent: _report,
    BotAdjusted: _adjusted,
    BotQuarantined: _quarantined,
    GenerationEvolved: _generation,
    **dict.fromkeys(_AI_TYPES, _ai),
}


AUDITED_EVENTS: tuple[type[Event], ...] = (*_CLASSIFIERS, AuditNoted)
"""The event types ``classify`` makes an entry of: subscribe to these, not to every event (a fast
replay publishes a tick per candle)."""


def classify(event: Event, *, live: bool = False, now_ms: int | None = None) -> AuditEntry | None:
    """The audit entry of an engine event, or None for events the audit log does not keep (ticks,
    equity samples, feed status, submissions, refusals, market regime changes).

    ``live``: the engine trades live (``engine.mode``): a fill is then a ``live_trade_executed``
    (a live session sends every order of its bots to the exchange, exits included), else a
    ``paper_trade_executed``. ``now_ms``: the wall clock to stamp the entry with (the event's own
    time goes to ``details["engine_ts"]`` when it differs); None keeps the event's time. An
    ``AuditNoted`` event gives back its entry unchanged. Pure: no clock read, no I/O.
    """
    if isinstance(event, AuditNoted):
        return event.entry
    fn = _CLASSIFIERS.get(type(event))
    if fn is None:
        return None
    kind, sev, actor, bot_id, bot, details = fn(event, live)
    ts = event.ts
    if now_ms is not None and now_ms != event.ts:
        ts, details = now_ms, {**details, "engine_ts": event.ts}
    return AuditEntry(ts, kind, sev or DEFAULT_SEVERITY[kind], actor, bot_id, bot, details)


# -- entries made outside the engine -------------------------------------------------------------


def key_entry(
    action: str,
    provider: str,
    *,
    ts: int,
    masked: str | None = None,
    ok: bool | None = None,
    status: str | None = None,
    can_withdraw: bool | None = None,
    found: bool | None = None,
) -> AuditEntry:
    """``api_key_added`` | ``api_key_deleted`` | ``api_key_tested`` (``action`` added | deleted |
    tested) by the CLI. Details: the provider id, the masked key id (``••••abcd``), for a deletion
    whether anything was stored, for a test whether it passed, the status and whether the key can
    withdraw; never any key material. A failed
    test or a key that can withdraw is a warning. Raises ValueError for another action."""
    if action not in ("added", "deleted", "tested"):
        raise ValueError(f"unknown key action {action!r}")
    kind = f"api_key_{action}"
    details: dict[str, Any] = {"provider": provider}
    if masked is not None:
        details["masked"] = masked
    if found is not None:  # a deletion: whether the keyring held anything
        details["found"] = found
    sev = DEFAULT_SEVERITY[kind]
    if action == "tested":
        details.update(ok=ok, status=status, can_withdraw=can_withdraw)
        if ok is False or can_withdraw:
            sev = Severity.WARNING
    return AuditEntry(ts, kind, sev, "cli", None, None, details)


def mode_entry(ts: int, old: TradingMode, new: TradingMode, actor: str, reason: str) -> AuditEntry:
    """``system_mode_changed`` (critical) for a switch recorded with no engine running (``ops.mode``)."""
    details = {"from": old.value, "to": new.value, "reason": reason}
    return AuditEntry(ts, "system_mode_changed", Severity.CRITICAL, actor_of(actor), None, None, details)


def record_in(conn: sqlite3.Connection, entry: AuditEntry) -> None:
    """Write ``entry`` through ``conn``, a writer connection to a migrated ledger, by a caller that holds
    the engine lock (``ops.mode`` records a switch so). Raises sqlite3.Error."""
    from amarktai_tui.ops import audit_store

    audit_store.insert(conn, [entry])


class AuditNotRecorded(RuntimeError):
    """The running engine refused the entry (the message says why, one line)."""


def record_offline(data_dir: Path, entry: AuditEntry) -> str:
    """Record ``entry`` from a CLI process: ``"live"`` when the running engine recorded it (over its
    control socket), ``"recorded"`` when no engine runs and it was written here under the engine lock.

    Raises AuditNotRecorded (the engine refused it), ops.control.ControlError (nothing answers),
    sqlite3.Error / SchemaTooNewError (the ledger).
    """
    from amarktai_tui.locations import db_path
    from amarktai_tui.ops import audit_store
    from amarktai_tui.ops.control import send_or_record

    async def record() -> dict[str, Any]:
        data_dir.mkdir(parents=True, exist_ok=True)
        conn = audit_store.connect(db_path(data_dir))
        try:
            audit_store.insert(conn, [entry])
        finally:
            conn.close()
        return {"ok": True}

    req = {"cmd": "audit", "entry": entry.to_json(), "actor": entry.actor}
    reply, how = send_or_record(data_dir, req, record)
    if not reply.get("ok"):
        raise AuditNotRecorded(str(reply.get("error", "refused")))
    return how


def note_offline(data_dir: Path, entry: AuditEntry) -> bool:
    """``record_offline`` for a CLI command whose own work is done: a failure is one warning line on
    stderr, never an exception (the command's exit code stays its own). True when recorded."""
    from amarktai_tui.ledger.schema import SchemaTooNewError
    from amarktai_tui.ops.control import ControlError

    try:
        record_offline(data_dir, entry)
    except (AuditNotRecorded, ControlError, sqlite3.Error, SchemaTooNewError, OSError) as exc:
        print(f"amarktai: warning: audit entry {entry.type} not recorded: {exc}", file=sys.stderr)
        return False
    return True


async def record_remote(engine: TradingEngine, req: Mapping[str, Any]) -> dict[str, Any]:
    """The control command ``audit``: record ``req["entry"]`` (``AuditEntry.to_json``'s shape) in the
    engine's process, through its recorder when one runs (written before the reply), else in a
    short transaction of its own. ``{"ok": true}``, or ``{"ok": false, "error"}`` for a bad entry."""
    try:
        entry = AuditEntry.from_json(req.get("entry"))
    except ValueError as exc:
        return {"ok": False, "error": str(exc)}
    recorder = recorder_for(engine)
    engine.bus.publish(AuditNoted(engine.now_ms or entry.ts, entry))
    if recorder is not None:
        await recorder.flush()
    else:
        from amarktai_tui.ops import audit_store

        await asyncio.to_thread(audit_store.write, engine.store.path, [entry])
    return {"ok": True}


# -- the recorder ------------------------------------------------------------------------------

_RECORDERS: dict[int, AuditLog] = {}
"""id(engine) -> its running recorder (the control command ``audit`` finds it here)."""


def recorder_for(engine: object) -> AuditLog | None:
    """The recorder running beside ``engine``, if any."""
    return _RECORDERS.get(id(engine))


@dataclass(eq=False)
class AuditLog:
    """The recorder service: classifies the bus's events, buffers the entries and writes them in small
    batches off the event loop (module doc). ``live``: the engine trades live; ``bot_name``: a bot's
    name by id (fills name none); ``clock``: the wall clock in ms UTC."""

    path: Path
    retention_days: int = 90
    live: bool = False
    bot_name: Callable[[int], str | None] = lambda _id: None
    clock: Callable[[], int] = wall_ms
    flush_after_s: float = FLUSH_AFTER_S
    batch_size: int = BATCH_SIZE
    prune_every_s: float = DAY_MS / 1000
    """Seconds between prunes after the one at ``open`` (a day)."""
    written: int = 0
    """Entries written since start."""
    pruned: int = 0
    """Rows pruned since start."""
    _buffer: list[AuditEntry] = field(default_factory=list)
    _subs: list[Callable[[AuditEntry], None]] = field(default_factory=list)
    _unsubscribe: list[Callable[[], None]] = field(default_factory=list)
    _conn: sqlite3.Connection | None = None
    _io: asyncio.Lock = field(default_factory=asyncio.Lock)
    _pending: asyncio.Event = field(default_factory=asyncio.Event)
    _urgent: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _next_prune: float = 0.0
    _engine_key: int | None = None
    _stopping: bool = False
    _conn_lock: threading.Lock = field(default_factory=threading.Lock)

    async def open(self) -> None:
        """Open the connection, prune what is past retention, start the writer. Raises sqlite3.Error."""
        from amarktai_tui.ops import audit_store

        self._conn = await asyncio.to_thread(audit_store.connect, self.path, check_same_thread=False)
        await self.prune()
        self._task = asyncio.create_task(self._writer(), name="audit.writer")

    def attach(self, bus: EventBus) -> None:
        """Record the entries of every event published on ``bus`` from now on."""
        self._unsubscribe.extend(bus.subscribe(kind, self._on_event) for kind in AUDITED_EVENTS)

    def subscribe(self, callback: Callable[[AuditEntry], None]) -> Callable[[], None]:
        """Call ``callback`` with each entry as it is recorded (before it is written; on the loop, so it
        must not block); returns a function that unsubscribes it. A callback that raises is logged."""
        self._subs.append(callback)

        def unsubscribe() -> None:
            if callback in self._subs:
                self._subs.remove(callback)

        return unsubscribe

    def _on_event(self, event: Event) -> None:
        entry = classify(event, live=self.live, now_ms=self.clock())
        if entry is not None:
            self.record(entry)

    def record(self, entry: AuditEntry) -> None:
        """Buffer ``entry`` for the writer (naming its bot when it has none) and tell the subscribers."""
        if entry.bot is None and entry.bot_id is not None:
            name = self.bot_name(entry.bot_id)
            if name is not None:
                entry = replace(entry, bot=name)
        self._buffer.append(entry)
        self._pending.set()
        if entry.severity is Severity.CRITICAL or len(self._buffer) >= self.batch_size:
            self._urgent.set()
        for callback in tuple(self._subs):
            try:
                callback(entry)
            except Exception:
                log.exception("audit subscriber %r failed on %s", callback, entry.type)

    async def flush(self) -> None:
        """Write every buffered entry now (one transaction). A database error is logged and the
        entries are kept for the next try (up to ``MAX_PENDING``)."""
        from amarktai_tui.ops import audit_store

        async with self._io:
            if not self._buffer or self._conn is None:
                return
            batch, self._buffer = self._buffer, []
            try:
                await self._call(audit_store.insert, batch)
            except sqlite3.Error:
                log.exception("audit log: %d entries not written (kept for the next try)", len(batch))
                self._buffer[:0] = batch
                del self._buffer[:-MAX_PENDING]
                return
            self.written += len(batch)

    async def prune(self) -> int:
        """Delete entries older than ``retention_days`` (wall clock); returns how many. Never touches the
        ledger's tables."""
        from amarktai_tui.ops import audit_store

        self._next_prune = time.monotonic() + self.prune_every_s
        if self._conn is None:
            return 0
        cutoff = self.clock() - self.retention_days * DAY_MS
        async with self._io:
            try:
                n = await self._call(audit_store.prune, cutoff)
            except sqlite3.Error:
                log.exception("audit log: pruning failed")
                return 0
        self.pruned += n
        if n:
            log.info("audit log: %d entries older than %d days pruned", n, self.retention_days)
        return n

    async def backfill_bots(self) -> int:
        """Add a ``bot_created`` entry for each bot of the ledger created within the retention window
        that has none (bots created before the recorder started); returns how many."""
        from amarktai_tui.ops import audit_store

        if self._conn is None:
            return 0
        since = self.clock() - self.retention_days * DAY_MS
        async with self._io:
            rows = await self._call(audit_store.bots_without_entry, since)
        for bot_id, name, created_ts in rows:
            details = {"source": "ledger"}
            self.record(AuditEntry(created_ts, "bot_created", Severity.INFO, "engine", bot_id, name, details))
        return len(rows)

    async def _writer(self) -> None:
        while not self._stopping:
            wait = max(0.0, self._next_prune - time.monotonic())
            try:
                await asyncio.wait_for(self._pending.wait(), wait)
            except TimeoutError:
                await self.prune()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._urgent.wait(), self.flush_after_s)
            self._pending.clear()
            self._urgent.clear()
            await self.flush()

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(conn, *args)`` in a worker thread, one at a time even when the awaiting task is
        cancelled (the thread then finishes on its own; the connection is never used by two)."""
        conn = self._conn
        assert conn is not None

        def locked() -> _T:
            with self._conn_lock:
                return fn(conn, *args)

        return await asyncio.to_thread(locked)

    async def close(self) -> None:
        """Stop listening, write what is buffered, close the connection."""
        if self._engine_key is not None:
            _RECORDERS.pop(self._engine_key, None)
            self._engine_key = None
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if self._task is not None:  # it writes what it holds and stops: never cut mid-write
            self._stopping = True
            self._pending.set()
            self._urgent.set()
            await self._task
            self._task = None
        await self.flush()
        if self._conn is not None:
            await self._call(lambda conn: conn.close())
            self._conn = None


async def start_audit(engine: TradingEngine, settings: Settings, data_dir: Path) -> AuditLog:
    """Start the recorder beside ``engine`` (``ops.services``): prune, backfill the bots created before
    it started, write them, listen to the bus. Close it with ``AuditLog.close``. Raises sqlite3.Error."""

    def bot_name(bot_id: int) -> str | None:
        runner = engine.runners.get(bot_id)
        return runner.rec.name if runner is not None else None

    recorder = AuditLog(
        engine.store.path,
        retention_days=settings.audit.retention_days,
        live=engine.mode is TradingMode.LIVE,
        bot_name=bot_name,
    )
    await recorder.open()
    try:
        await recorder.backfill_bots()
        await recorder.flush()
    except BaseException:
        await recorder.close()
        raise
    recorder.attach(engine.bus)
    recorder._engine_key = id(engine)
    _RECORDERS[id(engine)] = recorder
    return recorder
