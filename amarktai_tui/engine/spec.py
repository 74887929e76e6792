"""What a bot is made from (``BotSpec``), and the engine's one user-facing error."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from amarktai_tui.domain.enums import BotState, LifecycleStage, RiskMode
from amarktai_tui.ledger.store import BotRecord


class EngineError(RuntimeError):
    """A command the engine cannot carry out (message says why, for the user)."""


@dataclass(frozen=True, slots=True)
class BotSpec:
    """What it takes to create a bot (from config, the new-bot form, or demo defaults)."""

    name: str
    exchange: str
    pair: str
    timeframe: str
    strategy: str
    params: dict[str, object]
    risk_mode: RiskMode
    capital: Decimal
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    trailing_stop: Decimal | None = None
    sizing: str = "fixed"
    order_type: str = "market"
    dna_id: str | None = None  # the evolution member it was spawned from (autonomy.evolution)


def record_of(spec: BotSpec) -> BotRecord:
    return BotRecord(
        id=0,
        name=spec.name,
        exchange=spec.exchange,
        pair=spec.pair,
        timeframe=spec.timeframe,
        strategy=spec.strategy,
        params=dict(spec.params),
        risk_mode=spec.risk_mode,
        capital=spec.capital,
        stop_loss=spec.stop_loss,
        take_profit=spec.take_profit,
        trailing_stop=spec.trailing_stop,
        state=BotState.RUNNING,
        state_reason="",
        stage=LifecycleStage.PAPER_TRAINING,
        last_candle_ts=None,
        sizing=spec.sizing,
        order_type=spec.order_type,
        dna_id=spec.dna_id,
    )
