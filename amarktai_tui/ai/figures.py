"""Figures of the running engine as JSON-ready rows, shared by the read tools, the context and the
commands; and ``clean``, which makes free text safe to show a model.

Money is quote currency as exact decimal strings (``money``); times are ms UTC
plus an ISO 8601 text. ``clean`` masks file paths, credentials in URLs or
``key=value`` form, bearer tokens and long key-like tokens, and makes the
text one line: reasons, messages and names pass through it.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from amarktai_tui.domain.enums import Side
from amarktai_tui.domain.types import Candle, split_pair
from amarktai_tui.engine.engine import EngineError, RefusalEntry, TradingEngine
from amarktai_tui.engine.events import EngineTick
from amarktai_tui.engine.runner import BotRunner
from amarktai_tui.ledger.export import iso_ms
from amarktai_tui.ledger.pnl import canonical
from amarktai_tui.risk.breakers import Trip
from amarktai_tui.vault.scrub import scrub

ZERO = Decimal(0)
_PATH = re.compile(r"(?<![\w.])(?:~|[A-Za-z]:|\.{1,2})?(?:[/\\][^\s/\\'\"]+){2,}[/\\]?")
_TOKEN = re.compile(
    r"\b(?:sk|pk|rk|key)[-_][A-Za-z0-9_-]{12,}|\b(?=[A-Za-z0-9_+/=-]*\d)(?=[A-Za-z0-9_+/=-]*[A-Za-z])[A-Za-z0-9_+/=-]{32,}"
)

GATE_MEANING = {
    "idempotency": "this exact order (same client order id) was submitted before; it is never sent twice",
    "fee_coverage": "the signal's expected edge did not cover the round trip's fees, spread, slippage and "
    "safety margin (or the minimum edge)",
    "limits": "a daily order limit (per bot or account) or the cooldown after an exit was reached",
    "staggering": "the exchange's rate-limit queue could not send it in time",
    "breaker": "a circuit breaker covering the bot is tripped: new entries are refused, exits still pass, "
    "until the trip is reset",
    "broker": "the broker refused the order",
}


class ReadError(ValueError):
    """A read tool could not answer (an unknown bot); the message is for the model."""


def clean(text: str, limit: int = 240) -> str:
    """Free text safe for a prompt: file paths, credentials and key-like tokens masked, one line."""
    return scrub(_TOKEN.sub("****", _PATH.sub("<path>", text)), (), limit=limit)


def money(x: Decimal) -> str:
    """Exact quote amount as a plain decimal string (no exponent, no trailing zeros)."""
    return str(canonical(x))


def now_ms(engine: TradingEngine) -> int:
    """Engine time (the newest candle's close; simulated in a replay), else the wall clock (ms UTC)."""
    return engine.now_ms or int(time.time() * 1000)


def resolve(engine: TradingEngine, ref: str) -> BotRunner:
    """A bot by name or id; ReadError listing the bots' names when there is none."""
    try:
        return engine.bot_by_ref(ref)
    except EngineError:
        names = ", ".join(clean(r.rec.name, 60) for r in engine.runners.values()) or "none"
        raise ReadError(f"no bot named {clean(ref, 64)!r}; the bots are: {names}") from None


def base_of(runner: BotRunner) -> str:
    return split_pair(runner.rec.pair)[0]


def bot_name(engine: TradingEngine, bot_id: int | None) -> str | None:
    if bot_id is None:
        return None
    r = engine.runners.get(bot_id)
    return clean(r.rec.name, 64) if r is not None else str(bot_id)


def trip_json(engine: TradingEngine, trip: Trip) -> dict[str, Any]:
    """One trip: id, breaker, scope, bot, since, threshold/value (fractions or counts), message, cause."""
    active = engine.board.active.get((trip.breaker, trip.bot_id))
    return {
        "trip_id": trip.id,
        "breaker": trip.breaker.value,
        "scope": trip.scope.value,
        "bot": bot_name(engine, trip.bot_id),
        "since": iso_ms(trip.ts),
        "since_ms": trip.ts,
        "threshold": money(trip.threshold),
        "value": money(trip.value),
        "message": clean(trip.message),
        "cause": clean(trip.cause, 120),
        "active": active is not None and active.id == trip.id,
    }


def bot_row(engine: TradingEngine, r: BotRunner) -> dict[str, Any]:
    """A bot's summary: identity, run state and why, stage, equity figures, position, trades."""
    rec = r.rec
    return {
        "id": rec.id,
        "name": clean(rec.name, 64),
        "exchange": rec.exchange,
        "pair": rec.pair,
        "timeframe": rec.timeframe,
        "strategy": rec.strategy,
        "state": rec.state.value,
        "state_reason": clean(rec.state_reason),
        "stage": rec.stage.value,
        "equity": money(r.equity()),
        "realised": money(r.stats.realised),
        "unrealised": money(r.unrealised()),
        "position_qty": money(r.book.position_qty),
        "order_in_flight": r.in_flight is not None,
        "trades": r.stats.trades,
        "wins": r.stats.wins,
    }


def refusal_json(entry: RefusalEntry) -> dict[str, Any]:
    ts, name, it, refusal = entry
    gate = refusal.gate.value
    return {
        "at": iso_ms(ts),
        "at_ms": ts,
        "bot": clean(name, 64),
        "client_order_id": it.client_order_id,
        "pair": it.pair,
        "side": it.side.value,
        "gate": gate,
        "reason": clean(refusal.reason),
        "figures": {k: clean(v, 60) for k, v in refusal.figures.items()},
        "meaning": GATE_MEANING.get(gate, ""),
    }


def fill_json(engine: TradingEngine, i: int) -> dict[str, Any]:
    f = engine.fill_log[i]
    return {
        "fill_id": f.fill_id,
        "client_order_id": f.client_order_id,
        "at": iso_ms(f.ts),
        "at_ms": f.ts,
        "bot": bot_name(engine, f.bot_id),
        "pair": f.pair,
        "side": f.side.value,
        "quantity": money(f.quantity),
        "price": money(f.price),
        "fee": money(f.fee),
        "fee_currency": f.fee_currency,
        "realised_pnl": money(f.realised_pnl),
    }


# -- realised PnL per calendar period ---------------------------------------------------
def period_start(d: date, period: str) -> date:
    """The UTC day itself, its ISO week's Monday, or its month's 1st."""
    if period == "week":
        return d - timedelta(days=d.weekday())
    if period == "month":
        return d.replace(day=1)
    return d


def _previous(start: date, period: str) -> date:
    if period == "week":
        return start - timedelta(days=7)
    if period == "month":
        return (start - timedelta(days=1)).replace(day=1)
    return start - timedelta(days=1)


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date()


def realised_by_period(
    engine: TradingEngine, period: str, points: int, bot_id: int | None = None
) -> list[tuple[date, Decimal, int]]:
    """``[(period start, realised PnL, sells)]`` for the ``points`` periods up to now, oldest first.

    Realised PnL is the sum of the fills' ``realised_pnl`` (quote, net of fees) with a UTC
    timestamp inside the period, as the ledger's ``fills`` rows give it.
    """
    starts = [period_start(_day(now_ms(engine)), period)]
    while len(starts) < points:
        starts.append(_previous(starts[-1], period))
    starts.reverse()
    pnl = dict.fromkeys(starts, ZERO)
    sells = dict.fromkeys(starts, 0)
    for f in engine.fill_log:
        if bot_id is not None and f.bot_id != bot_id:
            continue
        s = period_start(_day(f.ts), period)
        if s in pnl:
            pnl[s] += f.realised_pnl
            sells[s] += f.side is Side.SELL
    return [(s, pnl[s], sells[s]) for s in starts]


# -- the market ------------------------------------------------------------------------------
class MarketWatch:
    """The last ``keep`` candles of every stream, from the bus (one deque append per candle)."""

    def __init__(self, engine: TradingEngine, keep: int = 48) -> None:
        self.candles: dict[tuple[str, str], deque[Candle]] = {}
        self._keep = keep
        self._unsubscribe: Callable[[], None] | None = engine.bus.subscribe(EngineTick, self._on_tick)

    def _on_tick(self, ev: EngineTick) -> None:
        c = ev.candle
        d = self.candles.get((c.pair, c.timeframe))
        if d is None:
            d = self.candles[(c.pair, c.timeframe)] = deque(maxlen=self._keep)
        d.append(c)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
