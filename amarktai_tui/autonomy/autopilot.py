"""The autopilot: once a day, put yesterday's realised profit back to work (``[autonomy.autopilot]``,
off by default).

``Autopilot.run(now_ms)`` is a daily ``AutonomyService`` job at ``run_at`` (engine time, UTC):

1. **Profit.** Yesterday is the UTC day before the one holding ``now_ms``. Each paper bot's net
   realised profit of that day = the sum of ``realised_pnl`` of its fills then (``engine.fill_log``;
   sells carry the FIFO PnL net of both fees). Live bots (stage live, or an engine trading live)
   are left out: the autopilot touches paper bots only. Net = the sum over bots (losses count).
   Net at or below ``profit_threshold``: nothing happens.
2. **Where the money comes from.** Never new funding: the realised profit sits in the earning
   bots' cash, above their capital. The autopilot *sweeps* the amount it spends out of the bots
   that earned it yesterday, in proportion to their profit (each at most its profit and its free
   cash; cents rounded down, the rest taken from the largest earners), into the account pool:
   per bot a ``Change(source="autopilot", field="capital", after=capital - x)``. The Adjuster
   applies it as a pair of ``allocation`` ledger events (bot -x, account +x) and records the row.
   Then it spends from the pool. So the account's total capital (the sum of all ledger events:
   the bots' funding plus the pool) never changes; only where it sits does.
3. **Spawn or reinvest.** When yesterday's net profit is at least ``spawn_amount``, the engine has
   room (the DNA's exchange below its bot cap, ``exchanges.registry``, and fewer than
   ``TOTAL_BOT_CAP`` = 45 bots) and there is a usable evolved DNA (the best fitness among
   ``evolution_members`` whose DNA no bot of this engine runs yet and whose pair and timeframe a
   bot of this engine already trades, so the feed carries its candles): sweep ``spawn_amount`` and
   submit a ``Change(sponsor, "autopilot", "spawn", dna)``: the Adjuster creates a paper bot from
   that DNA with ``create_bot(from_pool=True)`` (its funding event and the pool's ``allocation``
   event of -amount), ``dna_id`` = the member, and records the row (on the sponsor, the new bot's
   id and name in ``after``; ``autonomy.changes``). The sponsor is the paper bot with the most
   realised profit; its exits fill the DNA's, bounded as a ``replace`` DNA is (``autonomy.bounds``:
   a stop-loss fitted to the risk-per-trade bounds). A spawn the Adjuster refuses (e.g. a sweep was
   refused and the pool holds less) turns into a reinvestment of what reached the pool. Otherwise
   **reinvest**: sweep ``reinvest_share`` x net (80 %) and split it
   equally (cents down, the rest to the first) across the ``top_bots`` (3) running paper bots with
   the best allocator score (``risk.allocator``: roi_weight x ROI + win_rate_weight x win rate,
   here over every bot with at least one closed trade), each a ``Change(field="capital",
   after=capital + share)``.
4. **Modes.** Everything goes through the ``Adjuster``: in expert mode the sweeps, the spawn and
   the reinvestments are proposals (nothing moves until the user accepts them, sweeps first; the
   Adjuster limits an accepted increase to what the pool holds and refuses a spawn the pool cannot
   fund, so money never appears).
5. **Once a day.** A day whose autopilot rows exist already (a restart after ``run_at``) is skipped.

Every step is logged; ``run`` returns an ``AutopilotRun`` saying what was done and why.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Any, Protocol

from amarktai_tui.autonomy.bounds import BoundsRefusal, clamp
from amarktai_tui.autonomy.changes import Adjuster, Change
from amarktai_tui.autonomy.evolution_store import MemberRow, best_members
from amarktai_tui.autonomy.settings import AutonomySettings
from amarktai_tui.domain.enums import BotState, LifecycleStage, TradingMode
from amarktai_tui.engine.spec import BotSpec, EngineError
from amarktai_tui.risk.allocator import BotPerformance, plan_allocation

if TYPE_CHECKING:
    from amarktai_tui.engine.engine import TradingEngine
    from amarktai_tui.engine.runner import BotRunner
    from amarktai_tui.ledger.store import BotRecord

__all__ = ["Autopilot", "AutopilotRun", "register", "yesterday_profit"]

log = logging.getLogger("amarktai.autonomy.autopilot")
DAY_MS = 86_400_000
CENT = Decimal("0.01")
ZERO = Decimal(0)
SOURCE = "autopilot"


@dataclass(slots=True)
class AutopilotRun:
    """One daily run: ``day_start`` ms UTC of yesterday, ``profit`` per bot id and ``net`` (quote),
    ``action`` none | reinvest | spawn, ``reason`` why, ``adjustments`` the rows written (ids),
    ``spawned`` the new bot's name, ``moved`` the quote amount swept and spent."""

    now_ms: int
    day_start: int
    net: Decimal
    profit: dict[int, Decimal] = field(default_factory=dict)
    action: str = "none"
    reason: str = ""
    moved: Decimal = ZERO
    adjustments: list[int] = field(default_factory=list)
    spawned: str | None = None


