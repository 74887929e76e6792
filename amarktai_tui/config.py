"""Settings: a TOML file plus ``AMARKTAI_*`` environment overrides (``__`` nests).

Precedence (highest first): init arguments, environment variables
(``AMARKTAI_GENERAL__MODE=paper``, ``AMARKTAI_PAPER__SLIPPAGE_BPS=3``), the
TOML file, the defaults below. Unknown keys are rejected so a typo never
silently does nothing. ``config.example.toml`` documents every key.

``load_settings`` turns every validation problem into ``ConfigError`` whose
message is one line naming the key and what was wrong; the CLI prints it and
exits 2.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from amarktai_tui.domain.enums import RiskMode, TradingMode
from amarktai_tui.domain.types import split_pair, timeframe_to_ms
from amarktai_tui.exchanges.registry import EXCHANGES, TOTAL_BOT_CAP


class ConfigError(ValueError):
    """A bad config file or value; the message is one line naming the key."""


def _exchange_id(v: str) -> str:
    if v not in EXCHANGES:
        raise ValueError(f"unknown exchange {v!r}; expected one of {', '.join(EXCHANGES)}")
    return v


def _pair(v: str) -> str:
    split_pair(v)
    return v


def _timeframe(v: str) -> str:
    timeframe_to_ms(v)
    return v


ExchangeId = Annotated[str, AfterValidator(_exchange_id)]
Pair = Annotated[str, AfterValidator(_pair)]
Timeframe = Annotated[str, AfterValidator(_timeframe)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class GeneralSettings(_Section):
    mode: TradingMode = TradingMode.PAPER
    """Account trading mode. Only ``paper`` is honoured from config; going live needs the confirmed switch."""
    quote_currency: str = "USDT"
    """Currency in which account totals are shown."""


class MarketSettings(_Section):
    source: Literal["exchange", "replay"] = "exchange"
    """Where candles come from: an exchange's public API, or files (``--replay``)."""
    exchange: ExchangeId = "binance"
    """Exchange id for public market data (no keys needed)."""
    pairs: list[Pair] = Field(default_factory=lambda: ["BTC/USDT", "ETH/USDT"])
    """Pairs the demo bots trade when no ``[[bots]]`` are configured."""
    timeframe: Timeframe = "5m"
    """Candle timeframe for the demo bots and the exchange feed."""
    replay_files: list[str] = Field(default_factory=list)
    """Candle files for ``source = "replay"`` (same as ``--replay``)."""
    replay_speed: float = Field(default=0.0, ge=0)
    """Replay speed factor: 1 = real time, 60 = a minute per second, 0 = as fast as possible."""


class PaperSettings(_Section):
    starting_balance: Decimal = Field(default=Decimal(10_000), gt=0)
    """Quote-currency capital spread over the demo bots (configured bots carry their own capital)."""
    slippage_bps: Decimal = Field(default=Decimal(5), ge=0, le=1000)
    """Basis points against the trader on every market fill."""
    fee_model: Literal["exchange", "fixed"] = "exchange"
    """``exchange``: the exchange table's maker/taker fees; ``fixed``: ``maker_fee``/``taker_fee`` below."""
    maker_fee: Decimal = Field(default=Decimal("0.001"), ge=0, lt=1)
    """Maker fee fraction when ``fee_model = "fixed"`` (0.001 = 0.1%)."""
    taker_fee: Decimal = Field(default=Decimal("0.001"), ge=0, lt=1)
    """Taker fee fraction when ``fee_model = "fixed"``."""


