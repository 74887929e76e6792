"""Pure domain types shared by every layer. No I/O, no clock reads."""

from amarktai_tui.domain.enums import (
    BotState,
    LifecycleStage,
    OrderState,
    OrderType,
    RiskMode,
    Side,
    SignalAction,
    TradingMode,
)
from amarktai_tui.domain.types import (
    Candle,
    Fill,
    Order,
    OrderIntent,
    Signal,
    timeframe_to_ms,
)

__all__ = [
    "BotState",
    "Candle",
    "Fill",
    "LifecycleStage",
    "Order",
    "OrderIntent",
    "OrderState",
    "OrderType",
    "RiskMode",
    "Side",
    "Signal",
    "SignalAction",
    "TradingMode",
    "timeframe_to_ms",
]
