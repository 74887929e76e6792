"""What an automatic change may set: the protected figures, the bounds, and ``clamp`` per field.

Protected (``PROTECTED_FIELDS``): the account's max daily loss, max drawdown (account and bot), the
total capital and the trading mode, under every alias the AI console knows
(``ai.tools.PROTECTED_PARAMS``). No automatic process and no AI changes them: a change naming one is
refused (``autonomy.changes``). A params change naming one of ``PROTECTED_PARAMS`` (which also holds
``capital`` and ``risk_mode``: never strategy parameters) is refused the same way.

Bounds (``Bounds``, from ``[autonomy.bounds]``), applied in autonomous mode and when a proposal is
accepted (``clamp``), per field:

- ``size_multiplier``: into [size_multiplier_min, size_multiplier_max];
- ``stop_loss``, ``take_profit``: fractions of the entry price into their [min, max]; None (off) is
  refused: an automatic change never removes a protective exit;
- risk per trade, as a fraction of the bot's capital::

      risk_per_trade = MAX_NOTIONAL_FRACTION[risk_mode] x size_multiplier x stop_loss

  (``risk.sizing``: the largest entry notional as a share of capital, times the loss when the
  stop-loss is hit). It must lie in [risk_per_trade_min, risk_per_trade_max] after a change of
  ``size_multiplier``, ``stop_loss`` or ``risk_mode``. A bot without a stop-loss has no such figure
  (the risk mode's notional cap is then its only limit) and the check is skipped. When the figure
  is out of range the changed quantity gives way: a ``size_multiplier`` or ``stop_loss`` change is
  moved to the nearest value that fits (still inside its own range); a ``risk_mode`` change moves
  the bot's size multiplier with it (the applied value is then the pair, see ``clamp``); when no
  value fits, the change is refused with the figures (``BoundsRefusal``).
- ``params``: each value into its strategy ``ParamSpec`` range (``strategies.params``): an int
  parameter is rounded to the nearest integer, an inclusive range is clamped to, a value outside an
  exclusive range or an unknown choice is refused; then the merged parameters must build the
  strategy (``make_strategy``: its cross-parameter constraints, e.g. ``fast < slow``);
- ``capital``: the bot's new capital in quote, > 0, rounded down to 0.01 (the money moves between
  the account pool and the bot only: ``autonomy.changes`` limits it to what the pool and the bot's
  free cash allow);
- ``state``: ``paused`` | ``running`` | ``stopped``;
- ``replace``: a DNA dict for a new paper bot (``REPLACE_KEYS``); missing keys take the replaced
  bot's values; its params, exits and risk per trade are bounded as above (size multiplier 1);
- ``spawn``: the same DNA dict, bounded the same way, the missing keys taken from the change's bot
  (the sponsor: the bot the DNA or its exits come from); a new paper bot, nobody retired.

All figures are Decimal; nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from amarktai_tui.ai.tools import PROTECTED_PARAMS
from amarktai_tui.autonomy.settings import BoundsSettings
from amarktai_tui.domain.enums import RiskMode
from amarktai_tui.ledger.store import BotRecord
from amarktai_tui.risk.sizing import MAX_NOTIONAL_FRACTION
from amarktai_tui.strategies.registry import STRATEGIES, make_strategy

__all__ = [
    "CHANGE_FIELDS",
    "NEW_BOT_FIELDS",
    "PROTECTED_FIELDS",
    "PROTECTED_PARAMS",
    "REPLACE_KEYS",
    "SOURCES",
    "STATES",
    "Bounds",
    "BoundsRefusal",
    "clamp",
    "coerce",
    "risk_per_trade",
]

CHANGE_FIELDS: tuple[str, ...] = (
    "params",
    "risk_mode",
    "size_multiplier",
    "stop_loss",
    "take_profit",
    "capital",
    "state",
    "replace",
    "spawn",
)
"""The fields a ``Change`` may name (``autonomy.changes``)."""
NEW_BOT_FIELDS: tuple[str, ...] = ("replace", "spawn")
"""Fields whose change creates a paper bot from a DNA dict: not revertible (stop that bot instead)."""

PROTECTED_FIELDS: frozenset[str] = frozenset(PROTECTED_PARAMS - set(CHANGE_FIELDS))
"""Max daily loss, max drawdown (account and bot), total capital, trading mode, with their aliases
(``max_daily_loss``, ``account_daily_loss``, ``daily_loss``, ``max_drawdown``,
``account_max_drawdown``, ``bot_max_drawdown``, ``total_capital``, ``starting_balance``,
``trading_mode``, ``mode``). A bot's own ``capital`` (moved from/to the pool, the total unchanged)
and ``risk_mode`` are change fields, not protected figures."""

SOURCES: tuple[str, ...] = (
    "optimizer",
    "learning",
    "regime",
    "evolution",
    "autopilot",
    "healing",
    "user",
    "ai",
)
STATES: tuple[str, ...] = ("paused", "running", "stopped")
REPLACE_KEYS: tuple[str, ...] = (
    "name",
    "exchange",
    "pair",
    "timeframe",
    "strategy",
    "params",
    "risk_mode",
    "capital",
    "stop_loss",
    "take_profit",
    "trailing_stop",
    "dna_id",
)
"""Keys of a ``replace``/``spawn`` DNA dict that are used; other keys are kept in the record and ignored."""

_STEP = Decimal("0.0001")  # fractions and multipliers computed from the risk formula
_CENT = Decimal("0.01")


class BoundsRefusal(ValueError):
    """A change that cannot be brought within the bounds (or is malformed); the message says why."""


@dataclass(frozen=True, slots=True)
class Bounds:
    """Closed ranges ``(lo, hi)`` of what an automatic change may set (fractions, multiplier)."""

    risk_per_trade: tuple[Decimal, Decimal]
    stop_loss: tuple[Decimal, Decimal]
    take_profit: tuple[Decimal, Decimal]
    size_multiplier: tuple[Decimal, Decimal]

    @classmethod
    def from_settings(cls, s: BoundsSettings) -> Bounds:
        return cls(
            (s.risk_per_trade_min, s.risk_per_trade_max),
            (s.stop_loss_min, s.stop_loss_max),
            (s.take_profit_min, s.take_profit_max),
            (s.size_multiplier_min, s.size_multiplier_max),
        )

    def as_json(self) -> dict[str, list[str]]:
        """``{"risk_per_trade": [lo, hi], ...}`` as decimal strings."""
        return {
            name: [str(lo), str(hi)]
            for name, (lo, hi) in (
                ("risk_per_trade", self.risk_per_trade),
                ("stop_loss", self.stop_loss),
                ("take_profit", self.take_profit),
                ("size_multiplier", self.size_multiplier),
            )
        }


def risk_per_trade(
    risk_mode: RiskMode, size_multiplier: Decimal, stop_loss: Decimal | None
) -> Decimal | None:
    """Capital fraction lost when a full-size entry hits its stop-loss:
    ``MAX_NOTIONAL_FRACTION[risk_mode] x size_multiplier x stop_loss``; None without a stop-loss."""
    if stop_loss is None:
        return None
    return MAX_NOTIONAL_FRACTION[risk_mode] * size_multiplier * stop_loss


# -- parsing ---------------------------------------------------------------------------------------


def _decimal(field: str, raw: Any) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, Decimal | int | float | str):
        raise BoundsRefusal(f"{field}: expected a number, got {type(raw).__name__}")
    try:
        v = Decimal(str(raw).strip()) if not isinstance(raw, Decimal) else raw
    except InvalidOperation:
        raise BoundsRefusal(f"{field}: {raw!r} is not a number") from None
    if not v.is_finite():
        raise BoundsRefusal(f"{field}: {raw!r} is not a finite number")
    return v


def _fraction(field: str, raw: Any) -> Decimal | None:
    if raw is None:
        return None
    v = _decimal(field, raw)
    if not 0 < v < 1:
        raise BoundsRefusal(f"{field}: {v} must be a fraction with 0 < x < 1 (0.05 = 5%), or None")
    return v


def coerce(field: str, raw: Any) -> Any:
    """``raw`` (a Change's ``after``, or a value decoded from JSON) as the field's type, no bounds:
    params -> dict; risk_mode -> RiskMode; size_multiplier, capital -> Decimal (> 0);
    stop_loss, take_profit -> Decimal fraction or None; state -> str; replace, spawn -> dict.
    Raises BoundsRefusal (one line) for an unknown field or a malformed value."""
    if field in ("params", "replace", "spawn"):
        if not isinstance(raw, Mapping):
            raise BoundsRefusal(f"{field}: expected a JSON object, got {type(raw).__name__}")
        return {str(k): v for k, v in raw.items()}
    if field == "risk_mode":
        try:
            return RiskMode(raw.value if isinstance(raw, RiskMode) else str(raw))
        except ValueError:
            raise BoundsRefusal(
                f"risk_mode: {raw!r} is not one of {', '.join(m.value for m in RiskMode)}"
            ) from None
    if field in ("size_multiplier", "capital"):
        v = _decimal(field, raw)
        if v <= 0:
            raise BoundsRefusal(f"{field}: {v} must be > 0")
        return v
    if field in ("stop_loss", "take_profit"):
        return _fraction(field, raw)
    if field == "state":
        if raw not in STATES:
            raise BoundsRefusal(f"state: {raw!r} is not one of {', '.join(STATES)}")
        return str(raw)
    raise BoundsRefusal(f"unknown field {field!r}; expected one of {', '.join(CHANGE_FIELDS)}")


# -- clamping --------------------------------------------------------------------------------------


def _into(field: str, v: Decimal, lo: Decimal, hi: Decimal, notes: list[str]) -> Decimal:
    if v < lo or v > hi:
        out = lo if v < lo else hi
        notes.append(f"{field} {v} clamped to {out} (bounds {lo}-{hi})")
        return out
    return v


def _rpt_text(rm: RiskMode, m: Decimal, sl: Decimal) -> str:
    rpt = risk_per_trade(rm, m, sl)
    assert rpt is not None
    return f"{MAX_NOTIONAL_FRACTION[rm]} ({rm.value}) x {m} x stop-loss {sl} = {rpt.normalize():f}"


def _fit_multiplier(rm: RiskMode, m: Decimal, sl: Decimal | None, b: Bounds, notes: list[str]) -> Decimal:
    """``m`` moved (within the multiplier bounds) so the risk per trade fits; BoundsRefusal if none does."""
    rpt = risk_per_trade(rm, m, sl)
    if rpt is None or sl is None:
        return m
    lo, hi = b.risk_per_trade
    if lo <= rpt <= hi:
        return m
    unit = MAX_NOTIONAL_FRACTION[rm] * sl  # risk per trade at multiplier 1
    mlo, mhi = b.size_multiplier
    new = (hi / unit).quantize(_STEP, ROUND_FLOOR) if rpt > hi else (lo / unit).quantize(_STEP, ROUND_CEILING)
    if not mlo <= new <= mhi:
        side = "above" if rpt > hi else "below"
        raise BoundsRefusal(
            f"risk per trade {_rpt_text(rm, m, sl)} is {side} {lo}-{hi} and no size multiplier in "
            f"{mlo}-{mhi} brings it within"
        )
    notes.append(
        f"size_multiplier {m} -> {new} to keep risk per trade within {lo}-{hi} ({_rpt_text(rm, m, sl)})"
    )
    return new


def _fit_stop(rm: RiskMode, m: Decimal, sl: Decimal, b: Bounds, notes: list[str]) -> Decimal:
    """``sl`` moved (within the stop-loss bounds) so the risk per trade fits; BoundsRefusal if none does."""
    rpt = MAX_NOTIONAL_FRACTION[rm] * m * sl
    lo, hi = b.risk_per_trade
    if lo <= rpt <= hi:
        return sl
    unit = MAX_NOTIONAL_FRACTION[rm] * m
    slo, shi = b.stop_loss
    new = (hi / unit).quantize(_STEP, ROUND_FLOOR) if rpt > hi else (lo / unit).quantize(_STEP, ROUND_CEILING)
    if not slo <= new <= shi:
        side = "above" if rpt > hi else "below"
        raise BoundsRefusal(
            f"risk per trade {_rpt_text(rm, m, sl)} is {side} {lo}-{hi} and no stop-loss in {slo}-{shi} "
            "brings it within"
        )
    notes.append(f"stop_loss {sl} -> {new} to keep risk per trade within {lo}-{hi} ({_rpt_text(rm, m, sl)})")
    return new


def _exit(field: str, v: Decimal | None, rng: tuple[Decimal, Decimal], notes: list[str]) -> Decimal:
    if v is None:
        raise BoundsRefusal(f"{field}: an automatic change never turns a protective exit off")
    return _into(field, v, rng[0], rng[1], notes)


def clamp_params(
    strategy: str, current: Mapping[str, Any], given: Mapping[str, Any], notes: list[str]
) -> dict[str, Any]:
    """``given`` merged over ``current``, each given value into its ParamSpec range, checked by building
    the strategy; the effective parameters (all of them). BoundsRefusal names what cannot be fixed."""
    cls = STRATEGIES.get(strategy)
    if cls is None:
        raise BoundsRefusal(f"strategy {strategy!r} has no adjustable parameters")
    specs = {p.name: p for p in cls.PARAMS}
    protected = sorted(k for k in given if k.lower() in PROTECTED_PARAMS)
    if protected:
        raise BoundsRefusal(f"{', '.join(protected)}: protected, not a strategy parameter")
    out: dict[str, Any] = {}
    for key, raw in given.items():
        spec = specs.get(key)
        if spec is None:
            raise BoundsRefusal(
                f"{strategy}: unknown parameter {key!r}; valid parameters: {', '.join(specs)}"
            )
        if spec.kind == "choice":
            if raw not in spec.choices:
                raise BoundsRefusal(f"{strategy}: {key}={raw!r} is not {spec.range_text()}")
            out[key] = raw
            continue
        if isinstance(raw, bool) or not isinstance(raw, int | float | Decimal) or not math.isfinite(raw):
            raise BoundsRefusal(f"{strategy}: {key}={raw!r} is not a finite number")
        num: int | float = raw if isinstance(raw, int) else float(raw)
        if spec.kind == "int" and not isinstance(num, int):
            num = round(num)
            notes.append(f"{key} {raw} rounded to {num}")
        lo, hi = spec.minimum, spec.maximum
        if spec.exclusive:
            if (lo is not None and num <= lo) or (hi is not None and num >= hi):
                raise BoundsRefusal(f"{strategy}: {key}={raw!r} is not {spec.range_text()}")
        elif lo is not None and num < lo:
            notes.append(f"{key} {num} clamped to {lo:g} ({spec.range_text()})")
            num = int(lo) if spec.kind == "int" else lo
        elif hi is not None and num > hi:
            notes.append(f"{key} {num} clamped to {hi:g} ({spec.range_text()})")
            num = int(hi) if spec.kind == "int" else hi
        out[key] = num
    try:
        return dict(make_strategy(strategy, {**current, **out}).params)
    except ValueError as exc:  # StrategyParamError: a cross-parameter constraint, named
        raise BoundsRefusal(str(exc).strip().splitlines()[0]) from None


def clamp(field: str, after: Any, rec: BotRecord, bounds: Bounds) -> tuple[Any, str]:
    """``after`` for ``field`` of bot ``rec``, brought within ``bounds``: ``(value, note)``, the note
    saying what was moved and why ("" when nothing was).

    Values: params -> the full effective params dict; risk_mode -> ``{"risk_mode": RiskMode,
    "size_multiplier": Decimal}`` (the multiplier the bot will have with it, moved only when the risk
    per trade needs it); size_multiplier, stop_loss, take_profit -> Decimal; capital -> Decimal
    (quote, > 0, rounded down to 0.01); state -> str; replace, spawn -> the DNA dict with ``REPLACE_KEYS``
    filled from ``rec`` and bounded (``capital`` a Decimal, ``risk_mode`` a RiskMode).
    Raises BoundsRefusal (one line with the figures) when no value within the bounds fits, or the
    value is malformed. See the module docstring for the rules and the risk-per-trade formula.
    """
    notes: list[str] = []
    value = coerce(field, after)
    b = bounds
    if field == "params":
        out: Any = clamp_params(rec.strategy, rec.params, value, notes)
    elif field == "size_multiplier":
        m = _into("size_multiplier", value, *b.size_multiplier, notes)
        out = _fit_multiplier(rec.risk_mode, m, rec.stop_loss, b, notes)
    elif field == "stop_loss":
        sl = _exit("stop_loss", value, b.stop_loss, notes)
        out = _fit_stop(rec.risk_mode, rec.size_multiplier, sl, b, notes)
    elif field == "take_profit":
        out = _exit("take_profit", value, b.take_profit, notes)
    elif field == "risk_mode":
        m = _fit_multiplier(value, rec.size_multiplier, rec.stop_loss, b, notes)
        out = {"risk_mode": value, "size_multiplier": m}
    elif field == "capital":
        out = value.quantize(_CENT, ROUND_DOWN)
        if out <= 0:
            raise BoundsRefusal(f"capital: {value} rounds down to {out}; it must be > 0")
    elif field == "state":
        out = value
    else:  # replace, spawn
        out = clamp_dna(value, rec, b, notes, field=field)
    return out, "; ".join(notes)


def clamp_dna(
    dna: Mapping[str, Any], rec: BotRecord, b: Bounds, notes: list[str], *, field: str = "replace"
) -> dict[str, Any]:
    """A ``replace``/``spawn`` DNA dict completed from ``rec`` and bounded (see ``clamp``); refusals
    name ``field``."""
    out: dict[str, Any] = dict(dna)
    for key in ("exchange", "pair", "timeframe", "strategy"):
        v = dna.get(key, getattr(rec, key))
        if not isinstance(v, str) or not v:
            raise BoundsRefusal(f"{field}: {key} must be a non-empty string")
        out[key] = v
    for key in ("name", "dna_id"):
        v = dna.get(key)
        if v is not None and (not isinstance(v, str) or not v.strip() or len(v) > 64):
            raise BoundsRefusal(f"{field}: {key} must be a name of 1-64 characters")
    same = out["strategy"] == rec.strategy
    params = coerce("params", dna.get("params", rec.params if same else {}))
    out["params"] = clamp_params(out["strategy"], {}, params, notes)
    rm = coerce("risk_mode", dna.get("risk_mode", rec.risk_mode))
    out["risk_mode"] = rm
    out["capital"] = coerce("capital", dna.get("capital", rec.capital)).quantize(_CENT, ROUND_DOWN)
    if out["capital"] <= 0:
        raise BoundsRefusal(f"{field}: capital must be at least 0.01")
    sl = _exit("stop_loss", _fraction("stop_loss", dna.get("stop_loss", rec.stop_loss)), b.stop_loss, notes)
    out["stop_loss"] = _fit_stop(rm, Decimal(1), sl, b, notes)
    tp = _fraction("take_profit", dna.get("take_profit", rec.take_profit))
    out["take_profit"] = None if tp is None else _into("take_profit", tp, *b.take_profit, notes)
    out["trailing_stop"] = _fraction("trailing_stop", dna.get("trailing_stop", rec.trailing_stop))
    return out
