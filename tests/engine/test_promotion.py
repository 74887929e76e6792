"""The promotion criteria and the live floors (engine.promotion): each boundary just below, at and
just above its target; the tally against the ledger's metrics; the [promotion] config section."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from engine_helpers import BTC_1H, HOUR, raw_candles, settings_from

from amarktai_tui.config import ConfigError
from amarktai_tui.engine.promotion import (
    DAY_MS,
    Basis,
    DemotionFloors,
    PromotionCriteria,
    StageFigures,
    StageTally,
    evaluate_demotion,
    evaluate_promotion,
    tally_from_history,
)
from amarktai_tui.engine.stages import rules_from
from amarktai_tui.ledger.metrics import drawdowns, profit_factor, win_rate
from amarktai_tui.ledger.pnl import Trade

D = Decimal
CRIT = PromotionCriteria()  # the defaults: 7 days, 25 trades, 0.52, 0.03, 0.15, 1.2
# figures that pass every default criterion with room to spare; each test moves one of them
GOOD = StageFigures(
    since=0,
    elapsed_ms=30 * DAY_MS,
    trades=40,
    wins=30,
    gross_profit=D(300),
    gross_loss=D(100),
    pnl=D(200),
    capital=D(1000),
    max_drawdown=D("0.05"),
)


def checks(fig: StageFigures) -> dict[str, bool]:
    return {c.name: c.ok for c in evaluate_promotion(fig, CRIT).checks}


def only_failing(fig: StageFigures) -> set[str]:
    return {name for name, ok in checks(fig).items() if not ok}


def test_good_figures_pass_and_the_verdict_lists_every_criterion_in_order() -> None:
    v = evaluate_promotion(GOOD, CRIT)
    assert v.ok and v.met == 6 and not v.failing
    assert [c.name for c in v.checks] == [
        "trades",
        "win_rate",
        "days",
        "return",
        "max_drawdown",
        "profit_factor",
    ]
    assert v.summary() == (
        "trades 40 ok, win rate 75% ok, days 30 ok, return 20% ok, max drawdown 5% ok, profit factor 3 ok"
    )


@pytest.mark.parametrize(
    ("trades", "ok"), [(24, False), (25, True), (26, True)], ids=["below", "at", "above"]
)
def test_trades_boundary(trades: int, ok: bool) -> None:
    fig = replace(GOOD, trades=trades, wins=trades - 5)
    assert only_failing(fig) == (set() if ok else {"trades"})


@pytest.mark.parametrize(
    ("wins", "ok"), [(5199, False), (5200, True), (5201, True)], ids=["below", "at", "above"]
)
def test_win_rate_boundary(wins: int, ok: bool) -> None:
    fig = replace(GOOD, trades=10_000, wins=wins)  # 0.5199 / 0.52 / 0.5201
    assert only_failing(fig) == (set() if ok else {"win_rate"})


@pytest.mark.parametrize(
    ("elapsed", "ok"), [(7 * DAY_MS - 1, False), (7 * DAY_MS, True), (7 * DAY_MS + 1, True)],
    ids=["below", "at", "above"],
)  # fmt: skip
def test_days_boundary_to_the_millisecond(elapsed: int, ok: bool) -> None:
    fig = replace(GOOD, elapsed_ms=elapsed)
    assert only_failing(fig) == (set() if ok else {"days"})


@pytest.mark.parametrize(
    ("pnl", "ok"), [("29.99", False), ("30", True), ("30.01", True)], ids=["below", "at", "above"]
)
def test_return_boundary_on_the_bots_capital(pnl: str, ok: bool) -> None:
    fig = replace(GOOD, pnl=D(pnl))  # 0.02999 / 0.03 / 0.03001 of 1000
    assert only_failing(fig) == (set() if ok else {"return"})


@pytest.mark.parametrize(
    ("low", "ok"), [("849.9", False), ("850", True), ("850.1", True)], ids=["below", "at", "above"]
)
def test_max_drawdown_boundary_through_the_tally(low: str, ok: bool) -> None:
    """Peak 1000 then ``low``: drawdown 0.1501 (too deep) / 0.15 (at) / 0.1499."""
    tally = StageTally(Basis(0, D(0), D(1000)))
    for e in ("990", low, "1100"):
        tally.mark(D(e))
    assert tally.max_drawdown == (D(1000) - D(low)) / D(1000)
    fig = replace(GOOD, max_drawdown=tally.max_drawdown)
    assert only_failing(fig) == (set() if ok else {"max_drawdown"})


@pytest.mark.parametrize(
    ("gross_profit", "ok"), [("119.99", False), ("120", True), ("120.01", True)], ids=["below", "at", "above"]
)
def test_profit_factor_boundary(gross_profit: str, ok: bool) -> None:
    fig = replace(GOOD, gross_profit=D(gross_profit), gross_loss=D(100))
    assert only_failing(fig) == (set() if ok else {"profit_factor"})


def test_profit_factor_without_a_losing_trade_passes_only_with_a_profit() -> None:
    assert only_failing(replace(GOOD, gross_loss=D(0), wins=40)) == set()
    v = evaluate_promotion(replace(GOOD, gross_loss=D(0), wins=40), CRIT)
    assert v.checks[-1].progress == "profit factor ∞ ok"
    # every trade break-even: no profit, no loss, nothing to show
    flat = replace(GOOD, gross_profit=D(0), gross_loss=D(0), wins=0, pnl=D(0))
    assert {"profit_factor", "win_rate", "return"} <= only_failing(flat)


def test_a_new_bot_fails_everything_and_says_how_far_it_is() -> None:
    fig = StageTally(Basis(1_000)).figures(last_close_ts=None, pnl=D(0), capital=D(1000))
    v = evaluate_promotion(fig, CRIT)
    assert not v.ok and v.met == 1  # a drawdown of 0 is within 0.15
    assert v.summary() == (
        "trades 0/25, win rate -/52%, days 0/7, return 0%/3%, max drawdown 0% ok, profit factor -/1.2"
    )


def test_progress_texts_match_the_issue_and_never_round_a_miss_into_a_pass() -> None:
    fig = replace(GOOD, trades=18, wins=10, elapsed_ms=4 * DAY_MS + DAY_MS // 5, pnl=D("12"))
    v = evaluate_promotion(fig, CRIT)
    assert v.summary(short=True, sep=" · ") == (
        "trades 18/25 · win 55.6% ✓ · days 4.2/7 · ret 1.2%/3% · dd 5% ✓ · pf 3 ✓"
    )
    assert [c.progress for c in v.checks[:3]] == ["trades 18/25", "win rate 55.6% ok", "days 4.2/7"]
    # 0.51996 and 6.999 days are shown as 51.9% and 6.9, not as 52% and 7
    near = evaluate_promotion(replace(GOOD, trades=100_000, wins=51_996, elapsed_ms=7 * DAY_MS - 1), CRIT)
    assert [c.progress for c in near.failing] == ["win rate 51.9%/52%", "days 6.9/7"]
    deep = evaluate_promotion(replace(GOOD, max_drawdown=D("0.15001")), CRIT)
    assert [c.progress for c in deep.failing] == ["max drawdown 15.1%/15%"]


def test_figures_are_fractions_and_checks_serialise_as_strings() -> None:
    v = evaluate_promotion(GOOD, CRIT)
    by_name = {c["name"]: c for c in v.as_json()}
    assert by_name["win_rate"] == {
        "name": "win_rate",
        "value": "0.75",
        "target": "0.52",
        "ok": True,
        "progress": "win rate 75% ok",
    }
    assert by_name["return"]["value"] == "0.2" and by_name["max_drawdown"]["target"] == "0.15"


@pytest.mark.parametrize(
    ("dd", "pnl", "failing"),
    [
        ("0.1501", "0", {"live_drawdown"}),
        ("0.15", "0", set()),
        ("0.1499", "0", set()),
        ("0", "-50.01", {"live_return"}),
        ("0", "-50", set()),
        ("0", "-49.99", set()),
    ],
)
def test_live_floor_boundaries(dd: str, pnl: str, failing: set[str]) -> None:
    fig = replace(GOOD, max_drawdown=D(dd), pnl=D(pnl))  # capital 1000: -0.05 is -50
    v = evaluate_demotion(fig, DemotionFloors())
    assert {c.name for c in v.failing} == failing
    assert v.ok is (not failing)


def test_tally_matches_the_ledger_metrics_on_real_prices() -> None:
    """Trades and equity from a real price path: win rate, profit factor and max drawdown equal
    ledger.metrics' (float) figures; the return is measured from the basis pnl."""
    closes = [D(repr(r[4])) for r in raw_candles(BTC_1H)[:2000]]
    points = [(i * HOUR, D(1000) * c / closes[0]) for i, c in enumerate(closes)]
    trades = [
        Trade(1, "BTC/USDT", i * HOUR, (i + 5) * HOUR, D(1), D(0), D(0), closes[i + 5] - closes[i], D(0))
        for i in range(0, 1900, 50)
    ]
    basis = Basis(10 * HOUR, D(7), None)
    tally = tally_from_history(basis, trades, points)
    kept = [t for t in trades if t.exit_ts >= basis.since]
    assert tally.trades == len(kept) == len(trades) - 1  # the first one closed before the track began
    assert float(D(tally.wins) / tally.trades) == win_rate(kept)
    fig = tally.figures(last_close_ts=points[-1][0], pnl=D(57), capital=D(1000))
    assert float(fig.profit_factor or 0) == pytest.approx(profit_factor(kept), rel=1e-12)
    assert float(fig.max_drawdown) == pytest.approx(drawdowns(points[10:])[1], rel=1e-12)
    assert fig.ret == D("0.05") and fig.elapsed_ms == points[-1][0] - basis.since
    # the running tally, fed point by point, reaches the same figures
    live = StageTally(basis)
    for t in kept:
        live.add_trade(t.pnl)
    for _, e in points[10:]:
        live.mark(e)
    assert live.figures(last_close_ts=points[-1][0], pnl=D(57), capital=D(1000)) == fig


