"""``amarktai ledger verify``: recompute everything from the raw rows and compare.

Checks, in this order (the first discrepancy found is reported first):

1. ``PRAGMA integrity_check`` is ok; the four append-only triggers exist;
   ``PRAGMA foreign_key_check`` finds no orphan rows.
2. FIFO (per bot, exchange, pair, fills in id order): each fill's pair and
   exchange are its bot's; its fee converts to quote (``pnl.fee_in_quote``);
   no sell exceeds the position; a buy's ``realised_pnl`` is 0 and a sell's
   equals the ``pnl.FifoBook`` result *exactly* (Decimal equality, which
   ignores trailing zeros; no quantising: the engine computes it with the
   same ``FifoBook``).
3. Orders: every fill references an order with the same bot, exchange, pair
   and side, in state ``filled`` or ``open`` (partial fill), or ``cancelled``/
   ``expired`` after a partial fill (fills < quantity); the fills of an order
   sum to at most its quantity; a ``filled`` order has at least one fill.
4. Cash per bot never negative after any fill, in (ts, id) order:
   ``capital + sum(sell qty*price - fee) - sum(buy qty*price + fee) >= 0``
   (fees in quote; capital per ``reader.capital_schedule``).
5. Equity snapshots of a bot: the fills a snapshot includes are the bot's
   first ``fill_count`` fills in id order (or, if the column is absent, those
   with ``ts <= snapshot.ts`` in (ts, id) order); ``realised`` == sum of their
   stored realised_pnl, ``fees`` == sum of their fees in quote,
   ``position_qty`` == FIFO position, ``unrealised`` == ``position *
   mark_price - cost_basis`` (mark_price may be NULL only when flat),
   ``equity == capital(ts) + realised + unrealised``. Each account row
   (bot_id NULL) equals the sum of its batch (the bot rows with the same ts
   written since the previous account row, in id order) in equity,
   realised, unrealised, fees and fill_count (not position_qty: base
   quantities of different pairs do not add up).

A discrepancy is one line: ``<table> id=<row id> <field>: expected X, found Y``.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

from amarktai_tui.ledger import reader
from amarktai_tui.ledger.pnl import ZERO, FifoBook, canonical, fee_in_quote
from amarktai_tui.ledger.reader import EquitySnapshot, FillRow

TRIGGERS = ("fills_no_update", "fills_no_delete", "ledger_events_no_update", "ledger_events_no_delete")
MAX_KEPT = 50


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """``ok`` iff no discrepancy; ``checks`` = comparisons made; ``summary`` JSON-ready.

    ``discrepancies`` holds the first ``MAX_KEPT`` messages (the total count
    is ``summary["discrepancies"]``).
    """

    ok: bool
    checks: int
    first_discrepancy: str | None
    summary: dict[str, Any]
    discrepancies: tuple[str, ...] = field(default=())


class _Tally:
    def __init__(self) -> None:
        self.checks = 0
        self.count = 0
        self.kept: list[str] = []

    def expect(self, ok: bool, table: str, row_id: object, fld: str, expected: object, found: object) -> bool:
        self.checks += 1
        if not ok:
            self.count += 1
            if len(self.kept) < MAX_KEPT:
                self.kept.append(f"{table} id={row_id} {fld}: expected {expected}, found {found}")
        return ok


def _s(d: Decimal) -> str:
    return str(canonical(d))


def _split(pair: str) -> tuple[str, str]:
    base, _, quote = pair.partition("/")
    return base, quote


def _structure(conn: sqlite3.Connection, t: _Tally) -> None:
    res = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
    t.expect(res == ["ok"], "sqlite", "-", "integrity_check", "ok", "; ".join(res)[:200])
    have = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    for name in TRIGGERS:
        t.expect(name in have, "sqlite_master", name, "trigger", "present", "missing")
    for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check"):
        t.expect(False, table, rowid, "foreign key", f"a row in {parent}", "none")
    t.checks += 1


def _fee_q(f: FillRow) -> Decimal | None:
    base, quote = _split(f.pair)
    try:
        return fee_in_quote(f.fee, f.fee_currency, base, quote, f.price)
    except (ValueError, ArithmeticError):
        return None


def _fifo(fills: list[FillRow], bots: dict[int, reader.BotRow], t: _Tally) -> set[int]:
    """Check 2; return the ids of fills that could not be applied (skipped by later checks)."""
    bad: set[int] = set()
    books: dict[tuple[int, str, str], FifoBook] = defaultdict(FifoBook)
    for f in fills:
        bot = bots.get(f.bot_id)
        if bot is not None:
            t.expect(f.exchange == bot.exchange, "fills", f.id, "exchange", bot.exchange, f.exchange)
            t.expect(f.pair == bot.pair, "fills", f.id, "pair", bot.pair, f.pair)
        fee = _fee_q(f)
        if not t.expect(
            fee is not None, "fills", f.id, "fee_currency", f"base or quote of {f.pair}", f.fee_currency
        ):
            bad.add(f.id)
            continue
        assert fee is not None
        book = books[(f.bot_id, f.exchange, f.pair)]
        try:
            if f.side == "buy":
                book.buy(f.quantity, f.price, fee)
                t.expect(f.realised_pnl == 0, "fills", f.id, "realised_pnl", "0", _s(f.realised_pnl))
                continue
            if not t.expect(
                f.quantity <= book.position_qty, "fills", f.id, "quantity",
                f"<= position {_s(book.position_qty)}", _s(f.quantity),
            ):  # fmt: skip
                bad.add(f.id)
                continue
            pnl = book.sell(f.quantity, f.price, fee)
            t.expect(pnl == f.realised_pnl, "fills", f.id, "realised_pnl", _s(pnl), _s(f.realised_pnl))
        except (ValueError, ArithmeticError) as exc:
            t.expect(False, "fills", f.id, "quantity/price/fee", "positive finite values", str(exc))
            bad.add(f.id)
    return bad


def _orders(fills: list[FillRow], orders: list[reader.OrderRow], t: _Tally) -> None:
    by_coid = {o.client_order_id: o for o in orders}
    filled: dict[str, Decimal] = defaultdict(Decimal)
    for f in fills:
        o = by_coid.get(f.client_order_id)
        if not t.expect(
            o is not None, "fills", f.id, "client_order_id", "an order", f"none for {f.client_order_id}"
        ):
            continue
        assert o is not None
        for name in ("bot_id", "exchange", "pair", "side"):
            t.expect(
                getattr(o, name) == getattr(f, name), "fills", f.id, name, getattr(o, name), getattr(f, name)
            )
        filled[o.client_order_id] += f.quantity
    for o in orders:
        got = filled.get(o.client_order_id)
        if got is None:
            t.expect(o.state != "filled", "orders", o.id, "state", "not filled (it has no fills)", o.state)
            continue
        t.expect(got <= o.quantity, "orders", o.id, "quantity", f">= sum of fills {_s(got)}", _s(o.quantity))
        if o.state in ("cancelled", "expired"):
            t.expect(got < o.quantity, "orders", o.id, "state", "filled (fills reach its quantity)", o.state)
        else:
            t.expect(
                o.state in ("filled", "open"),
                "orders",
                o.id,
                "state",
                "filled or open (it has fills)",
                o.state,
            )


def _cash(fills: list[FillRow], sched: dict[int, list[tuple[int, Decimal]]], t: _Tally) -> None:
    flow: dict[int, Decimal] = defaultdict(Decimal)
    for f in sorted(fills, key=lambda f: (f.ts, f.id)):
        fee = _fee_q(f)
        assert fee is not None
        gross = f.quantity * f.price
        flow[f.bot_id] += gross - fee if f.side == "sell" else -(gross + fee)
        cash = reader.capital_at(sched.get(f.bot_id, []), f.ts) + flow[f.bot_id]
        t.expect(cash >= 0, "fills", f.id, f"cash of bot {f.bot_id}", ">= 0", _s(cash))


class _Replay:
    """A bot's FIFO state after a prefix of its fills (for the snapshot checks)."""

    def __init__(self) -> None:
        self.books: dict[tuple[str, str], FifoBook] = defaultdict(FifoBook)
        self.realised = self.fees = ZERO

    def apply(self, f: FillRow, t: _Tally) -> None:
        fee = _fee_q(f)
        assert fee is not None  # fills whose fee does not convert are left out by the caller
        book = self.books[(f.exchange, f.pair)]
        if f.side == "buy":
            book.buy(f.quantity, f.price, fee)
        elif t.expect(
            f.quantity <= book.position_qty, "fills", f.id, "ts",
            "not before the buys it sells (time order agrees with id order)", f.ts,
        ):  # fmt: skip
            book.sell(f.quantity, f.price, fee)
        else:
            return
        self.realised += f.realised_pnl
        self.fees += fee

    @property
    def position(self) -> Decimal:
        return sum((b.position_qty for b in self.books.values()), ZERO)

    def unrealised(self, mark: Decimal) -> Decimal:
        return sum((b.unrealised(mark) for b in self.books.values()), ZERO)


