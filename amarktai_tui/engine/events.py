"""Typed engine events and the one in-process bus.

The engine publishes; the TUI, the audit log, the daemon's metrics and
notifications subscribe. Publishing is synchronous and cheap (a list of
callbacks per event type): a subscriber must not block; a UI marks itself
dirty and redraws on its own timer. A subscriber that raises is logged and
dropped from that delivery, never allowed to stop the engine.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from amarktai_tui.domain.enums import BotState, LifecycleStage, OrderState, Side, TradingMode
from amarktai_tui.domain.types import Candle
from amarktai_tui.market.base import FeedStatus
from amarktai_tui.risk.breakers import Trip

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    """Base: ``ts`` is ms UTC in engine time (the simulated clock in replay)."""

    ts: int


@dataclass(frozen=True, slots=True)
class BotCreated(Event):
    bot_id: int
    name: str


@dataclass(frozen=True, slots=True)
class BotStateChanged(Event):
    bot_id: int
    name: str
    old: BotState
    new: BotState
    reason: str = ""


@dataclass(frozen=True, slots=True)
class OrderSubmitted(Event):
    bot_id: int
    client_order_id: str
    pair: str
    side: Side
    quantity: Decimal
    reason: str


@dataclass(frozen=True, slots=True)
class OrderFilled(Event):
    bot_id: int
    client_order_id: str
    pair: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    realised_pnl: Decimal


@dataclass(frozen=True, slots=True)
class OrderRejected(Event):
    bot_id: int
    client_order_id: str
    pair: str
    side: Side
    state: OrderState
    reason: str
    gate: str = ""  # the risk gate that refused it ("" or "broker": the broker did)
    figures: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BreakerTripped(Event):
    trip: Trip
    bot_name: str | None = None


@dataclass(frozen=True, slots=True)
class BreakerReset(Event):
    """A trip was reset by ``actor`` for ``reason``; ``retripped`` is set when the condition still held."""

    trip: Trip
    actor: str
    reason: str
    retripped: Trip | None = None


@dataclass(frozen=True, slots=True)
class CapitalChanged(Event):
    """A bot's capital moved (the allocator): ``old``/``new`` in quote."""

    bot_id: int
    name: str
    old: Decimal
    new: Decimal
    reason: str


@dataclass(frozen=True, slots=True)
class StageChanged(Event):
    """A bot moved between lifecycle stages (``engine.stages``); recorded in ``stage_changes``.

    ``actor``: user | cli | ai | engine; ``summary``: the criteria as measured, one line.
    """

    bot_id: int
    name: str
    old: LifecycleStage
    new: LifecycleStage
    actor: str
    reason: str
    summary: str = ""


@dataclass(frozen=True, slots=True)
class ModeSwitched(Event):
    """The account's trading mode changed (``mode_switches`` has the row): who asked
    (``actor``: user | cli | ai | engine) and why."""

    old: TradingMode
    new: TradingMode
    actor: str = "engine"
    reason: str = ""


@dataclass(frozen=True, slots=True)
class BackupCreated(Event):
    """A copy of the database was written (``ops.backup``): its path, size in bytes, sha256 (hex)
    and why (``daily`` | ``migration`` | ``mode_switch`` | ``manual``)."""

    path: str
    size: int
    sha256: str
    reason: str


@dataclass(frozen=True, slots=True)
class ReportSent(Event):
    """A report (``daily`` | ``weekly`` | ``monthly``) or an alert batch (``alert``) was mailed."""

    period: str
    recipients: tuple[str, ...]
    subject: str


@dataclass(frozen=True, slots=True)
class FeedStatusChanged(Event):
    status: FeedStatus


@dataclass(frozen=True, slots=True)
class EngineTick(Event):
    """Published after each processed candle (the candle that was processed)."""

    candle: Candle


@dataclass(frozen=True, slots=True)
class EquitySampled(Event):
    """Equity at a snapshot time (quote): the account and each bot by id."""

    account: Decimal
    bots: dict[int, Decimal]


