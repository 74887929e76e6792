"""Wiring shared by the TUI and the daemon: feed, broker, store, engine, bots.

Nothing here imports Textual; ``tui/`` and ``ops/daemon.py`` both call
``open_engine`` so every mode runs the same engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

from amarktai_tui.autonomy.regime import attach_regimes
from amarktai_tui.config import BotSettings, Settings
from amarktai_tui.domain.enums import LifecycleStage, RiskMode, TradingMode
from amarktai_tui.engine.engine import BotSpec, TradingEngine
from amarktai_tui.engine.events import EventBus
from amarktai_tui.engine.stages import rules_from
from amarktai_tui.exchanges.base import Broker
from amarktai_tui.exchanges.paper import PaperBroker
from amarktai_tui.ledger.store import LedgerStore
from amarktai_tui.locations import db_path
from amarktai_tui.market.base import MarketFeed
from amarktai_tui.risk.allocator import AllocatorSettings
from amarktai_tui.risk.breakers import BreakerSettings
from amarktai_tui.risk.gates import LimitSettings
from amarktai_tui.risk.pipeline import PipelineSettings
from amarktai_tui.risk.sizing import ExposureCaps

_BPS = Decimal(10_000)
DEMO_STRATEGIES: tuple[tuple[str, str, dict[str, object]], ...] = (
    ("ema", "sma_cross", {"fast": 50, "slow": 200, "kind": "ema"}),
    ("rsi", "rsi_reversion", {"period": 14, "oversold": 30, "overbought": 70}),
    ("donchian", "donchian_breakout", {"entry_period": 288, "exit_period": 144}),
)


@dataclass(frozen=True, slots=True)
class ReplayArgs:
    """``--replay``/``--pair``/``--timeframe``/``--speed``/``--until-end`` from the command line."""

    files: list[str]
    pair: str | None = None
    timeframe: str | None = None
    speed: float = 0.0
    until_end: bool = False


def make_feed(
    settings: Settings, replay: ReplayArgs | None, bot_streams: list[tuple[str, str]]
) -> MarketFeed:
    """A replay feed when files are given (CLI or config), else the exchange's public OHLCV feed."""
    if replay is None and settings.market.source == "replay":
        replay = ReplayArgs(settings.market.replay_files, speed=settings.market.replay_speed)
    if replay is not None:
        from amarktai_tui.market.replay import ReplayFeed

        return ReplayFeed(
            replay.files,
            pair=replay.pair,
            timeframe=replay.timeframe,
            speed=replay.speed,
            until_end=replay.until_end,
        )
    from amarktai_tui.market.ccxt_feed import CcxtFeed

    ex = settings.market.exchange
    api_url = settings.exchange(ex).api_url
    urls_api = None
    if api_url:  # [exchanges.<id>] api_url: a testnet, a proxy, a loopback server (public data too)
        from amarktai_tui.exchanges.clients import exchange_class, replace_origin

        urls_api = replace_origin(exchange_class(ex)().urls["api"], api_url)
    return CcxtFeed(ex, bot_streams, urls_api=urls_api)


def bot_specs(settings: Settings, streams: list[tuple[str, str]]) -> list[BotSpec]:
    """The configured ``[[bots]]``, or demo bots (three strategies per stream) when none are configured."""
    if settings.bots:
        return [_spec(b) for b in settings.bots]
    return demo_specs(settings, streams)


def demo_specs(settings: Settings, streams: list[tuple[str, str]]) -> list[BotSpec]:
    """Three demo bots per (pair, timeframe): EMA cross, RSI reversion, Donchian breakout.

    Capital: ``paper.starting_balance`` split evenly (rounded down); a 5%
    stop-loss on each. Parameters are classic slow settings (EMA 50/200,
    RSI 14 at 30/70, a Donchian channel of 288/144 candles: a day and half a
    day of 5m candles), chosen so the demo does not churn its capital away in
    fees; they are not fitted to any data.
    """
    n = 3 * len(streams)
    if not n:
        return []
    capital = (settings.paper.starting_balance / n).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
    multi_tf = len({tf for _, tf in streams}) > 1
    out: list[BotSpec] = []
    for pair, tf in streams:
        stem = pair.split("/")[0].lower() + (f"-{tf}" if multi_tf else "")
        for short, strategy, params in DEMO_STRATEGIES:
            out.append(
                BotSpec(
                    name=f"{stem}-{short}",
                    exchange=settings.market.exchange,
                    pair=pair,
                    timeframe=tf,
                    strategy=strategy,
                    params=dict(params),
                    risk_mode=RiskMode.BALANCED,
                    capital=capital,
                    stop_loss=Decimal("0.05"),
                )
            )
    return out


def _spec(b: BotSettings) -> BotSpec:
    return BotSpec(
        name=b.name,
        exchange=b.exchange,
        pair=b.pair,
        timeframe=b.timeframe,
        strategy=b.strategy,
        params=dict(b.params),
        risk_mode=b.risk_mode,
        capital=b.capital,
        stop_loss=b.stop_loss,
        take_profit=b.take_profit,
        trailing_stop=b.trailing_stop,
        sizing=b.sizing,
        order_type=b.order_type,
    )