def _bot_snaps(
    fills: list[FillRow],
    bad: set[int],
    snaps: list[EquitySnapshot],
    sched: list[tuple[int, Decimal]],
    t: _Tally,
) -> None:
    """Check 5 for one bot. ``fills``: all of the bot's fills in id order.

    A snapshot with ``fill_count`` includes the bot's first ``fill_count``
    fills (id order); without it (older schema), the fills with
    ``ts <= snapshot.ts`` in (ts, id) order.
    """
    tb = "equity_snapshots"
    by_time = sorted(fills, key=lambda f: (f.ts, f.id))
    rep, applied = _Replay(), 0
    for s in sorted(snaps, key=lambda s: (s.ts, s.id)):
        if s.fill_count is not None:
            n = s.fill_count
            if not t.expect(0 <= n <= len(fills), tb, s.id, "fill_count", f"0..{len(fills)}", n):
                continue
            seq = fills
        else:
            n = applied
            while n < len(by_time) and by_time[n].ts <= s.ts:
                n += 1
            seq = by_time
        if n < applied:
            rep, applied = _Replay(), 0
        for f in seq[applied:n]:
            if f.id not in bad:
                rep.apply(f, t)
        applied = n
        pos = rep.position
        t.expect(s.realised == rep.realised, tb, s.id, "realised", _s(rep.realised), _s(s.realised))
        t.expect(s.fees == rep.fees, tb, s.id, "fees", _s(rep.fees), _s(s.fees))
        t.expect(s.position_qty == pos, tb, s.id, "position_qty", _s(pos), _s(s.position_qty))
        if s.mark_price is None:
            if t.expect(pos == 0, tb, s.id, "mark_price", "a price (position is open)", "NULL"):
                t.expect(s.unrealised == 0, tb, s.id, "unrealised", "0", _s(s.unrealised))
        else:
            unreal = rep.unrealised(s.mark_price)
            t.expect(s.unrealised == unreal, tb, s.id, "unrealised", _s(unreal), _s(s.unrealised))
        equity = reader.capital_at(sched, s.ts) + s.realised + s.unrealised
        t.expect(s.equity == equity, tb, s.id, "equity", _s(equity), _s(s.equity))


