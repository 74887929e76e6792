"""LedgerStore: the engine's single writer (aiosqlite), one transaction per tick.

The engine collects a tick's writes in a ``WriteBatch`` and calls ``write``
once; the batch lands in one transaction or not at all. Reads used at
start-up (bots, fills, open orders) live here too so the engine needs one
connection. CLI readers use ``ledger.reader`` with their own read-only
connection.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiosqlite

from amarktai_tui.domain.enums import BotState, LifecycleStage, OrderState, OrderType, RiskMode, Side
from amarktai_tui.domain.types import Fill, Order
from amarktai_tui.ledger.schema import configure, migrate
from amarktai_tui.risk.breakers import Breaker, Scope, Trip

APPENDABLE = frozenset({"bot_adjustments", "quarantines"})
"""Append-only tables whose rows other modules write through ``LedgerStore.append``: the autonomy
package's decisions (``autonomy/adjust_store.py``) and quarantines (``autonomy/healing.py``)."""


@dataclass(slots=True)
class BotRecord:
    """A bot as stored. ``capital`` and exit fractions are Decimal (quote / fraction)."""

    id: int
    name: str
    exchange: str
    pair: str
    timeframe: str
    strategy: str
    params: dict[str, Any]
    risk_mode: RiskMode
    capital: Decimal
    stop_loss: Decimal | None
    take_profit: Decimal | None
    trailing_stop: Decimal | None
    state: BotState
    state_reason: str
    stage: LifecycleStage
    last_candle_ts: int | None
    sizing: str = "fixed"  # "fixed": the risk mode's max notional; "kelly": fractional Kelly (risk.kelly)
    order_type: str = "market"  # entries: "market", or "limit" at the decision candle's close
    stage_ts: int | None = None  # ms UTC (market time) ``stage`` was entered; None: not started yet
    size_multiplier: Decimal = Decimal(1)  # self-learning's factor on the entry notional (autonomy.learning)
    dna_id: str | None = None  # the evolution member this bot was spawned from (autonomy.evolution)


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    """One equity snapshot; ``bot_id`` None is the account row. Money in quote."""

    ts: int
    bot_id: int | None
    equity: Decimal
    realised: Decimal
    unrealised: Decimal
    fees: Decimal
    position_qty: Decimal
    mark_price: Decimal | None
    fill_count: int = 0


@dataclass(frozen=True, slots=True)
class NewOrder:
    """An order row to insert: pending (write-ahead) or rejected by a gate (``gate``, ``figures``)."""

    order: Order
    decision_ts: int
    edge_bps: float
    reject_reason: str = ""
    gate: str = ""
    figures: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TripReset:
    trip_id: int
    ts: int
    actor: str
    reason: str


@dataclass(frozen=True, slots=True)
class StageChange:
    """A bot's lifecycle stage change and its audit row (``stage_changes``).

    ``ts`` ms UTC (engine time: market time in a replay); ``actor`` user | cli | ai | engine;
    ``reason`` non-empty; ``figures`` the criteria as measured (JSON-ready, see ``engine.stages``).
    """

    bot_id: int
    ts: int
    from_stage: LifecycleStage
    to_stage: LifecycleStage
    actor: str
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)


class StageConflictError(RuntimeError):
    """``change_stage`` found the bot in another stage than ``from_stage`` (or no such bot)."""


