"""Equity snapshot rows for one engine time (pure over the runners' state).

A long bot gets a row at every snapshot time; a flat bot's equity moves
only with a fill, so its row is written only when its fill count changed
since its last row. The account row (``bot_id`` None) is the sum over bots
and carries the total fill count.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from amarktai_tui.engine.runner import BotRunner
from amarktai_tui.ledger.store import SnapshotRow

_ZERO = Decimal(0)


def snapshot_rows(
    ts: int,
    runners: Iterable[BotRunner],
    last_fills: dict[int, int],
    total_fills: int,
) -> tuple[list[SnapshotRow], dict[int, Decimal], Decimal]:
    """Rows to write at ``ts``, each bot's equity, and the account equity (quote).

    ``last_fills`` (bot id -> fills in its last row, -1 when that row was
    long) is updated in place.
    """
    rows: list[SnapshotRow] = []
    per_bot: dict[int, Decimal] = {}
    tot_eq = tot_real = tot_unreal = tot_fees = _ZERO
    for r in runners:
        st = r.stats
        bot_id = r.rec.id
        if r.long:
            unreal = r.unrealised()
            eq = r.funding + st.realised + unreal
            qty = r.book.position_qty
        else:
            unreal, qty = _ZERO, _ZERO
            eq = r.flat_equity()
        if r.long or last_fills.get(bot_id) != st.fills:
            rows.append(
                SnapshotRow(ts, bot_id, eq, st.realised, unreal, st.fees, qty, r.mark_price(), st.fills)
            )
            last_fills[bot_id] = -1 if r.long else st.fills
        per_bot[bot_id] = eq
        tot_eq += eq
        tot_real += st.realised
        tot_unreal += unreal
        tot_fees += st.fees
    rows.append(SnapshotRow(ts, None, tot_eq, tot_real, tot_unreal, tot_fees, _ZERO, None, total_fills))
    return rows, per_bot, tot_eq
