"""The ``[autonomy]`` config section and its sub-sections (pydantic models).

Kept out of ``config.py`` so the autonomy package owns its knobs; ``config.Settings``
lists ``autonomy: AutonomySettings``. Fractions are Decimal fractions (0.02 = 2 %).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

REGIMES = ("trending_up", "trending_down", "ranging", "volatile", "squeeze", "unknown")


def _hhmm(v: str) -> str:
    import re

    if not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", v):
        raise ValueError("expected a UTC time HH:MM, 00:00 to 23:59")
    return v


def _regime_keys(v: dict[str, object]) -> dict[str, object]:
    for key in v:
        if key not in REGIMES:
            raise ValueError(f"unknown regime {key!r}; expected one of {', '.join(REGIMES)}")
    return v


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BoundsSettings(_Section):
    """What an automatic change may set (autonomous mode); a change outside is clamped to them."""

    risk_per_trade_min: Decimal = Field(default=Decimal("0.005"), gt=0, lt=1)
    """Lowest capital fraction at risk per trade = risk mode's max notional x size multiplier x stop-loss."""
    risk_per_trade_max: Decimal = Field(default=Decimal("0.02"), gt=0, lt=1)
    """Highest capital fraction at risk per trade (same formula)."""
    stop_loss_min: Decimal = Field(default=Decimal("0.01"), gt=0, lt=1)
    stop_loss_max: Decimal = Field(default=Decimal("0.10"), gt=0, lt=1)
    take_profit_min: Decimal = Field(default=Decimal("0.02"), gt=0, lt=1)
    take_profit_max: Decimal = Field(default=Decimal("0.10"), gt=0, lt=1)
    size_multiplier_min: Decimal = Field(default=Decimal("0.7"), gt=0, le=10)
    size_multiplier_max: Decimal = Field(default=Decimal("1.3"), gt=0, le=10)

    @model_validator(mode="after")
    def _ordered(self) -> BoundsSettings:
        for name in ("risk_per_trade", "stop_loss", "take_profit", "size_multiplier"):
            lo, hi = getattr(self, f"{name}_min"), getattr(self, f"{name}_max")
            if lo > hi:
                raise ValueError(f"{name}_min {lo} is above {name}_max {hi}")
        return self


class RegimeSettings(_Section):
    """Market regimes from ADX(14), Bollinger band width and ATR% (``autonomy.regime``)."""

    enabled: bool = True
    """Classify each pair's regime (shown per bot in the TUI); scaling applies in autonomous mode only."""
    size_scaling: Annotated[dict[str, Decimal], AfterValidator(_regime_keys)] = Field(
        default_factory=lambda: {
            "trending_up": Decimal("1.2"),
            "trending_down": Decimal("0.6"),
            "ranging": Decimal("1.0"),
            "volatile": Decimal("0.5"),
            "squeeze": Decimal("0.7"),
            "unknown": Decimal("0.8"),
        }
    )
    """Position size multiplier per regime (autonomous mode). A regime missing here scales by 1."""
    allowed_strategies: Annotated[dict[str, list[str]], AfterValidator(_regime_keys)] = Field(
        default_factory=dict
    )
    """Optional: regime -> strategies that may open positions in it (a regime not listed allows all)."""


class LearningSettings(_Section):
    """Self-learning per bot (``autonomy.learning``)."""

    enabled: bool = True
    every_trades: int = Field(default=10, ge=1)
    """Review a bot after this many newly closed trades (and once a UTC day)."""
    lookback_trades: int = Field(default=50, ge=5)
    lookback_days: int = Field(default=30, ge=1)
    min_trades: int = Field(default=10, ge=1)
    """Fewer closed trades in the lookback than this: no adjustment, only the report."""