def pipeline_settings(settings: Settings) -> PipelineSettings:
    """``[risk]`` as the pipeline's settings (seconds and minutes to ms)."""
    r = settings.risk
    return PipelineSettings(
        spread_bps=dict(r.spread_bps),
        slippage_bps=r.slippage_buffer_bps,
        safety_bps=r.safety_margin_bps,
        min_edge_bps=r.min_edge_bps,
        caps=ExposureCaps(r.max_asset_exposure, r.max_exchange_exposure),
        limits=LimitSettings(
            r.bot_trades_per_day, r.account_trades_per_day, int(r.cooldown_minutes * 60_000)
        ),
        breakers=BreakerSettings(
            bot_max_drawdown=r.bot_max_drawdown,
            max_consecutive_losses=r.max_consecutive_losses,
            error_storm_errors=r.error_storm_errors,
            error_window_ms=int(r.error_window_minutes * 60_000),
            account_daily_loss=r.account_daily_loss,
            account_max_drawdown=r.account_max_drawdown,
            warning_at=r.warning_at,
        ),
        burst_orders=r.burst_orders,
        burst_window_ms=int(r.burst_window_s * 1000),
        max_wait_ms=int(r.max_queue_wait_s * 1000),
        pending_ttl_ms=int(r.pending_ttl_hours * 3_600_000),
    )


def make_broker(settings: Settings) -> PaperBroker:
    fees = None
    if settings.paper.fee_model == "fixed":
        from amarktai_tui.exchanges.registry import EXCHANGES

        fees = {ex: (settings.paper.maker_fee, settings.paper.taker_fee) for ex in EXCHANGES}
    return PaperBroker(settings.paper.slippage_bps, fees)


def configured_streams(settings: Settings) -> list[tuple[str, str]]:
    """Streams the exchange feed must produce when no replay is given."""
    if settings.bots:
        return sorted({(b.pair, b.timeframe) for b in settings.bots})
    return [(p, settings.market.timeframe) for p in settings.market.pairs]


async def open_engine(
    settings: Settings,
    data_dir: Path,
    replay: ReplayArgs | None,
    bus: EventBus | None = None,
    *,
    broker: Broker | None = None,
) -> tuple[TradingEngine, MarketFeed]:
    """Build the feed, open the ledger, start the engine with its bots. The caller runs ``engine.run(feed)``.

    ``broker``: a live broker (``live_setup.make_live_broker``, started) for every bot; None = the
    account's mode decides (``ops.mode``): paper, or, when the account was switched to live, a live
    session of the bots at stage ``live`` only (``live_setup.open_live_broker``).
    With a live broker the start reconciles with the exchanges first.
    Raises CandleFileError (bad replay file), SchemaTooNewError, ConfigError-like ValueErrors,
    ReconcileError, LiveSetupError, VaultUnavailable (live only).
    """
    streams = configured_streams(settings)
    replaying = replay is not None or settings.market.source == "replay"
    feed = make_feed(settings, replay, streams)
    if replaying:
        streams = feed.streams
    store = await LedgerStore.open(db_path(data_dir))
    run_stages: frozenset[LifecycleStage] | None = None
    engine: TradingEngine | None = None

    def price_hint(pair: str) -> Decimal | None:  # the engine is built after its live broker
        return None if engine is None else engine.last_close(pair)

    own_broker = False
    try:
        if broker is None and await store.trading_mode() == TradingMode.LIVE.value:
            from amarktai_tui.engine.live_setup import LiveSetupError, open_live_broker

            if replaying:
                raise LiveSetupError(
                    "the account is in live mode: a replay runs on paper only (`amarktai mode paper`)"
                )
            broker = await open_live_broker(settings, data_dir, store, price_hint)
            run_stages, own_broker = frozenset({LifecycleStage.LIVE}), True
    except BaseException:
        await store.close()
        raise
    if broker is None:
        broker = make_broker(settings)
    a = settings.allocator
    engine = TradingEngine(
        store,
        broker,
        bus=bus,
        quote_currency=settings.general.quote_currency,
        slippage=settings.paper.slippage_bps / _BPS,
        snapshot_interval=settings.engine.snapshot_interval,
        risk=pipeline_settings(settings),
        realtime=replay is None and settings.market.source != "replay",
        allocator=AllocatorSettings(
            allocatable_share=a.allocatable_share,
            min_per_bot=a.min_per_bot,
            max_per_bot_share=a.max_per_bot_share,
            min_trades=a.min_trades,
            change_threshold=a.change_threshold,
        ),
        allocate_every=None if a.interval == "off" else a.interval,
        mode=TradingMode.PAPER if isinstance(broker, PaperBroker) else TradingMode.LIVE,
        run_stages=run_stages,
    )
    engine.stages.rules = rules_from(settings.promotion)  # [promotion] criteria and live floors
    attach_regimes(engine, settings)  # regimes shown; entry sizes scaled in autonomous mode only
    try:
        await engine.start(bot_specs(settings, streams))
        await store.set_kv("trading_mode", engine.mode.value)
    except BaseException:
        if own_broker:
            await broker.close()  # type: ignore[attr-defined]
        await store.close()
        raise
    return engine, feed