@dataclass(slots=True)
class WriteBatch:
    """Everything one engine tick writes, applied in this order in one transaction."""

    new_orders: list[NewOrder] = field(default_factory=list)
    order_updates: list[tuple[str, OrderState, str, int, str | None]] = field(default_factory=list)
    """(client_order_id, state, reject_reason, updated_ts, exchange_order_id)"""
    fills: list[Fill] = field(default_factory=list)
    bot_updates: dict[int, tuple[BotState, str, int | None, int]] = field(default_factory=dict)
    """bot_id -> (state, state_reason, last_candle_ts, updated_ts); the last one per bot wins."""
    snapshots: list[SnapshotRow] = field(default_factory=list)
    trips: list[Trip] = field(default_factory=list)
    resets: list[TripReset] = field(default_factory=list)
    errors: list[tuple[int, int, str, str]] = field(default_factory=list)  # (ts, bot_id, source, message)
    kv: dict[str, str] = field(default_factory=dict)
    events: list[tuple[int, int | None, str, Decimal, str, str]] = field(default_factory=list)
    """ledger_events rows: (ts, bot_id or None, kind, amount, currency, note)"""
    capital: dict[int, Decimal] = field(default_factory=dict)  # bot_id -> new capital
    reconciliations: list[tuple[int, str, bool, int, int, str]] = field(default_factory=list)
    """reconciliations rows: (ts, exchange, ok, resolved, recovered, details JSON)"""
    stage_changes: list[StageChange] = field(default_factory=list)
    stage_starts: dict[int, int] = field(default_factory=dict)
    """bot_id -> ms UTC its first stage started (``bots.stage_ts`` set only where still NULL)"""

    def __bool__(self) -> bool:
        return bool(
            self.new_orders
            or self.order_updates
            or self.fills
            or self.bot_updates
            or self.snapshots
            or self.trips
            or self.resets
            or self.errors
            or self.kv
            or self.events
            or self.capital
            or self.reconciliations
            or self.stage_changes
            or self.stage_starts
        )


def _d(x: Decimal | None) -> str | None:
    return None if x is None else str(x)