class HealingSettings(_Section):
    """Self-healing checks per running bot (``autonomy.healing``)."""

    enabled: bool = True
    interval_minutes: float = Field(default=5.0, gt=0)
    hourly_loss: Decimal = Field(default=Decimal("0.15"), gt=0, lt=1)
    """Net loss over the last hour above this fraction of the bot's capital: quarantine."""
    idle_hours: float = Field(default=24.0, gt=0)
    idle_move: Decimal = Field(default=Decimal("0.03"), gt=0, lt=1)
    """No trade for ``idle_hours`` while the pair's close moved more than this fraction: quarantine."""
    capital_loss: Decimal = Field(default=Decimal("0.20"), gt=0, lt=1)
    """Equity more than this fraction below the bot's initial capital: quarantine."""
    escalation_hours: list[float] = Field(default_factory=lambda: [1.0, 3.0, 24.0], min_length=1)
    """Pause lengths of the 1st, 2nd, 3rd quarantine (within ``reset_days``); the next one retires the bot."""
    reset_days: float = Field(default=7.0, gt=0)
    """Quarantines older than this no longer count towards escalation."""


class EvolutionSettings(_Section):
    """Genetic evolution of bot DNA (``autonomy.evolution``)."""

    population: int = Field(default=10, ge=4, le=200)
    generations: int = Field(default=5, ge=1, le=1000)
    elite_share: Decimal = Field(default=Decimal("0.30"), gt=0, lt=1)
    mutation_rate: Decimal = Field(default=Decimal("0.15"), ge=0, le=1)
    seed: int = 7
    min_trades: int = Field(default=5, ge=0)
    """Fewer trades than this in the evaluation: fitness is None (ranked last)."""
    drawdown_penalty: Decimal = Field(default=Decimal("1.0"), ge=0)
    """fitness = return - drawdown_penalty x max drawdown (both fractions)."""


class AutopilotSettings(_Section):
    """Daily reinvestment or new paper bots from realised profit (``autonomy.autopilot``). Off by default."""

    enabled: bool = False
    run_at: Annotated[str, AfterValidator(_hhmm)] = "00:05"
    """UTC time of the daily run (engine time)."""
    profit_threshold: Decimal = Field(default=Decimal(50), ge=0)
    """Yesterday's net realised profit (quote) must exceed this for the autopilot to act."""
    reinvest_share: Decimal = Field(default=Decimal("0.80"), gt=0, le=1)
    top_bots: int = Field(default=3, ge=1, le=45)
    spawn_amount: Decimal = Field(default=Decimal(500), gt=0)
    """Capital (quote) of a new paper bot spawned from the best DNA, when profit and capacity allow."""


class OptimizeSettings(_Section):
    """Optimisation studies (``autonomy.optimize``, ``amarktai optimize``)."""

    storage: str = ""
    """optuna storage URL; empty = ``sqlite:///<data dir>/optuna.sqlite3``; a PostgreSQL URL
    (``postgresql://user:pass@host/db``) lets workers on many machines share a study."""
    trials: int = Field(default=100, ge=1)
    seed: int = 42
    folds: int = Field(default=3, ge=1, le=20)
    """Walk-forward folds: optimise on a window, score on the next one."""
    train_fraction: Decimal = Field(default=Decimal("0.7"), gt=0, lt=1)


class AutonomySettings(_Section):
    """``[autonomy]``: expert (every change is a proposal) or autonomous (changes apply within bounds)."""

    mode: Literal["expert", "autonomous"] = "expert"
    bounds: BoundsSettings = Field(default_factory=BoundsSettings)
    regime: RegimeSettings = Field(default_factory=RegimeSettings)
    learning: LearningSettings = Field(default_factory=LearningSettings)
    healing: HealingSettings = Field(default_factory=HealingSettings)
    evolution: EvolutionSettings = Field(default_factory=EvolutionSettings)
    autopilot: AutopilotSettings = Field(default_factory=AutopilotSettings)
    optimize: OptimizeSettings = Field(default_factory=OptimizeSettings)
