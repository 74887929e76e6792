"""``amarktai evolve``: evolve bot DNA on candle files, show runs, trace a bot's lineage.

- ``amarktai evolve --data FILE[,FILE] [--population N] [--generations G] [--seed S]
  [--strategies NAME[,NAME]] [--json]``: one evolution run (``autonomy.evolution``): each DNA is
  replayed on the file of its pair (one file per pair; the pair and timeframe come from the file
  name, as for ``--replay``). Defaults from ``[autonomy.evolution]``. Generation 0 is seeded from
  the ledger's paper bots (never a live one) whose pair has a file, then random DNAs. Every
  generation is recorded in the ledger of ``--data-dir`` (``evolution_generations``/``_members``),
  safe while an engine runs (it never writes those tables); the backtests run in temporary
  ledgers, their logs are discarded. A progress bar (replays done of planned) is drawn on stderr
  when it is a terminal.
- ``amarktai evolve show [--run R] [--json]``: the recorded runs and, for ``R`` (default the
  newest), each generation's best and mean fitness and its best member with its DNA.
- ``amarktai evolve lineage MEMBER|BOT [--json]``: a member (``<run>/g<gen>/m<idx>``) or a bot
  (name or id; its ``dna_id``) and its ancestors, each once: fitness, origin, parents, DNA.

JSON (money and fractions as decimal strings; fitness null when under the minimum trades or, for
a generation, when no member reached it): ``evolve`` -> ``run``, ``seed``, ``population``,
``generations`` (each ``generation``, ``best_fitness``, ``mean_fitness``, ``best_member``,
``members``: ``member``, ``dna``, ``fitness``, ``metrics``, ``parent_a``, ``parent_b``,
``elite``, ``origin``), ``best`` (a member), ``replays``, ``elapsed_s``; ``show`` -> ``runs``
(``run``, ``generations``, ``seed``, ``started_ts``, ``finished_ts``, ``best_fitness``,
``best_member``), ``run``, ``generations`` (``generation``, ``best_fitness``, ``mean_fitness``,
``best_member``, ``best_dna``, ``ts``); ``lineage`` -> ``member``, ``bot``, ``nodes`` (a member
each, with ``parents``).

Exit codes: 0 done; 2 bad usage (a missing or unreadable data file, two files of one pair, a bad
number, an unknown strategy, run, member or bot, a bot not spawned from a DNA), one line on
stderr; 1 a runtime failure (one line).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from amarktai_tui.autonomy import evolution_store as store
from amarktai_tui.autonomy.dna import Dna, DnaError, GeneSpace
from amarktai_tui.autonomy.evolution import (
    BacktestEvaluator,
    EvolutionResult,
    EvolutionUsageError,
    Member,
    evolve,
    new_run_id,
    seeds_from_bots,
    streams_by_pair,
)
from amarktai_tui.autonomy.settings import EvolutionSettings
from amarktai_tui.config import Settings
from amarktai_tui.locations import db_path
from amarktai_tui.ops.progress import progress_bar, quiet_logs
from amarktai_tui.strategies.registry import STRATEGIES

PROG = "amarktai evolve"


class _Usage(Exception):
    """Bad usage: one line, exit 2."""


def run_evolve(args: argparse.Namespace, settings: Settings, data_dir: Path) -> int:
    """Run ``amarktai evolve [show | lineage]``; returns the exit code (module doc)."""
    action = getattr(args, "evolve_command", None)
    try:
        if action == "show":
            return _show(data_dir, args.run, as_json=args.json)
        if action == "lineage":
            return _lineage(data_dir, args.target, as_json=args.json)
        return _run(args, settings, data_dir)
    except (_Usage, EvolutionUsageError, DnaError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a runtime failure: one line, no traceback
        text = str(exc).splitlines()[0] if str(exc) else ""
        print(f"{PROG}: failed: {type(exc).__name__}: {text}", file=sys.stderr)
        return 1


# -- a run ----------------------------------------------------------------------------------


def _evolution_settings(args: argparse.Namespace, base: EvolutionSettings) -> EvolutionSettings:
    given = {
        k: getattr(args, k) for k in ("population", "generations", "seed") if getattr(args, k) is not None
    }
    try:
        return EvolutionSettings.model_validate({**base.model_dump(), **given})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise _Usage(f"--{where}: {err['msg']}") from None


def _strategies(text: str | None) -> tuple[str, ...]:
    if not text:
        return tuple(STRATEGIES)
    names = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    for n in names:
        if n not in STRATEGIES:
            raise _Usage(f"--strategies: unknown strategy {n!r}; valid strategies: {', '.join(STRATEGIES)}")
    if not names:
        raise _Usage("--strategies needs at least one strategy")
    return names


def _paper_seeds(data_dir: Path, space: GeneSpace, budget: Decimal) -> list[Dna]:
    from amarktai_tui.ledger import reader
    from amarktai_tui.ledger.schema import connect_readonly

    path = db_path(data_dir)
    if not path.exists():
        return []
    conn = connect_readonly(str(path))
    try:
        return seeds_from_bots(reader.bots(conn), space, budget)
    finally:
        conn.close()


def _run(args: argparse.Namespace, settings: Settings, data_dir: Path) -> int:
    from amarktai_tui.ops.audit_store import connect

    if not args.data:
        raise _Usage("--data FILE[,FILE] is required (or: amarktai evolve show | lineage MEMBER|BOT)")
    evo = _evolution_settings(args, settings.autonomy.evolution)
    streams = streams_by_pair([f.strip() for f in args.data.split(",") if f.strip()])
    space = GeneSpace(
        _strategies(args.strategies),
        tuple(streams),
        (settings.market.exchange,),
        timeframes={pair: tf for pair, (_f, tf) in streams.items()},
    )
    evaluator = BacktestEvaluator(settings, streams, evo)
    seeds = _paper_seeds(data_dir, space, evaluator.budget)
    data_dir.mkdir(parents=True, exist_ok=True)
    conn = connect(db_path(data_dir))
    t0 = time.perf_counter()
    try:
        run = new_run_id(conn)
        with (
            tempfile.TemporaryDirectory(prefix="amarktai-evolve-logs-") as tmp,
            quiet_logs(Path(tmp)),
            progress_bar("evolve", "replays") as progress,
        ):
            result = asyncio.run(
                evolve(evo, space, evaluator, run=run, seeds=seeds, conn=conn, on_progress=progress)
            )
    finally:
        conn.close()
    elapsed = time.perf_counter() - t0
    if args.json:
        _dump(_result_json(result, evo, elapsed))
    else:
        for line in _result_lines(result, elapsed):
            print(line)
    return 0


def _fit(value: Decimal | None) -> str | None:
    return None if value is None or value.is_nan() else str(value)


def _fit_text(value: Decimal | None) -> str:
    return "-" if value is None or value.is_nan() else f"{value:+.4f}"


def _member_json(m: Member) -> dict[str, Any]:
    return {
        "member": m.id,
        "dna": m.dna.to_dict(),
        "fitness": _fit(m.fitness),
        "metrics": m.evaluation.metrics() if m.evaluation else {},
        "parent_a": m.parent_a,
        "parent_b": m.parent_b,
        "elite": m.elite,
        "origin": m.origin,
    }


def _result_json(result: EvolutionResult, evo: EvolutionSettings, elapsed: float) -> dict[str, Any]:
    return {
        "run": result.run,
        "seed": result.seed,
        "population": evo.population,
        "generations": [
            {
                "generation": g.number,
                "best_fitness": _fit(g.best_fitness),
                "mean_fitness": _fit(g.mean_fitness),
                "best_member": g.best.id,
                "members": [_member_json(m) for m in g.members],
            }
            for g in result.generations
        ],
        "best": _member_json(result.best),
        "replays": result.replays,
        "elapsed_s": round(elapsed, 3),
    }


def dna_text(dna: Dna) -> str:
    """One line: ``sma_cross fast=10 slow=30 kind=sma BTC/USDT 1h binance balanced share 0.10``."""
    params = " ".join(f"{k}={v}" for k, v in dna.params.items())
    tf = f" {dna.timeframe}" if dna.timeframe else ""
    return f"{dna.strategy} {params} {dna.pair}{tf} {dna.exchange} {dna.risk_mode.value} share {dna.capital_share}"


def _result_lines(result: EvolutionResult, elapsed: float) -> list[str]:
    lines = [
        f"run {result.run} (seed {result.seed}): {len(result.generations)} generations, {result.replays} replays in {elapsed:.1f} s"
    ]
    lines.append(f"{'gen':>3}  {'best':>9}  {'mean':>9}  best member")
    for g in result.generations:
        lines.append(
            f"{g.number:>3}  {_fit_text(g.best_fitness):>9}  {_fit_text(g.mean_fitness):>9}  {g.best.id}"
        )
    best = result.best
    lines.append(f"best: {best.id} fitness {_fit_text(best.fitness)}: {dna_text(best.dna)}")
    return lines


def _dump(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


# -- show and lineage ---------------------------------------------------------------------------


@contextlib.contextmanager
def _reader(data_dir: Path) -> Iterator[sqlite3.Connection | None]:
    from amarktai_tui.ledger.schema import connect_readonly

    path = db_path(data_dir)
    if not path.exists():
        yield None
        return
    conn = connect_readonly(str(path))
    try:
        yield conn
    finally:
        conn.close()


def _show(data_dir: Path, run: str | None, *, as_json: bool) -> int:
    with _reader(data_dir) as conn:
        runs = store.runs(conn) if conn is not None else []
        if run is not None and run not in {r.run for r in runs}:
            raise _Usage(f"--run {run!r}: no such evolution run in {data_dir}")
        chosen = run if run is not None else (runs[-1].run if runs else None)
        gens = store.generations(conn, chosen) if conn is not None and chosen is not None else []
        best = {g.generation: (store.member(conn, g.best_member) if conn is not None else None) for g in gens}
    if as_json:
        _dump(
            {
                "runs": [
                    {
                        "run": r.run,
                        "generations": r.generations,
                        "seed": r.seed,
                        "started_ts": r.started_ts,
                        "finished_ts": r.finished_ts,
                        "best_fitness": _fit(r.best_fitness),
                        "best_member": r.best_member,
                    }
                    for r in runs
                ],
                "run": chosen,
                "generations": [
                    {
                        "generation": g.generation,
                        "best_fitness": _fit(g.best_fitness),
                        "mean_fitness": _fit(g.mean_fitness),
                        "best_member": g.best_member,
                        "best_dna": (b.dna.to_dict() if (b := best[g.generation]) is not None else None),
                        "ts": g.ts,
                    }
                    for g in gens
                ],
            }
        )
        return 0
    if not runs:
        print("no evolution runs recorded (amarktai evolve --data FILE[,FILE])")
        return 0
    print(f"{'run':<24} {'gens':>4} {'seed':>6} {'best':>9}  best member")
    for r in runs:
        print(f"{r.run:<24} {r.generations:>4} {r.seed:>6} {_fit_text(r.best_fitness):>9}  {r.best_member}")
    print()
    print(f"run {chosen}")
    print(f"{'gen':>3}  {'best':>9}  {'mean':>9}  best member")
    for g in gens:
        b = best[g.generation]
        tail = f": {dna_text(b.dna)}" if b is not None else ""
        print(
            f"{g.generation:>3}  {_fit_text(g.best_fitness):>9}  {_fit_text(g.mean_fitness):>9}  {g.best_member}{tail}"
        )
    return 0


def _bot_member(conn: sqlite3.Connection, ref: str) -> tuple[str, str]:
    """``(bot name, dna_id)`` of the bot named or numbered ``ref``. Raises _Usage."""
    row = conn.execute("SELECT name, dna_id FROM bots WHERE name = ? ORDER BY id LIMIT 1", (ref,)).fetchone()
    if row is None and ref.isdigit():
        row = conn.execute("SELECT name, dna_id FROM bots WHERE id = ?", (int(ref),)).fetchone()
    if row is None:
        raise _Usage(f"{ref!r} is neither an evolution member (<run>/g<gen>/m<idx>) nor a bot")
    if not row[1]:
        raise _Usage(f"bot {row[0]} was not spawned from an evolved DNA (no dna_id)")
    return str(row[0]), str(row[1])


def _lineage(data_dir: Path, target: str, *, as_json: bool) -> int:
    with _reader(data_dir) as conn:
        if conn is None:
            raise _Usage(f"no ledger in {data_dir}: nothing evolved yet")
        bot: str | None = None
        mid = target
        if store.member(conn, target) is None:
            bot, mid = _bot_member(conn, target)
        nodes = store.lineage(conn, mid)
    if not nodes:
        raise _Usage(f"member {mid!r} is not recorded in {data_dir}")
    if as_json:
        _dump(
            {
                "member": mid,
                "bot": bot,
                "nodes": [
                    {
                        "member": n.row.member,
                        "fitness": _fit(n.row.fitness),
                        "origin": n.row.origin,
                        "elite": n.row.elite,
                        "parents": list(n.parents),
                        "metrics": n.row.metrics,
                        "dna": n.row.dna.to_dict(),
                    }
                    for n in nodes
                ],
            }
        )
        return 0
    if bot is not None:
        print(f"bot {bot} <- {mid}")
    for n in nodes:
        parents = ", ".join(n.parents) if n.parents else "-"
        elite = ", elite of its generation" if n.row.elite else ""
        print(
            f"{n.row.member}  fitness {_fit_text(n.row.fitness)}  origin {n.row.origin}{elite}  parents: {parents}"
        )
        print(f"    {dna_text(n.row.dna)}")
    return 0
