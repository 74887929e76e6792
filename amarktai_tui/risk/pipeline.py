"""The order pipeline (pure): every intent, paper or live, passes these gates in order.

    A idempotency -> B fee coverage -> C limits -> D breakers -> staggerer

The first refusal wins. An intent that passes A-D either goes at once or
waits in the staggerer's queue (see ``risk.staggerer``); it is never dropped
for staggering alone. Exits (orders that reduce a position) are never
refused by B or C; D lets them through too (halt new risk, never trap a
position). Time is passed in (ms UTC; simulated in replay and backtest).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from amarktai_tui.domain.enums import OrderState
from amarktai_tui.domain.types import OrderIntent
from amarktai_tui.risk.breakers import BreakerBoard, BreakerSettings
from amarktai_tui.risk.gates import CostModel, Gate, LimitSettings, Refusal, TradeCounter, fee_gate
from amarktai_tui.risk.sizing import ExposureCaps
from amarktai_tui.risk.staggerer import ExchangeLimits, Staggerer

PENDING_TTL_MS = 24 * 3_600_000  # gate A: a pending or open order older than this expires


class Outcome(StrEnum):
    GO = "go"  # submit now
    HOLD = "hold"  # queued by the staggerer; released later
    REFUSED = "refused"  # a gate said no (``Decision.refusal``)
    DUPLICATE = "duplicate"  # this client order id exists: ``Decision.first_state`` is its state


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    refusal: Refusal | None = None
    first_state: OrderState | None = None


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """Every risk knob (``[risk]`` in config). Basis points for costs; ms for times."""

    spread_bps: Mapping[str, Decimal] = field(default_factory=dict)  # exchange -> estimate (default: table)
    slippage_bps: Decimal = Decimal(10)
    safety_bps: Decimal = Decimal(5)
    min_edge_bps: Decimal = Decimal(10)
    caps: ExposureCaps = field(default_factory=ExposureCaps)
    limits: LimitSettings = field(default_factory=LimitSettings)
    breakers: BreakerSettings = field(default_factory=BreakerSettings)
    burst_orders: int = 10
    burst_window_ms: int = 10_000
    max_wait_ms: int = 60_000
    pending_ttl_ms: int = PENDING_TTL_MS


class Pipeline:
    """Gates A-D plus the staggerer, with the state they need (rebuilt from the ledger at start-up).

    ``known`` maps every client order id the ledger holds to its state (gate A).
    ``costs(exchange, pair)`` returns the fee gate's ``CostModel``.
    """

    def __init__(
        self,
        settings: PipelineSettings,
        costs: Callable[[str, str], CostModel],
        exchanges: Mapping[str, ExchangeLimits],
    ) -> None:
        self.settings = settings
        self.costs = costs
        self.known: dict[str, OrderState] = {}
        self.counter = TradeCounter(settings.limits)
        self.board = BreakerBoard(settings.breakers)
        self.staggerer: Staggerer[OrderIntent] = Staggerer(
            exchanges,
            burst_orders=settings.burst_orders,
            burst_window_ms=settings.burst_window_ms,
            max_wait_ms=settings.max_wait_ms,
        )

    def check(self, it: OrderIntent, now: int, *, reduces: bool) -> Decision:
        """Run ``it`` through gates A-D and the staggerer at time ``now``."""
        first = self.known.get(it.client_order_id)
        if first is not None:
            return Decision(Outcome.DUPLICATE, first_state=first)
        refusal = (
            fee_gate(it.edge_bps, it.order_type, self.costs(it.exchange, it.pair), reduces=reduces)
            or self.counter.check(it.bot_id, now, reduces=reduces)
            or self.board.gate(it.bot_id, reduces=reduces)
        )
        if refusal is not None:
            self.known[it.client_order_id] = OrderState.REJECTED
            return Decision(Outcome.REFUSED, refusal)
        self.known[it.client_order_id] = OrderState.PENDING
        at = self.staggerer.offer(it.exchange, it, now, exit_first=reduces)
        return Decision(Outcome.GO if at is not None else Outcome.HOLD)

    def recheck(self, it: OrderIntent, *, reduces: bool) -> Refusal | None:
        """Gate D again for an order leaving the staggerer's queue (a breaker may have tripped meanwhile)."""
        return self.board.gate(it.bot_id, reduces=reduces)


def duplicate_refusal(state: OrderState) -> Refusal:
    """What a second submission of a known intent reports (its first state)."""
    said = {
        OrderState.PENDING: "in flight",
        OrderState.OPEN: "in flight",
        OrderState.FILLED: "already filled",
        OrderState.REJECTED: "rejected before",
    }.get(state, str(state))
    return Refusal(Gate.IDEMPOTENCY, f"this intent was submitted before: {said}", {"first_state": str(state)})
