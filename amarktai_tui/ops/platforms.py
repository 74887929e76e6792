"""Per-exchange figures for the Platforms pane (tab 6), built here so the pane only shows them.

Three sources, each as fresh as it can cheaply be:

- bots, from the engine's runners (memory): ``bots`` on the exchange, ``active`` = state
  ``running`` (a bot whose breaker tripped is ``circuit_tripped``, a paused, stopped or failed one
  is not active either), against the exchange's cap (``exchanges.registry``: Luno 5, others 10).
- money and trades, from the ledger through the one profit service
  (``ledger.profits.ProfitService.by_exchange``): profit ``today`` (realised by closing fills
  since 00:00 UTC), ``total`` (realised + unrealised), closed trades today, win rate. Reading the
  ledger is blocking (``read_ledger``: run it in a thread); "now" is ``as_of_ms``.
- API health, from ``TradingEngine.api_health()`` (a live broker's breakers; empty on paper).

Every exchange of the registry gets a row (in registry order), also those without a bot; an
exchange a bot names that the registry does not know follows, without a cap.
Money is ``Decimal`` in the quote currency; win rate a fraction (0.5 = 50 %); times ms UTC.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from amarktai_tui.domain.enums import BotState, LifecycleStage
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.engine.runner import BotRunner
from amarktai_tui.exchanges.api_breaker import ApiHealth
from amarktai_tui.exchanges.registry import EXCHANGES
from amarktai_tui.ledger.profits import ExchangeFigures, ProfitService
from amarktai_tui.ledger.schema import connect_readonly

ACTIVE_STATES = frozenset({BotState.RUNNING})
"""Bot states counted as active: running (not paused, stopped, failed or breaker-tripped)."""


@dataclass(frozen=True, slots=True)
class LedgerRead:
    """What ``read_ledger`` found: exchange id -> its ledger figures as of ``as_of_ms`` (ms UTC), or
    the one-line reason the ledger could not be read (``error``, figures then empty)."""

    as_of_ms: int
    by_exchange: Mapping[str, ExchangeFigures]
    error: str = ""


@dataclass(frozen=True, slots=True)
class PlatformRow:
    """One exchange: its bots now (``bots``, ``active``, ``cap``: None for an exchange the registry
    does not know), its ledger figures (None until the ledger was read), its API health (None:
    no breaker for it, e.g. a paper broker)."""

    exchange: str
    name: str
    cap: int | None
    bots: int
    active: int
    figures: ExchangeFigures | None
    api: ApiHealth | None

    @property
    def cap_usage(self) -> str:
        """``"3/10"`` (bots / cap); ``"3/-"`` without a cap."""
        return f"{self.bots}/{'-' if self.cap is None else self.cap}"


@dataclass(frozen=True, slots=True)
class BotLine:
    """One bot of an exchange (the drill-down): its engine figures now, realised PnL in quote."""

    id: int
    name: str
    pair: str
    strategy: str
    timeframe: str
    state: BotState
    stage: LifecycleStage
    realised: Decimal
    trades: int
    win_rate: float | None


def as_of_ms(engine: TradingEngine, wall_ms: int | None = None) -> int:
    """The figures' "now" (ms UTC): a replay's market time (``engine.now_ms``, the newest candle
    close), a realtime feed's wall clock (``wall_ms``, default ``time.time()``)."""
    if not engine.realtime:
        return engine.now_ms
    return int(time.time() * 1000) if wall_ms is None else wall_ms


def empty_figures(exchange: str) -> ExchangeFigures:
    """The ledger figures of an exchange the ledger holds nothing for: zeros, no win rate."""
    z = Decimal(0)
    return ExchangeFigures(
        exchange=exchange, bots=0, active=0, live=0, capital=z, realised=z, unrealised=z, total=z,
        today=z, fees=z, trades=0, trades_today=0, fills_today=0, wins=0, win_rate=None,
    )  # fmt: skip


def read_ledger(db: Path, now_ms: int) -> LedgerRead:
    """Blocking: the profit service's per-exchange figures of the ledger at ``db`` (read-only) as of
    ``now_ms``. Never raises for a missing or unreadable ledger: ``error`` says what was wrong."""
    try:
        conn = connect_readonly(str(db))
    except (FileNotFoundError, sqlite3.Error) as exc:
        return LedgerRead(now_ms, {}, f"ledger not read: {exc}")
    try:
        figures = ProfitService.read(conn).by_exchange(now_ms)
    except (sqlite3.Error, ValueError) as exc:  # LedgerDataError is a ValueError
        return LedgerRead(now_ms, {}, f"ledger not read: {exc}")
    finally:
        conn.close()
    return LedgerRead(now_ms, {f.exchange: f for f in figures})


def platform_rows(
    runners: Iterable[BotRunner], ledger: LedgerRead | None, health: Mapping[str, ApiHealth]
) -> list[PlatformRow]:
    """One row per exchange: the registry's in its order, then any other a bot or fill names (sorted)."""
    bots: dict[str, int] = {}
    active: dict[str, int] = {}
    for r in runners:
        ex = r.rec.exchange
        bots[ex] = bots.get(ex, 0) + 1
        active[ex] = active.get(ex, 0) + (r.rec.state in ACTIVE_STATES)
    seen = set(bots) | (set(ledger.by_exchange) if ledger is not None else set())
    ids = [*EXCHANGES, *sorted(seen - set(EXCHANGES))]
    out = []
    for ex in ids:
        info = EXCHANGES.get(ex)
        figures = None
        if ledger is not None and not ledger.error:
            figures = ledger.by_exchange.get(ex) or empty_figures(ex)
        out.append(
            PlatformRow(
                exchange=ex,
                name=info.name if info is not None else ex,
                cap=info.bot_cap if info is not None else None,
                bots=bots.get(ex, 0),
                active=active.get(ex, 0),
                figures=figures,
                api=health.get(ex),
            )
        )
    return out


def exchange_bots(runners: Iterable[BotRunner], exchange: str) -> list[BotLine]:
    """The bots on ``exchange`` (by id) with their engine figures."""
    return [
        BotLine(
            id=r.rec.id,
            name=r.rec.name,
            pair=r.rec.pair,
            strategy=r.rec.strategy,
            timeframe=r.rec.timeframe,
            state=r.rec.state,
            stage=r.rec.stage,
            realised=r.stats.realised,
            trades=r.stats.trades,
            win_rate=r.win_rate,
        )
        for r in sorted(runners, key=lambda r: r.rec.id)
        if r.rec.exchange == exchange
    ]
