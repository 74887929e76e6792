"""Capital allocator (risk/allocator.py): tiers, weights, normalising, clamps, the change threshold."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amarktai_tui.domain.enums import RiskMode
from amarktai_tui.risk.allocator import (
    AllocatorSettings,
    BotPerformance,
    Tier,
    plan_allocation,
    tier_for_rank,
)

D = Decimal
WIDE = AllocatorSettings(min_per_bot=D(0), max_per_bot_share=D(1))  # no clamps in the way


def bot(
    bot_id: int,
    roi: str = "0",
    *,
    trades: int = 20,
    wins: int = 10,
    capital: str | Decimal = "1000",
    mode: RiskMode = RiskMode.SAFE,
) -> BotPerformance:
    return BotPerformance(bot_id, f"bot{bot_id}", mode, D(capital), D(capital), trades, wins, D(roi))


def test_ten_bots_split_1_elite_2_high_4_average_2_low_1_poor() -> None:
    # roi 0.01 x id: bot 10 is best, bot 1 worst
    bots = [bot(i, f"0.0{i}" if i < 10 else "0.10") for i in range(1, 11)]
    plan = plan_allocation(bots, D(100_000))
    assert [a.bot_id for a in plan.allocations] == list(range(10, 0, -1))
    assert [a.tier for a in plan.allocations] == [Tier.ELITE] + [Tier.HIGH] * 2 + [Tier.AVERAGE] * 4 + [
        Tier.LOW
    ] * 2 + [Tier.POOR]


@pytest.mark.parametrize(
    ("n", "tiers"),
    [
        (1, [Tier.ELITE]),
        (2, [Tier.ELITE, Tier.AVERAGE]),
        (3, [Tier.ELITE, Tier.AVERAGE, Tier.AVERAGE]),
        (5, [Tier.ELITE, Tier.HIGH, Tier.AVERAGE, Tier.AVERAGE, Tier.LOW]),
    ],
)
def test_tier_by_rank_percentile(n: int, tiers: list[Tier]) -> None:
    # n=5: p = 0, .2, .4, .6, .8 -> elite, high (<.3), average, average (<.7), low (<.9)
    assert [tier_for_rank(i, n) for i in range(n)] == tiers


def test_score_mixes_roi_and_win_rate() -> None:
    # a: 0.7 x 0.10 + 0.3 x 0.5 = 0.22; b: 0.7 x 0 + 0.3 x 0.8 = 0.24 -> b ranks first
    a = bot(1, "0.10", trades=10, wins=5)
    b = bot(2, "0", trades=10, wins=8)
    plan = plan_allocation([a, b], D(10_000), WIDE)
    assert [(x.bot_id, x.score) for x in plan.allocations] == [(2, D("0.24")), (1, D("0.220"))]


def test_targets_are_normalised_to_the_allocatable_capital() -> None:
    # 4 ranked SAFE bots: elite 2, high 1.5, average 1, low 0.7 -> total weight 5.2; allocatable 8000
    # 8000 x 2/5.2 = 3076.923 -> 3076.92; x 1.5/5.2 = 2307.69; x 1/5.2 = 1538.46; x 0.7/5.2 = 1076.92
    bots = [bot(i, f"0.0{i}") for i in range(1, 5)]
    plan = plan_allocation(bots, D(10_000), WIDE)
    assert plan.allocatable == D(8000)
    assert [a.target for a in plan.allocations] == [D("3076.92"), D("2307.69"), D("1538.46"), D("1076.92")]
    assert sum(a.target for a in plan.allocations) == D("7999.99")


def test_risk_weight_multiplies_the_tier() -> None:
    # elite SAFE 2 x 1.0 == average AGGRESSIVE 1 x 2.0: equal shares of 8000
    plan = plan_allocation([bot(1, "0.2"), bot(2, "0.1", mode=RiskMode.AGGRESSIVE)], D(10_000), WIDE)
    assert [a.target for a in plan.allocations] == [D(4000), D(4000)]


def test_targets_are_capped_at_a_quarter_of_equity() -> None:
    # 8000 x 2/3 = 5333.33 and 8000 x 1/3 = 2666.66 both exceed 25% of 10000
    plan = plan_allocation([bot(1, "0.2"), bot(2, "0.1")], D(10_000))
    assert [a.target for a in plan.allocations] == [D(2500), D(2500)]
    assert all("(cap)" in a.reason for a in plan.allocations)


def test_targets_are_floored_at_the_minimum_per_bot() -> None:
    # 10 SAFE bots, total weight 10.9; allocatable 1600: poor 1600 x 0.5/10.9 = 73.39 < 100 -> 100;
    # low 1600 x 0.7/10.9 = 102.75 stays
    bots = [bot(i, f"0.0{i}" if i < 10 else "0.10") for i in range(1, 11)]
    plan = plan_allocation(bots, D(2000), AllocatorSettings(min_per_bot=D(100)))
    by_tier = {a.tier: a for a in plan.allocations}
    assert by_tier[Tier.POOR].target == D(100)
    assert "(floor)" in by_tier[Tier.POOR].reason
    assert by_tier[Tier.LOW].target == D("102.75")


def test_cap_wins_over_the_floor_on_a_small_account() -> None:
    plan = plan_allocation([bot(1, "0.1", capital=D(10))], D(100))
    assert plan.allocations[0].target == D(25)  # 25% of 100, below min_per_bot 50


@pytest.mark.parametrize(
    ("equity", "changed", "new"),
    [
        (D(1500), False, D(1000)),  # target 1200: exactly +20%, stays
        (D("1500.02"), True, D("1200.01")),  # 1200.016 -> 1200.01: just over +20%
        (D(1000), False, D(1000)),  # target 800: exactly -20%, stays
        (D("999.99"), True, D("799.99")),  # 799.992 -> 799.99: just over -20%
    ],
)
def test_change_threshold_is_strict(equity: Decimal, changed: bool, new: Decimal) -> None:
    # one ranked bot (elite) takes all of 80% of equity; old capital 1000
    plan = plan_allocation([bot(1, "0.1")], equity, WIDE)
    (a,) = plan.allocations
    assert (a.changed, a.new_capital) == (changed, new)
    assert plan.changes == ((a,) if changed else ())
    if not changed:
        assert a.reason.endswith("within 20% of 1000: unchanged")


def test_unranked_bots_keep_their_capital_and_shrink_the_pool() -> None:
    fresh = bot(1, "0.9", trades=9, wins=9, capital=D(700))
    ranked = bot(2, "0.0", trades=10, wins=5)  # exactly min_trades: ranked
    plan = plan_allocation([fresh, ranked], D(10_000), WIDE)
    assert plan.allocatable == D(7300)  # 8000 - 700
    by_id = {a.bot_id: a for a in plan.allocations}
    assert by_id[1].tier is Tier.UNRANKED
    assert (by_id[1].score, by_id[1].new_capital, by_id[1].changed) == (None, D(700), False)
    assert by_id[1].reason == "9 trades < 10: keeps its capital"
    assert by_id[2].tier is Tier.ELITE
    assert by_id[2].new_capital == D(7300)


def test_unranked_capital_beyond_the_share_leaves_nothing_allocatable() -> None:
    plan = plan_allocation([bot(1, trades=0, wins=0, capital=D(9000)), bot(2, "0.1")], D(10_000))
    assert plan.allocatable == 0
    assert plan.allocations[0].target == D(50)  # the floor


def test_ties_break_by_bot_id_whatever_the_input_order() -> None:
    bots = [bot(7, "0.05"), bot(3, "0.05"), bot(5, "0.05")]
    forward = plan_allocation(bots, D(10_000))
    backward = plan_allocation(bots[::-1], D(10_000))
    assert [a.bot_id for a in forward.allocations] == [3, 5, 7]
    assert forward == backward
    assert [a.tier for a in forward.allocations] == [Tier.ELITE, Tier.AVERAGE, Tier.AVERAGE]


def test_a_bot_with_no_capital_moves_to_its_target() -> None:
    (a,) = plan_allocation([bot(1, "0.1", capital=D(0))], D(1000), WIDE).allocations
    assert (a.changed, a.new_capital) == (True, D(800))


@pytest.mark.parametrize(
    ("bots", "equity", "message"),
    [
        ([bot(1)], D(-1), "account equity -1 < 0"),
        ([bot(1), bot(1)], D(1000), "repeated bot_id"),
        ([bot(1, trades=3, wins=4)], D(1000), "4 wins of 3 trades"),
        ([bot(1, capital=D(-5))], D(1000), "capital -5"),
    ],
)
def test_bad_inputs_raise(bots: list[BotPerformance], equity: Decimal, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_allocation(bots, equity)


def test_bad_settings_raise() -> None:
    with pytest.raises(ValueError, match="allocatable_share"):
        AllocatorSettings(allocatable_share=D("1.1"))
    with pytest.raises(ValueError, match="min_trades"):
        AllocatorSettings(min_trades=0)


@st.composite
def performances(draw: st.DrawFn) -> list[BotPerformance]:
    out = []
    for i in range(draw(st.integers(0, 15))):
        trades = draw(st.integers(0, 40))
        out.append(
            BotPerformance(
                bot_id=i,
                name=f"b{i}",
                risk_mode=draw(st.sampled_from(list(RiskMode))),
                capital=draw(st.decimals(0, 5000, places=2)),
                equity=D(0),
                trades=trades,
                wins=draw(st.integers(0, trades)),
                roi=draw(st.decimals(-1, 2, places=4)),
            )
        )
    return out


@settings(max_examples=300, deadline=None)
@given(bots=performances(), equity=st.decimals(1000, 100_000, places=2))
def test_changed_capital_respects_the_pool_and_the_bounds(
    bots: list[BotPerformance], equity: Decimal
) -> None:
    s = AllocatorSettings()
    plan = plan_allocation(bots, equity, s)
    assert sorted(a.bot_id for a in plan.allocations) == [b.bot_id for b in bots]
    floored = sum(1 for a in plan.allocations if a.tier is not Tier.UNRANKED and a.target == s.min_per_bot)
    changed_total = sum((a.new_capital for a in plan.changes), D(0))
    assert changed_total <= plan.allocatable + s.min_per_bot * floored
    for a in plan.allocations:
        if a.changed:
            assert s.min_per_bot <= a.new_capital <= s.max_per_bot_share * equity
        else:
            assert a.new_capital == a.old_capital
        if a.tier is Tier.UNRANKED:
            assert not a.changed
