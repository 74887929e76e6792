"""The pipeline and the breakers inside the engine, on real candles.

The May 2021 crash is in ``BTC_USDT-5m.json``: an aggressive RSI-reversion bot
buys the dips and its drawdown breaker trips on 2021-05-19. After the trip it
opens nothing, its entries are refused by gate D, and it still closes its
position by its exit rule.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest
from engine_helpers import BINANCE, connect, fills, replay, rows, settings_from, write_prefix
from lifecycle_helpers import Scripted, candles, feed, make_engine, spec

from amarktai_tui.domain.enums import BotState, OrderState, OrderType, RiskMode, Side, SignalAction
from amarktai_tui.domain.types import Candle, OrderIntent, Signal, client_order_id
from amarktai_tui.engine.engine import EngineError
from amarktai_tui.engine.events import BreakerTripped, OrderRejected
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.ledger.verify import verify
from amarktai_tui.risk.breakers import Breaker

BTC_5M = BINANCE / "BTC_USDT-5m.json"
MAY_12_2021, MAY_24_2021 = 1620777600000, 1621814400000
DIP_BOT = """
[[bots]]
name = "dip"
exchange = "binance"
pair = "BTC/USDT"
timeframe = "5m"
strategy = "rsi_reversion"
risk_mode = "aggressive"
capital = "1000"

