"""Synchronous read queries over the ledger (CLI commands, reports, verify).

Works on any ``sqlite3.Connection`` (``schema.connect_readonly(path)`` in
the app; row factory ``sqlite3.Row`` or plain tuples: columns are selected
explicitly and read by position). Never writes.

Money columns (TEXT) come back as ``Decimal``; timestamps as int ms UTC.
A money column that does not parse raises ``LedgerDataError`` naming the
table, row id and column.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any


class LedgerDataError(ValueError):
    """A stored value is not what the schema promises (e.g. a money TEXT that is not a Decimal)."""


def _dec(text: Any, table: str, row_id: int, column: str) -> Decimal:
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        raise LedgerDataError(
            f"{table} id={row_id} {column}: expected a decimal string, found {text!r}"
        ) from None
    if not value.is_finite():
        raise LedgerDataError(f"{table} id={row_id} {column}: expected a finite decimal, found {text!r}")
    return value


def _opt_dec(text: Any, table: str, row_id: int, column: str) -> Decimal | None:
    return None if text is None else _dec(text, table, row_id, column)


@dataclass(frozen=True, slots=True)
class BotRow:
    """A ``bots`` row. ``capital`` quote; stop/take/trailing fractions or None."""

    id: int
    name: str
    exchange: str
    pair: str
    timeframe: str
    strategy: str
    params_json: str
    risk_mode: str
    capital: Decimal
    stop_loss: Decimal | None
    take_profit: Decimal | None
    trailing_stop: Decimal | None
    state: str
    state_reason: str
    stage: str
    last_candle_ts: int | None
    created_ts: int
    updated_ts: int


@dataclass(frozen=True, slots=True)
class OrderRow:
    """An ``orders`` row. ``quantity`` base units; ``limit_price`` quote or None."""

    id: int
    client_order_id: str
    bot_id: int
    exchange: str
    pair: str
    side: str
    order_type: str
    quantity: Decimal
    limit_price: Decimal | None
    state: str
    reason: str
    reject_reason: str
    exchange_order_id: str | None
    decision_ts: int
    edge_bps: float
    created_ts: int
    updated_ts: int


@dataclass(frozen=True, slots=True)
class FillRow:
    """A ``fills`` row (satisfies ``pnl.FillLike``). ``fee`` in ``fee_currency``."""

    id: int
    fill_id: str
    client_order_id: str
    bot_id: int
    exchange: str
    pair: str
    side: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    liquidity: str
    realised_pnl: Decimal
    ts: int


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """A ``ledger_events`` row: ``amount`` signed, in ``currency``; bot_id None = account."""

    id: int
    ts: int
    bot_id: int | None
    kind: str
    amount: Decimal
    currency: str
    note: str


@dataclass(frozen=True, slots=True)
class EquitySnapshot:
    """An ``equity_snapshots`` row (bot_id None = account row; mark_price None there)."""

    id: int
    ts: int
    bot_id: int | None
    equity: Decimal
    realised: Decimal
    unrealised: Decimal
    fees: Decimal
    position_qty: Decimal
    mark_price: Decimal | None
    fill_count: int | None = None  # fills of the bot (account: all) included; None if no such column


_BOT_COLS = (
    "id, name, exchange, pair, timeframe, strategy, params_json, risk_mode, capital, stop_loss, "
    "take_profit, trailing_stop, state, state_reason, stage, last_candle_ts, created_ts, updated_ts"
)
_ORDER_COLS = (
    "id, client_order_id, bot_id, exchange, pair, side, order_type, quantity, limit_price, state, "
    "reason, reject_reason, exchange_order_id, decision_ts, edge_bps, created_ts, updated_ts"
)
_FILL_COLS = (
    "id, fill_id, client_order_id, bot_id, exchange, pair, side, quantity, price, fee, fee_currency, "
    "liquidity, realised_pnl, ts"
)
_EVENT_COLS = "id, ts, bot_id, kind, amount, currency, note"
_SNAP_BASE = "id, ts, bot_id, equity, realised, unrealised, fees, position_qty, mark_price"


def _snap_cols(conn: sqlite3.Connection) -> str:
    cols = {str(r[1]) for r in conn.execute("PRAGMA table_info(equity_snapshots)")}
    return _SNAP_BASE + (", fill_count" if "fill_count" in cols else ", NULL")


def _bot(r: Any) -> BotRow:
    i = int(r[0])
    return BotRow(
        i, r[1], r[2], r[3], r[4], r[5], r[6], r[7], _dec(r[8], "bots", i, "capital"),
        _opt_dec(r[9], "bots", i, "stop_loss"), _opt_dec(r[10], "bots", i, "take_profit"),
        _opt_dec(r[11], "bots", i, "trailing_stop"), r[12], r[13], r[14], r[15], int(r[16]), int(r[17]),
    )  # fmt: skip


def _order(r: Any) -> OrderRow:
    i = int(r[0])
    return OrderRow(
        i, r[1], int(r[2]), r[3], r[4], r[5], r[6], _dec(r[7], "orders", i, "quantity"),
        _opt_dec(r[8], "orders", i, "limit_price"), r[9], r[10], r[11], r[12], int(r[13]),
        float(r[14]), int(r[15]), int(r[16]),
    )  # fmt: skip


def _fill(r: Any) -> FillRow:
    i = int(r[0])
    return FillRow(
        i, r[1], r[2], int(r[3]), r[4], r[5], r[6], _dec(r[7], "fills", i, "quantity"),
        _dec(r[8], "fills", i, "price"), _dec(r[9], "fills", i, "fee"), r[10], r[11],
        _dec(r[12], "fills", i, "realised_pnl"), int(r[13]),
    )  # fmt: skip


def _event(r: Any) -> LedgerEvent:
    i = int(r[0])
    bot = None if r[2] is None else int(r[2])
    return LedgerEvent(i, int(r[1]), bot, r[3], _dec(r[4], "ledger_events", i, "amount"), r[5], r[6])


def _snap(r: Any) -> EquitySnapshot:
    i, t = int(r[0]), "equity_snapshots"
    return EquitySnapshot(
        i, int(r[1]), None if r[2] is None else int(r[2]), _dec(r[3], t, i, "equity"),
        _dec(r[4], t, i, "realised"), _dec(r[5], t, i, "unrealised"), _dec(r[6], t, i, "fees"),
        _dec(r[7], t, i, "position_qty"), _opt_dec(r[8], t, i, "mark_price"),
        None if r[9] is None else int(r[9]),
    )  # fmt: skip


def bots(conn: sqlite3.Connection) -> list[BotRow]:
    """All bots, by id."""
    return [_bot(r) for r in conn.execute(f"SELECT {_BOT_COLS} FROM bots ORDER BY id")]


def fills(conn: sqlite3.Connection, bot_id: int | None = None) -> list[FillRow]:
    """Fills in ledger order (id), all bots or one bot."""
    if bot_id is None:
        rows = conn.execute(f"SELECT {_FILL_COLS} FROM fills ORDER BY id")
    else:
        rows = conn.execute(f"SELECT {_FILL_COLS} FROM fills WHERE bot_id = ? ORDER BY id", (bot_id,))
    return [_fill(r) for r in rows]


def orders(
    conn: sqlite3.Connection, bot_id: int | None = None, states: Iterable[str] | None = None
) -> list[OrderRow]:
    """Orders by id, optionally of one bot and/or in the given states (e.g. ``("pending", "open")``)."""
    sql = f"SELECT {_ORDER_COLS} FROM orders WHERE 1=1"
    args: list[object] = []
    if bot_id is not None:
        sql += " AND bot_id = ?"
        args.append(bot_id)
    if states is not None:
        wanted = list(states)
        sql += f" AND state IN ({','.join('?' * len(wanted))})" if wanted else " AND 0"
        args.extend(wanted)
    return [_order(r) for r in conn.execute(sql + " ORDER BY id", args)]


def open_orders_count(conn: sqlite3.Connection) -> int:
    """Number of orders still in flight (state pending or open)."""
    return int(conn.execute("SELECT COUNT(*) FROM orders WHERE state IN ('pending', 'open')").fetchone()[0])


def ledger_events(conn: sqlite3.Connection, bot_id: int | None = None) -> list[LedgerEvent]:
    """Ledger events by (ts, id), all or those of one bot."""
    if bot_id is None:
        rows = conn.execute(f"SELECT {_EVENT_COLS} FROM ledger_events ORDER BY ts, id")
    else:
        rows = conn.execute(
            f"SELECT {_EVENT_COLS} FROM ledger_events WHERE bot_id = ? ORDER BY ts, id", (bot_id,)
        )
    return [_event(r) for r in rows]


def funding_by_bot(conn: sqlite3.Connection) -> dict[int, Decimal]:
    """Each bot's capital, quote: the sum of all its ledger events (funding, allocation, adjustment).

    Bots without events are absent; account-level events (bot_id NULL) are not included.
    """
    out: dict[int, Decimal] = {}
    for e in ledger_events(conn):
        if e.bot_id is not None:
            out[e.bot_id] = out.get(e.bot_id, Decimal(0)) + e.amount
    return out


def snapshots(conn: sqlite3.Connection, bot_id: int | None = None) -> list[EquitySnapshot]:
    """Equity snapshots of one bot, or the account rows (bot_id None), by (ts, id)."""
    if bot_id is None:
        rows = conn.execute(
            f"SELECT {_snap_cols(conn)} FROM equity_snapshots WHERE bot_id IS NULL ORDER BY ts, id"
        )
    else:
        rows = conn.execute(
            f"SELECT {_snap_cols(conn)} FROM equity_snapshots WHERE bot_id = ? ORDER BY ts, id", (bot_id,)
        )
    return [_snap(r) for r in rows]


def all_snapshots(conn: sqlite3.Connection) -> list[EquitySnapshot]:
    """Every equity snapshot row, bot and account, by id."""
    return [_snap(r) for r in conn.execute(f"SELECT {_snap_cols(conn)} FROM equity_snapshots ORDER BY id")]


def latest_snapshot(conn: sqlite3.Connection, bot_id: int | None = None) -> EquitySnapshot | None:
    """The latest (max ts, then max id) snapshot of a bot or of the account; None if none."""
    where = "bot_id IS NULL" if bot_id is None else "bot_id = ?"
    args: tuple[int, ...] = () if bot_id is None else (bot_id,)
    r = conn.execute(
        f"SELECT {_snap_cols(conn)} FROM equity_snapshots WHERE {where} ORDER BY ts DESC, id DESC LIMIT 1",
        args,
    ).fetchone()
    return None if r is None else _snap(r)


def latest_snapshots(conn: sqlite3.Connection) -> dict[int | None, EquitySnapshot]:
    """The latest snapshot of every bot (key bot id) and of the account (key None)."""
    out: dict[int | None, EquitySnapshot] = {}
    for s in all_snapshots(conn):
        cur = out.get(s.bot_id)
        if cur is None or (s.ts, s.id) > (cur.ts, cur.id):
            out[s.bot_id] = s
    return out


def equity_series(conn: sqlite3.Connection, bot_id: int | None = None) -> list[tuple[int, Decimal]]:
    """``[(ts_ms, equity)]`` of the account (bot_id None) or of one bot, in time order."""
    return [(s.ts, s.equity) for s in snapshots(conn, bot_id)]


def kv_get(conn: sqlite3.Connection, key: str, default: str | None = None) -> str | None:
    """The ``kv`` value of ``key``, or ``default``."""
    r = conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
    return default if r is None else str(r[0])


def last_fill_ts(conn: sqlite3.Connection) -> int | None:
    """Time (ms UTC) of the latest fill; None without fills."""
    r = conn.execute("SELECT MAX(ts) FROM fills").fetchone()
    return None if r is None or r[0] is None else int(r[0])


OPENING_TS = -(2**63)  # "since the beginning": effective time of a bot's opening funding


def capital_schedule(events: Iterable[LedgerEvent]) -> dict[int, list[tuple[int, Decimal]]]:
    """Per bot, ``[(effective_ts, amount)]`` of its ledger events, in (ts, id) order.

    A bot's opening funding (its earliest ``funding`` event) counts from the
    beginning (``OPENING_TS``), whatever its ts: the engine may stamp it with
    the wall clock while a replay's fills and snapshots carry market time.
    Every other event counts from its own ts. Account-level events are left
    out (account figures are sums over bots).
    """
    out: dict[int, list[tuple[int, Decimal]]] = {}
    opened: set[int] = set()
    for e in sorted(events, key=lambda e: (e.ts, e.id)):
        if e.bot_id is None:
            continue
        eff = e.ts
        if e.kind == "funding" and e.bot_id not in opened:
            opened.add(e.bot_id)
            eff = OPENING_TS
        out.setdefault(e.bot_id, []).append((eff, e.amount))
    for sched in out.values():
        sched.sort(key=lambda x: x[0])
    return out


def capital_at(schedule: list[tuple[int, Decimal]], ts: int) -> Decimal:
    """A bot's capital (quote) at ``ts``: the sum of its schedule entries effective at or before ts."""
    return sum((a for t, a in schedule if t <= ts), Decimal(0))


