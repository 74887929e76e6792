"""Kelly sizing (pure): what fraction of a bot's capital to commit on an entry.

Kelly f for a repeated bet won with probability W that pays R times what it
loses: f = W - (1 - W) / R (Kelly 1956, "A New Interpretation of Information
Rate"; Thorp 2006, "The Kelly criterion in blackjack, sports betting and the
stock market", section 2). W and R come from the bot's own closed round trips,
so the estimate is noisy: we bet a fraction of Kelly (``multiplier``, a
quarter by default), scale it by a confidence that grows with the number of
trades, and clamp the result to a floor and a cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

_ZERO = Decimal(0)
_ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class KellyResult:
    """``fraction`` of the bot's capital to commit as notional (0 = no trade).

    ``kelly_f`` is the raw Kelly f (None when not computed: too few trades);
    ``confidence`` is 0..1; ``reason`` is one line for the log and the UI.
    """

    fraction: Decimal
    kelly_f: Decimal | None
    confidence: Decimal
    reason: str


def kelly_fraction(
    *,
    trades: int,
    wins: int,
    gross_win: Decimal,
    gross_loss: Decimal,
    multiplier: Decimal = Decimal("0.25"),
    min_fraction: Decimal = Decimal("0.01"),
    max_fraction: Decimal = Decimal("0.25"),
    min_trades: int = 5,
    full_confidence_trades: int = 20,
) -> KellyResult:
    """Fraction of capital (0..1) to commit on the next entry, from the bot's record.

    ``trades`` closed round trips; ``wins`` those with realised PnL > 0 (the
    rest, break-evens included, count as losses); ``gross_win`` the sum of the
    winning trades' PnL and ``gross_loss`` the sum of the losing trades' |PnL|,
    both >= 0 in quote currency.

    - ``trades < min_trades``: ``min_fraction``, confidence 0, kelly_f None.
    - Otherwise W = wins / trades, R = (gross_win / wins) / (gross_loss / losses).
      No losing PnL (gross_loss 0) makes R infinite, so f = W. No wins gives
      f = -1 ("every bet lost"; the formula's limit is -infinity), or f = 0
      when the losses are all break-evens.
    - f <= 0: fraction 0, no trade.
    - Else confidence = min(1, trades / full_confidence_trades) and
      fraction = multiplier x f x confidence, clamped to [min_fraction, max_fraction].

    Raises ValueError on negative inputs, wins > trades, a gross figure that
    contradicts the win count, min_fraction > max_fraction, or min_trades /
    full_confidence_trades < 1.
    """
    _check(trades, wins, gross_win, gross_loss, multiplier, min_fraction, max_fraction)
    if min_trades < 1 or full_confidence_trades < 1:
        raise ValueError(
            f"min_trades {min_trades} and full_confidence_trades {full_confidence_trades} must be >= 1"
        )
    if trades < min_trades:
        return KellyResult(
            min_fraction, None, _ZERO, f"{trades} trades < {min_trades}: floor {min_fraction:%}"
        )

    losses = trades - wins
    win_rate = Decimal(wins) / Decimal(trades)
    if wins == 0:
        f = _ZERO if gross_loss == 0 else -_ONE
    elif gross_loss == 0:
        f = win_rate  # R infinite: no losing PnL to weigh against the wins
    else:
        payoff = (gross_win / wins) / (gross_loss / losses)
        f = win_rate - (_ONE - win_rate) / payoff
    confidence = min(_ONE, Decimal(trades) / Decimal(full_confidence_trades))
    if f <= 0:
        return KellyResult(_ZERO, f, confidence, f"f={f:.4f} <= 0: no edge, no trade")

    raw = multiplier * f * confidence
    fraction = min(max(raw, min_fraction), max_fraction)
    note = "" if fraction == raw else f", clamped to {fraction:%}"
    reason = f"f={f:.4f} x {multiplier} x confidence {confidence:.2f} = {raw:.4f}{note}"
    return KellyResult(fraction, f, confidence, reason)


def _check(
    trades: int,
    wins: int,
    gross_win: Decimal,
    gross_loss: Decimal,
    multiplier: Decimal,
    min_fraction: Decimal,
    max_fraction: Decimal,
) -> None:
    named: dict[str, Decimal] = {"trades": Decimal(trades), "wins": Decimal(wins), "gross_win": gross_win}
    named |= {"gross_loss": gross_loss, "multiplier": multiplier}
    named |= {"min_fraction": min_fraction, "max_fraction": max_fraction}
    for name, value in named.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if wins > trades:
        raise ValueError(f"wins {wins} > trades {trades}")
    if (wins > 0) != (gross_win > 0):
        raise ValueError(f"{wins} wins but gross_win {gross_win}: a win has PnL > 0")
    if min_fraction > max_fraction:
        raise ValueError(f"min_fraction {min_fraction} > max_fraction {max_fraction}")
