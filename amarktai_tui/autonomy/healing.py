"""Self-healing: pause (quarantine) a running bot that misbehaves, escalate, retire and replace.

Every ``[autonomy.healing] interval_minutes`` of engine time, each running bot is checked by
these rules, in this order (the first that holds is the finding):

- ``hourly_loss``: its net PnL (equity minus funding, so capital moved in or out is no loss or
  gain) fell by more than ``hourly_loss`` (15 %) of its capital over the last hour, measured
  against the job's own sample taken at or before one hour ago (the oldest one before the job
  has watched for an hour);
- ``capital_loss``: its equity, net of capital moved after its first funding event, is more than
  ``capital_loss`` (20 %) below that initial capital;
- ``trade_limit``: its orders today (UTC) reached ``[risk] bot_trades_per_day``;
- ``idle``: no fill for ``idle_hours`` (24 h) of running (time paused does not count) while its
  pair's close ranged more than ``idle_move`` (3 %): (highest - lowest) / lowest of the closes
  the job sampled over that time.

A finding quarantines the bot: level = 1 + its quarantines of the last ``reset_days``; levels
1-3 pause it for ``escalation_hours`` (1 h, 3 h, 24 h; a ``trade_limit`` pause lasts at least
until the next UTC midnight, when the limit resets), recorded as a ``quarantines`` row and
published as ``BotQuarantined``; when the pause is over the bot is resumed ("quarantine over")
unless someone changed its state meanwhile. The level after the last one retires the bot
(state stopped, ``until_ts`` NULL) and submits a replacement (``Change`` field ``replace``: the
best-fitness ``evolution_members`` DNA on the same exchange and pair, else the same
strategy/pair/exchange/timeframe with the strategy's default parameters).

Everything goes through ``autonomy.changes.Adjuster`` (source ``healing``). **Expert mode**: the
pause (like every other automatic change) is only a proposal; no quarantine row is written and
nothing is paused until the user accepts it (then it stays paused until the user resumes it).
Decision: the issue says in expert mode nothing automatic changes a bot; the always-on safety
net is the risk layer (bot drawdown, daily loss, consecutive losses and error-storm breakers,
and gate C's daily limit), which acts in both modes and needs a recorded reset. Healing adds
a softer, automatic layer for autonomous mode. A healing proposal is not repeated while one is
pending for the bot, nor within ``escalation_hours[0]`` of the previous one; it is withdrawn (a
``rejected`` row by the engine, ``withdrawn #id``) once the bot has run ``STALE_HOURS`` (6 h) of
checks with no rule holding, so the user is not asked to pause a bot that has recovered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from amarktai_tui.autonomy.changes import Adjuster, Change
from amarktai_tui.autonomy.settings import AutonomySettings, HealingSettings
from amarktai_tui.domain.enums import BotState
from amarktai_tui.engine.events import BotQuarantined, OrderFilled

if TYPE_CHECKING:
    from amarktai_tui.autonomy.evolution_store import MemberRow
    from amarktai_tui.autonomy.service import AutonomyService
    from amarktai_tui.engine.engine import TradingEngine
    from amarktai_tui.engine.runner import BotRunner
    from amarktai_tui.ledger.store import BotRecord, LedgerStore

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
STALE_HOURS = 6
"""Expert mode: a pending pause proposal is withdrawn after this long with no rule holding."""
DAY_MS = 86_400_000
RULES = ("hourly_loss", "capital_loss", "trade_limit", "idle")
_CENT = Decimal("0.01")


def pct(x: Decimal) -> str:
    """A fraction as a percent with one decimal: Decimal("0.153") -> "15.3%"."""
    return f"{(x * 100).quantize(Decimal('0.1'))}%"


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule that holds for a bot: ``rule`` one of ``RULES``, ``reason`` one line with the figures."""

    rule: str
    reason: str


def hourly_loss(
    pnl_now: Decimal, pnl_before: Decimal | None, capital: Decimal, limit: Decimal
) -> Finding | None:
    """``pnl_before - pnl_now`` (quote, net PnL an hour ago minus now) above ``limit`` x ``capital``."""
    if pnl_before is None or capital <= 0:
        return None
    loss = pnl_before - pnl_now
    if loss > limit * capital:
        return Finding(
            "hourly_loss",
            f"net loss {loss.quantize(_CENT)} in the last hour is {pct(loss / capital)} of its capital"
            f" {capital.quantize(_CENT)} > {pct(limit)}",
        )
    return None


