"""Capital allocator (pure): move the account's capital towards the bots that earn it.

Rule, in order:

1. Bots with at least ``min_trades`` closed round trips are ranked by
   score = roi_weight x roi + win_rate_weight x win_rate (both fractions),
   best first; equal scores go to the lower bot id first.
2. Tier by rank percentile p = rank_index / n (rank_index 0 = best): p < 0.1
   elite, < 0.3 high, < 0.7 average, < 0.9 low, else poor. For n = 10 that is
   1 elite, 2 high, 4 average, 2 low, 1 poor; a single ranked bot is elite.
3. weight = TIER_MULTIPLIER[tier] x RISK_WEIGHT[risk_mode].
4. allocatable = allocatable_share x account equity - capital of the unranked
   bots (floor 0); each ranked bot's target = allocatable x weight / total
   weight, clamped to [min_per_bot, max_per_bot_share x account equity] and
   rounded down to 0.01. Clamping comes after normalising, so the targets may
   sum to more (min floors) or less (caps) than ``allocatable``. When the cap
   is below ``min_per_bot`` (a small account) the cap wins: it is the risk limit.
5. A bot's capital moves to its target only when |target - old| / old is
   strictly greater than ``change_threshold`` (a bot with 0 capital moves on
   any difference); smaller moves are not worth the churn.

Unranked bots keep their capital. All money is quote currency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum

from amarktai_tui.domain.enums import RiskMode

_CENT = Decimal("0.01")
_ZERO = Decimal(0)


class Tier(StrEnum):
    """Performance tier from a bot's rank among the ranked bots."""

    ELITE = "elite"
    HIGH = "high"
    AVERAGE = "average"
    LOW = "low"
    POOR = "poor"
    UNRANKED = "unranked"


TIER_MULTIPLIER: dict[Tier, Decimal] = {
    Tier.ELITE: Decimal("2.0"),
    Tier.HIGH: Decimal("1.5"),
    Tier.AVERAGE: Decimal("1.0"),
    Tier.LOW: Decimal("0.7"),
    Tier.POOR: Decimal("0.5"),
}
RISK_WEIGHT: dict[RiskMode, Decimal] = {
    RiskMode.SAFE: Decimal("1.0"),
    RiskMode.BALANCED: Decimal("1.2"),
    RiskMode.RISKY: Decimal("1.5"),
    RiskMode.AGGRESSIVE: Decimal("2.0"),
}
# (tier, upper bound of the rank percentile in tenths): p < 1/10 elite, < 3/10 high, ...
_TIER_BOUNDS = ((Tier.ELITE, 1), (Tier.HIGH, 3), (Tier.AVERAGE, 7), (Tier.LOW, 9))


@dataclass(frozen=True, slots=True)
class BotPerformance:
    """One bot's record: ``capital``/``equity`` in quote, ``roi`` a fraction of its capital (0.05 = 5%)."""

    bot_id: int
    name: str
    risk_mode: RiskMode
    capital: Decimal
    equity: Decimal
    trades: int
    wins: int
    roi: Decimal


@dataclass(frozen=True, slots=True)
class AllocatorSettings:
    """Shares are fractions (of account equity unless said); ``min_per_bot`` is quote currency."""

    allocatable_share: Decimal = Decimal("0.80")
    min_per_bot: Decimal = Decimal(50)
    max_per_bot_share: Decimal = Decimal("0.25")
    min_trades: int = 10
    change_threshold: Decimal = Decimal("0.20")
    roi_weight: Decimal = Decimal("0.7")
    win_rate_weight: Decimal = Decimal("0.3")

    def __post_init__(self) -> None:
        if not 0 <= self.allocatable_share <= 1 or not 0 < self.max_per_bot_share <= 1:
            raise ValueError("allocatable_share must be in [0, 1] and max_per_bot_share in (0, 1]")
        if self.min_per_bot < 0 or self.change_threshold < 0 or self.min_trades < 1:
            raise ValueError("min_per_bot and change_threshold must be >= 0, min_trades >= 1")
        if self.roi_weight < 0 or self.win_rate_weight < 0:
            raise ValueError("roi_weight and win_rate_weight must be >= 0")


DEFAULT_SETTINGS = AllocatorSettings()


