"""Evolution (``autonomy.evolution``) on real replays of small slices of the Binance 1h candles:
reproducible with a seed, elite kept and bottom replaced, every generation recorded, lineage, paper
bots seed it and a live bot never does, and the ``amarktai evolve`` commands."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from evolve_helpers import BTC_1H, ETH_1H, empty_config, slice_file

from amarktai_tui import cli
from amarktai_tui.autonomy import evolution_store as store
from amarktai_tui.autonomy.dna import Dna, GeneSpace
from amarktai_tui.autonomy.evolution import (
    BacktestEvaluator,
    EvolutionResult,
    EvolutionUsageError,
    elite_count,
    evolve,
    fitness_of,
    streams_by_pair,
)
from amarktai_tui.autonomy.settings import EvolutionSettings
from amarktai_tui.config import Settings
from amarktai_tui.domain.enums import LifecycleStage, RiskMode
from amarktai_tui.engine.events import EventBus, GenerationEvolved
from amarktai_tui.engine.spec import BotSpec, record_of
from amarktai_tui.ledger.store import LedgerStore
from amarktai_tui.locations import db_path
from amarktai_tui.ops.audit_store import connect

EVO = EvolutionSettings(population=6, generations=3, seed=5, min_trades=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    d = tmp_path_factory.mktemp("candles")
    return [str(slice_file(BTC_1H, d, 300)), str(slice_file(ETH_1H, d, 300))]


def _space(streams: dict[str, tuple[str, str]]) -> GeneSpace:
    return GeneSpace(
        ("sma_cross", "rsi_reversion", "donchian_breakout"),
        tuple(streams),
        ("binance",),
        timeframes={p: tf for p, (_f, tf) in streams.items()},
    )


def _run(
    files: list[str], evo: EvolutionSettings, conn: sqlite3.Connection | None = None, bus: EventBus | None = None,
    seeds: list[Dna] | None = None, run: str = "evo-test",
) -> tuple[EvolutionResult, BacktestEvaluator]:  # fmt: skip
    streams = streams_by_pair(files)
    evaluator = BacktestEvaluator(Settings(), streams, evo)
    result = asyncio.run(
        evolve(
            evo, _space(streams), evaluator, run=run, seeds=seeds or [], conn=conn, bus=bus, clock=lambda: 42
        )
    )
    return result, evaluator


def _summary(result: EvolutionResult) -> list[list[tuple[str, str | None, str]]]:
    return [
        [(m.dna.to_json(), None if m.fitness is None else str(m.fitness), m.origin) for m in g.members]
        for g in result.generations
    ]


@pytest.fixture(scope="module")
def first(files: list[str]) -> tuple[EvolutionResult, BacktestEvaluator]:
    return _run(files, EVO)


def test_fitness_is_return_minus_penalised_drawdown() -> None:
    evo = EvolutionSettings(min_trades=3, drawdown_penalty=Decimal("2"))
    assert fitness_of(Decimal("0.10"), Decimal("0.03"), 3, evo) == Decimal("0.040000")
    assert fitness_of(Decimal("0.10"), Decimal("0.03"), 2, evo) is None  # under min_trades


def test_same_seed_and_data_give_the_same_generations(
    files: list[str], first: tuple[EvolutionResult, BacktestEvaluator]
) -> None:
    again, _ = _run(files, EVO)
    assert _summary(again) == _summary(first[0])
    assert [g.best_fitness for g in again.generations] == [g.best_fitness for g in first[0].generations]
    other, _ = _run(files, EVO.model_copy(update={"seed": 6}))
    assert _summary(other) != _summary(first[0])


def test_fitnesses_come_from_real_replays(first: tuple[EvolutionResult, BacktestEvaluator]) -> None:
    result, evaluator = first
    scored = [m for g in result.generations for m in g.members if m.fitness is not None]
    assert scored, "some member must trade on 300 candles"
    assert len({m.fitness for m in scored}) > 1
    for m in scored:
        ev = m.evaluation
        assert ev is not None and ev.trades >= EVO.min_trades
        assert m.fitness == (ev.return_ - EVO.drawdown_penalty * ev.max_drawdown).quantize(
            Decimal("0.000001")
        )
        assert ev.capital == (Decimal(10_000) * m.dna.capital_share).quantize(Decimal("0.01"))
    # a DNA seen before in the run is not replayed again
    distinct = {m.dna.key() for g in result.generations for m in g.members}
    assert evaluator.replays == len(distinct) == len(evaluator.cache)


def test_elite_kept_middle_stays_bottom_replaced_by_children_of_the_elite(
    first: tuple[EvolutionResult, BacktestEvaluator],
) -> None:
    result, _ = first
    n = EVO.population
    k, r = elite_count(n, EVO.elite_share)
    assert (k, r) == (2, 2)
    for prev, nxt in zip(result.generations, result.generations[1:], strict=False):
        ranked = [prev.members[i] for i in prev.ranked]
        fits = [m.fitness for m in ranked]
        scored = [f for f in fits if f is not None]
        assert scored == sorted(scored, reverse=True) and fits[: len(scored)] == scored  # None ranks last
        assert [m.elite for m in ranked] == [True] * k + [False] * (n - k)
        carried, children = nxt.members[: n - r], nxt.members[n - r :]
        assert [m.parent_a for m in carried] == [m.id for m in ranked[: n - r]]
        assert [m.dna for m in carried] == [m.dna for m in ranked[: n - r]]
        assert [m.origin for m in carried] == ["elite"] * k + ["kept"] * (n - r - k)
        bottom = {m.id for m in ranked[n - r :]}
        elite = {m.id for m in ranked[:k]}
        for c in children:
            assert c.origin == "child" and c.parent_a in elite and c.parent_b in elite
            assert c.parent_a != c.parent_b
            assert not {c.parent_a, c.parent_b} & bottom
        assert nxt.best_fitness >= prev.best_fitness  # elitism: the best never gets worse


def test_generations_recorded_and_published(tmp_path: Path, files: list[str]) -> None:
    conn = connect(db_path(tmp_path))
    bus = EventBus()
    events: list[GenerationEvolved] = []
    bus.subscribe(GenerationEvolved, events.append)
    result, _ = _run(files, EVO, conn=conn, bus=bus, run="evo-rec")
    gens = store.generations(conn, "evo-rec")
    assert [g.generation for g in gens] == [0, 1, 2]
    assert [(e.generation, e.best_fitness, e.mean_fitness, e.best_member, e.ts) for e in events] == [
        (g.generation, g.best_fitness, g.mean_fitness, g.best_member, 42) for g in gens
    ]
    for g, mem in zip(gens, result.generations, strict=True):
        rows = store.members(conn, "evo-rec", g.generation)
        assert [row.member for row in rows] == [
            f"evo-rec/g{g.generation}/m{i}" for i in range(EVO.population)
        ]
        assert [row.dna for row in rows] == [m.dna for m in mem.members]
        assert [row.fitness for row in rows] == [m.fitness for m in mem.members]
        assert sum(row.elite for row in rows) == 2
        assert all(set(row.metrics) >= {"return", "max_drawdown", "trades", "origin"} for row in rows)
        assert g.best_member == mem.best.id and g.seed == EVO.seed
    with pytest.raises(EvolutionUsageError, match="exists already"):
        _run(files, EVO, conn=conn, run="evo-rec")
    assert len(store.generations(conn, "evo-rec")) == 3  # nothing half-written by the refusal
    # lineage of a last-generation child: its parents, theirs, ... back to generation 0, each once
    child = next(m for m in result.generations[-1].members if m.origin == "child")
    nodes = store.lineage(conn, child.id)
    ids = [n.row.member for n in nodes]
    assert ids[0] == child.id and len(ids) == len(set(ids))
    assert set(nodes[0].parents) == {child.parent_a, child.parent_b}
    assert any(i.startswith("evo-rec/g0/") for i in ids)
    for node in nodes:
        assert all(p in ids for p in node.parents)
    conn.close()


async def _ledger_with_bots(data_dir: Path) -> dict[str, Dna]:
    """A ledger with a paper bot and a live bot; their DNA as evolution would read it."""
    store_ = await LedgerStore.open(db_path(data_dir))
    paper = BotSpec(
        "paper-1",
        "binance",
        "BTC/USDT",
        "1h",
        "sma_cross",
        {"fast": 7, "slow": 40},
        RiskMode.RISKY,
        Decimal(1000),
    )
    live = BotSpec("live-1", "binance", "ETH/USDT", "1h", "donchian_breakout", {"entry_period": 33, "exit_period": 11},
                   RiskMode.SAFE, Decimal(2000))  # fmt: skip
    out = {}
    for spec, stage in ((paper, LifecycleStage.PAPER_TRAINING), (live, LifecycleStage.LIVE)):
        rec = record_of(spec)
        rec.stage = stage
        await store_.insert_bot(rec, 1, spec.capital, "USDT")
        share = (spec.capital / Decimal(10_000)).quantize(Decimal("0.01"))
        full = dict(STRATEGY_DEFAULTS[spec.strategy], **spec.params)
        out[spec.name] = Dna(spec.strategy, full, spec.pair, "binance", spec.risk_mode, share, "1h")
    await store_.close()
    return out


STRATEGY_DEFAULTS: dict[str, dict[str, Any]] = {
    "sma_cross": {"fast": 10, "slow": 30, "kind": "sma"},
    "donchian_breakout": {"entry_period": 20, "exit_period": 10},
}


def _bots_table(data_dir: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db_path(data_dir))
    try:
        return conn.execute("SELECT * FROM bots ORDER BY id").fetchall()
    finally:
        conn.close()


def _cli(tmp: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = cli.run([*args, "--config", str(empty_config(tmp)), "--data-dir", str(tmp / "data")])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_evolve_seeds_from_paper_bots_never_live_and_changes_no_bot(
    tmp_path: Path, files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    dnas = asyncio.run(_ledger_with_bots(data_dir))
    before = _bots_table(data_dir)
    rc, out, err = _cli(
        tmp_path, capsys, "evolve", "--data", ",".join(files), "--population", "5", "--generations", "2",
        "--seed", "3", "--json",
    )  # fmt: skip
    assert rc == 0, err
    doc = json.loads(out)  # stdout is pure JSON
    gen0 = doc["generations"][0]["members"]
    seeded = [m for m in gen0 if m["origin"] == "seed"]
    assert [Dna.from_dict(m["dna"]) for m in seeded] == [dnas["paper-1"]]
    assert all(Dna.from_dict(m["dna"]) != dnas["live-1"] for g in doc["generations"] for m in g["members"])
    assert _bots_table(data_dir) == before  # evolution never changes a bot
    assert len(doc["generations"]) == 2 and all(len(g["members"]) == 5 for g in doc["generations"])
    assert re.fullmatch(r"evo-\d+", doc["run"]) and doc["seed"] == 3
    assert doc["best"]["member"] == doc["generations"][-1]["best_member"]

    # show: the run, each generation's best and mean fitness and best member
    rc, out, err = _cli(tmp_path, capsys, "evolve", "show", "--json")
    assert rc == 0, err
    shown = json.loads(out)
    assert shown["run"] == doc["run"] and [r["run"] for r in shown["runs"]] == [doc["run"]]
    assert [(g["best_fitness"], g["mean_fitness"], g["best_member"]) for g in shown["generations"]] == [
        (g["best_fitness"], g["mean_fitness"], g["best_member"]) for g in doc["generations"]
    ]
    rc, out, _ = _cli(tmp_path, capsys, "evolve", "show")
    assert rc == 0 and doc["run"] in out and doc["best"]["member"] in out

    # lineage by member, and by a bot spawned from it (its dna_id)
    child = next(
        (m for m in doc["generations"][-1]["members"] if m["origin"] == "child"),
        doc["generations"][-1]["members"][0],
    )
    rc, out, err = _cli(tmp_path, capsys, "evolve", "lineage", child["member"], "--json")
    assert rc == 0, err
    lin = json.loads(out)
    assert lin["nodes"][0]["member"] == child["member"] and lin["bot"] is None
    assert lin["nodes"][0]["parents"] == [p for p in (child["parent_a"], child["parent_b"]) if p]
    conn = sqlite3.connect(db_path(data_dir))
    conn.execute(
        "UPDATE bots SET dna_id = ? WHERE name = 'paper-1'", (child["member"],)
    )  # as a spawn sets it
    conn.commit()
    conn.close()
    rc, out, err = _cli(tmp_path, capsys, "evolve", "lineage", "paper-1", "--json")
    assert rc == 0, err
    assert json.loads(out)["bot"] == "paper-1" and json.loads(out)["nodes"] == lin["nodes"]
    rc, out, _ = _cli(tmp_path, capsys, "evolve", "lineage", "paper-1")
    assert rc == 0 and out.startswith(f"bot paper-1 <- {child['member']}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evolve"], "--data FILE[,FILE] is required"),
        (["evolve", "--data", "/nonexistent/BTC_USDT-1h.json"], "no such file"),
        (["evolve", "--data", "{btc},{btc}"], "two files for BTC/USDT"),
        (["evolve", "--data", "{btc}", "--population", "2"], "--population"),
        (["evolve", "--data", "{btc}", "--strategies", "nope"], "unknown strategy 'nope'"),
        (["evolve", "--data", "{btc}", "--population", "x"], "--population"),
        (["evolve", "show", "--run", "evo-nope"], "no such evolution run"),
        (["evolve", "lineage", "evo-nope/g0/m0"], "neither an evolution member"),
        (["evolve", "lineage", "paper-1"], "not spawned from an evolved DNA"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(
    tmp_path: Path, files: list[str], capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    asyncio.run(_ledger_with_bots(data_dir))
    before = _bots_table(data_dir)
    rc, out, err = _cli(tmp_path, capsys, *[a.format(btc=files[0]) for a in args])
    assert rc == 2
    assert message in err and err.count("\n") == 1 and out == ""
    conn = sqlite3.connect(db_path(data_dir))
    assert conn.execute("SELECT COUNT(*) FROM evolution_generations").fetchone() == (0,)
    conn.close()
    assert _bots_table(data_dir) == before
