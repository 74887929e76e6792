"""The pipeline's gates (pure): idempotency, fee coverage, limits, breakers.

Each gate returns ``None`` (pass) or a ``Refusal`` naming the gate, a one-line
reason and the figures it compared (strings, JSON-ready). The pipeline
(``risk.pipeline``) runs them in order and the first refusal wins. No gate
reads a clock: ``now`` (ms UTC, the engine's clock, simulated in replay) is
passed in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from amarktai_tui.domain.enums import OrderType

DAY_MS = 86_400_000
_BPS = Decimal(10_000)


class Gate(StrEnum):
    """Where an order was stopped. ``broker`` is not a risk gate: the broker refused it."""

    IDEMPOTENCY = "idempotency"
    FEE_COVERAGE = "fee_coverage"
    LIMITS = "limits"
    STAGGERING = "staggering"
    BREAKER = "breaker"
    BROKER = "broker"


RISK_GATES = frozenset({Gate.IDEMPOTENCY, Gate.FEE_COVERAGE, Gate.LIMITS, Gate.STAGGERING, Gate.BREAKER})


@dataclass(frozen=True, slots=True)
class Refusal:
    """A gate's refusal: ``figures`` holds what it compared, as strings (e.g. ``{"edge_bps": "12.5"}``)."""

    gate: Gate
    reason: str
    figures: Mapping[str, str] = field(default_factory=dict)


def plain(x: Decimal) -> str:
    """``x`` without trailing zeros or exponent: Decimal('36.000') -> '36', Decimal('1E+2') -> '100'."""
    return format(x.normalize(), "f")


# -- B. fee coverage ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CostModel:
    """Round-trip cost inputs for one exchange and pair.

    Fees are fractions of notional (0.001 = 10 bps) from the exchange table;
    the rest are basis points. ``slippage_bps`` applies to market entries only.
    """

    maker_fee: Decimal
    taker_fee: Decimal
    spread_bps: Decimal
    slippage_bps: Decimal = Decimal(10)
    safety_bps: Decimal = Decimal(5)
    min_edge_bps: Decimal = Decimal(10)

    def round_trip_bps(self, order_type: OrderType) -> Decimal:
        """entry fee + exit fee + spread + slippage (market entries) + safety margin, in bps.

        The entry pays maker on a limit order and taker on a market order; the
        exit is priced as a market order (taker): this engine's exits (signal,
        stop-loss, take-profit, trailing) are market orders.
        """
        market = order_type is OrderType.MARKET
        entry_fee = self.taker_fee if market else self.maker_fee
        cost = (entry_fee + self.taker_fee) * _BPS + self.spread_bps + self.safety_bps
        return cost + self.slippage_bps if market else cost


def fee_gate(edge_bps: float, order_type: OrderType, cost: CostModel, *, reduces: bool) -> Refusal | None:
    """Gate B: an entry passes only if its expected edge covers the round-trip cost and MIN_EDGE_BPS.

    ``edge_bps`` is the strategy's own estimate for this signal. Orders that
    reduce a position (exits) are never refused here.
    """
    if reduces:
        return None
    edge = Decimal(repr(float(edge_bps)))
    need = cost.round_trip_bps(order_type)
    if edge >= need and edge >= cost.min_edge_bps:
        return None
    figures = {
        "edge_bps": plain(edge),
        "round_trip_bps": plain(need),
        "min_edge_bps": plain(cost.min_edge_bps),
    }
    if edge < cost.min_edge_bps and edge >= need:
        reason = f"edge {plain(edge)} bps is below the minimum {plain(cost.min_edge_bps)} bps"
    else:
        reason = f"edge {plain(edge)} bps does not cover the round-trip cost {plain(need)} bps"
    return Refusal(Gate.FEE_COVERAGE, reason, figures)


# -- C. limits ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LimitSettings:
    """Gate C's limits (defaults from the design documents)."""

    bot_trades_per_day: int = 50
    account_trades_per_day: int = 500
    cooldown_ms: int = 0  # after a bot's exit fill, no new entry for this long (0 = off)


class TradeCounter:
    """Orders per UTC day (per bot and account) and each bot's last exit, rebuilt from the ledger.

    Every order that reached a broker counts (entries and exits); only entries
    are refused by the daily limits and the cooldown. Days are UTC:
    ``ts // 86_400_000``.
    """

    def __init__(self, settings: LimitSettings) -> None:
        self.settings = settings
        self._bot_day: defaultdict[tuple[int, int], int] = defaultdict(int)
        self._acct_day: defaultdict[int, int] = defaultdict(int)
        self.last_exit: dict[int, int] = {}

    def record_order(self, bot_id: int, ts: int) -> None:
        day = ts // DAY_MS
        self._bot_day[(bot_id, day)] += 1
        self._acct_day[day] += 1

    def record_exit(self, bot_id: int, ts: int) -> None:
        if ts > self.last_exit.get(bot_id, -1):
            self.last_exit[bot_id] = ts

    def bot_today(self, bot_id: int, now: int) -> int:
        return self._bot_day.get((bot_id, now // DAY_MS), 0)

    def account_today(self, now: int) -> int:
        return self._acct_day.get(now // DAY_MS, 0)

    def check(self, bot_id: int, now: int, *, reduces: bool) -> Refusal | None:
        """Gate C (counters): refuse an entry over a daily limit or inside the cooldown."""
        if reduces:
            return None
        s = self.settings
        n = self.bot_today(bot_id, now)
        if n >= s.bot_trades_per_day:
            return Refusal(
                Gate.LIMITS,
                f"bot has {n} orders today; the limit is {s.bot_trades_per_day} per UTC day",
                {"bot_orders_today": str(n), "limit": str(s.bot_trades_per_day)},
            )
        n = self.account_today(now)
        if n >= s.account_trades_per_day:
            return Refusal(
                Gate.LIMITS,
                f"account has {n} orders today; the limit is {s.account_trades_per_day} per UTC day",
                {"account_orders_today": str(n), "limit": str(s.account_trades_per_day)},
            )
        last = self.last_exit.get(bot_id)
        if s.cooldown_ms and last is not None and now - last < s.cooldown_ms:
            left = s.cooldown_ms - (now - last)
            return Refusal(
                Gate.LIMITS,
                f"cooling down after an exit: {left / 60_000:.1f} min left of {s.cooldown_ms / 60_000:g}",
                {"since_exit_ms": str(now - last), "cooldown_ms": str(s.cooldown_ms)},
            )
        return None
