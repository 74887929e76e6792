"""Strategies: the Strategy protocol, incremental indicators, the built-ins and protective exits.

Pure: no I/O, no clock reads; fed closed candles oldest first.
"""

from amarktai_tui.strategies.base import Strategy, StrategyParamError
from amarktai_tui.strategies.donchian_breakout import DonchianBreakout
from amarktai_tui.strategies.exits import ExitRules, PositionExitTracker
from amarktai_tui.strategies.indicators import EMA, RSI, SMA, RollingMax, RollingMin
from amarktai_tui.strategies.params import ParamSpec, StrategyInfo
from amarktai_tui.strategies.registry import STRATEGIES, StrategyClass, describe, make_strategy
from amarktai_tui.strategies.rsi_reversion import RsiReversion
from amarktai_tui.strategies.sma_cross import SmaCross

__all__ = [
    "EMA",
    "RSI",
    "SMA",
    "STRATEGIES",
    "DonchianBreakout",
    "ExitRules",
    "ParamSpec",
    "PositionExitTracker",
    "RollingMax",
    "RollingMin",
    "RsiReversion",
    "SmaCross",
    "Strategy",
    "StrategyClass",
    "StrategyInfo",
    "StrategyParamError",
    "describe",
    "make_strategy",
]
