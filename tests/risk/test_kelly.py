"""Kelly sizing (risk/kelly.py): thresholds, confidence ramp, clamps, degenerate records, bad input."""

from __future__ import annotations

from decimal import Decimal

import pytest

from amarktai_tui.risk.kelly import kelly_fraction

D = Decimal


def test_hand_computed_example() -> None:
    # 20 trades, 12 wins worth 240 (avg 20), 8 losses worth 80 (avg 10).
    # W = 12/20 = 0.6, R = 20/10 = 2, f = 0.6 - 0.4/2 = 0.4.
    # confidence = min(1, 20/20) = 1; fraction = 0.25 x 0.4 x 1 = 0.1 (inside [0.01, 0.25]).
    r = kelly_fraction(trades=20, wins=12, gross_win=D(240), gross_loss=D(80))
    assert r.kelly_f == D("0.4")
    assert r.confidence == 1
    assert r.fraction == D("0.1")
    assert "f=0.4000" in r.reason


def test_four_trades_is_below_the_minimum_and_gets_the_floor() -> None:
    r = kelly_fraction(trades=4, wins=4, gross_win=D(100), gross_loss=D(0))
    assert r.fraction == D("0.01")
    assert r.kelly_f is None
    assert r.confidence == 0
    assert r.reason == "4 trades < 5: floor 1%"


def test_five_trades_is_enough_to_compute_kelly() -> None:
    # W = 3/5 = 0.6, R = (30/3)/(20/2) = 1, f = 0.6 - 0.4 = 0.2; confidence 5/20 = 0.25
    # fraction = 0.25 x 0.2 x 0.25 = 0.0125
    r = kelly_fraction(trades=5, wins=3, gross_win=D(30), gross_loss=D(20))
    assert r.kelly_f == D("0.2")
    assert r.confidence == D("0.25")
    assert r.fraction == D("0.0125")


def test_confidence_is_19_twentieths_at_19_trades_and_full_at_20() -> None:
    # no losses: f = W; 19 trades, 19 wins -> f = 1; x 0.25 x 0.95 = 0.2375
    r19 = kelly_fraction(trades=19, wins=19, gross_win=D(190), gross_loss=D(0))
    assert r19.confidence == D("0.95")
    assert r19.fraction == D("0.2375")
    r20 = kelly_fraction(trades=20, wins=20, gross_win=D(200), gross_loss=D(0))
    assert r20.confidence == 1
    assert r20.fraction == D("0.25")
    r40 = kelly_fraction(trades=40, wins=40, gross_win=D(400), gross_loss=D(0))
    assert r40.confidence == 1


def test_zero_kelly_is_no_trade() -> None:
    # W = 0.5, R = 1: f = 0.5 - 0.5/1 = 0 exactly
    r = kelly_fraction(trades=20, wins=10, gross_win=D(100), gross_loss=D(100))
    assert r.kelly_f == 0
    assert r.fraction == 0
    assert r.reason == "f=0.0000 <= 0: no edge, no trade"


def test_negative_kelly_is_no_trade_and_a_hair_above_zero_is_floored() -> None:
    # W = 0.5, R = 0.9: f = 0.5 - 0.5/0.9 = -0.0556
    neg = kelly_fraction(trades=20, wins=10, gross_win=D(90), gross_loss=D(100))
    assert neg.kelly_f is not None and neg.kelly_f < 0
    assert neg.fraction == 0
    assert "f=-0.0556 <= 0" in neg.reason
    # W = 0.5, R = 101/100: f = 0.5 - 0.5/1.01 = 0.00495 -> 0.25 x f = 0.0012 -> floored to 0.01
    pos = kelly_fraction(trades=20, wins=10, gross_win=D(101), gross_loss=D(100))
    assert pos.kelly_f is not None and pos.kelly_f > 0
    assert pos.fraction == D("0.01")
    assert "clamped to 1%" in pos.reason


def test_clamped_to_the_cap() -> None:
    # full Kelly (multiplier 1) with f = 0.4 asks for 40% of capital: capped at 25%
    r = kelly_fraction(trades=20, wins=12, gross_win=D(240), gross_loss=D(80), multiplier=D(1))
    assert r.fraction == D("0.25")
    assert "clamped to 25%" in r.reason
    # exactly at the cap is not "clamped"
    at = kelly_fraction(trades=20, wins=20, gross_win=D(200), gross_loss=D(0))
    assert at.fraction == D("0.25")
    assert "clamped" not in at.reason


def test_no_losses_makes_f_the_win_rate() -> None:
    # 16 wins, 4 break-evens (PnL 0): gross_loss 0, R infinite, f = W = 0.8; 0.25 x 0.8 = 0.2
    r = kelly_fraction(trades=20, wins=16, gross_win=D(50), gross_loss=D(0))
    assert r.kelly_f == D("0.8")
    assert r.fraction == D("0.2")


def test_no_wins_is_no_trade() -> None:
    r = kelly_fraction(trades=10, wins=0, gross_win=D(0), gross_loss=D(35))
    assert r.kelly_f == -1
    assert r.fraction == 0
    flat = kelly_fraction(trades=10, wins=0, gross_win=D(0), gross_loss=D(0))
    assert flat.kelly_f == 0
    assert flat.fraction == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trades": -1, "wins": 0}, "trades must be >= 0"),
        ({"trades": 5, "wins": -1}, "wins must be >= 0"),
        ({"trades": 5, "wins": 6}, "wins 6 > trades 5"),
        ({"gross_win": D(-1)}, "gross_win must be >= 0"),
        ({"gross_loss": D("-0.01")}, "gross_loss must be >= 0"),
        ({"gross_win": D(0)}, "3 wins but gross_win 0"),
        ({"wins": 0}, "0 wins but gross_win 30"),
        ({"multiplier": D("-0.25")}, "multiplier must be >= 0"),
        ({"min_fraction": D("0.3")}, "min_fraction 0.3 > max_fraction 0.25"),
        ({"min_trades": 0}, "must be >= 1"),
        ({"full_confidence_trades": 0}, "must be >= 1"),
    ],
)
def test_bad_inputs_raise(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"trades": 10, "wins": 3, "gross_win": D(30), "gross_loss": D(20)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        kelly_fraction(**args)  # type: ignore[arg-type]
