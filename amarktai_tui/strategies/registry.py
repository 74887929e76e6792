"""The built-in strategies by name: construction from params and self-description.

``STRATEGIES`` maps the names used in config, the CLI (``backtest
--strategy NAME``) and the TUI to their classes; ``make_strategy`` builds
one from user params; ``describe`` lists every strategy's params with
defaults and allowed ranges (for the new-bot form and the config docs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from amarktai_tui.strategies.base import Strategy, StrategyParamError
from amarktai_tui.strategies.donchian_breakout import DonchianBreakout
from amarktai_tui.strategies.params import ParamSpec, StrategyInfo
from amarktai_tui.strategies.rsi_reversion import RsiReversion
from amarktai_tui.strategies.sma_cross import SmaCross

__all__ = ["STRATEGIES", "StrategyClass", "describe", "make_strategy"]


class StrategyClass(Protocol):
    """What a registered strategy class provides: a keyword-params constructor and its description."""

    @property
    def name(self) -> str: ...
    @property
    def SUMMARY(self) -> str: ...
    @property
    def PARAMS(self) -> tuple[ParamSpec, ...]: ...
    @property
    def CONSTRAINTS(self) -> tuple[str, ...]: ...
    @property
    def EDGE(self) -> str: ...

    def __call__(self, **params: Any) -> Strategy: ...


STRATEGIES: dict[str, StrategyClass] = {
    SmaCross.name: SmaCross,
    RsiReversion.name: RsiReversion,
    DonchianBreakout.name: DonchianBreakout,
}


def make_strategy(name: str, params: Mapping[str, Any] | None = None) -> Strategy:
    """A fresh strategy instance ``name`` with ``params`` (None or {} = all defaults).

    Raises StrategyParamError for an unknown name (the message lists the valid
    names) or bad params (the message names the parameter, value and range).
    """
    cls = STRATEGIES.get(name)
    if cls is None:
        raise StrategyParamError(f"unknown strategy {name!r}; valid strategies: {', '.join(STRATEGIES)}")
    return cls(**dict(params or {}))


def describe() -> dict[str, StrategyInfo]:
    """``{name: StrategyInfo}`` for every built-in, in registry order.

    Each StrategyInfo carries the summary, the params (name, kind, default,
    minimum/maximum/exclusive or choices, help), the cross-parameter
    constraints and what ``edge_bps`` means; ``.as_dict()`` is JSON-ready.
    """
    return {
        name: StrategyInfo(
            name=name,
            summary=cls.SUMMARY,
            params=cls.PARAMS,
            constraints=cls.CONSTRAINTS,
            edge=cls.EDGE,
        )
        for name, cls in STRATEGIES.items()
    }
