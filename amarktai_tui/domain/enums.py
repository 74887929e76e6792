"""Enumerations used across the engine, ledger and UI (values are stored as TEXT)."""

from __future__ import annotations

from enum import StrEnum


class Side(StrEnum):
    """Order side. Long-only spot: a buy opens or adds to lots, a sell closes them."""

    BUY = "buy"
    SELL = "sell"


class SignalAction(StrEnum):
    """What a strategy wants after a closed candle."""

    ENTER = "enter"
    EXIT = "exit"
    HOLD = "hold"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class OrderState(StrEnum):
    """Order lifecycle: pending -> open -> filled | cancelled | rejected | expired.

    ``pending`` is written before the broker is called (write-ahead); a broker
    acknowledgement moves it to ``open``.
    """

    PENDING = "pending"
    OPEN = "open"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED, OrderState.EXPIRED})


class BotState(StrEnum):
    """Bot run state. Allowed transitions live in ``engine.lifecycle``."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    ERROR = "error"
    CIRCUIT_TRIPPED = "circuit_tripped"  # a breaker covering it tripped: exits only, until reset


class LifecycleStage(StrEnum):
    """Promotion stage (paper first, live only when earned)."""

    PAPER_TRAINING = "paper_training"
    ELIGIBLE_FOR_LIVE = "eligible_for_live"
    LIVE = "live"
    QUARANTINED = "quarantined"


class RiskMode(StrEnum):
    """Per-bot risk appetite; sets the max notional per trade (see ``MAX_NOTIONAL_FRACTION``)."""

    SAFE = "safe"
    BALANCED = "balanced"
    RISKY = "risky"
    AGGRESSIVE = "aggressive"


class TradingMode(StrEnum):
    PAPER = "paper"
    LIVE = "live"