def capital_loss(
    equity: Decimal, funding: Decimal, initial: Decimal | None, limit: Decimal
) -> Finding | None:
    """Equity net of capital moved after the first funding (``equity - (funding - initial)``, quote)
    more than ``limit`` (fraction) below ``initial``."""
    if initial is None or initial <= 0:
        return None
    adjusted = equity - (funding - initial)
    if adjusted < initial * (1 - limit):
        return Finding(
            "capital_loss",
            f"equity {adjusted.quantize(_CENT)} is {pct((initial - adjusted) / initial)} below its initial"
            f" capital {initial.quantize(_CENT)} > {pct(limit)}",
        )
    return None


def trade_limit(orders_today: int, limit: int) -> Finding | None:
    """Orders today (UTC) at or above the bot's daily limit."""
    if orders_today >= limit:
        return Finding("trade_limit", f"{orders_today} orders today reached the daily limit of {limit}")
    return None


def idle(
    now_ms: int,
    active_since: int,
    last_fill_ts: int | None,
    closes: Iterable[tuple[int, Decimal]],
    idle_ms: int,
    move: Decimal,
    pair: str = "",
) -> Finding | None:
    """No fill for ``idle_ms`` of running (since ``max(active_since, last_fill_ts)``) while the
    closes ``(ts, price)`` inside the last ``idle_ms`` ranged more than ``move`` (fraction)."""
    quiet_since = active_since if last_fill_ts is None else max(active_since, last_fill_ts)
    if now_ms - quiet_since < idle_ms:
        return None
    prices = [p for ts, p in closes if now_ms - idle_ms <= ts <= now_ms]
    if len(prices) < 2:
        return None
    lo, hi = min(prices), max(prices)
    if lo <= 0:
        return None
    moved = (hi - lo) / lo
    if moved > move:
        return Finding(
            "idle",
            f"no trade for {(now_ms - quiet_since) / HOUR_MS:g} h while {pair or 'its pair'} moved"
            f" {pct(moved)} > {pct(move)}",
        )
    return None


@dataclass(frozen=True, slots=True)
class Escalation:
    """What a new quarantine does: ``level`` 1.. ; ``until_ts`` ms UTC, None = retire the bot."""

    level: int
    until_ts: int | None

    @property
    def retire(self) -> bool:
        return self.until_ts is None


