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

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from amarktai_tui.autonomy.settings import AutonomySettings
from amarktai_tui.domain.enums import RiskMode, TradingMode
from amarktai_tui.domain.types import split_pair, timeframe_to_ms
from amarktai_tui.exchanges.registry import EXCHANGES, TOTAL_BOT_CAP, order_type_refusal


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
    sizing: Literal["fixed", "kelly"] = "fixed"
    """``fixed``: the risk mode's max notional per trade; ``kelly``: fractional Kelly, capped by it."""
    order_type: Literal["market", "limit"] = "market"
    """Entries as market orders, or as limit orders at the decision candle's close (exits stay market)."""

    @model_validator(mode="after")
    def _strategy(self) -> BotSettings:
        from amarktai_tui.strategies.registry import make_strategy

        make_strategy(self.strategy, self.params)  # raises StrategyParamError (a ValueError)
        refusal = order_type_refusal(self.exchange, self.order_type)
        if refusal:
            raise ValueError(refusal)
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


class RiskSettings(_Section):
    """The order pipeline's gates and the circuit breakers (issue 3). Fractions: 0.20 = 20%."""

    min_edge_bps: Decimal = Field(default=Decimal(10), ge=0)
    """Gate B: an entry's expected edge must be at least this many bps."""
    slippage_buffer_bps: Decimal = Field(default=Decimal(10), ge=0)
    """Gate B: added to the round-trip cost of market entries."""
    safety_margin_bps: Decimal = Field(default=Decimal(5), ge=0)
    """Gate B: added to every entry's round-trip cost."""
    spread_bps: dict[ExchangeId, Decimal] = Field(default_factory=dict)
    """Gate B: spread estimate per exchange, e.g. ``{luno = 15}`` (default: the exchange table)."""
    bot_trades_per_day: int = Field(default=50, ge=1)
    """Gate C: orders per bot per UTC day (exits always pass)."""
    account_trades_per_day: int = Field(default=500, ge=1)
    """Gate C: orders per account per UTC day (exits always pass)."""
    burst_orders: int = Field(default=10, ge=1)
    """Gate C: at most this many submissions per exchange in any ``burst_window_s``."""
    burst_window_s: float = Field(default=10.0, gt=0)
    cooldown_minutes: float = Field(default=0.0, ge=0)
    """Gate C: after a bot's exit fill, no new entry for this long (0 = off)."""
    max_queue_wait_s: float = Field(default=60.0, ge=0)
    """Gate C: an entry held by staggering longer than this is refused (exits always wait)."""
    pending_ttl_hours: float = Field(default=24.0, gt=0)
    """Gate A: pending or open orders older than this expire."""
    bot_max_drawdown: Decimal = Field(default=Decimal("0.20"), gt=0, lt=1)
    """Breaker: a bot's equity this far below its high-water mark trips it."""
    max_consecutive_losses: int = Field(default=5, ge=1)
    """Breaker: this many losing round trips in a row trip the bot."""
    error_storm_errors: int = Field(default=10, ge=1)
    """Breaker: this many errors of a bot within ``error_window_minutes`` trip it."""
    error_window_minutes: float = Field(default=60.0, gt=0)
    account_daily_loss: Decimal = Field(default=Decimal("0.10"), gt=0, lt=1)
    """Breaker: account equity this far below the start of the UTC day trips every bot."""
    account_max_drawdown: Decimal = Field(default=Decimal("0.15"), gt=0, lt=1)
    """Breaker: account equity this far below its high-water mark trips every bot."""
    warning_at: Decimal = Field(default=Decimal("0.8"), gt=0, lt=1)
    """Breakers pane: status "warning" above this share of a threshold."""
    max_asset_exposure: Decimal = Field(default=Decimal("0.35"), gt=0, le=1)
    """Sizing: one asset's open notional at most this share of account equity."""
    max_exchange_exposure: Decimal = Field(default=Decimal("0.60"), gt=0, le=1)
    """Sizing: one exchange's open notional at most this share (when more than one is used)."""


