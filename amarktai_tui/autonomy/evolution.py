"""Genetic evolution of bot DNA, scored on replays (``autonomy.dna`` for the genes and operators).

Fitness of a DNA (``fitness_of``), from a backtest of it (``ops.backtest.run_backtest``: the
replay engine path) over the candle file of its pair::

    fitness = return - drawdown_penalty x max_drawdown        (both fractions; Decimal, 6 places)

``return`` = (realised + unrealised at the end) / capital; ``max_drawdown`` of the account equity
curve. Fewer closed trades than ``min_trades``: fitness None, ranked after every scored member.
The backtest's capital is ``capital_share x budget`` (``budget`` = ``[paper] starting_balance``
unless given), its exchange the DNA's (fees), its risk mode the DNA's; ``[risk]``, ``[paper]``
and ``[allocator]`` come from the user's config as for ``amarktai backtest``.

A run (``evolve``), with ``k = max(1, round_half_up(population x elite_share))`` (3 of 10 at 30 %)
and ``r = min(k, population - k)``:

1. Generation 0: the seed DNAs (e.g. the engine's paper bots: ``seeds_from_bots``, never a live
   bot), clamped into the gene space, duplicates dropped, at most ``population``; then random
   DNAs (``dna.random_dna``) up to ``population``.
2. Evaluate every member not evaluated yet (an evaluation is cached by DNA: a DNA seen before in
   the run is not replayed again; the backtest is deterministic, so the result is the same).
3. Rank: fitness high to low, None last, ties by member index. The top ``k`` are the elite.
   Record the generation and its members; publish ``GenerationEvolved``.
4. Next generation, in this member order: the ``k`` elite unchanged (origin ``elite``), then the
   middle ranks ``k .. population - r - 1`` unchanged (origin ``kept``), then ``r`` children
   (origin ``child``) replacing the bottom ``r`` ranks: each child is ``mutate(crossover(a, b))``
   of two distinct elite parents drawn uniformly (``random.sample``; one elite: it is both
   parents), mutation probability ``mutation_rate`` per gene. A carried member's ``parent_a`` is
   its id in the previous generation.
5. Repeat 2-4 until ``generations`` generations are recorded (generation 0 counts).

All randomness comes from one ``random.Random(seed)``, drawn in a fixed order, and the backtests
are deterministic: the same seed, settings and data give the same generations and fitnesses.

Evolution only reads bots (for seeds) and writes its own tables; it never changes a bot. A bot
comes from a DNA only through the autopilot (``autonomy.autopilot``), as a paper bot.

Errors: ``EvolutionUsageError`` (bad data files or input, one line; raised before anything is
recorded); runtime errors of a backtest propagate (generations recorded before stay recorded).
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from random import Random
from typing import Any

from amarktai_tui.autonomy import evolution_store as store
from amarktai_tui.autonomy.dna import Dna, GeneSpace, crossover, mutate, random_dna
from amarktai_tui.autonomy.settings import EvolutionSettings
from amarktai_tui.config import Settings
from amarktai_tui.domain.enums import LifecycleStage, RiskMode
from amarktai_tui.engine.events import EventBus, GenerationEvolved

__all__ = [
    "BacktestEvaluator",
    "Evaluation",
    "EvolutionResult",
    "EvolutionUsageError",
    "Generation",
    "Member",
    "elite_count",
    "evolve",
    "fitness_of",
    "new_run_id",
    "seeds_from_bots",
    "streams_by_pair",
]

FITNESS_PLACES = Decimal("0.000001")
NAN = Decimal("NaN")


class EvolutionUsageError(ValueError):
    """Bad evolution input; ``str()`` is one line naming what is wrong."""


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A DNA's backtest: ``return_`` and ``max_drawdown`` fractions, closed ``trades``,
    ``capital`` the backtest's (quote), ``fitness`` (module doc; None under the minimum trades)."""

    fitness: Decimal | None
    return_: Decimal
    max_drawdown: Decimal
    trades: int
    capital: Decimal

    def metrics(self) -> dict[str, Any]:
        """JSON-ready: return, max_drawdown, capital as decimal strings; trades."""
        return {
            "return": str(self.return_),
            "max_drawdown": str(self.max_drawdown),
            "trades": self.trades,
            "capital": str(self.capital),
        }