def escalate(
    previous_ts: Iterable[int], now_ms: int, settings: HealingSettings, rule: str = ""
) -> Escalation:
    """The level and end of a quarantine starting ``now_ms``, given the bot's earlier quarantine
    times (ms UTC): those within ``reset_days`` count. ``trade_limit`` pauses last at least until
    the next UTC midnight (the daily limit resets then)."""
    recent = sum(1 for t in previous_ts if now_ms - t < settings.reset_days * DAY_MS)
    steps = settings.escalation_hours
    level = recent + 1
    if level > len(steps):
        return Escalation(len(steps) + 1, None)
    until = now_ms + round(steps[level - 1] * HOUR_MS)
    if rule == "trade_limit":
        until = max(until, (now_ms // DAY_MS + 1) * DAY_MS)
    return Escalation(level, until)


@dataclass(frozen=True, slots=True)
class Quarantine:
    """A ``quarantines`` row: ``ts``/``until_ts`` ms UTC (engine time), ``until_ts`` None = retired."""

    id: int
    ts: int
    bot_id: int
    level: int
    rule: str
    reason: str
    until_ts: int | None


def replacement_dna(
    rec: BotRecord, members: Iterable[MemberRow] = (), widest_stop: Decimal = Decimal("0.10")
) -> dict[str, Any]:
    """The ``replace`` DNA dict of retired bot ``rec``'s replacement (``autonomy.bounds.REPLACE_KEYS``).

    ``members``: evolution members best first (``evolution_store.best_members``); the first on the
    same exchange and pair gives strategy, params, risk mode and timeframe (``dna_id`` = its member
    id); without one, the retired bot's strategy with its default parameters (``dna_id`` None).
    Capital (quote) and exits are the retired bot's; a bot without a stop-loss gets
    ``widest_stop`` (``[autonomy.bounds] stop_loss_max``): an automatic change never leaves a new
    bot without a protective exit, and the bounds then fit it to the risk per trade.
    """
    from amarktai_tui.strategies.registry import make_strategy

    out: dict[str, Any] = {
        "exchange": rec.exchange,
        "pair": rec.pair,
        "timeframe": rec.timeframe,
        "capital": str(rec.capital),
        "stop_loss": str(rec.stop_loss if rec.stop_loss is not None else widest_stop),
        "take_profit": None if rec.take_profit is None else str(rec.take_profit),
    }
    best = next((m for m in members if m.dna.exchange == rec.exchange and m.dna.pair == rec.pair), None)
    if best is not None:
        dna = best.dna
        out.update(
            strategy=dna.strategy,
            params=dict(dna.params),
            risk_mode=dna.risk_mode.value,
            timeframe=dna.timeframe or rec.timeframe,
            dna_id=best.member,
        )
    else:
        out.update(
            strategy=rec.strategy,
            params=dict(make_strategy(rec.strategy, None).params),
            risk_mode=rec.risk_mode.value,
            dna_id=None,
        )
    return out


class HealingJob:
    """Watches the running bots of an engine and quarantines them (module doc).

    ``run(now_ms)`` is the ``AutonomyService`` job (every ``interval_minutes`` of engine time):
    it samples each bot's net PnL and its pair's close, resumes bots whose quarantine is over,
    then checks the running bots. ``quarantines`` holds this ledger's rows (loaded by ``load``).
    """

    def __init__(self, engine: TradingEngine, adjuster: Adjuster, settings: AutonomySettings) -> None:
        self.engine = engine
        self.adjuster = adjuster
        self.settings = settings
        hs = settings.healing
        self.quarantines: list[Quarantine] = []
        self._samples: dict[int, deque[tuple[int, Decimal]]] = {}  # bot id -> (ts, net pnl)
        self._closes: dict[str, deque[tuple[int, Decimal]]] = {}  # pair -> (ts, close)
        self._active_since: dict[int, int] = {}  # bot id -> first check it was seen running (this stretch)
        self._last_fill: dict[int, int] = {}
        self._initial: dict[int, Decimal | None] = {}
        self._ended: set[int] = set()  # quarantine ids already resumed (or left alone)
        self._replaced: set[int] = set()  # retirements whose replacement was submitted
        self._last_held: dict[int, int] = {}  # bot id -> last check a rule held (expert withdrawals)
        self._loaded = False
        self._keep_ms = max(HOUR_MS, round(hs.idle_hours * HOUR_MS)) + DAY_MS
        for f in engine.fill_log:
            self._last_fill[f.bot_id] = max(self._last_fill.get(f.bot_id, f.ts), f.ts)
        self._unsubscribe = engine.bus.subscribe(OrderFilled, self._on_fill)

    def close(self) -> None:
        self._unsubscribe()

    async def load(self) -> None:
        """Read this ledger's quarantines and the bots' initial capital (at start-up)."""
        path = str(self.engine.store.path)
        self.quarantines = await asyncio.to_thread(_read_quarantines, path)
        self._initial.update(await asyncio.to_thread(_read_initial, path, None))
        self._ended.update(q.id for q in self.quarantines if q.until_ts is None)  # retired: nothing to resume
        self._loaded = True

    def _on_fill(self, ev: OrderFilled) -> None:
        self._last_fill[ev.bot_id] = ev.ts

    # -- the job -----------------------------------------------------------------
    async def run(self, now_ms: int) -> None:
        """One check of every bot at ``now_ms`` (engine time); the first run loads the ledger's rows."""
        if not self._loaded:
            await self.load()
        for runner in list(self.engine.runners.values()):
            self._sample(runner, now_ms)
        await self._resume_due(now_ms)
        await self._replace_retired(now_ms)
        for runner in list(self.engine.runners.values()):
            if runner.rec.state is not BotState.RUNNING:
                continue
            finding = await self.diagnose(runner, now_ms)
            try:
                if finding is not None:
                    self._last_held[runner.rec.id] = now_ms
                    await self.quarantine(runner, finding, now_ms)
                elif self.settings.mode == "expert":
                    await self._withdraw_stale(runner, now_ms)
            except Exception:  # one bot's failure must not stop the others' checks
                log.exception("healing: checking %s failed", runner.rec.name)

    def _sample(self, runner: BotRunner, now_ms: int) -> None:
        bot_id = runner.rec.id
        s = self._samples.setdefault(bot_id, deque())
        s.append((now_ms, runner.equity() - runner.funding))
        while len(s) > 1 and s[1][0] <= now_ms - HOUR_MS:
            s.popleft()  # keep one sample at or before an hour ago
        if runner.rec.state is BotState.RUNNING:
            self._active_since.setdefault(bot_id, now_ms)
        else:
            self._active_since.pop(bot_id, None)
        close = self.engine.last_close(runner.rec.pair)
        if close is not None:
            c = self._closes.setdefault(runner.rec.pair, deque())
            if not c or c[-1][0] < now_ms:
                c.append((now_ms, close))
            while c and c[0][0] < now_ms - self._keep_ms:
                c.popleft()

    async def diagnose(self, runner: BotRunner, now_ms: int) -> Finding | None:
        """The first rule that holds for ``runner`` now (``RULES`` order), or None."""
        hs = self.settings.healing
        rec = runner.rec
        s = self._samples.get(rec.id)
        before = s[0][1] if s and s[0][0] < now_ms else None
        pnl_now = runner.equity() - runner.funding
        found = hourly_loss(pnl_now, before, rec.capital, hs.hourly_loss)
        if found is None:
            found = capital_loss(
                runner.equity(), runner.funding, await self._initial_capital(rec.id), hs.capital_loss
            )
        if found is None:
            eng = self.engine
            found = trade_limit(
                eng.pipeline.counter.bot_today(rec.id, now_ms), eng.risk.limits.bot_trades_per_day
            )
        if found is None:
            found = idle(
                now_ms,
                self._active_since.get(rec.id, now_ms),
                self._last_fill.get(rec.id),
                self._closes.get(rec.pair, ()),
                round(hs.idle_hours * HOUR_MS),
                hs.idle_move,
                rec.pair,
            )
        return found

    async def _initial_capital(self, bot_id: int) -> Decimal | None:
        if bot_id not in self._initial:
            initial = await asyncio.to_thread(_read_initial, str(self.engine.store.path), bot_id)
            self._initial[bot_id] = initial.get(bot_id)
        return self._initial[bot_id]

    async def quarantine(self, runner: BotRunner, finding: Finding, now_ms: int) -> Quarantine | None:
        """Quarantine ``runner`` for ``finding`` (module doc); the row, or None when the Adjuster did
        not apply the pause (expert mode: a proposal; refused)."""
        rec = runner.rec
        if self.settings.mode == "expert":
            await self._propose(runner, finding, now_ms)
            return None
        previous = [q.ts for q in self.quarantines if q.bot_id == rec.id]
        esc = escalate(previous, now_ms, self.settings.healing, finding.rule)
        if esc.retire:
            reason = f"quarantine level {esc.level} ({finding.rule}): retired, {finding.reason}"
            adj = await self.adjuster.submit(Change(rec.id, "healing", "state", "stopped", reason))
        else:
            assert esc.until_ts is not None
            hours = (esc.until_ts - now_ms) / HOUR_MS
            reason = f"quarantine level {esc.level} ({finding.rule}) for {hours:g} h: {finding.reason}"
            adj = await self.adjuster.submit(Change(rec.id, "healing", "state", "paused", reason))
        if adj.status not in ("applied", "accepted"):
            return None
        qid = await insert_quarantine(
            self.engine.store, now_ms, rec.id, esc.level, finding.rule, reason, esc.until_ts
        )
        q = Quarantine(qid, now_ms, rec.id, esc.level, finding.rule, reason, esc.until_ts)
        self.quarantines.append(q)
        self._active_since.pop(rec.id, None)
        self.engine.bus.publish(
            BotQuarantined(now_ms, rec.id, rec.name, esc.level, finding.rule, reason, esc.until_ts)
        )
        if esc.retire:
            self._ended.add(qid)
            await self._replace_retired(now_ms)
        return q

    async def _replace_retired(self, now_ms: int) -> None:
        """Submit the replacement of each retired bot once it is flat (its stop closes the position
        first, so the new bot gets the money back): once per retirement, also across restarts."""
        for q in self.quarantines:
            if q.until_ts is not None or q.id in self._replaced:
                continue
            runner = self.engine.runners.get(q.bot_id)
            if runner is None or runner.long or runner.in_flight is not None:
                continue
            self._replaced.add(q.id)
            done = self.adjuster.history(bot_id=q.bot_id, limit=1000)
            if any(a.field == "replace" and a.source == "healing" and a.ts >= q.ts for a in done):
                continue
            rec = runner.rec
            members = await asyncio.to_thread(_read_members, str(self.engine.store.path))
            dna = replacement_dna(rec, members, self.settings.bounds.stop_loss_max)
            why = f"replacement of {rec.name}, retired at quarantine level {q.level} ({q.rule})"
            await self.adjuster.submit(Change(rec.id, "healing", "replace", dna, why))

    async def _propose(self, runner: BotRunner, finding: Finding, now_ms: int) -> None:
        """Expert mode: one pause proposal, not repeated while pending or within the first pause length."""
        rec = runner.rec
        if any(a.bot_id == rec.id and a.source == "healing" for a in self.adjuster.pending()):
            return
        quiet = round(self.settings.healing.escalation_hours[0] * HOUR_MS)
        for a in self.adjuster.history(bot_id=rec.id, limit=50):
            if a.source == "healing" and now_ms - a.ts < quiet:
                return
        reason = f"quarantine proposed ({finding.rule}): {finding.reason}"
        await self.adjuster.submit(Change(rec.id, "healing", "state", "paused", reason))

    async def _withdraw_stale(self, runner: BotRunner, now_ms: int) -> None:
        """Expert mode: a pending pause proposal is taken back once no rule has held for
        ``STALE_HOURS`` (a bot that has recovered is not paused on a stale finding; a finding that
        flickers around its threshold keeps its one proposal)."""
        for p in self.adjuster.pending(runner.rec.id):
            if p.source != "healing" or p.field != "state":
                continue
            last = max(self._last_held.get(runner.rec.id, p.ts), p.ts)
            if now_ms - last >= STALE_HOURS * HOUR_MS:
                why = f"no healing rule has held for {(now_ms - last) / HOUR_MS:g} h"
                await self.adjuster.withdraw(p.id, why)

    async def _resume_due(self, now_ms: int) -> None:
        latest: dict[int, Quarantine] = {}
        for q in self.quarantines:
            latest[q.bot_id] = q
        for q in latest.values():
            if q.id in self._ended or q.until_ts is None or q.until_ts > now_ms:
                continue
            self._ended.add(q.id)
            runner = self.engine.runners.get(q.bot_id)
            if (
                runner is None
                or runner.rec.state is not BotState.PAUSED
                or q.reason not in runner.rec.state_reason
            ):
                continue  # someone changed its state meanwhile: leave it to them
            why = f"quarantine over (level {q.level}, {q.rule})"
            await self.adjuster.submit(Change(q.bot_id, "healing", "state", "running", why))


async def insert_quarantine(
    store: LedgerStore, ts: int, bot_id: int, level: int, rule: str, reason: str, until_ts: int | None
) -> int:
    """Append a ``quarantines`` row through the engine's writer connection; returns its id.
    Raises sqlite3.Error (e.g. an unknown bot id)."""
    row = {"ts": ts, "bot_id": bot_id, "level": level, "rule": rule, "reason": reason, "until_ts": until_ts}
    return await store.append("quarantines", row)


def _read_quarantines(path: str) -> list[Quarantine]:
    """Every ``quarantines`` row, oldest first (a read-only connection)."""
    from amarktai_tui.ledger.schema import connect_readonly

    conn = connect_readonly(path)
    try:
        return [
            Quarantine(
                int(r[0]), int(r[1]), int(r[2]), int(r[3]), r[4], r[5], None if r[6] is None else int(r[6])
            )
            for r in conn.execute(
                "SELECT id, ts, bot_id, level, rule, reason, until_ts FROM quarantines ORDER BY id"
            )
        ]
    finally:
        conn.close()


def _read_initial(path: str, bot_id: int | None) -> dict[int, Decimal]:
    """Each bot's (or one bot's) first funding amount (quote): its initial capital."""
    from amarktai_tui.ledger.schema import connect_readonly

    sql = "SELECT bot_id, amount FROM ledger_events WHERE kind = 'funding' AND bot_id IS NOT NULL"
    args: tuple[Any, ...] = ()
    if bot_id is not None:
        sql += " AND bot_id = ?"
        args = (bot_id,)
    conn = connect_readonly(path)
    try:
        out: dict[int, Decimal] = {}
        for b, amount in conn.execute(sql + " ORDER BY ts, id", args):
            out.setdefault(int(b), Decimal(amount))
        return out
    finally:
        conn.close()


def _read_members(path: str) -> list[MemberRow]:
    """Evolution members with a fitness, best first (``evolution_store.best_members``)."""
    from amarktai_tui.autonomy.evolution_store import best_members
    from amarktai_tui.ledger.schema import connect_readonly

    conn = connect_readonly(path)
    try:
        return best_members(conn)
    finally:
        conn.close()


def register(
    service: AutonomyService, engine: TradingEngine, adjuster: Adjuster, settings: AutonomySettings
) -> HealingJob | None:
    """Register the healing check on ``service`` every ``[autonomy.healing] interval_minutes`` of
    engine time when enabled; the job is closed (unsubscribed from the bus) with the service.
    Returns it, or None when disabled."""
    hs = settings.healing
    if not hs.enabled:
        return None
    job = HealingJob(engine, adjuster, settings)
    service.every("healing", round(hs.interval_minutes * 60_000), job.run)
    service.on_close(job.close)
    return job
