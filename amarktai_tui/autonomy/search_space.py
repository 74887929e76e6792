"""The search space of an optimisation: which strategy parameters (and exits) a study samples.

Each numeric parameter within the strategy's ``SEARCH`` ranges (``SearchRange``; the
``ParamSpec`` bounds where a strategy declares none), choices over all their values; a range
with ``above`` (sma_cross's ``slow`` > ``fast``) is sampled after the parameter it must exceed,
from just above its value, so no trial breaks the constraint. With bounds, the bots'
``stop_loss`` and ``take_profit`` too, within ``[autonomy.bounds]`` (Decimal fractions, 4 places).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from amarktai_tui.autonomy.settings import BoundsSettings
from amarktai_tui.strategies.base import StrategyParamError
from amarktai_tui.strategies.params import ParamSpec, SearchRange
from amarktai_tui.strategies.registry import STRATEGIES, make_strategy

if TYPE_CHECKING:
    import optuna

EXITS = ("stop_loss", "take_profit")


class OptimizeUsageError(ValueError):
    """Bad optimisation input; ``str()`` is one line naming the flag and what is wrong."""


@dataclass(frozen=True, slots=True)
class Dim:
    """One searched dimension: a strategy parameter or an exit (``stop_loss``/``take_profit``)."""

    name: str
    kind: Literal["int", "float", "choice"]
    low: float = 0.0
    high: float = 0.0
    above: str | None = None
    log: bool = False
    choices: tuple[str, ...] = ()
    exit: bool = False


def search_space(strategy: str, bounds: BoundsSettings | None = None) -> list[Dim]:
    """The dimensions of ``strategy`` (its ``SEARCH`` ranges, else its ParamSpec bounds; an
    unbounded number stays at its default and is not searched), then, with ``bounds``, the
    stop-loss and take-profit ranges. Raises OptimizeUsageError for an unknown strategy."""
    cls = STRATEGIES.get(strategy)
    if cls is None:
        raise OptimizeUsageError(f"--strategy: unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    ranges: Mapping[str, SearchRange] = getattr(cls, "SEARCH", {})
    dims = []
    for spec in cls.PARAMS:
        dim = _dim(spec, ranges.get(spec.name))
        if dim is not None:
            dims.append(dim)
    if bounds is not None:
        dims.append(
            Dim("stop_loss", "float", float(bounds.stop_loss_min), float(bounds.stop_loss_max), exit=True)
        )
        dims.append(
            Dim(
                "take_profit",
                "float",
                float(bounds.take_profit_min),
                float(bounds.take_profit_max),
                exit=True,
            )
        )
    return dims


def _dim(spec: ParamSpec, rng: SearchRange | None) -> Dim | None:
    if spec.kind == "choice":
        return Dim(spec.name, "choice", choices=spec.choices)
    if rng is not None:
        return Dim(spec.name, spec.kind, rng.low, rng.high, rng.above, rng.log)
    if spec.minimum is None or spec.maximum is None:
        return None
    lo, hi = spec.minimum, spec.maximum
    if spec.exclusive:
        lo, hi = (lo + 1, hi - 1) if spec.kind == "int" else (lo + 1e-6, hi - 1e-6)
    return Dim(spec.name, spec.kind, lo, hi)


def suggest(trial: optuna.Trial, dims: Sequence[Dim]) -> dict[str, Any]:
    """Sample one point of ``dims`` on ``trial`` (exits as Decimal fractions, 4 places).

    A dimension with ``above`` is sampled from just above the already sampled value it must
    exceed; raises ``optuna.TrialPruned`` if nothing is left above it.
    """
    import optuna

    out: dict[str, Any] = {}
    for d in dims:
        if d.kind == "choice":
            out[d.name] = trial.suggest_categorical(d.name, list(d.choices))
            continue
        low = d.low
        if d.above is not None and isinstance(out.get(d.above), int | float):
            low = max(low, out[d.above] + (1 if d.kind == "int" else 1e-6))
        if low > d.high:
            raise optuna.TrialPruned(f"{d.name}: nothing left in its range above {d.above}")
        if d.kind == "int":
            out[d.name] = trial.suggest_int(d.name, int(low), int(d.high), log=d.log)
        else:
            value = trial.suggest_float(d.name, low, d.high, log=d.log)
            out[d.name] = Decimal(str(round(value, 4))) if d.exit else value
    return out


def warmup_candles(strategy: str, dims: Sequence[Dim]) -> int:
    """Candles a strategy needs before it can trade, at the top of its search ranges."""
    top: dict[str, Any] = {
        d.name: (int(d.high) if d.kind == "int" else d.high) for d in dims if d.kind != "choice"
    }
    top = {k: v for k, v in top.items() if k not in EXITS}
    try:
        return int(make_strategy(strategy, top).warmup)
    except StrategyParamError:
        return int(max(top.values(), default=0)) + 1