# position_qty is not summed: base quantities of different pairs do not add up.
_SUMMED = ("equity", "realised", "unrealised", "fees")


def _account_snaps(snaps: list[EquitySnapshot], t: _Tally) -> None:
    """Each account row equals the sum, over bots, of each bot's latest row as of that time.

    The engine writes a bot's row at a snapshot time only when the bot holds
    a position or its fills changed since its previous row: a flat bot's
    equity (funding + realised) only moves with a fill, so its latest row
    still holds. Rows are taken in id order (a restart that re-records a time
    does not mix runs). Compared: equity, realised, unrealised, fees,
    fill_count (if stored).
    """
    latest: dict[int, EquitySnapshot] = {}
    for s in sorted(snaps, key=lambda s: s.id):
        if s.bot_id is not None:
            latest[s.bot_id] = s
            continue
        rows = [b for b in latest.values() if b.ts <= s.ts]
        for name in _SUMMED:
            want = sum((getattr(b, name) for b in rows), ZERO)
            found = getattr(s, name)
            t.expect(
                found == want, "equity_snapshots", s.id, name, f"{_s(want)} (sum of bot rows)", _s(found)
            )
        if s.fill_count is not None:
            n = sum(b.fill_count or 0 for b in rows)
            t.expect(
                s.fill_count == n,
                "equity_snapshots",
                s.id,
                "fill_count",
                f"{n} (sum of bot rows)",
                s.fill_count,
            )


def verify(conn: sqlite3.Connection) -> VerifyResult:
    """Recompute the ledger from its raw rows; see the module docstring for the checks.

    ``conn``: any connection (read-only is enough). Bad data never raises:
    an unparseable money value is reported as the discrepancy (and stops
    the data checks). Raises ``sqlite3.Error`` only when the file is not a
    ledger (e.g. tables missing).
    """
    with localcontext() as ctx:
        ctx.prec = 60  # sums and products of ledger figures stay exact
        return _verify(conn)


def _verify(conn: sqlite3.Connection) -> VerifyResult:
    t = _Tally()
    _structure(conn, t)
    summary: dict[str, Any] = {}
    try:
        bots = {b.id: b for b in reader.bots(conn)}
        orders = reader.orders(conn)
        fills = reader.fills(conn)
        events = reader.ledger_events(conn)
        snaps = reader.all_snapshots(conn)
    except reader.LedgerDataError as exc:
        t.checks += 1
        t.count += 1
        t.kept.append(str(exc))
    else:
        bad = _fifo(fills, bots, t)
        _orders(fills, orders, t)
        good = [f for f in fills if f.id not in bad]
        sched = reader.capital_schedule(events)
        _cash(good, sched, t)
        by_bot: dict[int, list[FillRow]] = defaultdict(list)
        for f in fills:
            by_bot[f.bot_id].append(f)
        snaps_by_bot: dict[int, list[EquitySnapshot]] = defaultdict(list)
        for s in snaps:
            if s.bot_id is not None:
                snaps_by_bot[s.bot_id].append(s)
        for bot_id, bot_snaps in snaps_by_bot.items():
            _bot_snaps(by_bot.get(bot_id, []), bad, bot_snaps, sched.get(bot_id, []), t)
        _account_snaps(snaps, t)
        summary = {
            "bots": len(bots),
            "orders": len(orders),
            "fills": len(fills),
            "sells": sum(1 for f in fills if f.side == "sell"),
            "ledger_events": len(events),
            "snapshots": sum(1 for s in snaps if s.bot_id is not None),
            "account_snapshots": sum(1 for s in snaps if s.bot_id is None),
            "funding": _s(sum((e.amount for e in events if e.bot_id is not None), ZERO)),
            "realised_pnl": _s(sum((f.realised_pnl for f in fills), ZERO)),
        }
    summary["checks"] = t.checks
    summary["discrepancies"] = t.count
    return VerifyResult(
        ok=t.count == 0,
        checks=t.checks,
        first_discrepancy=t.kept[0] if t.kept else None,
        summary=summary,
        discrepancies=tuple(t.kept),
    )