class BotSettings(_Section):
    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """Unique bot name (letters, digits, ``-``, ``_``, ``.``)."""
    exchange: ExchangeId = "binance"
    pair: Pair = "BTC/USDT"
    timeframe: Timeframe = "5m"
    strategy: str = "sma_cross"
    """One of the built-in strategies: sma_cross, rsi_reversion, donchian_breakout."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Strategy parameters (validated against the strategy's ranges)."""
    risk_mode: RiskMode = RiskMode.BALANCED
    capital: Decimal = Field(default=Decimal(1000), gt=0)
    """Quote-currency capital funded to this bot at creation."""
    stop_loss: Decimal | None = Field(default=None, gt=0, lt=1)
    """Exit when price falls this fraction below entry (0.05 = 5%)."""
    take_profit: Decimal | None = Field(default=None, gt=0, lt=1)
    """Exit when price rises this fraction above entry."""
    trailing_stop: Decimal | None = Field(default=None, gt=0, lt=1)
    """Exit when price falls this fraction below the highest high since entry."""

    @model_validator(mode="after")
    def _strategy(self) -> BotSettings:
        from amarktai_tui.strategies.registry import make_strategy

        make_strategy(self.strategy, self.params)  # raises StrategyParamError (a ValueError)
        return self


class UiSettings(_Section):
    theme: str = "amarktai-dark"
    """Theme name: a built-in (amarktai-dark, amarktai-light, amarktai-contrast) or a file in the themes dir."""
    refresh_rate: float = Field(default=4.0, gt=0, le=60)
    """Screen refreshes per second while the engine is busy."""
    keymap: dict[str, str] = Field(default_factory=dict)
    """Key remapping: binding id -> keys (comma-separated), e.g. ``{"app.new_bot" = "b"}``."""


class EngineSettings(_Section):
    snapshot_interval: Timeframe = "1h"
    """Market-time interval between equity snapshots (a timeframe like 15m, 1h, 1d)."""


class Settings(BaseSettings):
    """All configuration. Build it with ``load_settings``."""

    model_config = SettingsConfigDict(
        env_prefix="AMARKTAI_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    general: GeneralSettings = Field(default_factory=GeneralSettings)
    market: MarketSettings = Field(default_factory=MarketSettings)
    paper: PaperSettings = Field(default_factory=PaperSettings)
    bots: list[BotSettings] = Field(default_factory=list)
    ui: UiSettings = Field(default_factory=UiSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)

    @model_validator(mode="after")
    def _bots(self) -> Settings:
        names = [b.name for b in self.bots]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate bot name(s): {', '.join(sorted(dup))}")
        if len(self.bots) > TOTAL_BOT_CAP:
            raise ValueError(f"{len(self.bots)} bots configured; the limit is {TOTAL_BOT_CAP}")
        for ex in EXCHANGES.values():
            n = sum(1 for b in self.bots if b.exchange == ex.id)
            if n > ex.bot_cap:
                raise ValueError(f"{n} bots on {ex.id}; its cap is {ex.bot_cap}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if _toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=_toml_file))
        return tuple(sources)


_toml_file: Path | None = None


def load_settings(path: Path | None, *, required: bool = False) -> Settings:
    """Load settings from ``path`` (TOML) plus the environment.

    ``required``: the path was given explicitly (``--config``/``AMARKTAI_CONFIG``),
    so a missing file is an error; otherwise a missing file means defaults.
    Raises ConfigError with a one-line message.
    """
    global _toml_file
    if path is not None and not path.exists():
        if required:
            raise ConfigError(f"config file {path} does not exist")
        path = None
    if path is not None and path.is_dir():
        raise ConfigError(f"config file {path} is a directory")
    _toml_file = path
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, path)) from None
    except ValueError as exc:  # TOML syntax errors (tomllib.TOMLDecodeError is a ValueError)
        raise ConfigError(f"{path}: {exc}".replace("\n", " ")) from None
    finally:
        _toml_file = None


def _one_line(exc: ValidationError, path: Path | None) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling against config.example.toml)"
    got = err.get("input")
    shown = (
        ""
        if err["type"] in ("extra_forbidden", "missing") or isinstance(got, dict | list)
        else f" (got {got!r})"
    )
    where = f"{path}: " if path else ""
    more = f" [+{exc.error_count() - 1} more]" if exc.error_count() > 1 else ""
    return f"config error: {where}{loc}: {msg}{shown}{more}"
