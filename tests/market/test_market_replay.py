"""ReplayFeed: merging, pacing, ending, stopping."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import pytest

from amarktai_tui.domain.types import Candle, timeframe_to_ms
from amarktai_tui.market import CandleFileError, FeedState, ReplayFeed, load_candles

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BTC_5M = DATA / "binance" / "BTC_USDT-5m.json"
ETH_5M = DATA / "binance" / "ETH_USDT-5m.json"
BTC_1H = DATA / "binance" / "BTC_USDT-1h.json"


def close_key(c: Candle) -> tuple[int, str, int]:
    step = timeframe_to_ms(c.timeframe)
    return (c.ts + step, c.pair, step)


class RecordingSleep:
    """A fake sleep: records what was asked for, yields to the loop once, takes no time."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def write_slice(tmp_path: Path, source: Path, start: int, stop: int) -> Path:
    path = tmp_path / source.name
    path.write_text(json.dumps(json.loads(source.read_text())[start:stop]))
    return path


async def test_btc_and_eth_interleave_in_close_time_order() -> None:
    sleep = RecordingSleep()
    feed = ReplayFeed([str(BTC_5M), str(ETH_5M)], sleep=sleep)
    btc, eth = load_candles(BTC_5M), load_candles(ETH_5M)
    assert feed.total == len(btc) + len(eth) == 131_483
    assert feed.streams == [("BTC/USDT", "5m"), ("ETH/USDT", "5m")]
    assert feed.status().state is FeedState.REPLAYING and feed.status().progress == 0.0
    got = [c async for c in feed.candles()]
    assert len(got) == feed.yielded == 131_483
    assert [c for c in got if c.pair == "BTC/USDT"] == btc
    assert [c for c in got if c.pair == "ETH/USDT"] == eth
    keys = [close_key(c) for c in got]
    assert all(a < b for a, b in itertools.pairwise(keys))  # close time, then pair
    # they really interleave: BTC then ETH on each shared close time
    assert [c.pair for c in got[:4]] == ["BTC/USDT", "ETH/USDT", "BTC/USDT", "ETH/USDT"]
    status = feed.status()
    assert (status.source, status.state, status.progress, status.speed) == (
        "replay",
        FeedState.ENDED,
        1.0,
        0.0,
    )
    # speed 0: only sleep(0), once every 256 candles, so a UI sharing the loop stays responsive
    assert set(sleep.delays) == {0}
    assert len(sleep.delays) == (131_483 - 1) // 256


async def test_default_sleep_keeps_the_loop_responsive() -> None:
    feed = ReplayFeed([str(BTC_5M)])
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    count = 0
    async for _ in feed.candles():
        count += 1
    done = True
    await task
    assert count == 65_741
    assert ticks >= 65_741 // 256 - 1


async def test_mixed_timeframes_tie_on_close_time(tmp_path: Path) -> None:
    five = write_slice(tmp_path, BTC_5M, 0, 30)
    hour = write_slice(tmp_path, BTC_1H, 0, 3)
    eth = write_slice(tmp_path, ETH_5M, 0, 30)
    feed = ReplayFeed([hour, eth, five])
    got = [c async for c in feed.candles()]
    assert len(got) == 63
    assert [close_key(c) for c in got] == sorted(close_key(c) for c in got)
    at_one = [(c.pair, c.timeframe) for c in got if close_key(c)[0] == 1606784400000]  # 01:00 UTC
    assert at_one == [("BTC/USDT", "5m"), ("BTC/USDT", "1h"), ("ETH/USDT", "5m")]


async def test_speed_paces_by_close_time(tmp_path: Path) -> None:
    # BTC 5m around the first maintenance gap
    btc = load_candles(BTC_5M)
    gap_at = next(i for i in range(len(btc) - 1) if btc[i + 1].ts - btc[i].ts > 300_000)
    five = write_slice(tmp_path, BTC_5M, gap_at - 20, gap_at + 20)
    sleep = RecordingSleep()
    feed = ReplayFeed([five], speed=60.0, sleep=sleep)
    got = [c async for c in feed.candles()]
    closes = [c.ts + 300_000 for c in got]
    expected = [(b - a) / 1000 / 60.0 for a, b in itertools.pairwise(closes)]
    assert sleep.delays == pytest.approx(expected)
    assert 5.0 in sleep.delays and max(sleep.delays) > 5.0  # 5 min -> 5 s; the gap -> longer


