"""Bot DNA (``autonomy.dna``): JSON round trip, gene bounds, crossover and mutation within them,
reproducible with a seed, the mutation rate observed."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amarktai_tui.autonomy.dna import (
    CAPITAL_SHARE_MAX,
    CAPITAL_SHARE_MIN,
    Dna,
    DnaError,
    GeneSpace,
    ParamRange,
    crossover,
    mutate,
    random_dna,
)
from amarktai_tui.domain.enums import RiskMode
from amarktai_tui.strategies.registry import STRATEGIES, make_strategy

SPACE = GeneSpace(
    tuple(STRATEGIES),
    ("BTC/USDT", "ETH/USDT"),
    ("binance", "kucoin"),
    timeframes={"BTC/USDT": "1h", "ETH/USDT": "1h"},
)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def test_json_round_trip_keeps_every_gene() -> None:
    dna = random_dna(SPACE, random.Random(1))
    again = Dna.from_json(dna.to_json())
    assert again == dna
    assert again.to_json() == dna.to_json()
    assert isinstance(again.capital_share, Decimal) and again.risk_mode in RiskMode
    assert again.timeframe == "1h"


@pytest.mark.parametrize(
    ("patch", "word"),
    [
        ({"strategy": "nope"}, "unknown strategy"),
        ({"params": {"fast": 30, "slow": 10}}, "fast=30 must be less than slow=10"),
        ({"params": {"fast": 0}}, "fast=0"),
        ({"pair": "BTCUSDT"}, "pair"),
        ({"exchange": "mtgox"}, "mtgox"),
        ({"risk_mode": "yolo"}, "risk_mode"),
        ({"capital_share": "1.5"}, "capital_share"),
        ({"capital_share": "x"}, "capital_share"),
    ],
)
def test_bad_dna_is_one_line_naming_the_gene(patch: dict[str, object], word: str) -> None:
    good = {
        "strategy": "sma_cross",
        "params": {"fast": 10, "slow": 30},
        "pair": "BTC/USDT",
        "exchange": "binance",
        "risk_mode": "balanced",
        "capital_share": "0.10",
    }
    with pytest.raises(DnaError) as err:
        Dna.from_dict({**good, **patch})
    assert word in str(err.value) and "\n" not in str(err.value)


def test_search_ranges_are_narrower_than_validation_and_come_from_the_strategies() -> None:
    fast, slow, _kind = SPACE.params("sma_cross")
    spec = {s.name: s for s in STRATEGIES["sma_cross"].PARAMS}
    assert spec["slow"].maximum == 10_000
    assert slow.high < 10_000 and slow.high == STRATEGIES["sma_cross"].SEARCH["slow"].high  # type: ignore[attr-defined]
    assert fast.low >= spec["fast"].minimum  # type: ignore[operator]
    # a parameter without a declared search range: derived from its ParamSpec, capped at 200
    from amarktai_tui.strategies.params import ParamSpec

    derived = ParamRange.of("donchian_breakout", ParamSpec("other", "int", 5, "x", minimum=1, maximum=10_000))
    assert (derived.low, derived.high) == (1, 200)


def _within(dna: Dna) -> None:
    assert SPACE.violations(dna) == []
    make_strategy(dna.strategy, dna.params)  # constraints hold (fast < slow, oversold < overbought)
    assert CAPITAL_SHARE_MIN <= dna.capital_share <= CAPITAL_SHARE_MAX


@settings(max_examples=150, deadline=None)
@given(seeds, seeds, seeds)
def test_crossover_and_mutation_stay_within_bounds(sa: int, sb: int, sc: int) -> None:
    a, b = random_dna(SPACE, random.Random(sa)), random_dna(SPACE, random.Random(sb))
    _within(a)
    _within(b)
    rng = random.Random(sc)
    child = crossover(SPACE, a, b, rng)
    _within(child)
    for gene in ("strategy", "pair", "exchange", "risk_mode", "capital_share"):
        assert getattr(child, gene) in (getattr(a, gene), getattr(b, gene))
    if a.strategy != b.strategy:  # params only cross between same-strategy parents: one set whole
        assert child.params == (a.params if child.strategy == a.strategy else b.params)
    for rate in (0.15, 1.0):
        _within(mutate(SPACE, child, rng, rate))


@settings(max_examples=60, deadline=None)
@given(seeds, st.integers(min_value=2, max_value=200), st.integers(min_value=2, max_value=200))
def test_out_of_bounds_dna_is_clamped_into_the_space(sa: int, fast: int, slow: int) -> None:
    wild = Dna(
        "sma_cross",
        {"fast": fast, "slow": slow, "kind": "ema"},
        "XRP/USDT",
        "luno",
        RiskMode.SAFE,
        Decimal("0.9"),
    )
    _within(SPACE.clamp(wild))


def test_same_strategy_parents_cross_per_parameter() -> None:
    a = Dna(
        "rsi_reversion",
        {"period": 5, "oversold": 20.0, "overbought": 60.0},
        "BTC/USDT",
        "binance",
        RiskMode.SAFE,
        Decimal("0.10"),
    )
    b = Dna(
        "rsi_reversion",
        {"period": 40, "oversold": 40.0, "overbought": 85.0},
        "ETH/USDT",
        "kucoin",
        RiskMode.RISKY,
        Decimal("0.40"),
    )
    seen: dict[str, set[object]] = {k: set() for k in a.params}
    rng = random.Random(3)
    for _ in range(200):
        child = crossover(SPACE, a, b, rng)
        for k, v in child.params.items():
            assert v in (a.params[k], b.params[k])
            seen[k].add(v)
    assert all(len(v) == 2 for v in seen.values())  # each parameter came from either parent


def test_same_seed_same_offspring() -> None:
    def lineage(seed: int) -> list[str]:
        rng = random.Random(seed)
        pop = [random_dna(SPACE, rng) for _ in range(6)]
        for _ in range(20):
            a, b = rng.sample(pop, 2)
            pop.append(mutate(SPACE, crossover(SPACE, a, b, rng), rng, 0.15))
        return [d.to_json() for d in pop]

    assert lineage(11) == lineage(11)
    assert lineage(11) != lineage(12)


def test_mutation_rate_is_observed_per_gene() -> None:
    """Each gene changes with probability 0.15: counted over many mutations of donchian DNA (no
    cross-parameter constraint, one strategy, so no repair or strategy switch touches other genes)."""
    space = GeneSpace(("donchian_breakout",), ("BTC/USDT", "ETH/USDT"), ("binance", "kucoin"))
    rng = random.Random(2024)
    n = 4000
    changed = total = 0
    per_gene: dict[str, int] = {}
    for _ in range(n):
        dna = random_dna(space, rng)
        before, after = space.genes(dna), space.genes(mutate(space, dna, rng, 0.15))
        mutable = [g for g in before if g != "strategy"]  # one strategy: it cannot change
        for g in mutable:
            total += 1
            if before[g] != after[g]:
                changed += 1
                per_gene[g] = per_gene.get(g, 0) + 1
    rate = changed / total
    # binomial: sd = sqrt(0.15 x 0.85 / 24000) ~ 0.0023; 5 sd either side
    assert abs(rate - 0.15) < 0.012, rate
    for g, c in per_gene.items():  # every gene on its own too (sd ~ 0.0056 over 4000)
        assert abs(c / n - 0.15) < 0.03, (g, c / n)
    assert set(per_gene) == {
        "pair",
        "exchange",
        "risk_mode",
        "capital_share",
        "params.entry_period",
        "params.exit_period",
    }


def test_a_gene_with_one_allowed_value_never_changes() -> None:
    space = GeneSpace(("sma_cross",), ("BTC/USDT",), ("binance",), risk_modes=(RiskMode.SAFE,))
    rng = random.Random(5)
    for _ in range(200):
        d = mutate(space, random_dna(space, rng), rng, 1.0)
        assert (d.strategy, d.pair, d.exchange, d.risk_mode) == (
            "sma_cross",
            "BTC/USDT",
            "binance",
            RiskMode.SAFE,
        )


def test_bad_space_is_refused() -> None:
    with pytest.raises(DnaError, match="unknown strategy"):
        GeneSpace(("nope",), ("BTC/USDT",), ("binance",))
    with pytest.raises(DnaError, match="no pairs"):
        GeneSpace(("sma_cross",), (), ("binance",))