Evaluator = Callable[[Dna], Awaitable[Evaluation]]
"""Scores one DNA (``BacktestEvaluator`` replays it)."""


def fitness_of(
    return_: Decimal, max_drawdown: Decimal, trades: int, settings: EvolutionSettings
) -> Decimal | None:
    """``return - drawdown_penalty x max_drawdown`` to 6 places; None when ``trades < min_trades``."""
    if trades < settings.min_trades:
        return None
    return (return_ - settings.drawdown_penalty * max_drawdown).quantize(FITNESS_PLACES, ROUND_HALF_UP)


def streams_by_pair(files: Sequence[str]) -> dict[str, tuple[str, str]]:
    """``{pair: (file, timeframe)}`` from candle file names (as ``--replay`` names them).
    Raises EvolutionUsageError (no files, a file that is missing or names no pair/timeframe, two
    files of one pair)."""
    from amarktai_tui.market.errors import CandleFileError
    from amarktai_tui.ops.backtest import BacktestUsageError, resolve_streams

    if not files:
        raise EvolutionUsageError("--data needs at least one candle file")
    try:
        streams = resolve_streams(files, None, None)
    except (BacktestUsageError, CandleFileError) as exc:
        raise EvolutionUsageError(f"--data: {exc}") from None
    out: dict[str, tuple[str, str]] = {}
    for f, (pair, tf) in zip(files, streams, strict=True):
        if pair in out:
            raise EvolutionUsageError(
                f"--data: two files for {pair} ({out[pair][0]}, {f}); give one per pair"
            )
        out[pair] = (f, tf)
    return out


class BacktestEvaluator:
    """Replays a DNA through ``ops.backtest.run_backtest`` on the candle file of its pair (module
    doc) into a fresh temporary ledger, and caches the result by DNA. ``budget`` in quote."""

    def __init__(
        self,
        settings: Settings,
        streams: Mapping[str, tuple[str, str]],
        evolution: EvolutionSettings,
        *,
        budget: Decimal | None = None,
    ) -> None:
        self.settings = settings
        self.streams = dict(streams)
        self.evolution = evolution
        self.budget = settings.paper.starting_balance if budget is None else budget
        self.cache: dict[str, Evaluation] = {}
        self.replays = 0

    async def __call__(self, dna: Dna) -> Evaluation:
        key = dna.key()
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        result = await self._replay(dna)
        self.cache[key] = result
        return result

    async def _replay(self, dna: Dna) -> Evaluation:
        from amarktai_tui.ops.backtest import BacktestRequest, run_backtest

        if dna.pair not in self.streams:
            raise EvolutionUsageError(f"no candle file for {dna.pair}; --data has {', '.join(self.streams)}")
        file, _tf = self.streams[dna.pair]
        capital = (self.budget * dna.capital_share).quantize(Decimal("0.01"), ROUND_HALF_UP)
        market = self.settings.market.model_copy(update={"exchange": dna.exchange})
        settings = self.settings.model_copy(update={"market": market})
        request = BacktestRequest(
            strategy=dna.strategy,
            files=(file,),
            params=dict(dna.params),
            capital=capital,
            risk_mode=dna.risk_mode.value,
        )
        with tempfile.TemporaryDirectory(prefix="amarktai-evolve-") as tmp:
            result = await run_backtest(settings, request, Path(tmp))
        self.replays += 1
        fig = result.figures
        ret = fig.total / fig.capital if fig.capital else Decimal(0)
        dd = _decimal(fig.stats.max_drawdown)
        ret = ret.quantize(FITNESS_PLACES, ROUND_HALF_UP)
        trades = fig.stats.trades
        return Evaluation(fitness_of(ret, dd, trades, self.evolution), ret, dd, trades, capital)


