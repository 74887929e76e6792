"""Start-up reconciliation of a live engine with its exchanges, before any bot trades.

Every order the ledger holds as pending or open is resolved by its client
order id (``CcxtBroker.reconcile``): found ones are followed and their fills
the ledger lacks are applied now (each keyed by the exchange's trade id, so
never twice); pending ones the exchange never saw are sent again under the
same id; open ones it does not know are closed as cancelled. Then each
exchange's balances are compared with what the ledger says the bots hold
(base assets of open positions); less on the exchange than in the ledger is
drift. One ``reconciliations`` row per exchange records the outcome.

If any exchange cannot be reached or shows drift, ``ReconcileError`` is
raised: live trading refuses to start and the message says why. Paper
engines never come here.
"""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal
from typing import TYPE_CHECKING

from amarktai_tui.domain.types import split_pair
from amarktai_tui.exchanges.live import CcxtBroker, ReconcileOutcome

if TYPE_CHECKING:
    from amarktai_tui.engine.core import EngineCore


class ReconcileError(RuntimeError):
    """Live trading cannot start: reconciliation failed or found drift (one line per exchange)."""


async def reconcile_live(engine: EngineCore, broker: CcxtBroker) -> list[ReconcileOutcome]:
    """Reconcile ``engine``'s ledger with ``broker``'s exchanges; apply recovered fills; record the outcome.

    Raises ReconcileError naming each exchange that failed and why.
    """
    active = await engine.store.load_active_orders()
    for order in active:
        runner = engine.runners.get(order.bot_id)
        if runner is None:
            continue
        runner.in_flight = order.client_order_id
        engine._inflight[order.client_order_id] = order
    outcomes = await broker.reconcile(active)
    engine.apply_broker_updates()
    for _ in range(SETTLE_PASSES):  # orders whose fills are not in yet: balances are compared after them
        if not broker.unsettled():
            break
        await broker.track_once()
        engine.apply_broker_updates()
    checked = []
    for o in outcomes:
        if not o.ok:
            checked.append(o)
            continue
        try:
            drift = await broker.balance_drift(o.exchange, _positions(engine, o.exchange))
        except Exception as exc:
            checked.append(o.with_drift({}, f"balance read failed: {type(exc).__name__}: {exc}"[:200]))
        else:
            checked.append(o.with_drift(drift))
    outcomes = checked
    ts = engine.clock_ms()
    for o in outcomes:
        details = {"orders": o.orders, "drift": o.drift, "resent": o.resent, "error": o.error}
        engine._batch.reconciliations.append(
            (ts, o.exchange, o.ok, o.resolved, o.recovered, json.dumps(details, sort_keys=True))
        )
    await engine.flush()
    bad = [o for o in outcomes if not o.ok]
    if bad:
        raise ReconcileError("; ".join(_why(o) for o in bad))
    return outcomes


SETTLE_PASSES = 20


def _positions(engine: EngineCore, exchange: str) -> dict[str, Decimal]:
    """asset -> what the ledger's bots on ``exchange`` hold (base assets of their positions)."""
    out: defaultdict[str, Decimal] = defaultdict(Decimal)
    for r in engine.runners.values():
        if r.rec.exchange == exchange and r.book.position_qty > 0:
            out[split_pair(r.rec.pair)[0]] += r.book.position_qty
    return dict(out)


def _why(o: ReconcileOutcome) -> str:
    if o.error:
        return f"{o.exchange}: reconciliation failed: {o.error}"
    drift = ", ".join(f"{asset} {what}" for asset, what in sorted(o.drift.items()))
    return f"{o.exchange}: balances drift from the ledger: {drift}"
