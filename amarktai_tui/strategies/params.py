"""Strategy parameter specifications and validation.

Each built-in strategy declares its parameters as a tuple of ``ParamSpec``;
``validate_params`` turns user input (TOML, the TUI's new-bot form, the CLI)
into the effective parameters or raises ``StrategyParamError`` with a
one-line message naming the strategy, the parameter, its value and the
allowed range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from amarktai_tui.strategies.base import StrategyParamError

__all__ = ["ParamSpec", "ParamValue", "SearchRange", "StrategyInfo", "validate_params"]

ParamValue = int | float | str


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One strategy parameter.

    ``kind``: ``"int"`` (an integer; an integral float such as ``20.0`` is
    accepted), ``"float"`` (any finite real; ints accepted) or ``"choice"``
    (one of ``choices``). ``minimum``/``maximum`` bound ints and floats,
    inclusively unless ``exclusive`` is set. ``help`` is a one-line
    description for forms and docs.
    """

    name: str
    kind: Literal["int", "float", "choice"]
    default: ParamValue
    help: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive: bool = False
    choices: tuple[str, ...] = ()

    def range_text(self) -> str:
        """Human description of the allowed values, e.g. ``"an integer in [2, 10000]"``."""
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        what = "an integer" if self.kind == "int" else "a number"
        lo = "-inf" if self.minimum is None else f"{self.minimum:g}"
        hi = "inf" if self.maximum is None else f"{self.maximum:g}"
        left, right = ("(", ")") if self.exclusive else ("[", "]")
        return f"{what} in {left}{lo}, {hi}{right}"

    def coerce(self, strategy: str, value: Any) -> ParamValue:
        """Return ``value`` as this parameter's type, or raise StrategyParamError naming it."""
        bad = StrategyParamError(f"{strategy}: {self.name}={value!r} is invalid: must be {self.range_text()}")
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise bad
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        if not math.isfinite(value):
            raise bad
        num: int | float
        if self.kind == "int":
            if isinstance(value, float):
                if not value.is_integer():
                    raise bad
                num = int(value)
            else:
                num = value
        else:
            num = float(value)
        lo, hi = self.minimum, self.maximum
        if self.exclusive:
            if (lo is not None and num <= lo) or (hi is not None and num >= hi):
                raise bad
        elif (lo is not None and num < lo) or (hi is not None and num > hi):
            raise bad
        return num

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form: name, kind, default, help, minimum, maximum, exclusive, choices, range."""
        return {
            "name": self.name,
            "kind": self.kind,
            "default": self.default,
            "help": self.help,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "exclusive": self.exclusive,
            "choices": list(self.choices),
            "range": self.range_text(),
        }


@dataclass(frozen=True, slots=True)
class SearchRange:
    """Where an optimiser looks for a numeric parameter (a strategy's ``SEARCH``, used by
    ``autonomy.optimize``): ``low`` to ``high`` inclusive, inside the ParamSpec's valid range but
    narrower where that range is only a sanity bound. ``above``: the name of a parameter this one
    must exceed (sma_cross's ``slow`` > ``fast``): sampled after it, from ``max(low, it + 1)`` for
    an int (+ 1e-6 for a float). ``log``: sample on a log scale (lengths in candles)."""

    low: float
    high: float
    above: str | None = None
    log: bool = False


@dataclass(frozen=True, slots=True)
class StrategyInfo:
    """What ``registry.describe()`` says about one strategy.

    ``constraints`` are the cross-parameter rules (e.g. ``"fast < slow"``),
    ``edge`` says what the strategy's ``edge_bps`` means.
    """

    name: str
    summary: str
    params: tuple[ParamSpec, ...]
    constraints: tuple[str, ...]
    edge: str

    def defaults(self) -> dict[str, ParamValue]:
        """``{param name: default}``."""
        return {p.name: p.default for p in self.params}

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for ``--json`` output and the config docs)."""
        return {
            "name": self.name,
            "summary": self.summary,
            "params": [p.as_dict() for p in self.params],
            "constraints": list(self.constraints),
            "edge": self.edge,
        }


def validate_params(
    strategy: str, specs: tuple[ParamSpec, ...], given: Mapping[str, Any] | None
) -> dict[str, ParamValue]:
    """Effective parameters: ``given`` checked against ``specs``, defaults filled in.

    Returns a new dict in the specs' order. Raises StrategyParamError for an
    unknown name (the message lists the valid ones) or a value of the wrong
    type or out of range (the message names the parameter, the value and the
    allowed range). Cross-parameter rules are the strategy's job.
    """
    given = {} if given is None else given
    by_name = {s.name: s for s in specs}
    for key in given:
        if key not in by_name:
            valid = ", ".join(by_name)
            raise StrategyParamError(f"{strategy}: unknown parameter {key!r}; valid parameters: {valid}")
    return {s.name: s.coerce(strategy, given[s.name]) if s.name in given else s.default for s in specs}
