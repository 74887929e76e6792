"""``autonomy.service``: jobs on engine time during a real replay of BTC 1h candles (deterministic:
the times come from the candles), one at a time, a failing job logged and skipped; ``start_autonomy``
attaches the Adjuster; ``start_services`` starts it beside the engine."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from changes_helpers import DAY, HOUR, replay, settings, write_candles

from amarktai_tui.autonomy.changes import Adjuster, adjuster_for
from amarktai_tui.autonomy.service import AutonomyService, parse_hhmm, start_autonomy
from amarktai_tui.autonomy.settings import AutonomySettings
from amarktai_tui.engine.events import EngineTick, EventBus
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.ops.services import start_services

N = 600  # 1h candles: 25 days


def closes(candles_file: Path) -> list[int]:
    import json

    return [int(r[0]) + HOUR for r in json.loads(candles_file.read_text())]


async def test_jobs_run_at_their_engine_times_one_at_a_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    candles = write_candles(tmp_path / "candles", N)
    ts = closes(candles)
    bus = EventBus()
    seen: dict[str, list[int]] = {"4h": [], "daily": [], "boom": []}
    running: list[str] = []
    overlaps: list[tuple[str, str]] = []
    ticks: list[int] = []
    bus.subscribe(EngineTick, lambda e: ticks.append(e.ts))

    def job(name: str, steps: int = 3, fail: bool = False) -> Callable[[int], Awaitable[None]]:
        async def run(now_ms: int) -> None:
            if running:
                overlaps.append((running[0], name))
            running.append(name)
            try:
                seen[name].append(now_ms)
                for _ in range(steps):  # give the loop away: another job must still not start
                    await asyncio.sleep(0)
                if fail:
                    raise RuntimeError(f"{name} broke")
            finally:
                running.remove(name)

        return run

    service = AutonomyService(bus)
    service.every("4h", 4 * HOUR, job("4h"))
    service.daily("daily", "06:30", job("daily"))
    service.every("boom", DAY, job("boom", fail=True))
    with caplog.at_level(logging.ERROR, logger="amarktai.autonomy"):
        engine = await replay(settings(tmp_path), tmp_path / "data", candles, bus)
        try:
            await service.drain(timeout=30)
        finally:
            await service.close()
            await engine.close()
    assert ticks == ts  # the engine's time is the candles' close times

    # a run at tick t exactly when a slot of the job's grid lies in (previous tick, t] (a gap in the
    # data gives one run, a daily job at 06:30 runs on the first close at or after it)
    def due(every: int, offset: int = 0) -> list[int]:
        return [t for prev, t in itertools.pairwise(ts) if (t - offset) // every > (prev - offset) // every]

    # the replay runs at full speed, so a job falling due again before its waiting run started is
    # folded into that run (coalesced): each run is at one of its due times, in order, none twice,
    # the last due time is always run, and runs + coalesced due times == all due times
    wanted = {"4h": due(4 * HOUR), "daily": due(DAY, parse_hhmm("06:30")), "boom": due(DAY)}
    for name, want in wanted.items():
        got = seen[name]
        assert got and set(got) <= set(want) and got == sorted(set(got)), name
        assert got[-1] == want[-1], name
    assert service.runs + service.coalesced == sum(len(w) for w in wanted.values())
    assert service.coalesced > 0  # the engine ran ahead of the jobs: no backlog was left behind it
    assert all(t % DAY == 7 * HOUR for t in seen["daily"])  # hourly candles: the 07:00 close
    assert len(wanted["daily"]) >= 20 and overlaps == []
    assert service.failures == len(seen["boom"]) > 0
    assert service.runs == sum(len(v) for v in seen.values())
    assert sum("autonomy job boom failed" in r.getMessage() for r in caplog.records) == len(seen["boom"])


async def test_registration_rules_and_close(tmp_path: Path) -> None:
    bus = EventBus()
    service = AutonomyService(bus)
    got: list[int] = []

    async def job(now_ms: int) -> None:
        got.append(now_ms)

    service.every("a", HOUR, job)
    with pytest.raises(ValueError, match="registered already"):
        service.every("a", HOUR, job)
    with pytest.raises(ValueError, match="interval_ms"):
        service.every("b", 0, job)
    for bad in ("7:00", "24:00", "12:60", "noon"):
        with pytest.raises(ValueError, match="HH:MM"):
            service.daily("c", bad, job)
    assert parse_hhmm("23:59") == (23 * 60 + 59) * 60_000
    closed: list[str] = []
    service.on_close(lambda: closed.append("sync"))

    async def aclose() -> None:
        closed.append("async")

    service.on_close(aclose)
    assert service.jobs == {"a": None}
    await service.close()
    assert closed == ["async", "sync"]  # last added first
    from amarktai_tui.domain.types import Candle

    bus.publish(EngineTick(10 * HOUR, Candle("BTC/USDT", "1h", 9 * HOUR, 1, 1, 1, 1, 1)))
    bus.publish(EngineTick(12 * HOUR, Candle("BTC/USDT", "1h", 11 * HOUR, 1, 1, 1, 1, 1)))
    await asyncio.sleep(0)
    assert got == [] and service.jobs == {"a": None}  # unsubscribed: no tick reaches it


async def test_start_autonomy_attaches_the_adjuster_until_close(tmp_path: Path) -> None:
    candles = write_candles(tmp_path / "candles", 50)
    engine, _ = await open_engine(settings(tmp_path), tmp_path / "data", ReplayArgs([str(candles)], speed=0))
    try:
        service, adjuster = await start_autonomy(engine, AutonomySettings(mode="autonomous"))
        assert isinstance(adjuster, Adjuster) and adjuster_for(engine) is adjuster
        assert adjuster.mode == "autonomous"
        await service.close()
        assert adjuster_for(engine) is None
    finally:
        await engine.close()


async def test_start_services_runs_autonomy_beside_the_engine(tmp_path: Path) -> None:
    candles = write_candles(tmp_path / "candles", 50)
    s = settings(tmp_path, '[health]\nenabled = false\n[autonomy]\nmode = "autonomous"\n')
    engine, _ = await open_engine(s, tmp_path / "data", ReplayArgs([str(candles)], speed=0))
    try:
        services = await start_services(engine, s, tmp_path / "data", headless=True)
        found = adjuster_for(engine)
        assert found is not None and found.mode == "autonomous"
        assert "autonomy" in [name for name, _ in services.closers]
        await services.close()
        assert adjuster_for(engine) is None
    finally:
        await engine.close()
