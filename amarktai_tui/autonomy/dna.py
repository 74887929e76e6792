"""Bot DNA for evolution: what a bot is made of, its gene bounds, crossover and mutation.

A ``Dna`` is six genes: ``strategy`` (a built-in name), ``params`` (one gene per strategy
parameter), ``pair``, ``exchange`` (an ``exchanges.registry`` id), ``risk_mode`` (a ``RiskMode``)
and ``capital_share`` (a Decimal fraction of the evaluation budget, 0.10 = 10 %). ``timeframe``
rides along but is not a gene: it is the timeframe of the candles the DNA was evaluated on (the
timeframe a bot spawned from it runs).

Gene bounds (``GeneSpace``): the strategies, pairs, exchanges and risk modes a run may choose
from, ``capital_share`` in [0.05, 0.50] (steps of 0.01), and per strategy parameter a *search*
range (``ParamRange``): the strategy's own search space (its ``SEARCH``: ``strategies.params.
SearchRange``, the one the optimiser uses, narrower than the validation range, which is up to
10,000 for moving-average lengths), else derived from the ``ParamSpec``: ints from their minimum
up to ``min(maximum, 200)``, floats inside their bounds (an exclusive bound moved in by 1 % of the
span), choices as declared. Floats are kept to 2 decimals. A ``log`` range is drawn and stepped
on a log scale.

Operators (all draw from an injected ``random.Random``, so a seed reproduces them):

- ``random_dna``: each gene uniform within its bounds.
- ``crossover(a, b)``: uniform per gene (each taken from ``a`` or ``b`` with probability 1/2).
  Parameters are crossed per parameter only between parents of the same strategy; otherwise the
  child takes the whole parameter set of the parent whose strategy it took.
- ``mutate(dna, rate)``: each gene changes with probability ``rate`` (0.15 by default) to another
  value within its bounds: a choice to a different choice; a number by a Gaussian step (sigma 20 %
  of its range, at least one step), clamped, never left unchanged. A strategy that mutates draws
  fresh random parameters for the new strategy (the old ones do not fit it). A gene with a single
  allowed value cannot change.
- After crossover and mutation, cross-parameter constraints of the form ``"a < b"`` (the
  strategies' ``CONSTRAINTS`` and ``SearchRange.above``) are repaired: swapped when reversed,
  nudged apart when equal.

Errors: ``DnaError`` (a ValueError, one line) for a DNA that does not parse or validate.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal

from amarktai_tui.domain.enums import RiskMode
from amarktai_tui.domain.types import split_pair
from amarktai_tui.exchanges.registry import EXCHANGES
from amarktai_tui.strategies.base import StrategyParamError
from amarktai_tui.strategies.params import ParamSpec, ParamValue, SearchRange
from amarktai_tui.strategies.registry import STRATEGIES, make_strategy

__all__ = [
    "CAPITAL_SHARE_MAX",
    "CAPITAL_SHARE_MIN",
    "Dna",
    "DnaError",
    "GeneSpace",
    "ParamRange",
    "crossover",
    "mutate",
    "random_dna",
    "repair",
]

CAPITAL_SHARE_MIN = Decimal("0.05")
CAPITAL_SHARE_MAX = Decimal("0.50")
CAPITAL_SHARE_STEP = Decimal("0.01")
INT_SEARCH_CAP = 200
"""Int parameters whose validation maximum is above this are searched up to it."""
FLOAT_PLACES = 2
MUTATION_SIGMA = 0.2
"""A numeric mutation's Gaussian step, as a fraction of the gene's range."""

_CONSTRAINT = re.compile(r"^\s*(\w+)\s*<\s*(\w+)\s*$")


class DnaError(ValueError):
    """A DNA that does not parse or validate; ``str()`` is one line naming the gene."""


@dataclass(frozen=True, slots=True)
class Dna:
    """One bot's genes (module doc). ``params`` are the strategy's effective parameters."""

    strategy: str
    params: dict[str, ParamValue]
    pair: str
    exchange: str
    risk_mode: RiskMode
    capital_share: Decimal
    timeframe: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``capital_share`` as a decimal string, ``risk_mode`` its value."""
        out: dict[str, Any] = {
            "strategy": self.strategy,
            "params": dict(self.params),
            "pair": self.pair,
            "exchange": self.exchange,
            "risk_mode": self.risk_mode.value,
            "capital_share": str(self.capital_share),
        }
        if self.timeframe is not None:
            out["timeframe"] = self.timeframe
        return out

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys): equal DNAs give equal texts."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def key(self) -> str:
        """Identity of the genes (the canonical JSON), e.g. to cache an evaluation."""
        return self.to_json()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Dna:
        """Parse and validate (strategy known, params in their validation ranges, pair ``B/Q``,
        a registry exchange, a risk mode, 0 < capital_share <= 1). Raises DnaError."""
        if not isinstance(d, Mapping):
            raise DnaError("DNA must be a JSON object")
        missing = [k for k in ("strategy", "pair", "exchange", "risk_mode", "capital_share") if k not in d]
        if missing:
            raise DnaError(f"DNA lacks {', '.join(missing)}")
        params = d.get("params") or {}
        if not isinstance(params, Mapping):
            raise DnaError("DNA params must be an object")
        try:
            effective = dict(make_strategy(str(d["strategy"]), params).params)
        except StrategyParamError as exc:
            raise DnaError(f"DNA {str(exc).splitlines()[0]}") from None
        try:
            split_pair(str(d["pair"]))
        except ValueError as exc:
            raise DnaError(f"DNA pair: {exc}") from None
        if d["exchange"] not in EXCHANGES:
            raise DnaError(f"DNA exchange {d['exchange']!r} unknown; one of {', '.join(EXCHANGES)}")
        try:
            mode = RiskMode(d["risk_mode"])
        except ValueError:
            modes = ", ".join(m.value for m in RiskMode)
            raise DnaError(f"DNA risk_mode {d['risk_mode']!r} unknown; one of {modes}") from None
        try:
            share = Decimal(str(d["capital_share"]))
        except InvalidOperation:
            raise DnaError(f"DNA capital_share {d['capital_share']!r} is not a number") from None
        if not share.is_finite() or not 0 < share <= 1:
            raise DnaError(f"DNA capital_share {share} must be in (0, 1]")
        tf = d.get("timeframe")
        return cls(
            str(d["strategy"]),
            effective,
            str(d["pair"]),
            str(d["exchange"]),
            mode,
            share,
            None if tf is None else str(tf),
        )

    @classmethod
    def from_json(cls, text: str) -> Dna:
        """``from_dict`` of JSON text. Raises DnaError (also for bad JSON)."""
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DnaError(f"DNA is not valid JSON: {exc.msg}") from None
        return cls.from_dict(value)


