"""TUI under load: event-loop lag, RSS and time to first frame while 45 bots replay.

Usage: python bench/tui_bench.py [--bots 45] [--data PATH]

Runs the real app headless (Textual's ``run_test``, 140x45) with 45 bots on
BTC/USDT 5m at replay speed 0 and the UI refreshing at the configured rate.
A probe task asks the loop for a 10 ms sleep over and over; the lag is how
late each wake-up is (p50/p99/max, ms). The floor is the same probe on an
idle loop in the same run. RSS is the process's peak resident set (MiB).
Time to first frame: app construction to the first completed refresh.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_throughput import DATA, bots

from amarktai_tui.config import Settings
from amarktai_tui.engine.setup import ReplayArgs

PROBE_S = 0.010


async def probe(stop: asyncio.Event, lags: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t0 = loop.time()
        await asyncio.sleep(PROBE_S)
        lags.append((loop.time() - t0 - PROBE_S) * 1000)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


async def idle_floor(seconds: float = 1.0) -> list[float]:
    stop, lags = asyncio.Event(), []
    task = asyncio.create_task(probe(stop, lags))
    await asyncio.sleep(seconds)
    stop.set()
    await task
    return lags


async def run(n: int, data: Path) -> dict[str, float]:
    from amarktai_tui.tui.app import AmarktaiApp

    floor = await idle_floor()
    with tempfile.TemporaryDirectory() as d:
        settings = Settings(bots=bots(n))
        t0 = time.perf_counter()
        app = AmarktaiApp(settings, Path(d), ReplayArgs([str(data)], speed=0.0, until_end=False))
        async with app.run_test(size=(140, 45)) as pilot:
            await pilot.pause()
            first_frame = time.perf_counter() - t0
            stop, lags = asyncio.Event(), []
            task = asyncio.create_task(probe(stop, lags))
            r0 = time.perf_counter()
            await app.feed_ended.wait()
            replay_s = time.perf_counter() - r0
            stop.set()
            await task
            await pilot.press("q")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "bots": n,
        "first_frame_s": first_frame,
        "replay_s": replay_s,
        "lag_p50_ms": statistics.median(lags) if lags else float("nan"),
        "lag_p99_ms": pct(lags, 99),
        "lag_max_ms": max(lags) if lags else float("nan"),
        "lag_samples": len(lags),
        "idle_lag_p50_ms": statistics.median(floor),
        "idle_lag_p99_ms": pct(floor, 99),
        "peak_rss_mib": rss,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bots", type=int, default=45)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    r = asyncio.run(run(args.bots, args.data))
    print(
        f"{r['bots']} bots in the TUI: first frame {r['first_frame_s']:.2f}s; replay {r['replay_s']:.1f}s; "
        f"loop lag p50 {r['lag_p50_ms']:.1f} ms, p99 {r['lag_p99_ms']:.1f} ms, max {r['lag_max_ms']:.1f} ms "
        f"({r['lag_samples']} samples; idle floor p50 {r['idle_lag_p50_ms']:.2f} / p99 {r['idle_lag_p99_ms']:.2f} ms); "
        f"peak RSS {r['peak_rss_mib']:.0f} MiB"
    )


if __name__ == "__main__":
    main()