def _decimal(x: float | None) -> Decimal:
    if x is None:
        return Decimal(0)
    try:
        return Decimal(repr(x)).quantize(FITNESS_PLACES, ROUND_HALF_UP)
    except InvalidOperation:
        return Decimal(0)


def seeds_from_bots(bots: Iterable[Any], space: GeneSpace, budget: Decimal) -> list[Dna]:
    """DNA of the paper bots (``BotRecord`` or ``reader.BotRow``): a bot at stage ``live`` is never
    used; a bot whose strategy or pair the space does not hold is skipped. ``capital_share`` =
    capital / ``budget``, then everything is clamped into ``space``."""
    out = []
    for b in bots:
        stage = getattr(b.stage, "value", b.stage)
        if stage == LifecycleStage.LIVE.value:
            continue
        if b.strategy not in space.strategies or b.pair not in space.pairs:
            continue
        params = getattr(b, "params", None)
        if params is None:
            params = json.loads(b.params_json)
        share = b.capital / budget if budget > 0 else Decimal(0)
        mode = RiskMode(getattr(b.risk_mode, "value", b.risk_mode))
        dna = Dna(b.strategy, dict(params), b.pair, b.exchange, mode, share)
        out.append(space.clamp(dna))
    return out


def elite_count(population: int, elite_share: Decimal) -> tuple[int, int]:
    """``(k, r)``: elite kept and bottom replaced (module doc)."""
    k = max(1, int((Decimal(population) * elite_share).quantize(Decimal(1), ROUND_HALF_UP)))
    k = min(k, population)
    return k, min(k, population - k)


@dataclass(slots=True)
class Member:
    """One member of a generation (``id`` = ``'<run>/g<gen>/m<index>'``)."""

    id: str
    index: int
    dna: Dna
    origin: str
    parent_a: str | None = None
    parent_b: str | None = None
    evaluation: Evaluation | None = None
    elite: bool = False

    @property
    def fitness(self) -> Decimal | None:
        return None if self.evaluation is None else self.evaluation.fitness


@dataclass(slots=True)
class Generation:
    """A recorded generation: members by index, ``ranked`` their indices best first."""

    number: int
    members: list[Member]
    ranked: list[int]
    best_fitness: Decimal
    mean_fitness: Decimal

    @property
    def best(self) -> Member:
        return self.members[self.ranked[0]]


@dataclass(slots=True)
class EvolutionResult:
    """A finished run: its id, seed and generations (oldest first), and how many replays ran."""

    run: str
    seed: int
    generations: list[Generation] = field(default_factory=list)
    replays: int = 0

    @property
    def best(self) -> Member:
        """The best member of the last generation."""
        return self.generations[-1].best


def new_run_id(conn: sqlite3.Connection | None, now_ms: int | None = None) -> str:
    """``'evo-<ms UTC>'``, with ``-2``, ``-3``... when that run exists in ``conn``."""
    base = f"evo-{int(time.time() * 1000) if now_ms is None else now_ms}"
    run, n = base, 1
    while conn is not None and store.has_run(conn, run):
        n += 1
        run = f"{base}-{n}"
    return run


def _rank(members: Sequence[Member]) -> list[int]:
    def key(m: Member) -> tuple[int, Decimal, int]:
        f = m.fitness
        return (1, Decimal(0), m.index) if f is None else (0, -f, m.index)

    return [m.index for m in sorted(members, key=key)]