def yesterday_profit(engine: TradingEngine, now_ms: int, bot_ids: set[int]) -> tuple[int, dict[int, Decimal]]:
    """``(yesterday's start ms UTC, {bot id: realised PnL of its fills that UTC day})`` for ``bot_ids``."""
    start = (now_ms // DAY_MS - 1) * DAY_MS
    out: dict[int, Decimal] = {}
    for f in engine.fill_log:
        if start <= f.ts < start + DAY_MS and f.bot_id in bot_ids and f.realised_pnl:
            out[f.bot_id] = out.get(f.bot_id, ZERO) + f.realised_pnl
    return start, out


def _cents(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_DOWN)


class Autopilot:
    """The daily job (module doc) of one engine."""

    def __init__(self, engine: TradingEngine, adjuster: Adjuster, settings: AutonomySettings) -> None:
        self.engine = engine
        self.adjuster = adjuster
        self.settings = settings

    # -- what it may touch --------------------------------------------------------------------
    def _paper(self, r: BotRunner) -> bool:
        return self.engine.mode is not TradingMode.LIVE and r.rec.stage is not LifecycleStage.LIVE

    def _ran_today(self, now_ms: int) -> bool:
        today = now_ms // DAY_MS * DAY_MS
        rows = self.adjuster.history(limit=200)
        return any(a.source == SOURCE and a.ts >= today for a in rows)

    # -- the job ------------------------------------------------------------------------------
    async def run(self, now_ms: int) -> AutopilotRun:
        """Run once for the day holding ``now_ms`` (engine time): module doc."""
        ap = self.settings.autopilot
        paper = {r.rec.id: r for r in self.engine.runners.values() if self._paper(r)}
        day, profit = yesterday_profit(self.engine, now_ms, set(paper))
        net = sum(profit.values(), ZERO)
        out = AutopilotRun(now_ms, day, net, profit)
        if self._ran_today(now_ms):
            out.reason = "already ran today"
        elif net <= ap.profit_threshold:
            out.reason = f"yesterday's net realised profit {net} is not above {ap.profit_threshold}"
        else:
            spawn = self._spawn_plan(net, paper)
            if spawn is None or not await self._spawn(out, paper, *spawn):
                await self._reinvest(out, paper)
        log.info("autopilot %s: %s (net %s)", out.action, out.reason, net)
        return out

    # -- sweeping yesterday's profit into the pool ---------------------------------------------
    def _sweep_plan(
        self, amount: Decimal, profit: dict[int, Decimal], paper: dict[int, BotRunner]
    ) -> dict[int, Decimal]:
        """``{bot id: x}`` summing to ``amount`` (or less when the earners cannot give it)."""
        earners = sorted(
            ((b, p) for b, p in profit.items() if p > 0 and b in paper), key=lambda bp: (-bp[1], bp[0])
        )
        total = sum((p for _, p in earners), ZERO)
        caps = {b: _cents(max(min(p, paper[b].cash), ZERO)) for b, p in earners}
        plan = {b: min(_cents(amount * p / total), caps[b]) for b, p in earners} if total > 0 else {}
        short = amount - sum(plan.values(), ZERO)
        for b, _ in earners:  # the cents (and any capped part) from the largest earners with room
            if short <= 0:
                break
            extra = min(short, caps[b] - plan[b])
            plan[b] += extra
            short -= extra
        return {b: x for b, x in plan.items() if x > 0}

    async def _sweep(
        self, out: AutopilotRun, amount: Decimal, paper: dict[int, BotRunner], why: str
    ) -> Decimal:
        """Submit the sweeps; the amount that reached the pool (0 in expert mode: proposals)."""
        got = ZERO
        for bot_id, x in self._sweep_plan(amount, out.profit, paper).items():
            rec = paper[bot_id].rec
            pool_before = self.engine.pool
            change = Change(
                bot_id,
                SOURCE,
                "capital",
                rec.capital - x,
                f"autopilot: {x} of {rec.name}'s realised profit yesterday ({out.profit[bot_id]}) to the pool, {why}",
            )
            adj = await self.adjuster.submit(change, actor=SOURCE)
            out.adjustments.append(adj.id)
            if adj.status == "applied":
                got += self.engine.pool - pool_before
        return got

    # -- reinvest --------------------------------------------------------------------------------
    def top_bots(self, paper: dict[int, BotRunner]) -> list[BotRunner]:
        """The running paper bots ranked by the allocator's score (module doc), best first, at most
        ``top_bots``."""
        perf = []
        for r in paper.values():
            if r.rec.state is not BotState.RUNNING or r.stats.trades < 1:
                continue
            roi = (r.equity() - r.funding) / r.funding if r.funding > 0 else ZERO
            perf.append(
                BotPerformance(r.rec.id, r.rec.name, r.rec.risk_mode, r.rec.capital, r.equity(),
                               r.stats.trades, r.stats.wins, roi)
            )  # fmt: skip
        if not perf:
            return []
        settings = dc_replace(self.engine.allocator, min_trades=1)
        plan = plan_allocation(perf, max(self.engine.account_equity() + self.engine.pool, ZERO), settings)
        ranked = [a.bot_id for a in plan.allocations if a.score is not None]
        return [paper[b] for b in ranked[: self.settings.autopilot.top_bots]]

    async def _reinvest(self, out: AutopilotRun, paper: dict[int, BotRunner], pooled: Decimal = ZERO) -> None:
        """Sweep and spread ``reinvest_share`` x net; with ``pooled`` > 0 (a spawn that swept but could
        not create its bot) spread that instead, without sweeping again."""
        ap = self.settings.autopilot
        top = self.top_bots(paper)
        if not top:
            out.reason = "no running paper bot with a closed trade to reinvest in" + (
                f"; {pooled} stays in the pool" if pooled else ""
            )
            return
        amount = pooled or _cents(ap.reinvest_share * out.net)
        names = ", ".join(r.rec.name for r in top)
        why = f"reinvested in the top {len(top)} bots by score ({names})"
        if not pooled and self.settings.mode == "autonomous":
            amount = await self._sweep(out, amount, paper, why)
        elif not pooled:  # proposals: the sweeps first, then what they would fund
            planned = self._sweep_plan(amount, out.profit, paper)
            await self._sweep(out, amount, paper, why)
            amount = sum(planned.values(), ZERO)
        if amount <= 0:
            out.reason = "nothing could be swept from yesterday's earners (no free cash)"
            return
        share = _cents(amount / len(top))
        shares = [share] * len(top)
        shares[0] += amount - share * len(top)
        for r, x in zip(top, shares, strict=True):
            if x <= 0:
                continue
            reason = (
                f"autopilot: {x} of yesterday's realised profit ({out.net} net,"
                f" {ap.reinvest_share * 100:g} % reinvested) to {r.rec.name}, a top bot by score"
            )
            adj = await self.adjuster.submit(
                Change(r.rec.id, SOURCE, "capital", r.rec.capital + x, reason), actor=SOURCE
            )
            out.adjustments.append(adj.id)
        out.action, out.moved = "reinvest", amount
        out.reason = f"{amount} of {out.net} {why}" + (
            " (proposed)" if self.settings.mode == "expert" else ""
        )

    # -- spawn -----------------------------------------------------------------------------------
    def _spawn_plan(
        self, net: Decimal, paper: dict[int, BotRunner]
    ) -> tuple[MemberRow, dict[str, Any], int] | None:
        """The member, the bounded DNA dict of the bot to spawn and its sponsor's id, or None
        (module doc, step 3)."""
        amount = self.settings.autopilot.spawn_amount
        if net < amount:
            return None
        runners = sorted(paper.values(), key=lambda r: r.rec.id)
        if not runners:
            return None
        sponsor = max(runners, key=lambda r: (r.stats.realised, -r.rec.id)).rec  # its exits fill the DNA's
        for m in self._candidates():
            dna = self._dna_dict(m, amount, sponsor)
            if dna is None:
                continue
            try:
                self.engine.check_new_bot(self._spec(dna))  # caps, name, market; the pool is swept later
            except EngineError as exc:
                log.info("autopilot: %s cannot be spawned: %s", m.member, exc)
                continue
            return m, dna, sponsor.id
        return None

    def _candidates(self) -> list[MemberRow]:
        from amarktai_tui.ledger.schema import connect_readonly

        used = {r.rec.dna_id for r in self.engine.runners.values() if r.rec.dna_id}
        conn = connect_readonly(str(self.engine.store.path))
        try:
            members = best_members(conn)
        finally:
            conn.close()
        used_keys = {m.dna.key() for m in members if m.member in used}
        return [m for m in members if m.dna.key() not in used_keys]

    def _dna_dict(self, m: MemberRow, amount: Decimal, sponsor: BotRecord) -> dict[str, Any] | None:
        streams = {(r.rec.pair, r.rec.timeframe) for r in self.engine.runners.values()}
        tf = m.dna.timeframe or next((t for p, t in sorted(streams) if p == m.dna.pair), None)
        if tf is None or (m.dna.pair, tf) not in streams:
            return None
        names = {r.rec.name for r in self.engine.runners.values()}
        base = f"auto-{m.dna.pair.split('/')[0].lower()}-{m.dna.strategy.replace('_', '-')}"
        name = next(f"{base}-{n}" for n in range(1, 10_000) if f"{base}-{n}" not in names)
        raw = {
            "name": name,
            "exchange": m.dna.exchange,
            "pair": m.dna.pair,
            "timeframe": tf,
            "strategy": m.dna.strategy,
            "params": dict(m.dna.params),
            "risk_mode": m.dna.risk_mode.value,
            "capital": str(amount),
            "stop_loss": str(sponsor.stop_loss or self.settings.bounds.stop_loss_max),
            "take_profit": None if sponsor.take_profit is None else str(sponsor.take_profit),
            "trailing_stop": None,
            "dna_id": m.member,
        }
        try:
            value, _note = clamp("spawn", raw, sponsor, self.adjuster.bounds)
        except BoundsRefusal as exc:
            log.info("autopilot: %s does not fit the bounds: %s", m.member, exc)
            return None
        return dict(value)

    @staticmethod
    def _spec(dna: dict[str, Any]) -> BotSpec:
        return BotSpec(
            name=dna["name"], exchange=dna["exchange"], pair=dna["pair"], timeframe=dna["timeframe"],
            strategy=dna["strategy"], params=dict(dna["params"]), risk_mode=dna["risk_mode"],
            capital=dna["capital"], stop_loss=dna["stop_loss"], take_profit=dna["take_profit"],
            trailing_stop=dna["trailing_stop"], dna_id=dna["dna_id"],
        )  # fmt: skip

    async def _spawn(
        self, out: AutopilotRun, paper: dict[int, BotRunner], m: MemberRow, dna: dict[str, Any], sponsor: int
    ) -> bool:
        """Sweep and spawn through the Adjuster; False when nothing can be swept (the caller
        reinvests instead). A spawn the Adjuster refuses reinvests what the sweeps freed."""
        amount: Decimal = dna["capital"]
        planned = self._sweep_plan(amount, out.profit, paper)
        if sum(planned.values(), ZERO) < amount:
            log.info("autopilot: yesterday's earners cannot free %s for a new bot", amount)
            return False
        expert = self.settings.mode == "expert"
        got = await self._sweep(out, amount, paper, f"for a new bot from {m.member}")
        freed = sum(planned.values(), ZERO) if expert else got  # proposals: what they would free
        if not expert and got < amount:  # some sweep was refused: reinvest what reached the pool
            log.warning(
                "autopilot: only %s of %s reached the pool; no bot spawned, reinvesting it", got, amount
            )
            await self._reinvest(out, paper, pooled=got)
            return True
        reason = (
            f"autopilot: a new paper bot {dna['name']} from {m.member} (fitness {m.fitness}) with {amount}"
            f" of yesterday's realised profit ({out.net} net) from the pool"
        )
        adj = await self.adjuster.submit(Change(sponsor, SOURCE, "spawn", dna, reason), actor=SOURCE)
        out.adjustments.append(adj.id)
        if adj.status == "refused":
            log.warning(
                "autopilot: spawning from %s refused (%s); reinvesting %s", m.member, adj.reason, freed
            )
            await self._reinvest(out, paper, pooled=freed)
            return True
        out.action, out.moved, out.spawned = "spawn", amount, str(adj.after.get("name") or dna["name"])
        out.reason = reason + (" (proposed)" if adj.status == "proposed" else "")
        return True


class _Service(Protocol):
    def daily(self, name: str, at: str, job: Callable[[int], Awaitable[None]]) -> Any: ...


def register(
    service: _Service, engine: TradingEngine, adjuster: Adjuster, settings: AutonomySettings
) -> Autopilot | None:
    """Add the daily autopilot job to ``service`` when ``[autonomy.autopilot] enabled``; else None."""
    if not settings.autopilot.enabled:
        return None
    pilot = Autopilot(engine, adjuster, settings)

    async def job(now_ms: int) -> None:
        await pilot.run(now_ms)

    service.daily("autopilot", settings.autopilot.run_at, job)
    return pilot