@dataclass(frozen=True, slots=True)
class ParamRange:
    """Search range of one strategy parameter: ``int`` and ``float`` in [low, high] (inclusive),
    ``choice`` one of ``choices``."""

    name: str
    kind: Literal["int", "float", "choice"]
    low: float = 0.0
    high: float = 0.0
    choices: tuple[str, ...] = ()
    log: bool = False
    above: str | None = None

    @classmethod
    def of(cls, strategy: str, spec: ParamSpec) -> ParamRange:
        """The search range of ``spec`` (the strategy's ``SEARCH``, else derived: module doc)."""
        if spec.kind == "choice":
            return cls(spec.name, "choice", choices=spec.choices)
        search: Mapping[str, SearchRange] = getattr(STRATEGIES[strategy], "SEARCH", {})
        sr = search.get(spec.name)
        if sr is not None:
            return cls(spec.name, spec.kind, float(sr.low), float(sr.high), log=sr.log, above=sr.above)
        lo = spec.minimum if spec.minimum is not None else float(spec.default) - 100
        hi = spec.maximum if spec.maximum is not None else float(spec.default) + 100
        if spec.kind == "int":
            lo, hi = (
                math.ceil(lo + (1 if spec.exclusive else 0)),
                math.floor(hi - (1 if spec.exclusive else 0)),
            )
            return cls(spec.name, "int", float(lo), float(min(hi, max(lo, INT_SEARCH_CAP))))
        if spec.exclusive:
            pad = (hi - lo) / 100
            lo, hi = lo + pad, hi - pad
        return cls(spec.name, "float", round(lo, FLOAT_PLACES), round(hi, FLOAT_PLACES))

    @property
    def size(self) -> float:
        """How many values (choices, ints) or the span (floats)."""
        if self.kind == "choice":
            return len(self.choices)
        if self.kind == "int":
            return self.high - self.low + 1
        return self.high - self.low

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind == "int" and not float(value).is_integer():
            return False
        return self.low <= value <= self.high

    def clamp(self, value: Any) -> ParamValue:
        """``value`` inside the range (a choice not allowed becomes the first one)."""
        if self.kind == "choice":
            return value if value in self.choices else self.choices[0]
        v = min(max(float(value), self.low), self.high)
        return round(v) if self.kind == "int" else round(v, FLOAT_PLACES)

    def draw(self, rng: random.Random) -> ParamValue:
        """A uniform value within the range."""
        if self.kind == "choice":
            return rng.choice(self.choices)
        if self.log and self.low > 0:
            return self.clamp(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        if self.kind == "int":
            return rng.randint(int(self.low), int(self.high))
        return round(rng.uniform(self.low, self.high), FLOAT_PLACES)

    def step(self, value: Any, rng: random.Random) -> ParamValue:
        """A different value within the range (module doc); ``value`` itself when none exists."""
        if self.kind == "choice":
            others = [c for c in self.choices if c != value]
            return rng.choice(others) if others else value
        unit = 1.0 if self.kind == "int" else 10.0**-FLOAT_PLACES
        log = self.log and self.low > 0
        return _numeric_step(float(value), self.low, self.high, unit, rng, self.kind == "int", log)


def _numeric_step(
    value: float, lo: float, hi: float, unit: float, rng: random.Random, whole: bool, log: bool = False
) -> int | float:
    if hi - lo < unit / 2:
        return round(value) if whole else value
    if log:  # a Gaussian step of the logarithm: lengths move by ratios, not by candles
        delta = value * math.expm1(rng.gauss(0.0, MUTATION_SIGMA * math.log(hi / lo)))
    else:
        delta = rng.gauss(0.0, MUTATION_SIGMA * (hi - lo))
    if abs(delta) < unit:
        delta = unit if delta >= 0 else -unit
    new = min(max(value + delta, lo), hi)
    new = float(round(new)) if whole else round(new, FLOAT_PLACES)
    if abs(new - value) < unit / 2:  # clamped back onto the old value at a bound: go the other way
        new = value - unit if value + unit > hi else value + unit
        new = min(max(new, lo), hi)
    return int(new) if whole else round(new, FLOAT_PLACES)


@dataclass(frozen=True, slots=True)
class GeneSpace:
    """The bounds of every gene (module doc). ``risk_modes`` default to all of them."""

    strategies: tuple[str, ...]
    pairs: tuple[str, ...]
    exchanges: tuple[str, ...]
    risk_modes: tuple[RiskMode, ...] = tuple(RiskMode)
    capital_share: tuple[Decimal, Decimal] = (CAPITAL_SHARE_MIN, CAPITAL_SHARE_MAX)
    timeframes: Mapping[str, str] = field(default_factory=dict)
    """pair -> the timeframe of its candles (copied into each DNA's ``timeframe``)."""

    def __post_init__(self) -> None:
        for name, values in (
            ("strategies", self.strategies),
            ("pairs", self.pairs),
            ("exchanges", self.exchanges),
        ):
            if not values:
                raise DnaError(f"gene space: no {name} to choose from")
        for s in self.strategies:
            if s not in STRATEGIES:
                raise DnaError(
                    f"gene space: unknown strategy {s!r}; valid strategies: {', '.join(STRATEGIES)}"
                )
        for ex in self.exchanges:
            if ex not in EXCHANGES:
                raise DnaError(f"gene space: unknown exchange {ex!r}; one of {', '.join(EXCHANGES)}")
        if not self.risk_modes:
            raise DnaError("gene space: no risk modes to choose from")
        lo, hi = self.capital_share
        if not 0 < lo <= hi <= 1:
            raise DnaError(f"gene space: capital_share bounds {lo}..{hi} must satisfy 0 < low <= high <= 1")

    def params(self, strategy: str) -> tuple[ParamRange, ...]:
        """Search ranges of ``strategy``'s parameters, in its declared order."""
        return tuple(ParamRange.of(strategy, spec) for spec in STRATEGIES[strategy].PARAMS)

    def genes(self, dna: Dna) -> dict[str, Any]:
        """``{gene name: value}``: strategy, pair, exchange, risk_mode, capital_share, params.<name>."""
        out: dict[str, Any] = {
            "strategy": dna.strategy,
            "pair": dna.pair,
            "exchange": dna.exchange,
            "risk_mode": dna.risk_mode,
            "capital_share": dna.capital_share,
        }
        out.update({f"params.{k}": v for k, v in dna.params.items()})
        return out

    def violations(self, dna: Dna) -> list[str]:
        """Genes outside their bounds (``"gene=value"``); empty when ``dna`` is within them."""
        bad = []
        for gene, value, allowed in (
            ("strategy", dna.strategy, self.strategies),
            ("pair", dna.pair, self.pairs),
            ("exchange", dna.exchange, self.exchanges),
            ("risk_mode", dna.risk_mode, self.risk_modes),
        ):
            if value not in allowed:
                bad.append(f"{gene}={value}")
        lo, hi = self.capital_share
        if not lo <= dna.capital_share <= hi or dna.capital_share != _share(dna.capital_share):
            bad.append(f"capital_share={dna.capital_share}")
        if dna.strategy in STRATEGIES:
            ranges = {r.name: r for r in self.params(dna.strategy)}
            if set(ranges) != set(dna.params):
                bad.append(f"params={sorted(dna.params)}")
            bad += [
                f"params.{k}={v}" for k, v in dna.params.items() if k in ranges and not ranges[k].contains(v)
            ]
            try:
                make_strategy(dna.strategy, dna.params)
            except StrategyParamError as exc:
                bad.append(str(exc).splitlines()[0])
        return bad

    def clamp(self, dna: Dna) -> Dna:
        """``dna`` moved inside the bounds: a value not allowed becomes the first allowed one,
        numbers are clamped, parameters of the strategy filled in and repaired."""
        strategy = dna.strategy if dna.strategy in self.strategies else self.strategies[0]
        given = dna.params if strategy == dna.strategy else {}
        params: dict[str, ParamValue] = {}
        for r in self.params(strategy):
            default = next(s.default for s in STRATEGIES[strategy].PARAMS if s.name == r.name)
            params[r.name] = r.clamp(given.get(r.name, default))
        lo, hi = self.capital_share
        return repair(
            self,
            Dna(
                strategy,
                params,
                dna.pair if dna.pair in self.pairs else self.pairs[0],
                dna.exchange if dna.exchange in self.exchanges else self.exchanges[0],
                dna.risk_mode if dna.risk_mode in self.risk_modes else self.risk_modes[0],
                min(max(_share(dna.capital_share), lo), hi),
            ),
        )


def _share(value: Decimal) -> Decimal:
    return value.quantize(CAPITAL_SHARE_STEP, rounding=ROUND_HALF_UP)


def _with_timeframe(space: GeneSpace, dna: Dna) -> Dna:
    tf = space.timeframes.get(dna.pair, dna.timeframe)
    return dna if tf == dna.timeframe else Dna(**{**_fields(dna), "timeframe": tf})


def _fields(dna: Dna) -> dict[str, Any]:
    return {
        "strategy": dna.strategy,
        "params": dict(dna.params),
        "pair": dna.pair,
        "exchange": dna.exchange,
        "risk_mode": dna.risk_mode,
        "capital_share": dna.capital_share,
        "timeframe": dna.timeframe,
    }


def repair(space: GeneSpace, dna: Dna) -> Dna:
    """``dna`` with its strategy's ``"a < b"`` constraints holding (module doc) and its timeframe
    set from the space's pair; the parameters stay within their search ranges."""
    params = dict(dna.params)
    ranges = {r.name: r for r in space.params(dna.strategy)}
    rules = [
        (m.group(1), m.group(2)) for c in STRATEGIES[dna.strategy].CONSTRAINTS if (m := _CONSTRAINT.match(c))
    ]
    rules += [(r.above, r.name) for r in ranges.values() if r.above and (r.above, r.name) not in rules]
    for a, b in rules:
        if a not in ranges or b not in ranges:
            continue
        ra, rb = ranges[a], ranges[b]
        va, vb = float(params[a]), float(params[b])
        if va > vb:
            va, vb = vb, va
        unit = 1.0 if ra.kind == "int" and rb.kind == "int" else 10.0**-FLOAT_PLACES
        if va >= vb:  # equal: nudge apart within the ranges
            if vb + unit <= rb.high:
                vb += unit
            else:
                va -= unit
        va, vb = float(ra.clamp(va)), float(rb.clamp(vb))
        if va >= vb:  # the ranges forbid it: the lowest of a and the highest of b
            va, vb = ra.low, rb.high
        params[a], params[b] = ra.clamp(va), rb.clamp(vb)
    out = Dna(**{**_fields(dna), "params": params})
    return _with_timeframe(space, out)


def random_dna(space: GeneSpace, rng: random.Random) -> Dna:
    """A DNA with every gene drawn uniformly within its bounds."""
    strategy = rng.choice(space.strategies)
    params = {r.name: r.draw(rng) for r in space.params(strategy)}
    pair = rng.choice(space.pairs)
    exchange = rng.choice(space.exchanges)
    mode = rng.choice(space.risk_modes)
    share = _draw_share(space, rng)
    return repair(space, Dna(strategy, params, pair, exchange, mode, share))


def _draw_share(space: GeneSpace, rng: random.Random) -> Decimal:
    lo, hi = space.capital_share
    steps = int((hi - lo) / CAPITAL_SHARE_STEP)
    return _share(lo + CAPITAL_SHARE_STEP * rng.randint(0, steps))


def _pick(rng: random.Random, a: Any, b: Any) -> Any:
    return a if rng.random() < 0.5 else b


def crossover(space: GeneSpace, a: Dna, b: Dna, rng: random.Random) -> Dna:
    """A child of ``a`` and ``b``: uniform per gene; parameters crossed per parameter only when
    both parents run the same strategy (module doc). Parents are expected within ``space``."""
    strategy = _pick(rng, a.strategy, b.strategy)
    if a.strategy == b.strategy:
        params = {k: _pick(rng, a.params[k], b.params[k]) for k in a.params}
    else:
        params = dict(a.params if strategy == a.strategy else b.params)
    pair = _pick(rng, a.pair, b.pair)
    exchange = _pick(rng, a.exchange, b.exchange)
    mode = _pick(rng, a.risk_mode, b.risk_mode)
    share = _pick(rng, a.capital_share, b.capital_share)
    return repair(space, Dna(strategy, params, pair, exchange, mode, share))


def _step_choice(values: Iterable[Any], current: Any, rng: random.Random) -> Any:
    others = [v for v in values if v != current]
    return rng.choice(others) if others else current


def mutate(space: GeneSpace, dna: Dna, rng: random.Random, rate: float = 0.15) -> Dna:
    """``dna`` with each gene changed with probability ``rate`` (module doc). One draw per gene
    in a fixed order (strategy, params in declared order, pair, exchange, risk_mode,
    capital_share), so a seed reproduces the result."""
    strategy, params = dna.strategy, dict(dna.params)
    if rng.random() < rate and len(space.strategies) > 1:
        strategy = _step_choice(space.strategies, strategy, rng)
        params = {r.name: r.draw(rng) for r in space.params(strategy)}
    else:
        for r in space.params(strategy):
            if rng.random() < rate:
                params[r.name] = r.step(params[r.name], rng)
    pair = _step_choice(space.pairs, dna.pair, rng) if rng.random() < rate else dna.pair
    exchange = _step_choice(space.exchanges, dna.exchange, rng) if rng.random() < rate else dna.exchange
    mode = _step_choice(space.risk_modes, dna.risk_mode, rng) if rng.random() < rate else dna.risk_mode
    share = dna.capital_share
    if rng.random() < rate:
        lo, hi = space.capital_share
        unit = float(CAPITAL_SHARE_STEP)
        share = _share(Decimal(str(_numeric_step(float(share), float(lo), float(hi), unit, rng, False))))
    return repair(space, Dna(strategy, params, pair, exchange, mode, share))
