"""The read tools: figures from the running engine, JSON-ready, for the model and the commands.

Everything comes from the engine's memory (runners, the fill log, the
breaker board, the pipeline's refusals), which is what the ledger holds:
fills and their realised PnL are the ledger's rows; equity follows
DESIGN.md's rule (funding + realised + unrealised, marked at the last close).
Rows and ``clean`` come from ``ai.figures``. Each tool takes the engine, its
validated arguments (``ai.tools``) and the market watch, and raises
``ReadError`` (one line, for the model) for an unknown bot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from amarktai_tui.ai import tools as t
from amarktai_tui.ai.figures import (
    ZERO,
    MarketWatch,
    base_of,
    bot_name,
    bot_row,
    clean,
    fill_json,
    money,
    now_ms,
    realised_by_period,
    refusal_json,
    resolve,
    trip_json,
)
from amarktai_tui.domain.enums import BotState
from amarktai_tui.engine.engine import RefusalEntry, TradingEngine
from amarktai_tui.engine.runner import BotRunner
from amarktai_tui.ledger.export import iso_ms
from amarktai_tui.risk.breakers import Breaker
from amarktai_tui.strategies.registry import describe


# -- the tools ------------------------------------------------------------------------------
def list_bots(engine: TradingEngine, a: t.ListBots, _w: MarketWatch | None = None) -> dict[str, Any]:
    rows = [
        bot_row(engine, r)
        for r in engine.runners.values()
        if (a.state is None or r.rec.state is a.state) and (a.asset is None or base_of(r) == a.asset)
    ]
    return {"bots": rows, "count": len(rows)}


def bot_details(engine: TradingEngine, a: t.BotDetails, _w: MarketWatch | None = None) -> dict[str, Any]:
    r = resolve(engine, a.bot)
    rec = r.rec
    out = bot_row(engine, r)
    info = describe().get(rec.strategy)
    order = engine.open_order(rec.id)
    cover = engine.board.covering(rec.id)
    out.update(
        {
            "risk_mode": rec.risk_mode.value,
            "capital": money(rec.capital),
            "stop_loss": None if rec.stop_loss is None else money(rec.stop_loss),
            "take_profit": None if rec.take_profit is None else money(rec.take_profit),
            "trailing_stop": None if rec.trailing_stop is None else money(rec.trailing_stop),
            "sizing": rec.sizing,
            "order_type": rec.order_type,
            "fees": money(r.stats.fees),
            "cash": money(r.cash),
            "mark_price": None if r.mark_price() is None else money(r.mark_price() or ZERO),
            "params": dict(r.strategy.params),
            "param_ranges": [] if info is None else [p.as_dict() for p in info.params],
            "param_constraints": [] if info is None else list(info.constraints),
            "open_order": None
            if order is None
            else {
                "client_order_id": order.client_order_id,
                "side": order.side.value,
                "state": order.state.value,
                "quantity": money(order.quantity),
            },
            "covering_trip": None if cover is None else trip_json(engine, cover),
            "latest_refusals": [refusal_json(e) for e in _refusals(engine, rec.id, None, 3)],
        }
    )
    return out


def portfolio_summary(
    engine: TradingEngine, _a: t.PortfolioSummary, _w: MarketWatch | None = None
) -> dict[str, Any]:
    runners = list(engine.runners.values())
    states: dict[str, int] = {}
    for r in runners:
        states[r.rec.state.value] = states.get(r.rec.state.value, 0) + 1
    now = now_ms(engine)
    return {
        "as_of": iso_ms(now),
        "mode": engine.mode.value,
        "quote_currency": engine.quote_currency,
        "equity": money(engine.account_equity()),
        "pnl_today": money(engine.today_pnl()),
        "day_start_equity": None if engine.day_start_equity is None else money(engine.day_start_equity),
        "realised": money(sum((r.stats.realised for r in runners), ZERO)),
        "unrealised": money(sum((r.unrealised() for r in runners), ZERO)),
        "fees": money(sum((r.stats.fees for r in runners), ZERO)),
        "unallocated_pool": money(engine.pool),
        "bots": len(runners),
        "bots_by_state": states,
        "open_positions": sum(1 for r in runners if r.long),
        "fills": len(engine.fill_log),
        "halted": (Breaker.HALT, None) in engine.board.active,
        "tripped_breakers": len(engine.board.active),
    }


def profit_series(engine: TradingEngine, a: t.ProfitSeries, _w: MarketWatch | None = None) -> dict[str, Any]:
    bot_id = None if a.bot is None else resolve(engine, a.bot).rec.id
    rows = realised_by_period(engine, a.period, a.points, bot_id)
    return {
        "period": a.period,
        "bot": bot_name(engine, bot_id),
        "series": [{"start": s.isoformat(), "realised": money(v), "closing_fills": n} for s, v, n in rows],
        "total": money(sum((v for _, v, _ in rows), ZERO)),
        "note": "realised PnL (quote, net of fees) of fills in each UTC period",
    }


def breaker_status(
    engine: TradingEngine, a: t.BreakerStatus, _w: MarketWatch | None = None
) -> dict[str, Any]:
    bot_id = None if a.bot is None else resolve(engine, a.bot).rec.id
    tripped = [
        trip_json(engine, tr)
        for tr in sorted(engine.board.active.values(), key=lambda x: x.id)
        if bot_id is None or tr.bot_id in (None, bot_id)
    ]
    readings = []
    for rd in engine.breaker_readings():
        if bot_id is not None and rd.bot_id not in (None, bot_id):
            continue
        if rd.status == "ok" and not a.include_ok:
            continue
        readings.append(
            {
                "breaker": rd.breaker.value,
                "scope": rd.scope.value,
                "bot": bot_name(engine, rd.bot_id),
                "threshold": money(rd.threshold),
                "value": money(rd.value),
                "headroom": money(rd.headroom),
                "status": rd.status,
                "trip_id": rd.trip_id,
            }
        )
    recent = [
        trip_json(engine, tr) for tr in engine.trip_log[-10:] if bot_id is None or tr.bot_id in (None, bot_id)
    ]
    return {
        "tripped": tripped,
        "readings": readings,
        "trips_since_start": recent,
        "note": "drawdown and daily loss are fractions (0.15 = 15%); losses and errors are counts",
    }


def recent_trades(engine: TradingEngine, a: t.RecentTrades, _w: MarketWatch | None = None) -> dict[str, Any]:
    bot_id = None if a.bot is None else resolve(engine, a.bot).rec.id
    out: list[dict[str, Any]] = []
    for i in range(len(engine.fill_log) - 1, -1, -1):
        if len(out) >= a.limit:
            break
        if bot_id is None or engine.fill_log[i].bot_id == bot_id:
            out.append(fill_json(engine, i))
    return {"fills": out, "count": len(out)}


def _refusals(engine: TradingEngine, bot_id: int | None, coid: str | None, limit: int) -> list[RefusalEntry]:
    out: list[RefusalEntry] = []
    for e in reversed(engine.refusals):
        if len(out) >= limit:
            break
        if (bot_id is None or e[2].bot_id == bot_id) and (coid is None or e[2].client_order_id == coid):
            out.append(e)
    return out


def explain_refusal(
    engine: TradingEngine, a: t.ExplainRefusal, _w: MarketWatch | None = None
) -> dict[str, Any]:
    runner = None if a.bot is None else resolve(engine, a.bot)
    bot_id = None if runner is None else runner.rec.id
    found = []
    for entry in _refusals(engine, bot_id, a.client_order_id, a.limit):
        item = refusal_json(entry)
        trip_id = entry[3].figures.get("trip_id", "")
        if trip_id.isdigit():
            item["trip_still_active"] = engine.board.trip_by_id(int(trip_id)) is not None
        found.append(item)
    out: dict[str, Any] = {
        "refusals": found,
        "note": "newest first; the pipeline's refusals since the engine started"
        if found
        else "no refused order since the engine started" + ("" if a.bot is None else " for this bot"),
    }
    if runner is not None:
        cover = engine.board.covering(runner.rec.id)
        out["bot"] = {
            "name": clean(runner.rec.name, 64),
            "state": runner.rec.state.value,
            "state_reason": clean(runner.rec.state_reason),
            "covering_trip": None if cover is None else trip_json(engine, cover),
            "trading": runner.rec.state is BotState.RUNNING and cover is None,
        }
    return out


def market_snapshot(
    engine: TradingEngine, a: t.MarketSnapshot, watch: MarketWatch | None = None
) -> dict[str, Any]:
    streams: dict[tuple[str, str], BotRunner] = {}
    for r in engine.runners.values():
        if a.pair is None or r.rec.pair == a.pair:
            streams.setdefault((r.rec.pair, r.rec.timeframe), r)
    out: list[dict[str, Any]] = []
    for (pair, tf), r in sorted(streams.items()):
        row: dict[str, Any] = {
            "pair": pair,
            "timeframe": tf,
            "last_close": None if r.mark is None else repr(r.mark),
            "last_candle": None if r.last_ts is None else iso_ms(r.last_ts),
        }
        hist = None if watch is None else watch.candles.get((pair, tf))
        if hist:
            first = hist[0]
            row.update(
                {
                    "candles": len(hist),
                    "since": iso_ms(first.ts),
                    "change_pct": round((hist[-1].close / first.open - 1) * 100, 3) if first.open else None,
                    "high": repr(max(c.high for c in hist)),
                    "low": repr(min(c.low for c in hist)),
                    "volume": repr(round(sum(c.volume for c in hist), 8)),
                }
            )
        out.append(row)
    return {"markets": out, "note": "prices as the candles give them (quote per base); engine time"}


READERS: dict[str, Callable[[TradingEngine, Any, MarketWatch | None], dict[str, Any]]] = {
    "list_bots": list_bots,
    "bot_details": bot_details,
    "portfolio_summary": portfolio_summary,
    "profit_series": profit_series,
    "breaker_status": breaker_status,
    "recent_trades": recent_trades,
    "explain_refusal": explain_refusal,
    "market_snapshot": market_snapshot,
}