[risk]  # only the bot drawdown breaker (20%) is in play
max_consecutive_losses = 1000
account_max_drawdown = "0.9"
account_daily_loss = "0.9"
"""


def _fill_tuples(data_dir: Path) -> list[tuple[Any, ...]]:
    return [
        (f["client_order_id"], f["side"], f["quantity"], f["price"], f["fee"], f["ts"])
        for f in fills(data_dir)
    ]


@pytest.fixture(scope="module")
def crash_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("crash")
    asyncio.run(replay(settings_from(tmp, DIP_BOT), tmp / "data", [BTC_5M]))
    return tmp / "data"


def test_drawdown_breaker_trips_in_the_may_2021_crash_and_the_bot_opens_nothing_after(
    crash_run: Path,
) -> None:
    trips = rows(crash_run, "SELECT * FROM breaker_trips")
    assert [t["breaker"] for t in trips] == ["bot_drawdown"]
    trip = trips[0]
    assert MAY_12_2021 <= trip["ts"] < MAY_24_2021
    assert Decimal(trip["value"]) > Decimal("0.20") and trip["threshold"] == "0.20"
    fl = fills(crash_run)
    assert not [f for f in fl if f["side"] == "buy" and f["ts"] >= trip["ts"]]
    # it still closes: every lot bought is sold, and a sell came after the trip when it was long
    bought = sum(Decimal(f["quantity"]) for f in fl if f["side"] == "buy")
    sold = sum(Decimal(f["quantity"]) for f in fl if f["side"] == "sell")
    long_at_trip = sum(
        Decimal(f["quantity"]) * (1 if f["side"] == "buy" else -1) for f in fl if f["ts"] < trip["ts"]
    )
    assert bought == sold
    if long_at_trip:
        assert any(f["side"] == "sell" and f["ts"] >= trip["ts"] for f in fl)
    # its entry signals after the trip reached gate D and were refused there, with the figures
    refused = rows(crash_run, "SELECT * FROM orders WHERE gate = 'breaker'")
    assert refused and all(o["side"] == "buy" and o["state"] == "rejected" for o in refused)
    assert all(o["created_ts"] >= trip["ts"] for o in refused)
    assert all('"breaker": "bot_drawdown"' in o["figures_json"] for o in refused)
    assert rows(crash_run, "SELECT state FROM bots")[0]["state"] == "circuit_tripped"
    conn = connect(crash_run)
    try:
        assert verify(conn).ok
    finally:
        conn.close()


def test_fee_gate_refusals_are_stored_with_their_figures(crash_run: Path) -> None:
    fee = rows(crash_run, "SELECT * FROM orders WHERE gate = 'fee_coverage'")
    assert fee
    for o in fee:
        assert o["state"] == "rejected" and o["side"] == "buy"
        assert (
            "does not cover the round-trip cost 36 bps" in o["reject_reason"]
            or "below the minimum" in o["reject_reason"]
        )
        assert o["edge_bps"] < 36  # binance market entry: 10 + 10 fees + 1 spread + 10 slippage + 5 margin


def test_a_trip_survives_a_restart_and_the_run_matches_the_uninterrupted_one(
    crash_run: Path, tmp_path: Path
) -> None:
    trip_ts = rows(crash_run, "SELECT ts FROM breaker_trips")[0]["ts"]
    settings = settings_from(tmp_path, DIP_BOT)
    data = tmp_path / "data"
    asyncio.run(replay(settings, data, [write_prefix(BTC_5M, tmp_path / "half", trip_ts + 86_400_000)]))
    assert rows(data, "SELECT state FROM bots")[0]["state"] == "circuit_tripped"
    asyncio.run(replay(settings, data, [BTC_5M]))
    assert _fill_tuples(data) == _fill_tuples(crash_run)
    assert [t["ts"] for t in rows(data, "SELECT ts FROM breaker_trips")] == [trip_ts]


async def test_reset_needs_a_reason_is_recorded_and_releases_the_bot_once_recovered(
    crash_run: Path, tmp_path: Path
) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(crash_run, data)
    engine, _feed = await open_engine(
        settings_from(tmp_path, DIP_BOT), data, ReplayArgs([str(BTC_5M)], until_end=True)
    )
    try:
        (trip,) = engine.board.active.values()
        bot = engine.runner_by_name("dip")
        assert bot.rec.state is BotState.CIRCUIT_TRIPPED
        with pytest.raises(EngineError, match="needs a reason"):
            await engine.reset_breaker(trip.id, "  ")
        with pytest.raises(EngineError, match="no active trip"):
            await engine.reset_breaker(trip.id + 100, "why")
        # the bot closed its position above the trip level: 13.7% below the high-water mark now
        hwm = engine.board.bots[bot.rec.id].hwm
        assert Decimal("0.10") < (Decimal(repr(hwm)) - bot.equity()) / Decimal(repr(hwm)) < Decimal("0.20")
        res = await engine.reset_breaker(trip.id, "looked at it", actor="user")
        assert res.trip.id == trip.id and res.retripped is None
        assert bot.rec.state is BotState.RUNNING and not engine.board.active
    finally:
        await engine.flush()
        await engine.store.close()
    resets = rows(data, "SELECT * FROM breaker_resets")
    assert [(r["trip_id"], r["actor"], r["reason"]) for r in resets] == [(trip.id, "user", "looked at it")]
    assert rows(data, "SELECT state, state_reason FROM bots") == [
        {"state": "running", "state_reason": "breaker reset by user: looked at it"}
    ]


async def test_a_reset_while_the_drawdown_still_holds_trips_again_saying_so(tmp_path: Path) -> None:
    cs = candles()
    peak = max(range(len(cs)), key=lambda i: cs[i].high)  # 2021-04-14; the May crash follows
    engine, rec = await make_engine(tmp_path, [replace(spec("hodl"), risk_mode=RiskMode.AGGRESSIVE)])
    bot = engine.runner_by_name("hodl")
    bot.strategy = Scripted(enter=[cs[peak].ts])
    try:
        feed(engine, cs[: peak + 1])
        for n in range(peak + 1, len(cs)):
            feed(engine, cs[n : n + 1])
            if engine.board.active:
                break
        # 35% of equity in BTC at the April high (the asset exposure cap): the account's 15% trips first
        (trip,) = engine.board.active.values()
        assert trip.breaker is Breaker.ACCOUNT_DRAWDOWN and bot.long and trip.bot_id is None
        res = await engine.reset_breaker(trip.id, "want to see", actor="user")
        assert res.retripped is not None and res.retripped.id == trip.id + 1
        assert res.retripped.breaker is Breaker.ACCOUNT_DRAWDOWN
        assert res.retripped.message.startswith("still holds after reset: account equity ")
        assert res.retripped.cause == f"re-evaluated after the reset of trip {trip.id}"
        assert [e.trip.id for e in rec.of(BreakerTripped)] == [trip.id, trip.id + 1]
        assert bot.rec.state is BotState.CIRCUIT_TRIPPED
    finally:
        await engine.flush()
        await engine.store.close()
    assert len(rows(tmp_path, "SELECT * FROM breaker_trips")) == 2
    assert len(rows(tmp_path, "SELECT * FROM breaker_resets")) == 1


async def test_second_submission_of_an_intent_returns_the_first_state(tmp_path: Path) -> None:
    cs = candles()
    engine, rec = await make_engine(tmp_path, [spec("a")])
    bot = engine.runner_by_name("a")
    bot.strategy = Scripted()
    try:
        feed(engine, cs[:50])
        it = OrderIntent(
            client_order_id=client_order_id(bot.rec.id, cs[49].ts, Side.BUY), bot_id=bot.rec.id,
            exchange="binance", pair="BTC/USDT", side=Side.BUY, order_type=OrderType.MARKET,
            quantity=Decimal("0.001"), limit_price=None, decision_ts=cs[49].ts, reason="manual", edge_bps=100.0,
        )  # fmt: skip
        first = engine.submit_intent(it)
        assert (first.state, first.duplicate) == (OrderState.OPEN, False)
        again = engine.submit_intent(it)
        assert (again.state, again.duplicate, again.reason) == (
            OrderState.OPEN, True, "this intent was submitted before: in flight",
        )  # fmt: skip
        feed(engine, cs[50:51])
        done = engine.submit_intent(it)
        assert done.duplicate and done.state is OrderState.FILLED
        assert done.fill is not None and done.fill.client_order_id == it.client_order_id
        thin = replace(it, client_order_id=client_order_id(bot.rec.id, cs[50].ts, Side.BUY), edge_bps=1.0)
        assert engine.submit_intent(thin).state is OrderState.REJECTED
        assert engine.submit_intent(thin).reason == "this intent was submitted before: rejected before"
        await engine.flush()
        assert len(rows(tmp_path, "SELECT * FROM orders")) == 2  # one row per client order id, ever
        assert len(rec.of(OrderRejected)) == 1
    finally:
        await engine.store.close()


class _LimitSpam:
    """ENTER with a limit price on every candle: OVEX takes market orders only, so the broker refuses."""

    name: ClassVar[str] = "limit-spam"
    warmup = 1
    params: ClassVar[dict[str, Any]] = {}

    def on_candle(self, candle: Candle) -> Signal:
        return Signal(SignalAction.ENTER, edge_bps=500.0, reason="spam", limit_price=candle.close * 0.99)


async def test_broker_refusals_are_errors_and_ten_in_an_hour_trip_the_error_storm_breaker(
    tmp_path: Path,
) -> None:
    cs = candles(BINANCE / "BTC_USDT-5m.json")
    engine, rec = await make_engine(
        tmp_path, [replace(spec("ov", capital="10000"), exchange="ovex", timeframe="5m")]
    )
    bot = engine.runner_by_name("ov")
    bot.strategy = _LimitSpam()  # type: ignore[assignment]
    try:
        feed(engine, cs[:9])
        assert not engine.board.active
        feed(engine, cs[9:10])  # the 10th refusal, 45 minutes after the first
        (trip,) = engine.board.active.values()
        assert trip.breaker is Breaker.ERROR_STORM and trip.value == 10
        assert bot.rec.state is BotState.CIRCUIT_TRIPPED
        feed(engine, cs[10:12])  # now gate D refuses before the broker sees anything
        gates = [e.gate for e in rec.of(OrderRejected)]
        assert gates == ["broker"] * 10 + ["breaker"] * 2
        await engine.flush()
        assert len(rows(tmp_path, "SELECT * FROM bot_errors WHERE source = 'broker'")) == 10
    finally:
        await engine.store.close()


def test_daily_order_counters_come_from_the_ledger_after_a_restart(crash_run: Path, tmp_path: Path) -> None:
    async def counts(data: Path) -> tuple[int, int]:
        engine, _feed = await open_engine(
            settings_from(tmp_path, DIP_BOT), data, ReplayArgs([str(BTC_5M)], until_end=True)
        )
        try:
            last = max(f.ts for f in engine.fill_log)
            return engine.pipeline.counter.bot_today(1, last), engine.pipeline.counter.account_today(last)
        finally:
            await engine.store.close()

    got = asyncio.run(counts(crash_run))
    last = max(f["ts"] for f in fills(crash_run))
    day0 = last // 86_400_000 * 86_400_000
    n = rows(
        crash_run, "SELECT COUNT(*) n FROM orders WHERE state != 'rejected' AND created_ts >= ?", (day0,)
    )
    assert got == (n[0]["n"], n[0]["n"]) and n[0]["n"] > 0


async def test_two_bots_deciding_on_one_candle_are_staggered_not_dropped(tmp_path: Path) -> None:
    cs = candles()
    engine, _rec = await make_engine(tmp_path, [spec("a"), spec("b")])
    for name in ("a", "b"):
        engine.runner_by_name(name).strategy = Scripted(enter=[cs[60].ts])
    try:
        feed(engine, cs[:61])
        close = cs[60].ts + 3_600_000
        a, b = engine.runner_by_name("a"), engine.runner_by_name("b")
        assert engine.open_order(a.rec.id) is not None  # a went at once
        assert (
            engine.open_order(b.rec.id) is None and b.in_flight is not None
        )  # b waits for binance's 2 s gap
        assert engine.pipeline.staggerer.waiting("binance") == 1
        feed(
            engine, cs[61:62]
        )  # b is released 2 s after a, inside the next candle, and both fill at its open
        assert engine.pipeline.staggerer.waiting() == 0
        assert engine.pipeline.staggerer.next_slot("binance", close) == close + 4_000
        buys = [(f.bot_id, f.price, f.ts) for f in engine.fill_log]
        assert buys == [(a.rec.id, buys[0][1], cs[61].ts), (b.rec.id, buys[0][1], cs[61].ts)]
        await engine.flush()
        orders = rows(tmp_path, "SELECT bot_id, created_ts FROM orders ORDER BY id")
        assert [o["created_ts"] for o in orders] == [close, close]  # both exist from the decision close
    finally:
        await engine.store.close()