# -- circuit breakers (schema v2) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class TripResetRow:
    """A ``breaker_resets`` row: who (``actor``: user | cli | ai | engine), when (ms UTC) and why."""

    id: int
    trip_id: int
    ts: int
    actor: str
    reason: str


@dataclass(frozen=True, slots=True)
class TripRow:
    """A ``breaker_trips`` row with its bot's name (None for account trips) and its reset, if any.

    ``threshold``/``value``: fractions for drawdown and daily loss (0.2 = 20%), counts for
    consecutive losses and error storms, 0 for a halt.
    """

    id: int
    ts: int
    scope: str
    bot_id: int | None
    bot: str | None
    breaker: str
    threshold: Decimal
    value: Decimal
    cause: str
    message: str
    reset: TripResetRow | None

    @property
    def active(self) -> bool:
        return self.reset is None


_TRIP_SQL = (
    "SELECT t.id, t.ts, t.scope, t.bot_id, b.name, t.breaker, t.threshold, t.value, t.cause, t.message,"
    " r.id, r.ts, r.actor, r.reason FROM breaker_trips t LEFT JOIN bots b ON b.id = t.bot_id"
    " LEFT JOIN breaker_resets r ON r.trip_id = t.id"
)


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        is not None
    )


def _trip_row(r: Any) -> TripRow:
    i, t = int(r[0]), "breaker_trips"
    reset = None if r[10] is None else TripResetRow(int(r[10]), i, int(r[11]), r[12], r[13])
    return TripRow(
        i, int(r[1]), r[2], None if r[3] is None else int(r[3]), r[4], r[5], _dec(r[6], t, i, "threshold"),
        _dec(r[7], t, i, "value"), r[8], r[9], reset,
    )  # fmt: skip