def test_basis_round_trips_through_json_and_rejects_garbage() -> None:
    b = Basis(1_600_000_000_000, D("12.5"), D("1012.5"))
    assert Basis.from_json(b.as_json()) == b
    assert Basis.from_json({"since": 5}) == Basis(5)
    assert Basis.from_json(None) is None and Basis.from_json({"pnl": "1"}) is None
    assert Basis.from_json({"since": "x"}) is None


def test_promotion_config_section_defaults_env_and_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = rules_from(settings_from(tmp_path).promotion)
    assert rules.criteria == PromotionCriteria()
    assert rules.floors == DemotionFloors()
    s = settings_from(
        tmp_path, '[promotion]\nmin_trades = 10\nmin_win_rate = "0.6"\nlive_min_return = "-0.1"\n'
    )
    rules = rules_from(s.promotion)
    assert rules.criteria.min_trades == 10 and rules.criteria.min_win_rate == D("0.6")
    assert rules.floors.min_return == D("-0.1")
    monkeypatch.setenv("AMARKTAI_PROMOTION__MIN_DAYS", "3.5")
    assert rules_from(settings_from(tmp_path).promotion).criteria.min_days == D("3.5")
    monkeypatch.delenv("AMARKTAI_PROMOTION__MIN_DAYS")
    for text, key in [
        ("min_win_rate = 52", "promotion.min_win_rate"),  # a percentage where a fraction belongs
        ("max_drawdown = 0", "promotion.max_drawdown"),
        ("live_min_return = 0.05", "promotion.live_min_return"),
        ("min_trades = -1", "promotion.min_trades"),
        ("min_days = 400", "promotion.min_days"),
        ("min_winrate = 0.5", "promotion.min_winrate"),
    ]:
        with pytest.raises(ConfigError) as err:
            settings_from(tmp_path, f"[promotion]\n{text}\n")
        msg = str(err.value)
        assert "\n" not in msg and key in msg, msg
