"""A live engine in its own process, for the crash suite to kill -9 and start again.

    python tests/exchanges/crash_driver.py DATA_DIR SERVER_URL CANDLE_DIR

Runs the bots of ``live_helpers.live_settings`` against the loopback Binance
at SERVER_URL (another process), replaying the candle files of CANDLE_DIR. At
start the engine reconciles with the exchange (every pending/open order of the
ledger resolved by client order id). Each candle first moves the exchange's
clock to its close (``POST /_ctl/time``; never backwards, so a restart's
warm-up over old candles does not rewind it) and lets the broker resolve the
orders in flight. Prints ``DONE`` and exits 0 once the data ended and every
order is resolved.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))  # live_helpers
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # loopback

from live_helpers import ClockedFeed, finish_session, live_settings, settle_orders

from amarktai_tui.engine.live_setup import make_live_broker
from amarktai_tui.engine.setup import ReplayArgs, open_engine


async def main(data_dir: Path, url: str, candle_dir: Path) -> None:
    settings = live_settings(data_dir, url)
    creds = {"binance": {"api_key": "loopback-key", "api_secret": "loopback-secret"}}
    broker = make_live_broker(settings, ["binance"], creds, resubmit_grace_s=0.0)
    client = broker.clients["binance"]
    client.enableRateLimit = False
    client.timeout_on_exit = 0
    broker.backoff_base_s = 0.01
    files = sorted(str(p) for p in candle_dir.glob("*.json"))
    async with aiohttp.ClientSession() as http:

        async def set_time(ms: int) -> None:
            async with http.post(f"{url}/_ctl/time", json={"ms": ms}) as r:
                r.raise_for_status()

        async with http.get(f"{url}/api/v3/time") as r:
            server_now = int((await r.json())["serverTime"])

        await broker.start(load_fees=False)
        engine, feed = await open_engine(
            settings, data_dir, ReplayArgs(files, speed=0, until_end=True), broker=broker
        )
        try:
            await engine.run(
                ClockedFeed(feed, set_time, now_ms=server_now, settle=lambda: settle_orders(broker))
            )
            await finish_session(engine, broker)
        finally:
            await broker.close()
            await engine.store.close()
    print("DONE", flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])))
