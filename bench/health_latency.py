"""Health endpoint latency: ``GET /health`` on loopback while a replay runs at full speed.

Usage: python bench/health_latency.py [--n 2000] [--bots 45] [--data PATH]

The engine replays real BTC/USDT 5m candles (speed 0, ``--bots`` bots spread over the five
exchanges up to their caps, default risk settings, a real SQLite ledger in a temp dir) with
the health server (``ops.health.start_health``) and a floor server on the same
event loop: a bare aiohttp handler returning a constant. A client in another process (as a
Prometheus scraper would be) sends ``n`` requests to each over keep-alive connections, one
/health then one floor request, so both see the same load. Reported: p50/p99/max per request
(ms, wall time at the client) while the replay runs, then the same once it has ended (the loop
idle), and the handler's own cost (``HealthState.reasons`` + JSON) measured in-process.
Target (issue 7): /health answers in under 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import logging
import multiprocessing as mp
import statistics
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from aiohttp import web

from amarktai_tui.config import BotSettings, HealthSettings, Settings
from amarktai_tui.engine.events import EventBus, FeedStatusChanged
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.market.base import FeedState
from amarktai_tui.ops.health import start_health
from amarktai_tui.ops.looplag import start_monitor

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "binance" / "BTC_USDT-5m.json"
SLOTS = [
    ex
    for ex, cap in (("binance", 10), ("kucoin", 10), ("valr", 10), ("ovex", 10), ("luno", 5))
    for _ in range(cap)
]
STRATS = ("sma_cross", "rsi_reversion", "donchian_breakout")


def bots(n: int) -> list[BotSettings]:
    return [
        BotSettings(name=f"bench-{i:02d}", exchange=SLOTS[i], pair="BTC/USDT", timeframe="5m",
                    strategy=STRATS[i % len(STRATS)], capital=Decimal(1000))
        for i in range(n)
    ]  # fmt: skip


Sample = tuple[float, float, int]
"""(wall time the request was sent, s; latency, ms; HTTP status)"""


def client(ports: tuple[int, int], n: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """In a child process: n alternating requests (/health, floor), timed at the client."""
    conns = [http.client.HTTPConnection("127.0.0.1", p, timeout=30) for p in ports]
    paths = ("/health", "/")
    for i in (0, 1):  # connect (and warm up) before the measured requests
        conns[i].request("GET", paths[i])
        conns[i].getresponse().read()
    out.put("ready")
    took: tuple[list[Sample], list[Sample]] = ([], [])
    for _ in range(n):
        for i in (0, 1):
            sent = time.time()
            t0 = time.perf_counter()
            conns[i].request("GET", paths[i])
            resp = conns[i].getresponse()
            resp.read()
            took[i].append((sent, (time.perf_counter() - t0) * 1000, resp.status))
    out.put(took)


def summary(samples: list[Sample]) -> str:
    if not samples:
        return "no request in this phase"
    s = sorted(x[1] for x in samples)
    p99 = s[min(len(s) - 1, int(len(s) * 0.99))]
    return f"p50 {statistics.median(s):6.2f}  p99 {p99:6.2f}  max {s[-1]:6.2f} ms  (n={len(s)})"


async def measure(
    ports: tuple[int, int], n: int, ready: Callable[[], None] = lambda: None
) -> tuple[list[Sample], list[Sample]]:
    """Run the client process; ``ready`` is called once it is connected, before it measures."""
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    proc = ctx.Process(target=client, args=(ports, n, q))
    proc.start()
    assert await asyncio.to_thread(q.get) == "ready"  # the loop keeps serving meanwhile
    ready()
    result = await asyncio.to_thread(q.get)
    await asyncio.to_thread(proc.join)
    return result  # type: ignore[no-any-return]


async def main(n: int, n_bots: int, data: str) -> None:
    settings = Settings(bots=bots(n_bots), health=HealthSettings(port=0))
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        engine, feed = await open_engine(settings, data_dir, ReplayArgs([data], speed=0), EventBus())
        lag = start_monitor()
        service = await start_health(engine, settings, data_dir, lag)
        assert service.port is not None

        async def const(_request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        floor_app = web.Application()
        floor_app.router.add_get("/", const)
        runner = web.AppRunner(floor_app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        floor_port = int(runner.addresses[0][1])

        ended = asyncio.get_running_loop().create_future()
        engine.bus.subscribe(
            FeedStatusChanged,
            lambda e: (
                ended.done()
                or e.status.state is not FeedState.ENDED
                or ended.set_result((time.time(), lag.stats()))
            ),
        )
        run: list[asyncio.Task[None]] = []
        t0 = time.perf_counter()

        def go() -> None:
            nonlocal t0
            t0 = time.perf_counter()
            run.append(asyncio.create_task(engine.run(feed)))

        health, floor = await measure((service.port, floor_port), n, go)
        end, busy_lag = await ended  # the feed's end (wall time): requests sent before it met a busy loop
        replay_s = time.perf_counter() - t0
        busy_health, busy_floor = [x for x in health if x[0] < end], [x for x in floor if x[0] < end]
        codes = sorted({x[2] for x in busy_health})
        idle_health, idle_floor = await measure((service.port, floor_port), n)

        state = service.state
        reps = 20_000
        c0 = time.perf_counter()
        for _ in range(reps):
            web.json_response(
                {"status": "unhealthy", "reasons": r} if (r := state.reasons()) else {"status": "ok"}
            )
        handler_us = (time.perf_counter() - c0) / reps * 1e6

        print(f"replay: {len(engine.runners)} bots, {engine.candles_seen:,} candles in {replay_s:.1f} s")
        print(f"while the replay runs (loop busy; /health answered {codes}):")
        print(f"  /health  {summary(busy_health)}")
        print(f"  floor    {summary(busy_floor)}")
        print("after the replay (loop idle, a new client):")
        print(f"  /health  {summary(idle_health)}")
        print(f"  floor    {summary(idle_floor)}")
        print(f"handler work in-process (checks + JSON response): {handler_us:.1f} us per call")
        print(
            f"event-loop lag at the replay's end (last {lag.window_s:g} s): p50 {busy_lag.p50_ms:.1f} ms,"
            f" p99 {busy_lag.p99_ms:.1f} ms, max {busy_lag.max_ms:.1f} ms"
        )

        engine.stop()
        await run[0]
        await runner.cleanup()
        await service.close()
        await lag.stop()
        await engine.close()


if __name__ == "__main__":
    logging.disable(logging.WARNING)  # the engine's breaker and stage messages are not the output
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="requests per target (default 2000)")
    ap.add_argument("--bots", type=int, default=45, help="bots replaying the file (default 45)")
    ap.add_argument("--data", default=str(DATA), help="a BTC/USDT 5m candle file")
    args = ap.parse_args()
    asyncio.run(main(args.n, args.bots, args.data))