class LedgerStore:
    """Async writer over one SQLite file (WAL, foreign keys on)."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._lock = asyncio.Lock()  # one transaction at a time on the one connection

    @classmethod
    async def open(cls, path: Path) -> LedgerStore:
        """Open (creating and migrating) the ledger at ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        setup = sqlite3.connect(str(path), isolation_level=None)
        try:
            configure(setup)
            migrate(setup)
        finally:
            setup.close()
        conn = await aiosqlite.connect(str(path), isolation_level=None)
        conn.row_factory = sqlite3.Row
        for pragma in ("PRAGMA foreign_keys=ON", "PRAGMA busy_timeout=5000", "PRAGMA synchronous=NORMAL"):
            await conn.execute(pragma)
        return cls(conn, path)

    async def close(self) -> None:
        await self._conn.close()

    # -- bots -------------------------------------------------------------
    async def insert_bot(self, rec: BotRecord, now_ms: int, funding: Decimal, currency: str) -> int:
        """Insert a bot and its funding event (capital) in one transaction; returns its id."""
        async with self._lock:
            return await self._insert_bot(rec, now_ms, funding, currency)

    async def _insert_bot(self, rec: BotRecord, now_ms: int, funding: Decimal, currency: str) -> int:
        await self._conn.execute("BEGIN IMMEDIATE")
        try:
            cur = await self._conn.execute(
                "INSERT INTO bots (name, exchange, pair, timeframe, strategy, params_json, risk_mode, capital,"
                " stop_loss, take_profit, trailing_stop, state, state_reason, stage, last_candle_ts,"
                " created_ts, updated_ts, sizing, order_type, size_multiplier, dna_id)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    rec.name,
                    rec.exchange,
                    rec.pair,
                    rec.timeframe,
                    rec.strategy,
                    json.dumps(rec.params, sort_keys=True),
                    rec.risk_mode.value,
                    str(rec.capital),
                    _d(rec.stop_loss),
                    _d(rec.take_profit),
                    _d(rec.trailing_stop),
                    rec.state.value,
                    rec.state_reason,
                    rec.stage.value,
                    rec.last_candle_ts,
                    now_ms,
                    now_ms,
                    rec.sizing,
                    rec.order_type,
                    str(rec.size_multiplier),
                    rec.dna_id,
                ),
            )
            bot_id = int(cur.lastrowid or 0)
            await self._conn.execute(
                "INSERT INTO ledger_events (ts, bot_id, kind, amount, currency, note) VALUES (?,?,?,?,?,?)",
                (now_ms, bot_id, "funding", str(funding), currency, f"initial capital of {rec.name}"),
            )
            await self._conn.execute("COMMIT")
        except BaseException:
            await self._conn.execute("ROLLBACK")
            raise
        return bot_id

    async def load_bots(self) -> list[BotRecord]:
        async with self._conn.execute("SELECT * FROM bots ORDER BY id") as cur:
            rows = await cur.fetchall()
        return [_bot(r) for r in rows]

    async def funding_by_bot(self) -> dict[int, Decimal]:
        out: dict[int, Decimal] = {}
        async with self._conn.execute(
            "SELECT bot_id, amount FROM ledger_events WHERE bot_id IS NOT NULL ORDER BY id"
        ) as cur:
            async for r in cur:
                out[r[0]] = out.get(r[0], Decimal(0)) + Decimal(r[1])
        return out

    async def account_pool(self) -> Decimal:
        """Capital held at account level, not allocated to a bot (sum of account-level events, quote)."""
        total = Decimal(0)
        async with self._conn.execute("SELECT amount FROM ledger_events WHERE bot_id IS NULL") as cur:
            async for r in cur:
                total += Decimal(r[0])
        return total

    async def load_fills(self) -> list[Fill]:
        """Every fill, in insertion order (the order FIFO must replay them in)."""
        async with self._conn.execute("SELECT * FROM fills ORDER BY id") as cur:
            rows = await cur.fetchall()
        return [
            Fill(
                fill_id=r["fill_id"],
                client_order_id=r["client_order_id"],
                bot_id=r["bot_id"],
                exchange=r["exchange"],
                pair=r["pair"],
                side=Side(r["side"]),
                quantity=Decimal(r["quantity"]),
                price=Decimal(r["price"]),
                fee=Decimal(r["fee"]),
                fee_currency=r["fee_currency"],
                ts=r["ts"],
                liquidity=r["liquidity"],
                realised_pnl=Decimal(r["realised_pnl"]),
            )
            for r in rows
        ]

    async def load_active_orders(self) -> list[Order]:
        """Orders still pending or open (to reconcile or resubmit at start-up)."""
        async with self._conn.execute(
            "SELECT * FROM orders WHERE state IN ('pending', 'open') ORDER BY id"
        ) as cur:
            rows = await cur.fetchall()
        return [
            Order(
                client_order_id=r["client_order_id"],
                bot_id=r["bot_id"],
                exchange=r["exchange"],
                pair=r["pair"],
                side=Side(r["side"]),
                order_type=OrderType(r["order_type"]),
                quantity=Decimal(r["quantity"]),
                limit_price=None if r["limit_price"] is None else Decimal(r["limit_price"]),
                state=OrderState(r["state"]),
                created_ts=r["created_ts"],
                updated_ts=r["updated_ts"],
                reason=r["reason"],
                exchange_order_id=r["exchange_order_id"],
            )
            for r in rows
        ]

    async def load_risk_state(self) -> RiskState:
        """What the pipeline and the breakers rebuild from at start-up (see ``RiskState``)."""
        conn = self._conn
        known: dict[str, OrderState] = {}
        async with conn.execute("SELECT client_order_id, state FROM orders") as cur:
            async for r in cur:
                known[r[0]] = OrderState(r[1])
        async with conn.execute(
            "SELECT bot_id, exchange, created_ts FROM orders WHERE state != 'rejected' ORDER BY created_ts"
        ) as cur:
            submitted = [(int(r[0]), str(r[1]), int(r[2])) for r in await cur.fetchall()]
        async with conn.execute(
            "SELECT t.* FROM breaker_trips t LEFT JOIN breaker_resets r ON r.trip_id = t.id"
            " WHERE r.id IS NULL ORDER BY t.id"
        ) as cur:
            active = [_trip(r) for r in await cur.fetchall()]
        async with conn.execute("SELECT COALESCE(MAX(id), 0) FROM breaker_trips") as cur:
            row = await cur.fetchone()
            max_trip = int(row[0]) if row else 0
        async with conn.execute(
            "SELECT t.bot_id, t.breaker, MAX(r.ts) FROM breaker_resets r JOIN breaker_trips t ON t.id = r.trip_id"
            " WHERE t.bot_id IS NOT NULL GROUP BY t.bot_id, t.breaker"
        ) as cur:
            resets = {(int(r[0]), str(r[1])): int(r[2]) for r in await cur.fetchall()}
        async with conn.execute("SELECT bot_id, ts FROM bot_errors ORDER BY ts") as cur:
            errors = [(int(r[0]), int(r[1])) for r in await cur.fetchall()]
        gauges = await self.get_kv(RISK_KV)
        return RiskState(known, submitted, active, max_trip, resets, errors, gauges)

    async def order_exists(self, client_order_id: str) -> bool:
        async with self._conn.execute(
            "SELECT 1 FROM orders WHERE client_order_id = ?", (client_order_id,)
        ) as cur:
            return await cur.fetchone() is not None

    async def last_snapshot_ts(self) -> int:
        """Time (ms UTC) of the newest equity snapshot, 0 when there is none."""
        async with self._conn.execute("SELECT COALESCE(MAX(ts), 0) FROM equity_snapshots") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def set_kv(self, key: str, value: str) -> None:
        await self._conn.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    async def get_kv(self, key: str) -> str | None:
        async with self._conn.execute("SELECT value FROM kv WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    # -- lifecycle stages (schema v4) ----------------------------------------
    async def change_stage(self, change: StageChange) -> None:
        """Move a bot from ``change.from_stage`` to ``change.to_stage`` and write the audit row, in one
        transaction. Raises StageConflictError (nothing written) when the bot is in another stage,
        ValueError for an empty reason."""
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                await _stage_change(self._conn, change)
                await self._conn.execute("COMMIT")
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise

    async def latest_stage_changes(self) -> dict[int, StageChange]:
        """Each bot's newest stage change (by id), for the bots that have one."""
        out: dict[int, StageChange] = {}
        async with self._conn.execute(
            "SELECT bot_id, ts, from_stage, to_stage, actor, reason, figures FROM stage_changes"
            " WHERE id IN (SELECT MAX(id) FROM stage_changes GROUP BY bot_id)"
        ) as cur:
            async for r in cur:
                try:
                    figures = json.loads(r[6]) if r[6] else {}
                except ValueError:
                    figures = {}
                out[int(r[0])] = StageChange(
                    int(r[0]), int(r[1]), LifecycleStage(r[2]), LifecycleStage(r[3]), r[4], r[5],
                    figures if isinstance(figures, dict) else {},
                )  # fmt: skip
        return out

    async def equity_points(self, bot_id: int, since: int) -> list[tuple[int, Decimal]]:
        """``[(ts, equity)]`` of the bot's equity snapshots with ``ts >= since`` (ms UTC), in (ts, id) order."""
        async with self._conn.execute(
            "SELECT ts, equity FROM equity_snapshots WHERE bot_id = ? AND ts >= ? ORDER BY ts, id",
            (bot_id, since),
        ) as cur:
            return [(int(r[0]), Decimal(r[1])) for r in await cur.fetchall()]

    # -- account trading mode (schema v4) ----------------------------------------
    async def record_mode_switch(
        self, ts: int, from_mode: str, to_mode: str, actor: str, reason: str, doctor_json: str = ""
    ) -> None:
        """Append a ``mode_switches`` row (the newest row is the mode in force)."""
        async with self._lock:
            await self._conn.execute(
                "INSERT INTO mode_switches (ts, from_mode, to_mode, actor, reason, doctor)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (ts, from_mode, to_mode, actor, reason, doctor_json),
            )  # autocommit connection: one statement, one transaction

    async def append(self, table: str, row: dict[str, Any]) -> int:
        """Append ``row`` (column -> value) to an append-only table another module owns (one of
        ``APPENDABLE``) through the writer connection; returns the new row's id.

        Raises ValueError for another table or a column name that is not an identifier, and
        sqlite3.Error from SQLite (an unknown column, a foreign key).
        """
        if table not in APPENDABLE:
            raise ValueError(f"{table!r} is not a table other modules append to")
        if not row or not all(c.isidentifier() for c in row):
            raise ValueError(f"bad columns for {table}: {sorted(row)}")
        columns = ", ".join(row)
        marks = ", ".join("?" * len(row))
        async with self._lock:
            cur = await self._conn.execute(
                f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(row.values())
            )  # autocommit connection: one statement, one transaction
            return int(cur.lastrowid or 0)

    # -- the AI console's audit (schema v5) -----------------------------------------
    async def record_ai_action(
        self, ts: int, proposal: str, event: str, tool: str, args_json: str, actor: str, detail: str
    ) -> None:
        """Append an ``ai_actions`` row (``ts`` ms UTC; ``event`` proposed | confirmed | cancelled |
        expired | refused | executed | failed; ``args_json`` the validated arguments)."""
        async with self._lock:
            await self._conn.execute(
                "INSERT INTO ai_actions (ts, proposal, event, tool, args, actor, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (ts, proposal, event, tool, args_json, actor, detail),
            )  # autocommit connection: one statement, one transaction

    async def set_bot_params(self, bot_id: int, params: dict[str, Any], ts: int) -> None:
        """Store a bot's new strategy parameters (``bots.params_json``), ``ts`` ms UTC."""
        async with self._lock:
            await self._conn.execute(
                "UPDATE bots SET params_json = ?, updated_ts = MAX(updated_ts, ?) WHERE id = ?",
                (json.dumps(params, sort_keys=True), ts, bot_id),
            )

    async def set_bot_fields(self, bot_id: int, fields: dict[str, Any], ts: int) -> None:
        """Store changed bot settings: keys among risk_mode, size_multiplier, stop_loss, take_profit,
        trailing_stop (Decimal/enum/None values, written as text); ``ts`` ms UTC.

        Raises ValueError for any other key (capital moves through ledger events, state through
        ``set_state``-style paths, never here)."""
        allowed = ("risk_mode", "size_multiplier", "stop_loss", "take_profit", "trailing_stop")
        bad = [k for k in fields if k not in allowed]
        if bad:
            raise ValueError(f"set_bot_fields: {', '.join(bad)} cannot be set here")
        if not fields:
            return
        cols = ", ".join(f"{k} = ?" for k in fields)
        values = [None if v is None else str(getattr(v, "value", v)) for v in fields.values()]
        async with self._lock:
            await self._conn.execute(
                f"UPDATE bots SET {cols}, updated_ts = MAX(updated_ts, ?) WHERE id = ?",  # column names from the allowed tuple
                (*values, ts, bot_id),
            )

    async def trading_mode(self) -> str:
        """The account's trading mode: the newest ``mode_switches`` row's, ``paper`` when there is none."""
        async with self._conn.execute("SELECT to_mode FROM mode_switches ORDER BY id DESC LIMIT 1") as cur:
            row = await cur.fetchone()
        return "paper" if row is None else str(row[0])

    # -- the tick's batch ------------------------------------------------
    async def write(self, batch: WriteBatch) -> None:
        """Apply ``batch`` in one transaction (all or nothing)."""
        if batch:
            async with self._lock:
                await _apply(self._conn, batch)


async def _apply(conn: aiosqlite.Connection, b: WriteBatch) -> None:
    await conn.execute("BEGIN IMMEDIATE")
    try:
        if b.new_orders:
            await conn.executemany(
                "INSERT INTO orders (client_order_id, bot_id, exchange, pair, side, order_type, quantity,"
                " limit_price, state, reason, decision_ts, edge_bps, created_ts, updated_ts,"
                " reject_reason, gate, figures_json) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        o.client_order_id,
                        o.bot_id,
                        o.exchange,
                        o.pair,
                        o.side.value,
                        o.order_type.value,
                        str(o.quantity),
                        _d(o.limit_price),
                        o.state.value,
                        o.reason,
                        n.decision_ts,
                        n.edge_bps,
                        o.created_ts,
                        o.updated_ts,
                        n.reject_reason,
                        n.gate,
                        json.dumps(n.figures, sort_keys=True) if n.figures else "",
                    )
                    for n in b.new_orders
                    for o in (n.order,)
                ],
            )
        if b.order_updates:
            await conn.executemany(
                "UPDATE orders SET state = ?, reject_reason = ?, updated_ts = ?,"
                " exchange_order_id = COALESCE(?, exchange_order_id) WHERE client_order_id = ?",
                [(st.value, why, ts, xid, coid) for coid, st, why, ts, xid in b.order_updates],
            )
        if b.fills:
            await conn.executemany(
                "INSERT INTO fills (fill_id, client_order_id, bot_id, exchange, pair, side, quantity, price, fee,"
                " fee_currency, liquidity, realised_pnl, ts) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        f.fill_id,
                        f.client_order_id,
                        f.bot_id,
                        f.exchange,
                        f.pair,
                        f.side.value,
                        str(f.quantity),
                        str(f.price),
                        str(f.fee),
                        f.fee_currency,
                        f.liquidity,
                        str(f.realised_pnl),
                        f.ts,
                    )
                    for f in b.fills
                ],
            )
        if b.bot_updates:
            await conn.executemany(
                "UPDATE bots SET state = ?, state_reason = ?, last_candle_ts = COALESCE(?, last_candle_ts),"
                " updated_ts = ? WHERE id = ?",
                [(st.value, why, last, ts, bid) for bid, (st, why, last, ts) in b.bot_updates.items()],
            )
        if b.snapshots:
            await conn.executemany(
                "INSERT INTO equity_snapshots (ts, bot_id, equity, realised, unrealised, fees, position_qty,"
                " mark_price, fill_count) VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        s.ts,
                        s.bot_id,
                        str(s.equity),
                        str(s.realised),
                        str(s.unrealised),
                        str(s.fees),
                        str(s.position_qty),
                        _d(s.mark_price),
                        s.fill_count,
                    )
                    for s in b.snapshots
                ],
            )
        if b.trips:
            await conn.executemany(
                "INSERT INTO breaker_trips (id, ts, scope, bot_id, breaker, threshold, value, cause, message)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (t.id, t.ts, t.scope.value, t.bot_id, t.breaker.value, str(t.threshold), str(t.value),
                     t.cause, t.message)
                    for t in b.trips
                ],
            )  # fmt: skip
        if b.resets:
            await conn.executemany(
                "INSERT INTO breaker_resets (trip_id, ts, actor, reason) VALUES (?,?,?,?)",
                [(r.trip_id, r.ts, r.actor, r.reason) for r in b.resets],
            )
        if b.errors:
            await conn.executemany(
                "INSERT INTO bot_errors (ts, bot_id, source, message) VALUES (?,?,?,?)", b.errors
            )
        if b.reconciliations:
            await conn.executemany(
                "INSERT INTO reconciliations (ts, exchange, ok, resolved, recovered, details) VALUES (?,?,?,?,?,?)",
                [(ts, ex, int(ok), res, rec, det) for ts, ex, ok, res, rec, det in b.reconciliations],
            )
        if b.events:
            await conn.executemany(
                "INSERT INTO ledger_events (ts, bot_id, kind, amount, currency, note) VALUES (?,?,?,?,?,?)",
                [(ts, bid, kind, str(amount), cur, note) for ts, bid, kind, amount, cur, note in b.events],
            )
        if b.stage_starts:
            await conn.executemany(
                "UPDATE bots SET stage_ts = ? WHERE id = ? AND stage_ts IS NULL",
                [(ts, bid) for bid, ts in b.stage_starts.items()],
            )
        for change in b.stage_changes:
            await _stage_change(conn, change, check=False)
        if b.capital:
            await conn.executemany(
                "UPDATE bots SET capital = ? WHERE id = ?", [(str(c), bid) for bid, c in b.capital.items()]
            )
        if b.kv:
            await conn.executemany(
                "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                list(b.kv.items()),
            )
        await conn.execute("COMMIT")
    except BaseException:
        await conn.execute("ROLLBACK")
        raise