def breaker_trips(conn: sqlite3.Connection, limit: int | None = None) -> list[TripRow]:
    """Trips with their resets, newest first (by id); at most ``limit`` rows (None = all).

    A ledger older than schema v2 (no ``breaker_trips`` table) has none: [].
    """
    if not _has_table(conn, "breaker_trips"):
        return []
    sql, args = _TRIP_SQL + " ORDER BY t.id DESC", []
    if limit is not None:
        sql, args = sql + " LIMIT ?", [max(0, limit)]
    return [_trip_row(r) for r in conn.execute(sql, args)]


def active_trips(conn: sqlite3.Connection) -> list[TripRow]:
    """Trips without a reset (the ones that stop new risk), oldest first."""
    if not _has_table(conn, "breaker_trips"):
        return []
    return [_trip_row(r) for r in conn.execute(_TRIP_SQL + " WHERE r.id IS NULL ORDER BY t.id")]


def breaker_trip(conn: sqlite3.Connection, trip_id: int) -> TripRow | None:
    """One trip by id (with its reset, if any); None when there is no such trip."""
    if not _has_table(conn, "breaker_trips"):
        return None
    r = conn.execute(_TRIP_SQL + " WHERE t.id = ?", (trip_id,)).fetchone()
    return None if r is None else _trip_row(r)