async def evolve(
    settings: EvolutionSettings,
    space: GeneSpace,
    evaluate: Evaluator,
    *,
    run: str,
    seeds: Sequence[Dna] = (),
    conn: sqlite3.Connection | None = None,
    bus: EventBus | None = None,
    clock: Callable[[], int] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> EvolutionResult:
    """Run ``settings.generations`` generations of ``settings.population`` (module doc).

    ``conn``: a writer connection to the ledger to record each generation in (None: not
    recorded); ``bus``: ``GenerationEvolved`` is published there after each one, stamped with
    ``clock()`` (ms UTC; the engine's time when running beside one, else the wall clock);
    ``on_progress(evaluations done, evaluations planned)``. Raises EvolutionUsageError for a run
    id already recorded; errors of ``evaluate`` propagate.
    """
    if conn is not None and store.has_run(conn, run):
        raise EvolutionUsageError(f"evolution run {run!r} exists already")
    rng = Random(settings.seed)
    rate = float(settings.mutation_rate)
    n = settings.population
    k, r = elite_count(n, settings.elite_share)
    wall = clock or (lambda: int(time.time() * 1000))
    planned = n + (settings.generations - 1) * r
    done = 0

    dnas: list[tuple[Dna, str]] = []
    keys: set[str] = set()
    for d in seeds:
        d = space.clamp(d)
        if d.key() not in keys and len(dnas) < n:
            keys.add(d.key())
            dnas.append((d, "seed"))
    while len(dnas) < n:
        d = random_dna(space, rng)
        dnas.append((d, "random"))
    members = [Member(store.member_id(run, 0, i), i, d, origin) for i, (d, origin) in enumerate(dnas)]
    result = EvolutionResult(run, settings.seed)
    for g in range(settings.generations):
        for m in members:
            if m.evaluation is None:
                m.evaluation = await evaluate(m.dna)
                done += 1
                if on_progress is not None:
                    on_progress(done, planned)
        ranked = _rank(members)
        for i in ranked[:k]:
            members[i].elite = True
        scored = [m.fitness for m in members if m.fitness is not None]
        best = members[ranked[0]].fitness
        gen = Generation(
            g,
            members,
            ranked,
            best if best is not None else NAN,
            (sum(scored, Decimal(0)) / len(scored)).quantize(FITNESS_PLACES, ROUND_HALF_UP)
            if scored
            else NAN,
        )
        result.generations.append(gen)
        _record(conn, run, settings.seed, gen)
        if bus is not None:
            bus.publish(GenerationEvolved(wall(), run, g, gen.best_fitness, gen.mean_fitness, gen.best.id))
        if g + 1 < settings.generations:
            members = _next_generation(space, members, ranked, k, r, run, g + 1, rng, rate)
    result.replays = getattr(evaluate, "replays", done)
    return result


def _next_generation(
    space: GeneSpace,
    members: list[Member],
    ranked: list[int],
    k: int,
    r: int,
    run: str,
    g: int,
    rng: Random,
    rate: float,
) -> list[Member]:
    n = len(members)
    nxt: list[Member] = []
    for pos, i in enumerate(ranked[: n - r]):
        old = members[i]
        idx = len(nxt)
        nxt.append(
            Member(
                store.member_id(run, g, idx),
                idx,
                old.dna,
                "elite" if pos < k else "kept",
                parent_a=old.id,
                evaluation=old.evaluation,
            )
        )
    elite = [members[i] for i in ranked[:k]]
    for _ in range(r):
        a, b = rng.sample(elite, 2) if len(elite) >= 2 else (elite[0], elite[0])
        child = mutate(space, crossover(space, a.dna, b.dna, rng), rng, rate)
        idx = len(nxt)
        nxt.append(Member(store.member_id(run, g, idx), idx, child, "child", parent_a=a.id, parent_b=b.id))
    return nxt


def _record(conn: sqlite3.Connection | None, run: str, seed: int, gen: Generation) -> None:
    if conn is None:
        return
    rows = [
        store.MemberRow(
            member=m.id,
            dna=m.dna,
            fitness=m.fitness,
            metrics={**(m.evaluation.metrics() if m.evaluation else {}), "origin": m.origin},
            parent_a=m.parent_a,
            parent_b=m.parent_b,
            elite=m.elite,
        )
        for m in gen.members
    ]
    row = store.GenerationRow(
        run, gen.number, seed, gen.best_fitness, gen.mean_fitness, gen.best.id, int(time.time() * 1000)
    )
    store.record_generation(conn, row, rows)
