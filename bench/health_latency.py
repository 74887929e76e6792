"""Health endpoint latency: ``GET /health`` on loopback while a replay runs at full speed.

Usage: python bench/health_latency.py [--n 2000] [--bots 45] [--data PATH] [--switch-interval MS]

The engine replays real BTC/USDT 5m candles (speed 0, ``--bots`` bots spread over the five
exchanges up to their caps, default risk settings, a real SQLite ledger in a temp dir) with
the health server (``ops.health.start_health``: its own thread and event loop, answering from
the snapshot the engine's loop publishes every 250 ms) and two floor servers, each a bare
aiohttp handler returning a constant: one on the engine's loop (the best an in-loop /health
could do: the design before the server thread) and one in a thread with its own loop (the
floor of the threaded design: the same loop machinery, competing with the engine for the GIL).
A client in another process (as a Prometheus scraper would be) sends ``n`` requests to each
over keep-alive connections, /health then the two floors in turn, so all see the same load.
Reported: p50/p99/max per request (ms, wall time at the client) while the replay runs, then
the same once it has ended (the loop idle), the engine-loop cost of one snapshot
(``HealthState.reasons`` + JSON) and the server thread's cost of one /health answer, measured
in-process. Target (issue 7): /health answers in under 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import http.client
import logging
import multiprocessing as mp
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from amarktai_tui.config import BotSettings, HealthSettings, Settings
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.engine.events import EventBus, FeedStatusChanged
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.market.base import FeedState, MarketFeed
from amarktai_tui.ops.health import PUBLISH_EVERY_S, HealthService, start_health
from amarktai_tui.ops.looplag import LagStats, LoopLagMonitor, start_monitor

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


Sample = tuple[float, float, int, str]
"""(wall time the request was sent, s; latency, ms; HTTP status; the body unless 200)"""
Ports = tuple[int, int, int]
"""/health, the floor on the engine's loop, the floor in its own thread"""
PATHS = ("/health", "/", "/")
LABELS = ("/health", "floor, engine loop", "floor, own thread")