class AllocatorConfig(_Section):
    """The capital allocator (ranks bots, moves capital between them; ``risk.allocator``)."""

    allocatable_share: Decimal = Field(default=Decimal("0.80"), gt=0, le=1)
    """Share of account equity the allocator distributes over ranked bots."""
    min_per_bot: Decimal = Field(default=Decimal(50), ge=0)
    """Smallest capital the allocator gives a ranked bot (quote)."""
    max_per_bot_share: Decimal = Field(default=Decimal("0.25"), gt=0, le=1)
    """Largest capital of one bot, as a share of account equity."""
    min_trades: int = Field(default=10, ge=1)
    """Closed trades a bot needs before it is ranked."""
    change_threshold: Decimal = Field(default=Decimal("0.20"), ge=0)
    """A bot's capital changes only when the new figure differs by more than this fraction."""
    interval: str = "off"
    """How often it runs on its own (market time, e.g. ``1d``), or ``off`` (on demand only)."""

    @model_validator(mode="after")
    def _interval(self) -> AllocatorConfig:
        if self.interval != "off":
            timeframe_to_ms(self.interval)
        return self


class PromotionConfig(_Section):
    """Bot lifecycle stages (``engine.promotion``): what earns eligibility for live, and the live floors.

    Fractions everywhere (0.52 = 52%); days are market time (a replay can earn them).
    """

    min_days: Decimal = Field(default=Decimal(7), ge=0, le=365)
    """Days in paper_training (market time, stage start to the bot's latest candle)."""
    min_trades: int = Field(default=25, ge=0, le=100_000)
    """Closed round trips in paper_training."""
    min_win_rate: Decimal = Field(default=Decimal("0.52"), ge=0, le=1)
    """Share of those trades with a profit (fraction)."""
    min_return: Decimal = Field(default=Decimal("0.03"), ge=-1, le=100)
    """Profit (realised + unrealised) since the stage start over the bot's capital (fraction)."""
    max_drawdown: Decimal = Field(default=Decimal("0.15"), gt=0, le=1)
    """Largest drawdown of the bot's equity since the stage start (fraction)."""
    min_profit_factor: Decimal = Field(default=Decimal("1.2"), ge=0, le=1000)
    """Gross profit / gross loss of those trades."""
    live_max_drawdown: Decimal = Field(default=Decimal("0.15"), gt=0, le=1)
    """A live bot whose drawdown since going live exceeds this goes back to paper_training."""
    live_min_return: Decimal = Field(default=Decimal("-0.05"), ge=-1, le=0)
    """A live bot whose return since going live falls below this goes back to paper_training."""


class ExchangeSettings(_Section):
    """One exchange's connection settings (``[exchanges.binance]``, ...)."""

    sandbox: bool = False
    """Use the exchange's testnet (ccxt ``set_sandbox_mode``) where it has one."""
    api_url: str | None = Field(default=None, pattern=r"^https?://[^/\s]+$")
    """Replace the scheme and host of every API URL (a testnet, a proxy, a loopback test server)."""
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    """Seconds before a request counts as timed out (an order in flight then becomes 'unknown')."""
    breaker_failures: int = Field(default=5, ge=1)
    """Consecutive failed calls that open the exchange's API circuit breaker."""
    breaker_cooldown_s: float = Field(default=60.0, gt=0)
    """Seconds the API breaker stays open before one probe call is let through."""
    poll_interval_s: float = Field(default=2.0, gt=0)
    """How often open and unknown orders are looked up (exchanges without a websocket, or while it is down)."""
    websocket: bool = True
    """Follow orders over the exchange's websocket (ccxt.pro ``watch_orders``) where it has one."""
    ws_poll_interval_s: float = Field(default=30.0, gt=0)
    """How often open orders are still looked up while the websocket is connected (a safety net)."""


class KeysSettings(_Section):
    """Where API secrets live: the OS keyring (service name ``amarktai``)."""

    backend: Literal["auto", "cryptfile"] = "auto"
    """``auto``: the OS keyring (Secret Service, macOS Keychain, Windows Credential Locker) or
    ``$PYTHON_KEYRING_BACKEND``; ``cryptfile``: an encrypted file (keyrings.cryptfile) in the
    data dir, unlocked with ``$AMARKTAI_KEYRING_PASSPHRASE`` (for headless servers)."""