def max_trip_id(conn: sqlite3.Connection) -> int:
    """The highest trip id (0 without trips): a new trip takes the next one."""
    if not _has_table(conn, "breaker_trips"):
        return 0
    return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM breaker_trips").fetchone()[0])


# -- risk refusals (schema v2) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefusalRow:
    """An order a risk gate refused (an ``orders`` row with ``gate != ''``), with its bot's name.

    ``created_ts``: the decision candle's close; ``updated_ts``: when it was refused (the
    engine's clock, the time the live refusals carry); both ms UTC. ``figures``: what the
    gate compared, as strings (``{"edge_bps": "4.2", "cost_bps": "30"}``).
    """

    id: int
    created_ts: int
    updated_ts: int
    bot_id: int
    bot: str
    side: str
    gate: str
    reject_reason: str
    figures: dict[str, str]


def _json_object(text: Any, where: str) -> dict[str, Any]:
    """A stored JSON object (``{}`` for an empty column). Raises LedgerDataError naming ``where``."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise LedgerDataError(f"{where}: expected a JSON object, found {text!r:.60}")
    return data


def _figures(text: Any, row_id: int) -> dict[str, str]:
    return {str(k): str(v) for k, v in _json_object(text, f"orders id={row_id} figures_json").items()}


def refusals(conn: sqlite3.Connection, limit: int = 200) -> list[RefusalRow]:
    """The latest refused orders (``gate != ''``), newest first (by id); at most ``limit`` rows.

    A ledger older than schema v2 (no ``gate`` column) has none: []. Raises
    LedgerDataError when a ``figures_json`` is not a JSON object.
    """
    cols = {str(r[1]) for r in conn.execute("PRAGMA table_info(orders)")}
    if "gate" not in cols:
        return []
    rows = conn.execute(
        "SELECT o.id, o.created_ts, o.updated_ts, o.bot_id, b.name, o.side, o.gate, o.reject_reason,"
        " o.figures_json FROM orders o LEFT JOIN bots b ON b.id = o.bot_id"
        " WHERE o.gate != '' ORDER BY o.id DESC LIMIT ?",
        (max(0, limit),),
    )
    out: list[RefusalRow] = []
    for r in rows:
        i, bot_id = int(r[0]), int(r[3])
        name = str(bot_id) if r[4] is None else str(r[4])
        out.append(RefusalRow(i, int(r[1]), int(r[2]), bot_id, name, r[5], r[6], r[7], _figures(r[8], i)))
    return out


# -- bot lifecycle stages (schema v4) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class StageChangeRow:
    """A ``stage_changes`` row with its bot's name: who (``actor``: user | cli | ai | engine) moved
    the bot from ``from_stage`` to ``to_stage``, when (ms UTC, engine time) and why; ``figures``
    the criteria as measured then (JSON object; ``{}`` when none)."""

    id: int
    ts: int
    bot_id: int
    bot: str
    from_stage: str
    to_stage: str
    actor: str
    reason: str
    figures: dict[str, Any]


def _stage_figures(text: Any, row_id: int) -> dict[str, Any]:
    return _json_object(text, f"stage_changes id={row_id} figures")


def stage_changes(
    conn: sqlite3.Connection, bot_id: int | None = None, limit: int | None = None
) -> list[StageChangeRow]:
    """Stage changes, newest first (by id), of every bot or of one; at most ``limit`` (None = all).

    A ledger older than schema v4 has none: []. Raises LedgerDataError when a
    ``figures`` is not a JSON object.
    """
    if not _has_table(conn, "stage_changes"):
        return []
    sql = (
        "SELECT s.id, s.ts, s.bot_id, b.name, s.from_stage, s.to_stage, s.actor, s.reason, s.figures"
        " FROM stage_changes s LEFT JOIN bots b ON b.id = s.bot_id"
    )
    args: list[object] = []
    if bot_id is not None:
        sql += " WHERE s.bot_id = ?"
        args.append(bot_id)
    sql += " ORDER BY s.id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(max(0, limit))
    out: list[StageChangeRow] = []
    for r in conn.execute(sql, args):
        i, bid = int(r[0]), int(r[2])
        name = str(bid) if r[3] is None else str(r[3])
        out.append(StageChangeRow(i, int(r[1]), bid, name, r[4], r[5], r[6], r[7], _stage_figures(r[8], i)))
    return out


def latest_stage_change(conn: sqlite3.Connection, bot_id: int) -> StageChangeRow | None:
    """The bot's newest stage change, or None (it is still in its first stage)."""
    rows = stage_changes(conn, bot_id, limit=1)
    return rows[0] if rows else None


def bot_stage_starts(conn: sqlite3.Connection) -> dict[int, int | None]:
    """Each bot's ``stage_ts``: ms UTC (market time) its current stage began; None = not started
    yet. Empty for a ledger older than schema v4 (no such column)."""
    cols = {str(r[1]) for r in conn.execute("PRAGMA table_info(bots)")}
    if "stage_ts" not in cols:
        return {}
    return {
        int(r[0]): None if r[1] is None else int(r[1]) for r in conn.execute("SELECT id, stage_ts FROM bots")
    }
