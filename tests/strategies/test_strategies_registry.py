"""Registry, parameter validation (messages name the parameter) and describe()."""

from __future__ import annotations

import json
from typing import Any

import pytest

from amarktai_tui.strategies import (
    STRATEGIES,
    DonchianBreakout,
    RsiReversion,
    SmaCross,
    Strategy,
    StrategyParamError,
    describe,
    make_strategy,
)

NAMES = ["sma_cross", "rsi_reversion", "donchian_breakout"]


def test_registry_names() -> None:
    assert list(STRATEGIES) == NAMES
    for name, cls in STRATEGIES.items():
        assert cls.name == name
    assert STRATEGIES["sma_cross"] is SmaCross
    assert STRATEGIES["rsi_reversion"] is RsiReversion
    assert STRATEGIES["donchian_breakout"] is DonchianBreakout


@pytest.mark.parametrize("name", NAMES)
def test_make_strategy_defaults(name: str) -> None:
    no_params: tuple[dict[str, Any] | None, ...] = (None, {})
    for params in no_params:
        s = make_strategy(name, params)
        assert isinstance(s, Strategy)
        assert type(s).name == name
        assert dict(s.params) == describe()[name].defaults()


def test_effective_params_include_defaults_and_are_read_only() -> None:
    s = make_strategy("sma_cross", {"fast": 5})
    assert dict(s.params) == {"fast": 5, "slow": 30, "kind": "sma"}
    with pytest.raises(TypeError):
        s.params["fast"] = 7  # type: ignore[index]
    assert dict(make_strategy("rsi_reversion", {"oversold": 20}).params) == {
        "period": 14,
        "oversold": 20.0,
        "overbought": 70.0,
    }
    assert dict(DonchianBreakout(entry_period=55.0).params) == {"entry_period": 55, "exit_period": 10}
    assert type(DonchianBreakout(entry_period=55.0).params["entry_period"]) is int


def test_unknown_strategy_lists_valid_names() -> None:
    with pytest.raises(StrategyParamError) as e:
        make_strategy("macd", None)
    msg = str(e.value)
    assert "'macd'" in msg
    for name in NAMES:
        assert name in msg


BAD: list[tuple[str, dict[str, Any], list[str]]] = [
    ("sma_cross", {"fats": 3}, ["unknown parameter 'fats'", "fast, slow, kind"]),
    ("sma_cross", {"fast": 0}, ["fast=0", "[1, 10000]"]),
    ("sma_cross", {"slow": 1}, ["slow=1", "[2, 10000]"]),
    ("sma_cross", {"slow": 10_001}, ["slow=10001"]),
    ("sma_cross", {"fast": 2.5}, ["fast=2.5", "an integer"]),
    ("sma_cross", {"fast": True}, ["fast=True"]),
    ("sma_cross", {"fast": "10"}, ["fast='10'"]),
    ("sma_cross", {"fast": 30, "slow": 30}, ["fast=30", "slow=30", "less than"]),
    ("sma_cross", {"fast": 40}, ["fast=40", "slow=30"]),
    ("sma_cross", {"kind": "wma"}, ["kind='wma'", "'sma', 'ema'"]),
    ("sma_cross", {"kind": "SMA"}, ["kind='SMA'"]),
    ("rsi_reversion", {"period": 1}, ["period=1", "[2, 10000]"]),
    ("rsi_reversion", {"oversold": 0}, ["oversold=0", "(0, 100)"]),
    ("rsi_reversion", {"overbought": 100}, ["overbought=100", "(0, 100)"]),
    ("rsi_reversion", {"overbought": float("nan")}, ["overbought=nan"]),
    ("rsi_reversion", {"oversold": 70}, ["oversold=70", "overbought=70", "less than"]),
    ("rsi_reversion", {"oversold": 60, "overbought": 40}, ["oversold=60", "overbought=40"]),
    ("rsi_reversion", {"length": 14}, ["unknown parameter 'length'", "period, oversold, overbought"]),
    ("donchian_breakout", {"entry_period": 0}, ["entry_period=0", "[1, 10000]"]),
    ("donchian_breakout", {"exit_period": -5}, ["exit_period=-5"]),
    ("donchian_breakout", {"period": 20}, ["unknown parameter 'period'", "entry_period, exit_period"]),
]


@pytest.mark.parametrize(("name", "params", "fragments"), BAD, ids=[f"{n}-{p}" for n, p, _ in BAD])
def test_bad_params_raise_one_line_naming_the_parameter(
    name: str, params: dict[str, Any], fragments: list[str]
) -> None:
    with pytest.raises(StrategyParamError) as e:
        make_strategy(name, params)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{name}: ")
    for frag in fragments:
        assert frag in msg
    # and the classes validate the same way when built directly
    with pytest.raises(StrategyParamError):
        STRATEGIES[name](**params)


def test_param_error_is_a_value_error() -> None:
    assert issubclass(StrategyParamError, ValueError)


def test_describe_is_complete_and_json_ready() -> None:
    info = describe()
    assert list(info) == NAMES
    as_json = json.loads(json.dumps({n: i.as_dict() for n, i in info.items()}))
    assert [p["name"] for p in as_json["sma_cross"]["params"]] == ["fast", "slow", "kind"]
    assert as_json["sma_cross"]["constraints"] == ["fast < slow"]
    assert as_json["rsi_reversion"]["constraints"] == ["oversold < overbought"]
    sma = {p["name"]: p for p in as_json["sma_cross"]["params"]}
    assert sma["fast"]["default"] == 10 and sma["fast"]["minimum"] == 1 and sma["fast"]["maximum"] == 10_000
    assert sma["kind"]["choices"] == ["sma", "ema"] and sma["kind"]["default"] == "sma"
    rsi = {p["name"]: p for p in as_json["rsi_reversion"]["params"]}
    assert rsi["oversold"]["exclusive"] and rsi["oversold"]["range"] == "a number in (0, 100)"
    assert {p["name"]: p["default"] for p in as_json["donchian_breakout"]["params"]} == {
        "entry_period": 20,
        "exit_period": 10,
    }
    for i in info.values():
        assert i.summary and i.edge
        for p in i.params:
            assert p.help
            assert p.coerce(i.name, p.default) == p.default  # defaults are within their own ranges


def test_max_range_values_are_accepted() -> None:
    assert make_strategy("sma_cross", {"fast": 1, "slow": 10_000}).warmup == 10_001
    assert make_strategy("rsi_reversion", {"oversold": 0.5, "overbought": 99.5}).params["oversold"] == 0.5
    assert make_strategy("donchian_breakout", {"entry_period": 1, "exit_period": 1}).warmup == 3