@dataclass(frozen=True, slots=True)
class Allocation:
    """One bot's outcome; money in quote. ``score`` is None for an unranked bot."""

    bot_id: int
    name: str
    tier: Tier
    score: Decimal | None
    old_capital: Decimal
    target: Decimal
    new_capital: Decimal
    changed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class AllocationPlan:
    """Allocations best rank first, then the unranked bots by id; money in quote."""

    allocations: tuple[Allocation, ...]
    account_equity: Decimal
    allocatable: Decimal

    @property
    def changes(self) -> tuple[Allocation, ...]:
        return tuple(a for a in self.allocations if a.changed)


def tier_for_rank(rank_index: int, n: int) -> Tier:
    """Tier of the bot at 0-based ``rank_index`` among ``n`` ranked bots (exact integer percentiles)."""
    for tier, tenths in _TIER_BOUNDS:
        if 10 * rank_index < tenths * n:
            return tier
    return Tier.POOR


def plan_allocation(
    bots: Sequence[BotPerformance],
    account_equity: Decimal,
    settings: AllocatorSettings = DEFAULT_SETTINGS,
) -> AllocationPlan:
    """Target capital for every bot (see the module docstring for the rule).

    ``account_equity`` in quote, >= 0. Raises ValueError on a negative equity,
    a negative bot capital, wins > trades, or a repeated bot id.
    """
    if account_equity < 0:
        raise ValueError(f"account equity {account_equity} < 0")
    if len({b.bot_id for b in bots}) != len(bots):
        raise ValueError("repeated bot_id in bots")
    for b in bots:
        if b.capital < 0 or not 0 <= b.wins <= b.trades:
            raise ValueError(f"bot {b.bot_id}: capital {b.capital}, {b.wins} wins of {b.trades} trades")

    s = settings
    ranked = sorted((b for b in bots if b.trades >= s.min_trades), key=lambda b: (-_score(b, s), b.bot_id))
    unranked = sorted((b for b in bots if b.trades < s.min_trades), key=lambda b: b.bot_id)
    allocatable = max(_ZERO, s.allocatable_share * account_equity - sum((b.capital for b in unranked), _ZERO))
    tiers = [tier_for_rank(i, len(ranked)) for i in range(len(ranked))]
    weights = [TIER_MULTIPLIER[t] * RISK_WEIGHT[b.risk_mode] for t, b in zip(tiers, ranked, strict=True)]
    total_weight = sum(weights, _ZERO)
    cap = (s.max_per_bot_share * account_equity).quantize(_CENT, rounding=ROUND_DOWN)

    out: list[Allocation] = []
    for i, (b, tier, weight) in enumerate(zip(ranked, tiers, weights, strict=True)):
        share = (allocatable * weight / total_weight).quantize(_CENT, rounding=ROUND_DOWN)
        target = min(max(share, s.min_per_bot), cap)
        clamp = " (floor)" if target > share else " (cap)" if target < share else ""
        head = f"{tier} {i + 1}/{len(ranked)}, weight {weight}: target {target}{clamp}"
        old = b.capital
        move = abs(target - old) / old if old else (Decimal("Infinity") if target else _ZERO)
        if move > s.change_threshold:
            out.append(_alloc(b, tier, _score(b, s), target, target, True, f"{head}, was {old}"))
        else:
            why = f"{head} within {s.change_threshold:%} of {old}: unchanged"
            out.append(_alloc(b, tier, _score(b, s), target, old, False, why))
    for b in unranked:
        why = f"{b.trades} trades < {s.min_trades}: keeps its capital"
        out.append(_alloc(b, Tier.UNRANKED, None, b.capital, b.capital, False, why))
    return AllocationPlan(tuple(out), account_equity, allocatable)


def _score(b: BotPerformance, s: AllocatorSettings) -> Decimal:
    return s.roi_weight * b.roi + s.win_rate_weight * Decimal(b.wins) / Decimal(b.trades)


def _alloc(
    b: BotPerformance,
    tier: Tier,
    score: Decimal | None,
    target: Decimal,
    new: Decimal,
    changed: bool,
    why: str,
) -> Allocation:
    return Allocation(b.bot_id, b.name, tier, score, b.capital, target, new, changed, why)