class BalancesSettings(_Section):
    """The Balances screen (``B``) and ``amarktai balances``."""

    refresh_s: float = Field(default=60.0, ge=0)
    """Seconds between the Balances screen's own refreshes while the account is live (0 = only on
    demand, ``r``; else at least 5, to spare the exchanges' rate limits)."""

    @model_validator(mode="after")
    def _refresh(self) -> BalancesSettings:
        if 0 < self.refresh_s < 5:
            raise ValueError(f"refresh_s must be 0 (off) or at least 5 seconds, got {self.refresh_s}")
        return self


class DoctorSettings(_Section):
    """The readiness checks of ``amarktai doctor`` (run before the account may go live)."""

    min_free_mb: int = Field(default=500, ge=0)
    """Free disk space the data dir needs, in MB (1 MB = 1,000,000 bytes)."""
    max_clock_skew_ms: int = Field(default=1000, gt=0)
    """The local clock may differ from an exchange's by less than this many ms."""
    key_max_age_hours: float = Field(default=24.0, gt=0)
    """A live exchange's key must have passed ``amarktai keys test`` within this many hours."""


ModelName = Annotated[str, Field(min_length=1, pattern=r"^\S+$")]


class AiModels(_Section):
    """Models per mode, each a fallback chain: the first is asked, the next when it is missing
    (404/403), rate limited (429) or times out."""

    fast: list[ModelName] = Field(default_factory=lambda: ["gpt-4o-mini"], min_length=1)
    """Trade and status questions."""
    balanced: list[ModelName] = Field(default_factory=lambda: ["gpt-4o-mini"], min_length=1)
    """Chat."""
    deep: list[ModelName] = Field(default_factory=lambda: ["gpt-4.1", "gpt-4o-mini"], min_length=1)
    """Strategy reviews."""


class AiSettings(_Section):
    """The AI console's model access (``ai.router``). The API key lives in the vault (provider
    ``openai``), never here."""

    base_url: Annotated[str | None, BeforeValidator(lambda v: v or None)] = Field(
        default=None, pattern=r"^https?://\S+$"
    )
    """An OpenAI-compatible endpoint (a local model server, a proxy), e.g. ``http://127.0.0.1:11434/v1``;
    unset or ``""``: the base URL saved with ``keys set openai``, else api.openai.com."""
    models: AiModels = Field(default_factory=AiModels)
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    """Seconds before a call (or a pause in a streamed reply) counts as timed out; the next model is tried."""
    daily_token_budget: int = Field(default=200_000, ge=0)
    """Prompt + completion tokens per UTC day; once used up the console is commands only (0 = unlimited)."""
    history_messages: int = Field(default=50, ge=1, le=10_000)
    """Chat messages shown in the pane (the whole history stays in the ledger)."""


class AuditSettings(_Section):
    """The audit log (``ops.audit``): what happened, when, by whom; kept apart from the ledger."""

    retention_days: int = Field(default=90, ge=1)
    """Audit entries older than this many days are pruned (at engine start and daily); the ledger never is."""


def _hhmm(v: str) -> str:
    import re

    if not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", v):
        raise ValueError("expected a UTC time HH:MM, 00:00 to 23:59")
    return v


class BackupSettings(_Section):
    """Copies of the ledger in ``<data dir>/backups/`` (``ops.backup``): daily, before every migration
    and every mode switch, and on ``amarktai backup``."""

    keep: int = Field(default=10, ge=1)
    """Backups kept: the newest this many (older ones are deleted after a daily or manual backup)."""
    daily: bool = True
    """Make one backup per UTC day while an engine runs (daemon or TUI)."""
    daily_at: Annotated[str, AfterValidator(_hhmm)] = "03:00"
    """When the daily backup is made, UTC ``HH:MM`` (at start-up too, when today's is missing and it is later)."""


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