async def _stage_change(conn: aiosqlite.Connection, c: StageChange, *, check: bool = True) -> None:
    """Set the bot's stage and append the audit row. ``check``: only if the bot is in ``c.from_stage``
    (a writer that read the ledger); the engine's own batch skips it (it is the ledger's only writer,
    and a tick's writes must never be lost to one stale row)."""
    if not c.reason.strip():
        raise ValueError("a stage change needs a reason")
    cur = await conn.execute(
        "UPDATE bots SET stage = ?, stage_ts = ?, updated_ts = MAX(updated_ts, ?) WHERE id = ?"
        + (" AND stage = ?" if check else ""),
        (c.to_stage.value, c.ts, c.ts, c.bot_id, *((c.from_stage.value,) if check else ())),
    )
    if cur.rowcount != 1:
        raise StageConflictError(f"bot {c.bot_id} is not {c.from_stage.value} (or does not exist)")
    await conn.execute(
        "INSERT INTO stage_changes (ts, bot_id, from_stage, to_stage, actor, reason, figures) VALUES (?,?,?,?,?,?,?)",
        (c.ts, c.bot_id, c.from_stage.value, c.to_stage.value, c.actor, c.reason.strip(),
         json.dumps(c.figures, sort_keys=True, default=str)),
    )  # fmt: skip


