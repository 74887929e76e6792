"""Rebuilding the pipeline's and the breakers' state from the ledger, and saving the gauges.

Counters come from the ledger's rows (orders, fills, trips, resets, bot
errors), so a restart resets nothing. The only state that is not derivable
from rows, the equity high-water marks and the day's starting equity, is
saved as JSON in ``kv`` with every tick (``RISK_KV``), in the same
transaction as the tick's rows.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING

from amarktai_tui.domain.enums import BotState, Side
from amarktai_tui.domain.types import Fill
from amarktai_tui.ledger.store import RiskState
from amarktai_tui.risk.breakers import Breaker

if TYPE_CHECKING:
    from amarktai_tui.engine.core import EngineCore

_DAY_MS = 86_400_000


async def restore_risk(engine: EngineCore, state: RiskState, fills: list[Fill]) -> None:
    """Replay ``fills`` into the runners and rebuild counters, gauges and trips (start-up)."""
    p = engine.pipeline
    board = p.board
    p.known.update(state.known)
    for bot_id, exchange, ts in state.submitted:
        p.counter.record_order(bot_id, ts)
        if exchange in p.staggerer._lanes:
            p.staggerer.record_submit(exchange, ts)
    saved = json.loads(state.gauges_json) if state.gauges_json else {}
    saved_bots: dict[str, list[float]] = saved.get("bots", {})
    for runner in engine.runners.values():
        board.add_bot(runner.rec.id, float(runner.funding))
    for fill in fills:
        owner = engine.runners.get(fill.bot_id)
        if owner is None:
            continue
        owner.closed_pnl = None
        owner.apply_fill(fill)  # rebuild lots, cash and stats from the ledger
        engine.fill_log.append(fill)
        owner.resume_after = max(owner.resume_after or 0, fill.ts)
        if fill.side is Side.SELL and owner.closed_pnl is not None:
            p.counter.record_exit(fill.bot_id, fill.ts)
            since = state.last_resets.get((fill.bot_id, Breaker.CONSECUTIVE_LOSSES.value), -1)
            if fill.ts > since:
                g = board.bots[fill.bot_id]
                g.streak = g.streak + 1 if owner.closed_pnl < 0 else 0
    for runner in engine.runners.values():
        g = board.bots[runner.rec.id]
        eq = float(runner.equity())
        g.last = eq
        g.hwm = max(eq, saved_bots.get(str(runner.rec.id), [eq])[0])
        board._relevel(g, board.settings.bot_max_drawdown)
        g.errors_since = state.last_resets.get((runner.rec.id, Breaker.ERROR_STORM.value), g.errors_since)
    for bot_id, ts in state.errors:
        if bot_id in board.bots:
            board.bots[bot_id].errors.append(ts)
    acct = float(engine.account_equity())
    board.set_account(acct, saved.get("account_hwm"))
    board.next_id = state.max_trip_id + 1
    for trip in state.active_trips:
        board.restore(trip)
    if "day" in saved and saved.get("day_start") is not None:
        engine._restored_day = int(saved["day"])
        engine.day_start_equity = Decimal(saved["day_start"])
    for runner in engine.runners.values():  # trips (or resets) recorded while the engine was down
        cover = board.covering(runner.rec.id)
        if cover is not None and runner.rec.state is BotState.RUNNING:
            engine._set_state(runner, BotState.CIRCUIT_TRIPPED, f"breaker {cover.breaker}: {cover.message}")
        elif cover is None and runner.rec.state is BotState.CIRCUIT_TRIPPED:
            engine._set_state(runner, BotState.RUNNING, "breaker reset")


def gauges_json(engine: EngineCore) -> str:
    """The breakers' non-derivable state: high-water marks and the day's starting equity."""
    board = engine.board
    return json.dumps(
        {
            "bots": {str(b): [g.hwm] for b, g in board.bots.items()},
            "account_hwm": board.account.hwm,
            "day": engine._day,
            "day_start": None if engine.day_start_equity is None else str(engine.day_start_equity),
        },
        separators=(",", ":"),
    )
