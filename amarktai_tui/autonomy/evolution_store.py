"""Evolution runs in the ledger: ``evolution_generations`` and ``evolution_members`` (schema v7).

One row per generation (run id, generation number, seed, best and mean fitness as decimal
strings, best member, wall time ms UTC) and one per member of it: ``member`` is
``'<run>/g<generation>/m<index>'``, ``dna_json`` the canonical DNA (``autonomy.dna``),
``fitness`` a decimal string or NULL (fewer trades than the run's minimum), ``metrics_json``
``{"return", "max_drawdown", "trades", "origin", "capital"}`` (return and drawdown fractions as
decimal strings; ``origin`` one of ``seed`` | ``random`` | ``elite`` | ``kept`` | ``child``),
``parent_a``/``parent_b`` the member ids it came from (a carried member has only ``parent_a``,
its own earlier self; generation 0 has none), ``elite`` 1 for its generation's top share.

A generation with no member that reached the minimum trade count stores ``NaN`` as its best and
mean fitness. Writes are one transaction per generation. Reads raise sqlite3.Error; a ledger
older than v7 (no tables) reads as empty.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from amarktai_tui.autonomy.dna import Dna

__all__ = [
    "GenerationRow",
    "LineageNode",
    "MemberRow",
    "RunSummary",
    "best_members",
    "generations",
    "has_run",
    "lineage",
    "member",
    "member_id",
    "members",
    "record_generation",
    "runs",
]


def member_id(run: str, generation: int, index: int) -> str:
    """``'<run>/g<generation>/m<index>'``."""
    return f"{run}/g{generation}/m{index}"


@dataclass(frozen=True, slots=True)
class MemberRow:
    """One member (module doc). ``fitness`` None: fewer trades than the minimum."""

    member: str
    dna: Dna
    fitness: Decimal | None
    metrics: dict[str, Any]
    parent_a: str | None
    parent_b: str | None
    elite: bool

    @property
    def origin(self) -> str:
        return str(self.metrics.get("origin", ""))


@dataclass(frozen=True, slots=True)
class GenerationRow:
    """One generation: fitness figures are Decimal (NaN: no member had enough trades)."""

    run: str
    generation: int
    seed: int
    best_fitness: Decimal
    mean_fitness: Decimal
    best_member: str
    ts: int


@dataclass(frozen=True, slots=True)
class RunSummary:
    """A run: its generations, seed, first and last generation time (ms UTC), the best fitness of
    its last generation and that member."""

    run: str
    generations: int
    seed: int
    started_ts: int
    finished_ts: int
    best_fitness: Decimal
    best_member: str


@dataclass(frozen=True, slots=True)
class LineageNode:
    """A member and the member ids of its parents (in the lineage walk, each member once)."""

    row: MemberRow
    parents: tuple[str, ...]


def _missing_table(exc: sqlite3.OperationalError) -> bool:
    return "no such table" in str(exc)


def record_generation(conn: sqlite3.Connection, gen: GenerationRow, rows: Sequence[MemberRow]) -> None:
    """Write a generation and its members in one transaction (all or none). ``conn`` is a writer
    (autocommit mode, e.g. ``ops.audit_store.connect``). Raises sqlite3.Error (e.g. the run and
    generation already recorded)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        cur = conn.execute(
            "INSERT INTO evolution_generations (run, generation, seed, best_fitness, mean_fitness,"
            " best_member, ts) VALUES (?,?,?,?,?,?,?)",
            (
                gen.run,
                gen.generation,
                gen.seed,
                str(gen.best_fitness),
                str(gen.mean_fitness),
                gen.best_member,
                gen.ts,
            ),
        )
        gen_id = cur.lastrowid
        conn.executemany(
            "INSERT INTO evolution_members (generation_id, member, dna_json, fitness, metrics_json,"
            " parent_a, parent_b, elite) VALUES (?,?,?,?,?,?,?,?)",
            [
                (
                    gen_id,
                    r.member,
                    r.dna.to_json(),
                    None if r.fitness is None else str(r.fitness),
                    json.dumps(r.metrics, sort_keys=True),
                    r.parent_a,
                    r.parent_b,
                    int(r.elite),
                )
                for r in rows
            ],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def has_run(conn: sqlite3.Connection, run: str) -> bool:
    """Whether ``run`` has a recorded generation."""
    try:
        return (
            conn.execute("SELECT 1 FROM evolution_generations WHERE run = ? LIMIT 1", (run,)).fetchone()
            is not None
        )
    except sqlite3.OperationalError as exc:
        if _missing_table(exc):
            return False
        raise


def _gen(r: Sequence[Any]) -> GenerationRow:
    return GenerationRow(r[0], int(r[1]), int(r[2]), Decimal(r[3]), Decimal(r[4]), r[5], int(r[6]))


_GEN_COLS = "run, generation, seed, best_fitness, mean_fitness, best_member, ts"
_MEMBER_COLS = "m.member, m.dna_json, m.fitness, m.metrics_json, m.parent_a, m.parent_b, m.elite"


def _member(r: Sequence[Any]) -> MemberRow:
    return MemberRow(
        member=r[0],
        dna=Dna.from_json(r[1]),
        fitness=None if r[2] is None else Decimal(r[2]),
        metrics=json.loads(r[3] or "{}"),
        parent_a=r[4],
        parent_b=r[5],
        elite=bool(r[6]),
    )


def generations(conn: sqlite3.Connection, run: str) -> list[GenerationRow]:
    """The generations of ``run``, oldest first (empty for an unknown run)."""
    try:
        rows = conn.execute(
            f"SELECT {_GEN_COLS} FROM evolution_generations WHERE run = ? ORDER BY generation", (run,)
        ).fetchall()
    except sqlite3.OperationalError as exc:
        if _missing_table(exc):
            return []
        raise
    return [_gen(r) for r in rows]


def runs(conn: sqlite3.Connection) -> list[RunSummary]:
    """Every run, oldest first (by its first generation's time, then id)."""
    try:
        rows = conn.execute(f"SELECT {_GEN_COLS} FROM evolution_generations ORDER BY id").fetchall()
    except sqlite3.OperationalError as exc:
        if _missing_table(exc):
            return []
        raise
    by_run: dict[str, list[GenerationRow]] = {}
    for r in rows:
        g = _gen(r)
        by_run.setdefault(g.run, []).append(g)
    out = []
    for run, gens in by_run.items():
        last = max(gens, key=lambda g: g.generation)
        out.append(
            RunSummary(
                run,
                len(gens),
                gens[0].seed,
                min(g.ts for g in gens),
                max(g.ts for g in gens),
                last.best_fitness,
                last.best_member,
            )
        )
    return out


def members(conn: sqlite3.Connection, run: str, generation: int) -> list[MemberRow]:
    """The members of one generation, by index."""
    try:
        rows = conn.execute(
            f"SELECT {_MEMBER_COLS} FROM evolution_members m JOIN evolution_generations g"
            " ON g.id = m.generation_id WHERE g.run = ? AND g.generation = ? ORDER BY m.id",
            (run, generation),
        ).fetchall()
    except sqlite3.OperationalError as exc:
        if _missing_table(exc):
            return []
        raise
    return [_member(r) for r in rows]


def member(conn: sqlite3.Connection, member_id: str) -> MemberRow | None:
    """One member by id, None when unknown."""
    try:
        r = conn.execute(
            f"SELECT {_MEMBER_COLS} FROM evolution_members m WHERE m.member = ?", (member_id,)
        ).fetchone()
    except sqlite3.OperationalError as exc:
        if _missing_table(exc):
            return None
        raise
    return None if r is None else _member(r)


def lineage(conn: sqlite3.Connection, member_id: str, max_nodes: int = 500) -> list[LineageNode]:
    """``member_id`` and its ancestors, breadth first, each member once (at most ``max_nodes``);
    empty when the member is unknown."""
    out: list[LineageNode] = []
    seen: set[str] = set()
    queue = [member_id]
    while queue and len(out) < max_nodes:
        mid = queue.pop(0)
        if mid in seen:
            continue
        seen.add(mid)
        row = member(conn, mid)
        if row is None:
            continue
        parents = tuple(p for p in (row.parent_a, row.parent_b) if p)
        out.append(LineageNode(row, parents))
        queue.extend(p for p in parents if p not in seen)
    return out


def best_members(conn: sqlite3.Connection, exclude: Iterable[str] = ()) -> list[MemberRow]:
    """Members with a fitness, best first (equal fitness: the newer member first), skipping DNAs
    whose ``Dna.key()`` is in ``exclude``; one row per distinct DNA."""
    skip = set(exclude)
    try:
        rows = conn.execute(
            f"SELECT {_MEMBER_COLS}, m.id FROM evolution_members m WHERE m.fitness IS NOT NULL"
        ).fetchall()
    except sqlite3.OperationalError as exc:
        if _missing_table(exc):
            return []
        raise
    ranked = sorted(rows, key=lambda r: (-Decimal(r[2]), -int(r[7])))
    out: list[MemberRow] = []
    for r in ranked:
        row = _member(r[:7])
        key = row.dna.key()
        if key in skip:
            continue
        skip.add(key)
        out.append(row)
    return out