@dataclass(frozen=True, slots=True)
class EngineStopped(Event):
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AiAction(Event):
    """A step of an AI-console action (``ai.proposals``), also a row of ``ai_actions``: the proposal
    id, the tool, its validated arguments (JSON), who (ai | user | commands) and the detail."""

    proposal: str
    tool: str
    args: str
    actor: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AiActionProposed(AiAction):
    """An action tool call became a proposal; nothing runs until the user confirms it."""


@dataclass(frozen=True, slots=True)
class AiActionConfirmed(AiAction):
    """The user confirmed a proposal (with the typed word where one is needed)."""


@dataclass(frozen=True, slots=True)
class AiActionCancelled(AiAction):
    """The user cancelled a proposal."""


@dataclass(frozen=True, slots=True)
class AiActionExpired(AiAction):
    """A proposal was not confirmed in time."""


@dataclass(frozen=True, slots=True)
class AiActionRefused(AiAction):
    """An action or a confirmation was refused (invalid arguments, no such tool, a wrong typed word)."""


@dataclass(frozen=True, slots=True)
class AiActionExecuted(AiAction):
    """A confirmed proposal ran; ``detail`` says what it did."""


@dataclass(frozen=True, slots=True)
class AiActionFailed(AiAction):
    """A confirmed proposal was tried and the engine refused it; ``detail`` says why."""


@dataclass(frozen=True, slots=True)
class BotAdjusted(Event):
    """A row of ``bot_adjustments`` (``autonomy.changes``): an automatic change applied, proposed,
    accepted, rejected, reverted or refused. ``before``/``after`` are JSON texts; ``source`` names the
    process (optimizer | learning | regime | evolution | autopilot | healing | user | ai), ``actor``
    who wrote the row (engine | autopilot | user | cli | ai), ``ref_id`` the row it answers."""

    adjustment_id: int
    bot_id: int
    name: str
    source: str
    field: str
    before: str
    after: str
    reason: str
    status: str
    actor: str
    ref_id: int | None = None


@dataclass(frozen=True, slots=True)
class BotQuarantined(Event):
    """Self-healing paused a bot (``autonomy.healing``): ``level`` 1-3 pauses until ``until_ts``
    (ms UTC, engine time); level 4 retires it (``until_ts`` None) and a replacement is proposed."""

    bot_id: int
    name: str
    level: int
    rule: str
    reason: str
    until_ts: int | None


@dataclass(frozen=True, slots=True)
class RegimeChanged(Event):
    """A pair's market regime changed (``autonomy.regime``): ``regime`` one of ``REGIMES``;
    ``adx``, ``bb_width`` (fraction of the middle band), ``atr_pct`` (fraction of the close)."""

    exchange: str
    pair: str
    timeframe: str
    old: str
    regime: str
    adx: float
    bb_width: float
    atr_pct: float


@dataclass(frozen=True, slots=True)
class GenerationEvolved(Event):
    """One evolution generation finished and was recorded (``autonomy.evolution``)."""

    run: str
    generation: int
    best_fitness: Decimal
    mean_fitness: Decimal
    best_member: str


E = TypeVar("E", bound=Event)
Handler = Callable[[Any], None]


@dataclass
class EventBus:
    """Synchronous publish/subscribe keyed by event class (exact type or ``Event`` for all)."""

    _subs: defaultdict[type[Event], list[Handler]] = field(default_factory=lambda: defaultdict(list))

    def subscribe(self, kind: type[E], handler: Callable[[E], None]) -> Callable[[], None]:
        """Register ``handler`` for ``kind``; returns a function that unsubscribes it."""
        self._subs[kind].append(handler)

        def unsubscribe() -> None:
            if handler in self._subs[kind]:
                self._subs[kind].remove(handler)

        return unsubscribe

    def publish(self, event: Event) -> None:
        for kind in (type(event), Event):
            for handler in tuple(self._subs.get(kind, ())):
                try:
                    handler(event)
                except Exception:  # a broken subscriber must never stop the engine
                    log.exception("event subscriber %r failed on %s", handler, type(event).__name__)