RISK_KV = "risk.gauges"  # kv key of the breakers' gauges (JSON), written with every tick


@dataclass(frozen=True, slots=True)
class RiskState:
    """Risk state from the ledger: ``known`` client order ids and states; ``submitted`` (bot, exchange,
    created_ts) of every order that reached a broker; unreset trips; the highest trip id; the last
    reset time per (bot, breaker); bot errors (bot, ts); the gauges JSON (or None)."""

    known: dict[str, OrderState]
    submitted: list[tuple[int, str, int]]
    active_trips: list[Trip]
    max_trip_id: int
    last_resets: dict[tuple[int, str], int]
    errors: list[tuple[int, int]]
    gauges_json: str | None


def _trip(r: sqlite3.Row) -> Trip:
    return Trip(
        id=r["id"],
        ts=r["ts"],
        scope=Scope(r["scope"]),
        bot_id=r["bot_id"],
        breaker=Breaker(r["breaker"]),
        threshold=Decimal(r["threshold"]),
        value=Decimal(r["value"]),
        cause=r["cause"],
        message=r["message"],
    )


def _bot(r: sqlite3.Row) -> BotRecord:
    def dec(x: str | None) -> Decimal | None:
        return None if x is None else Decimal(x)

    return BotRecord(
        id=r["id"],
        name=r["name"],
        exchange=r["exchange"],
        pair=r["pair"],
        timeframe=r["timeframe"],
        strategy=r["strategy"],
        params=json.loads(r["params_json"]),
        risk_mode=RiskMode(r["risk_mode"]),
        capital=Decimal(r["capital"]),
        stop_loss=dec(r["stop_loss"]),
        take_profit=dec(r["take_profit"]),
        trailing_stop=dec(r["trailing_stop"]),
        state=BotState(r["state"]),
        state_reason=r["state_reason"],
        stage=LifecycleStage(r["stage"]),
        last_candle_ts=r["last_candle_ts"],
        sizing=r["sizing"],
        order_type=r["order_type"],
        stage_ts=r["stage_ts"],
        size_multiplier=Decimal(r["size_multiplier"]),
        dna_id=r["dna_id"],
    )