def client(ports: Ports, n: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """In a child process: n requests to each target in turn, timed at the client."""
    conns = [http.client.HTTPConnection("127.0.0.1", p, timeout=30) for p in ports]
    for conn, path in zip(conns, PATHS, strict=True):  # connect (and warm up) before measuring
        conn.request("GET", path)
        conn.getresponse().read()
    out.put("ready")
    took: list[list[Sample]] = [[] for _ in ports]
    for _ in range(n):
        for i, (conn, path) in enumerate(zip(conns, PATHS, strict=True)):
            sent = time.time()
            t0 = time.perf_counter()
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            ms = (time.perf_counter() - t0) * 1000
            took[i].append((sent, ms, resp.status, "" if resp.status == 200 else body.decode()))
    out.put(took)


def summary(samples: list[Sample]) -> str:
    if not samples:
        return "no request in this phase"
    s = sorted(x[1] for x in samples)
    p99 = s[min(len(s) - 1, int(len(s) * 0.99))]
    return f"p50 {statistics.median(s):6.2f}  p99 {p99:6.2f}  max {s[-1]:6.2f} ms  (n={len(s)})"


async def measure(ports: Ports, n: int, ready: Callable[[], None] = lambda: None) -> list[list[Sample]]:
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


async def _const(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _floor_runner() -> web.AppRunner:
    app = web.Application()
    app.router.add_get("/", _const)
    return web.AppRunner(app, access_log=None, handle_signals=False)


async def _serve_floor(stop: asyncio.Event, port: concurrent.futures.Future[int]) -> None:
    runner = _floor_runner()
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port.set_result(int(runner.addresses[0][1]))
    await stop.wait()
    await runner.cleanup()


@contextmanager
def floor_in_thread() -> Iterator[int]:
    """The constant handler served from a thread with its own event loop; yields its port."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    port: concurrent.futures.Future[int] = concurrent.futures.Future()
    thread = threading.Thread(
        target=loop.run_until_complete, args=(_serve_floor(stop, port),), name="floor-http"
    )
    thread.start()
    try:
        yield port.result(timeout=30)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


async def bench(
    engine: TradingEngine, feed: MarketFeed, service: HealthService, lag: LoopLagMonitor, ports: Ports, n: int
) -> None:
    """Measure while the replay runs, then idle; print the figures."""
    ended: asyncio.Future[tuple[float, LagStats]] = asyncio.get_running_loop().create_future()

    def on_status(e: FeedStatusChanged) -> None:
        if not ended.done() and e.status.state is FeedState.ENDED:
            ended.set_result((time.time(), lag.stats()))

    engine.bus.subscribe(FeedStatusChanged, on_status)
    run: list[asyncio.Task[None]] = []
    t0 = time.perf_counter()

    def go() -> None:
        nonlocal t0
        t0 = time.perf_counter()
        run.append(asyncio.create_task(engine.run(feed)))

    measured = await measure(ports, n, go)
    end, busy_lag = await ended  # the feed's end (wall time): requests sent before it met a busy loop
    replay_s = time.perf_counter() - t0
    busy = [[x for x in samples if x[0] < end] for samples in measured]
    codes = sorted({x[2] for x in busy[0]})
    bodies = sorted({x[3] for x in busy[0] if x[3]})
    idle = await measure(ports, n)

    reps = 20_000
    c0 = time.perf_counter()
    for _ in range(reps):
        service.publish()
    publish_us = (time.perf_counter() - c0) / reps * 1e6
    request = make_mocked_request("GET", "/health")
    c0 = time.perf_counter()
    for _ in range(reps):
        await service._health(request)  # the handler's own cost, in-process
    answer_us = (time.perf_counter() - c0) / reps * 1e6

    print(f"replay: {len(engine.runners)} bots, {engine.candles_seen:,} candles in {replay_s:.1f} s")
    print(f"while the replay runs (engine loop busy; /health answered {codes}):")
    for label, samples in zip(LABELS, busy, strict=True):
        print(f"  {label:<19} {summary(samples)}")
    for body in bodies[:5]:
        print(f"  /health 503: {body}")
    print("after the replay (loop idle, a new client):")
    for label, samples in zip(LABELS, idle, strict=True):
        print(f"  {label:<19} {summary(samples)}")
    print(f"engine loop, one snapshot (checks + JSON): {publish_us:.1f} us, every {PUBLISH_EVERY_S:g} s")
    print(f"server thread, one /health answer (snapshot -> response): {answer_us:.1f} us")
    print(
        f"event-loop lag at the replay's end (last {lag.window_s:g} s): p50 {busy_lag.p50_ms:.1f} ms,"
        f" p99 {busy_lag.p99_ms:.1f} ms, max {busy_lag.max_ms:.1f} ms"
    )
    engine.stop()
    await run[0]


async def main(n: int, n_bots: int, data: str, switch_ms: float | None) -> None:
    settings = Settings(bots=bots(n_bots), health=HealthSettings(port=0))
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        engine, feed = await open_engine(settings, data_dir, ReplayArgs([data], speed=0), EventBus())
        lag = start_monitor()
        service = await start_health(engine, settings, data_dir, lag)
        assert service.port is not None
        if switch_ms is not None:
            sys.setswitchinterval(switch_ms / 1000)
        print(f"thread switch interval: {sys.getswitchinterval() * 1000:g} ms")
        runner = _floor_runner()
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            with floor_in_thread() as thread_floor_port:
                ports = (service.port, int(runner.addresses[0][1]), thread_floor_port)
                await bench(engine, feed, service, lag, ports, n)
        finally:
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
    ap.add_argument(
        "--switch-interval", type=float, default=None, metavar="MS",
        help="the thread switch interval once the server runs, in ms (default: the server's,"
        " ops.health.SWITCH_INTERVAL_S; 5 = Python's default)",
    )  # fmt: skip
    args = ap.parse_args()
    asyncio.run(main(args.n, args.bots, args.data, args.switch_interval))