class HealthSettings(_Section):
    """The health and metrics HTTP server (``ops.health``): ``/health``, ``/status``, ``/metrics``."""

    enabled: bool = True
    """Serve while the daemon (``--daemon``) runs."""
    tui: bool = False
    """Serve from the TUI too (when ``enabled``)."""
    allow_remote: bool = False
    """Allow a non-loopback ``host``: /status and /metrics show equity and PnL to whoever can connect."""
    host: str = Field(default="127.0.0.1", min_length=1)
    """Address to listen on; anything but a loopback address needs ``allow_remote = true``."""
    port: int = Field(default=9464, ge=0, le=65535)
    """TCP port (0 = any free port, for tests)."""
    max_loop_lag_ms: float = Field(default=250.0, gt=0)
    """``/health`` fails when the event loop's lag p99 (last minute) is above this, or when the
    engine's loop has published no health snapshot for 250 ms + this ("engine not responding")."""
    stale_candles: float = Field(default=3.0, ge=1)
    """``/health`` fails when an exchange feed's newest candle closed more than this many
    timeframes (of its fastest stream) ago."""
    min_free_mb: int = Field(default=100, ge=0)
    """``/health`` fails when the data dir has less free disk than this, in MB (1 MB = 1,000,000 bytes)."""

    @field_validator("host")
    @classmethod
    def _remote(cls, host: str, info: ValidationInfo) -> str:
        if not info.data.get("allow_remote") and not _is_loopback(host):
            raise ValueError("not a loopback address; set allow_remote = true to serve on it")
        return host


def _email(v: str) -> str:
    import re

    if not re.fullmatch(r"[^@\s<>,;]+@[^@\s<>,;]+", v):
        raise ValueError("expected an e-mail address like reports@example.com")
    return v


EmailAddress = Annotated[str, AfterValidator(_email)]


class SmtpSettings(_Section):
    """Mail (``ops.mailer``): the daily report and alert mails, and ``amarktai keys test smtp``.
    The account's user name and password live in the vault (``amarktai keys set smtp``), never here."""

    host: str = ""
    """SMTP server host name; ``""`` = no mail."""
    port: int = Field(default=587, ge=1, le=65535)
    """587 for ``starttls``, 465 for ``ssl``, 25 for a local relay."""
    security: Literal["starttls", "ssl", "none"] = "starttls"
    """``starttls``: upgrade after EHLO; ``ssl``: TLS from the start; ``none``: plain (a local relay only)."""
    from_addr: Annotated[str, AfterValidator(lambda v: v and _email(v))] = ""
    """The From address; ``""`` = the vault's SMTP user name."""
    to: list[EmailAddress] = Field(default_factory=list)
    """Recipients of the reports and alerts; none = no mail."""
    timeout_s: float = Field(default=20.0, gt=0, le=300)
    """Seconds before the SMTP server counts as unreachable (the mail is retried later)."""
    daily_report_at: Annotated[str, AfterValidator(lambda v: v and _hhmm(v))] = "23:55"
    """When the daily report is mailed, UTC ``HH:MM`` (it covers the UTC day so far); ``""`` = never."""
    alerts: bool = True
    """Mail critical audit entries (live trades, mode and key changes, emergency stop, breakers, promotions)."""
    alert_min_interval_s: float = Field(default=300.0, ge=0)
    """At most one alert mail per this many seconds; entries in between go in the next mail."""
    alert_batch_s: float = Field(default=5.0, ge=0)
    """The first alert after a quiet spell waits this long for others of the same burst."""


class ReportsSettings(_Section):
    """Profit reports (``amarktai report``, the mailed daily report) and the Profits pane."""

    target_equity: Decimal = Field(default=Decimal(1_000_000), gt=0)
    """The countdown's target account equity, in the quote currency."""


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
    risk: RiskSettings = Field(default_factory=RiskSettings)
    allocator: AllocatorConfig = Field(default_factory=AllocatorConfig)
    exchanges: dict[ExchangeId, ExchangeSettings] = Field(default_factory=dict)
    keys: KeysSettings = Field(default_factory=KeysSettings)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    doctor: DoctorSettings = Field(default_factory=DoctorSettings)
    balances: BalancesSettings = Field(default_factory=BalancesSettings)
    ai: AiSettings = Field(default_factory=AiSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    backup: BackupSettings = Field(default_factory=BackupSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    autonomy: AutonomySettings = Field(default_factory=AutonomySettings)
    reports: ReportsSettings = Field(default_factory=ReportsSettings)

    def exchange(self, exchange_id: str) -> ExchangeSettings:
        """``[exchanges.<id>]``, or the defaults when the section is absent."""
        return self.exchanges.get(exchange_id) or ExchangeSettings()

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
