"""``autonomy.bounds``: the protected names, the bounds from config, ``clamp`` per field and the
risk-per-trade rule, with a property test over random values of every field."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amarktai_tui.ai.tools import PROTECTED_PARAMS
from amarktai_tui.autonomy.bounds import (
    CHANGE_FIELDS,
    PROTECTED_FIELDS,
    Bounds,
    BoundsRefusal,
    clamp,
    risk_per_trade,
)
from amarktai_tui.autonomy.settings import BoundsSettings
from amarktai_tui.domain.enums import BotState, LifecycleStage, RiskMode
from amarktai_tui.ledger.store import BotRecord
from amarktai_tui.risk.sizing import MAX_NOTIONAL_FRACTION
from amarktai_tui.strategies.registry import STRATEGIES, make_strategy

B = Bounds.from_settings(BoundsSettings())
D = Decimal


def bot(
    strategy: str = "sma_cross",
    params: dict[str, object] | None = None,
    risk_mode: RiskMode = RiskMode.BALANCED,
    size_multiplier: str = "1",
    stop_loss: str | None = "0.05",
    take_profit: str | None = None,
) -> BotRecord:
    return BotRecord(
        id=1, name="b", exchange="binance", pair="BTC/USDT", timeframe="1h", strategy=strategy,
        params=params if params is not None else {"fast": 10, "slow": 30},
        risk_mode=risk_mode, capital=D("1000"), stop_loss=None if stop_loss is None else D(stop_loss),
        take_profit=None if take_profit is None else D(take_profit), trailing_stop=None,
        state=BotState.RUNNING, state_reason="", stage=LifecycleStage.PAPER_TRAINING, last_candle_ts=None,
        size_multiplier=D(size_multiplier),
    )  # fmt: skip


def test_protected_fields_cover_the_ai_aliases_and_leave_the_change_fields() -> None:
    for name in ("max_daily_loss", "account_daily_loss", "max_drawdown", "account_max_drawdown",
                 "bot_max_drawdown", "total_capital", "trading_mode"):  # fmt: skip
        assert name in PROTECTED_FIELDS
    assert PROTECTED_PARAMS - set(CHANGE_FIELDS) == PROTECTED_FIELDS
    assert "capital" not in PROTECTED_FIELDS and "risk_mode" not in PROTECTED_FIELDS


def test_bounds_come_from_the_config_section() -> None:
    s = BoundsSettings(risk_per_trade_max=D("0.03"), size_multiplier_min=D("0.5"))
    b = Bounds.from_settings(s)
    assert b.risk_per_trade == (D("0.005"), D("0.03"))
    assert b.size_multiplier == (D("0.5"), D("1.3"))
    assert b.as_json()["stop_loss"] == ["0.01", "0.10"]


def test_risk_per_trade_is_notional_share_times_multiplier_times_stop() -> None:
    assert risk_per_trade(RiskMode.BALANCED, D("1.2"), D("0.04")) == MAX_NOTIONAL_FRACTION[
        RiskMode.BALANCED
    ] * D("1.2") * D("0.04")
    assert risk_per_trade(RiskMode.SAFE, D(1), None) is None


def test_size_multiplier_clamped_to_its_range_then_to_the_risk_per_trade() -> None:
    value, note = clamp("size_multiplier", D("0.2"), bot(), B)
    assert value == D("0.7") and "clamped to 0.7" in note
    value, note = clamp("size_multiplier", "1.5", bot(), B)  # 0.35 x 1.3 x 0.05 = 0.02275 > 0.02
    rpt = risk_per_trade(RiskMode.BALANCED, value, D("0.05"))
    assert rpt is not None and rpt <= D("0.02") and value < D("1.3")
    assert value >= D("0.7") and "risk per trade" in note
    value, note = clamp("size_multiplier", D("1.1"), bot(), B)
    assert (value, note) == (D("1.1"), "")
    value, _ = clamp("size_multiplier", D("3"), bot(stop_loss=None), B)  # no stop: no risk figure
    assert value == D("1.3")


def test_a_multiplier_that_cannot_fit_is_refused_with_the_figures() -> None:
    with pytest.raises(BoundsRefusal, match=r"0.60 \(aggressive\) x 0.7 x stop-loss 0.1"):
        clamp("size_multiplier", D("0.7"), bot(risk_mode=RiskMode.AGGRESSIVE, stop_loss="0.1"), B)


def test_stop_loss_and_take_profit_ranges() -> None:
    value, note = clamp("stop_loss", D("0.005"), bot(), B)
    assert B.stop_loss[0] <= value <= B.stop_loss[1]  # 0.35 x 0.01 = 0.0035 < 0.005: raised to fit
    rpt = risk_per_trade(RiskMode.BALANCED, D(1), value)
    assert rpt is not None and D("0.005") <= rpt <= D("0.02") and "stop_loss" in note
    value, _ = clamp("stop_loss", "0.09", bot(), B)  # 0.35 x 0.09 = 0.0315: the stop gives way
    assert value == D("0.0571") and risk_per_trade(RiskMode.BALANCED, D(1), value) <= D("0.02")  # type: ignore[operator]
    assert clamp("take_profit", D("0.5"), bot(), B)[0] == D("0.10")
    assert clamp("take_profit", D("0.01"), bot(), B)[0] == D("0.02")
    for field in ("stop_loss", "take_profit"):
        with pytest.raises(BoundsRefusal, match="never turns a protective exit off"):
            clamp(field, None, bot(), B)
        with pytest.raises(BoundsRefusal, match="fraction"):
            clamp(field, D("1.5"), bot(), B)


def test_risk_mode_moves_the_multiplier_or_is_refused() -> None:
    value, note = clamp("risk_mode", "risky", bot(), B)  # 0.45 x 1 x 0.05 = 0.0225 > 0.02
    assert value["risk_mode"] is RiskMode.RISKY and value["size_multiplier"] < 1
    assert risk_per_trade(RiskMode.RISKY, value["size_multiplier"], D("0.05")) <= D("0.02")  # type: ignore[operator]
    assert "size_multiplier 1 ->" in note
    value, note = clamp("risk_mode", RiskMode.SAFE, bot(), B)
    assert value == {"risk_mode": RiskMode.SAFE, "size_multiplier": D(1)} and note == ""
    with pytest.raises(BoundsRefusal, match="aggressive"):
        clamp("risk_mode", "aggressive", bot(stop_loss="0.1"), B)
    with pytest.raises(BoundsRefusal, match="not one of"):
        clamp("risk_mode", "yolo", bot(), B)


def test_params_clamped_into_their_specs_and_checked_by_the_strategy() -> None:
    value, note = clamp("params", {"fast": 0, "slow": 20_000}, bot(), B)
    assert value == dict(make_strategy("sma_cross", {"fast": 1, "slow": 10_000}).params)
    assert "fast 0 clamped to 1" in note and "slow 20000 clamped to 10000" in note
    value, note = clamp("params", {"fast": 12.6}, bot(), B)
    assert value["fast"] == 13 and "rounded" in note and value["slow"] == 30
    with pytest.raises(BoundsRefusal, match="fast"):  # fast < slow: the strategy's constraint
        clamp("params", {"fast": 40}, bot(), B)
    with pytest.raises(BoundsRefusal, match="unknown parameter"):
        clamp("params", {"nope": 1}, bot(), B)
    with pytest.raises(BoundsRefusal, match="protected"):
        clamp("params", {"max_drawdown": 0.5}, bot(), B)
    with pytest.raises(BoundsRefusal, match="is not"):  # exclusive (0, 100): refused, not nudged
        clamp("params", {"oversold": 0}, bot("rsi_reversion", {}), B)
    with pytest.raises(BoundsRefusal, match="one of"):
        clamp("params", {"kind": "wma"}, bot(), B)


def test_capital_state_and_unknown_fields() -> None:
    assert clamp("capital", "123.456", bot(), B) == (D("123.45"), "")
    for bad in ("0", "-5", "0.001", "abc"):
        with pytest.raises(BoundsRefusal):
            clamp("capital", bad, bot(), B)
    assert clamp("state", "paused", bot(), B) == ("paused", "")
    with pytest.raises(BoundsRefusal, match="not one of"):
        clamp("state", "error", bot(), B)
    with pytest.raises(BoundsRefusal, match="unknown field"):
        clamp("leverage", 3, bot(), B)


def test_replace_fills_the_dna_from_the_bot_and_bounds_it() -> None:
    dna, _ = clamp(
        "replace", {"strategy": "rsi_reversion", "params": {"period": 1}, "capital": "250"}, bot(), B
    )
    assert dna["pair"] == "BTC/USDT" and dna["risk_mode"] is RiskMode.BALANCED
    assert dna["params"] == dict(make_strategy("rsi_reversion", {"period": 2}).params)
    assert dna["capital"] == D("250") and dna["stop_loss"] == D("0.05")
    with pytest.raises(BoundsRefusal, match="protective exit"):
        clamp("replace", {}, bot(stop_loss=None), B)
    same, _ = clamp(
        "spawn", {"strategy": "rsi_reversion", "params": {"period": 1}, "capital": "250"}, bot(), B
    )
    assert same == dna  # a spawn's DNA is bounded as a replacement's
    with pytest.raises(BoundsRefusal, match=r"^spawn: capital"):
        clamp("spawn", {"capital": "0.001"}, bot(), B)


FIELD_VALUES = st.one_of(
    st.tuples(st.just("size_multiplier"), st.decimals("0.01", "5", places=3)),
    st.tuples(st.just("stop_loss"), st.decimals("0.001", "0.999", places=3)),
    st.tuples(st.just("take_profit"), st.decimals("0.001", "0.999", places=3)),
    st.tuples(st.just("risk_mode"), st.sampled_from(list(RiskMode))),
    st.tuples(
        st.just("params"),
        st.fixed_dictionaries({"fast": st.integers(-10, 300), "slow": st.integers(-10, 20_000)}),
    ),
)
BOTS = st.builds(
    bot,
    risk_mode=st.sampled_from(list(RiskMode)),
    size_multiplier=st.sampled_from(["0.7", "1", "1.3"]),
    stop_loss=st.sampled_from([None, "0.01", "0.03", "0.05", "0.1"]),
)


@settings(max_examples=300, deadline=None)
@given(change=FIELD_VALUES, rec=BOTS)
def test_any_clamped_value_is_within_the_bounds(change: tuple[str, object], rec: BotRecord) -> None:
    field, raw = change
    try:
        value, _ = clamp(field, raw, rec, B)
    except BoundsRefusal:
        return  # refused: nothing would change
    rm, m, sl = rec.risk_mode, rec.size_multiplier, rec.stop_loss
    if field == "size_multiplier":
        assert B.size_multiplier[0] <= value <= B.size_multiplier[1]
        m = value
    elif field == "stop_loss":
        assert B.stop_loss[0] <= value <= B.stop_loss[1]
        sl = value
    elif field == "take_profit":
        assert B.take_profit[0] <= value <= B.take_profit[1]
    elif field == "risk_mode":
        rm, m = value["risk_mode"], value["size_multiplier"]
    else:
        specs = {p.name: p for p in STRATEGIES["sma_cross"].PARAMS}
        for k in ("fast", "slow"):
            assert specs[k].minimum <= value[k] <= specs[k].maximum
        assert value["fast"] < value["slow"]
    if field != "params" and field != "take_profit":
        rpt = risk_per_trade(rm, m, sl)
        assert rpt is None or B.risk_per_trade[0] <= rpt <= B.risk_per_trade[1]
