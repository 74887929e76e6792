"""EngineModel: engine events turned into cheap in-memory state for the views.

Bus handlers run synchronously inside the engine loop (up to ~100k candles/s
in a fast replay), so each one only appends to a deque or bumps ``version``;
the app redraws on its own timer when ``version`` moved. Everything else the
views show is read from the engine itself at redraw time.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from amarktai_tui.domain.enums import BotState
from amarktai_tui.domain.types import Candle
from amarktai_tui.engine.events import (
    BotCreated,
    BotStateChanged,
    BreakerReset,
    BreakerTripped,
    EngineStopped,
    EngineTick,
    EquitySampled,
    Event,
    EventBus,
    FeedStatusChanged,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    StageChanged,
)
from amarktai_tui.ledger.reader import TripResetRow, TripRow, breaker_trips
from amarktai_tui.ledger.schema import connect_readonly
from amarktai_tui.risk.breakers import Trip

CANDLE_HISTORY = 300
"""Candles kept per (pair, timeframe) for the bot charts."""
SPARK_POINTS = 120
"""Equity samples kept per bot for the sparklines."""
EQUITY_POINTS = 50_000
"""Account equity samples kept for the equity curve."""
TRIP_HISTORY = 500
"""Breaker trips kept for the trip history (the newest)."""


class EngineModel:
    """Subscribes to an EventBus; holds candle history, equity samples and a change counter."""

    def __init__(self, bus: EventBus) -> None:
        self.version = 0
        """Bumped on every event; a view redraws when it last drew an older version."""
        self.candles: dict[tuple[str, str], deque[Candle]] = {}
        self.equity: deque[tuple[int, float]] = deque(maxlen=EQUITY_POINTS)
        """Account equity samples (ms UTC, quote), the ledger's history first."""
        self.bot_equity: dict[int, deque[float]] = {}
        self.rejections = 0
        self.last_rejection = ""
        self.stopped: str | None = None
        """EngineStopped's reason once the run has ended."""
        self.alerts: deque[str] = deque(maxlen=20)
        """Messages for the user (a bot went to ERROR); the app pops and shows them."""
        self.trips: dict[int, TripRow] = {}
        """Breaker trips by id with their resets: the ledger's (read at start-up), then live ones."""
        self.trips_version = 0
        """Bumped when ``trips`` changed (a trip, a reset, the ledger's history loaded)."""
        self._unsubscribe: list[Callable[[], None]] = [
            bus.subscribe(EngineTick, self._on_tick),
            bus.subscribe(EquitySampled, self._on_equity),
            bus.subscribe(OrderRejected, self._on_rejected),
            bus.subscribe(EngineStopped, self._on_stopped),
            bus.subscribe(BotStateChanged, self._on_state),
            bus.subscribe(BreakerTripped, self._on_trip),
            bus.subscribe(BreakerReset, self._on_reset),
        ]
        for kind in (BotCreated, OrderSubmitted, OrderFilled, FeedStatusChanged, StageChanged):
            self._unsubscribe.append(bus.subscribe(kind, self._bump))

    def close(self) -> None:
        """Unsubscribe from the bus."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    # -- bus handlers (cheap: the engine is waiting) -----------------------------
    def _bump(self, _event: Event) -> None:
        self.version += 1

    def _on_tick(self, event: EngineTick) -> None:
        c = event.candle
        history = self.candles.get((c.pair, c.timeframe))
        if history is None:
            history = self.candles[(c.pair, c.timeframe)] = deque(maxlen=CANDLE_HISTORY)
        history.append(c)
        self.version += 1

    def _on_equity(self, event: EquitySampled) -> None:
        self.equity.append((event.ts, float(event.account)))
        for bot_id, eq in event.bots.items():
            self._spark(bot_id).append(float(eq))
        self.version += 1

    def _on_rejected(self, event: OrderRejected) -> None:
        self.rejections += 1
        self.last_rejection = f"{event.client_order_id} {event.state.value}: {event.reason}"
        self.version += 1

    def _on_state(self, event: BotStateChanged) -> None:
        if event.new is BotState.ERROR:
            self.alerts.append(f"bot {event.name} stopped trading: {event.reason}")
        self.version += 1

    def _on_stopped(self, event: EngineStopped) -> None:
        self.stopped = event.reason or "stopped"
        self.version += 1

    def _on_trip(self, event: BreakerTripped) -> None:
        self._add_trip(_trip_row(event.trip, event.bot_name))

    def _on_reset(self, event: BreakerReset) -> None:
        t = event.trip
        row = self.trips.get(t.id) or _trip_row(t, None)  # None: older than the history kept
        self._add_trip(replace(row, reset=TripResetRow(0, t.id, event.ts, event.actor, event.reason)))

    def _add_trip(self, row: TripRow) -> None:
        self.trips[row.id] = row
        while len(self.trips) > TRIP_HISTORY:
            del self.trips[min(self.trips)]
        self.trips_version += 1
        self.version += 1

    def _spark(self, bot_id: int) -> deque[float]:
        d = self.bot_equity.get(bot_id)
        if d is None:
            d = self.bot_equity[bot_id] = deque(maxlen=SPARK_POINTS)
        return d

    # -- history from the ledger (once, before the run) ---------------------------
    def load_history(self, db: Path) -> None:
        """Equity snapshots and breaker trips of earlier runs from the ledger (read-only); no-op without one."""
        try:
            conn = connect_readonly(str(db))
        except (FileNotFoundError, sqlite3.Error):
            return
        try:
            for row in reversed(breaker_trips(conn, TRIP_HISTORY)):  # oldest first
                self.trips.setdefault(row.id, row)  # a live event already seen is newer
            self.trips_version += 1
            rows = conn.execute(
                "SELECT ts, equity FROM equity_snapshots WHERE bot_id IS NULL ORDER BY ts, id"
            ).fetchall()
            self.equity.extend((int(r["ts"]), float(Decimal(r["equity"]))) for r in rows)
            bot_ids = [
                r[0]
                for r in conn.execute("SELECT DISTINCT bot_id FROM equity_snapshots WHERE bot_id IS NOT NULL")
            ]
            for bot_id in bot_ids:
                last = conn.execute(
                    "SELECT equity FROM equity_snapshots WHERE bot_id = ? ORDER BY ts DESC, id DESC LIMIT ?",
                    (bot_id, SPARK_POINTS),
                ).fetchall()
                self._spark(bot_id).extend(float(Decimal(r["equity"])) for r in reversed(last))
        except sqlite3.Error:
            return
        finally:
            conn.close()
        self.version += 1


def _trip_row(trip: Trip, bot: str | None) -> TripRow:
    """A live trip as the ledger reader's row (not reset yet)."""
    return TripRow(
        trip.id,
        trip.ts,
        trip.scope.value,
        trip.bot_id,
        bot,
        trip.breaker.value,
        trip.threshold,
        trip.value,
        trip.cause,
        trip.message,
        None,
    )