async def test_speed_with_two_pairs_sleeps_once_per_close_time(tmp_path: Path) -> None:
    five = write_slice(tmp_path, BTC_5M, 0, 10)
    eth = write_slice(tmp_path, ETH_5M, 0, 10)
    sleep = RecordingSleep()
    feed = ReplayFeed([five, eth], speed=300.0, sleep=sleep)
    got = [c async for c in feed.candles()]
    assert len(got) == 20
    assert sleep.delays == pytest.approx([1.0] * 9)  # 300 s of market per second, 5 min apart
    feed2 = ReplayFeed([five], speed=0.5, sleep=RecordingSleep())
    assert feed2.status().speed == 0.5


async def test_speed_can_change_while_running(tmp_path: Path) -> None:
    sleep = RecordingSleep()
    feed = ReplayFeed([write_slice(tmp_path, BTC_5M, 0, 5)], speed=60.0, sleep=sleep)
    async for c in feed.candles():
        if c.ts == 1606781100000:  # second candle
            feed.speed = 300.0
    assert sleep.delays == pytest.approx([5.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="speed"):
        feed.speed = -1


async def test_until_end_false_waits_for_stop(tmp_path: Path) -> None:
    feed = ReplayFeed([write_slice(tmp_path, BTC_5M, 0, 50)], until_end=False)
    got: list[Candle] = []
    all_in = asyncio.Event()

    async def consume() -> None:
        async for c in feed.candles():
            got.append(c)
            if len(got) == 50:
                all_in.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(all_in.wait(), 5)
    for _ in range(20):  # let the iterator run on past the data
        await asyncio.sleep(0)
    assert not task.done()
    assert feed.status().state is FeedState.ENDED and feed.status().progress == 1.0
    feed.stop()
    await asyncio.wait_for(task, 5)
    assert len(got) == 50


async def test_until_end_true_ends_by_itself(tmp_path: Path) -> None:
    feed = ReplayFeed([write_slice(tmp_path, BTC_5M, 0, 50)], until_end=True)
    got = await asyncio.wait_for(_collect(feed), 5)
    assert len(got) == 50 and feed.status().state is FeedState.ENDED


async def _collect(feed: ReplayFeed) -> list[Candle]:
    return [c async for c in feed.candles()]


async def test_stop_ends_early_and_progress_tracks() -> None:
    feed = ReplayFeed([str(BTC_5M)])
    count = 0
    async for _ in feed.candles():
        count += 1
        if count == 1000:
            status = feed.status()
            assert status.progress == pytest.approx(1000 / 65_741)
            assert status.state is FeedState.REPLAYING and "1,000/65,741" in status.detail
            feed.stop()
    assert count == 1000 == feed.yielded
    assert feed.status().state is FeedState.ENDED


async def test_stop_wakes_a_paced_sleep(tmp_path: Path) -> None:
    feed = ReplayFeed([write_slice(tmp_path, BTC_5M, 0, 5)], speed=1e-6)  # real asyncio.sleep, ~9 years
    first = asyncio.Event()
    got: list[Candle] = []

    async def consume() -> None:
        async for c in feed.candles():
            got.append(c)
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    feed.stop()
    await asyncio.wait_for(task, 5)
    assert len(got) == 1


async def test_history_is_empty_and_candles_iterates_once(tmp_path: Path) -> None:
    feed = ReplayFeed([write_slice(tmp_path, BTC_5M, 0, 3)])
    assert await feed.history("BTC/USDT", "5m", 100) == []
    assert len(await _collect(feed)) == 3
    with pytest.raises(RuntimeError, match="once"):
        await _collect(feed)


def test_constructor_errors(tmp_path: Path) -> None:
    with pytest.raises(CandleFileError, match="no such file"):
        ReplayFeed([str(tmp_path / "BTC_USDT-5m.json")])
    one = write_slice(tmp_path, BTC_5M, 0, 3)
    other = tmp_path / "copy.json"
    other.write_text(one.read_text())
    with pytest.raises(CandleFileError, match=r"BTC/USDT 5m is already replayed from"):
        ReplayFeed([one, other], pair="BTC/USDT", timeframe="5m")
    with pytest.raises(ValueError, match="speed"):
        ReplayFeed([one], speed=-2)
    with pytest.raises(ValueError, match="at least one"):
        ReplayFeed([])
