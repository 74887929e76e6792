"""Bot lifecycle: the transition table, paused/stopped/error behaviour, pause_all/resume_all."""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from engine_helpers import (
    BTC_1H,
    ETH_1H,
    F,
    bots,
    connect,
    fill_tuples,
    fills,
    orders,
    replay,
    settings_from,
    write_prefix,
)
from lifecycle_helpers import SLIP, Scripted, candles, feed, make_engine, spec

from amarktai_tui.config import load_settings
from amarktai_tui.domain.enums import BotState, Side
from amarktai_tui.engine.engine import EngineError
from amarktai_tui.engine.events import BotCreated, BotStateChanged
from amarktai_tui.engine.setup import ReplayArgs, open_engine
from amarktai_tui.ledger.verify import verify

R, P, S, E = BotState.RUNNING, BotState.PAUSED, BotState.STOPPED, BotState.ERROR
T = BotState.CIRCUIT_TRIPPED
# the table of engine/lifecycle.py's docstring, written out independently; a user never sets
# circuit_tripped (breakers do), and cannot resume a bot while a trip covers it (here: a halt)
ALLOWED = {R: {P, S, E}, P: {R, S, E}, S: {R}, E: {R, S}, T: {P, S}}
PATH_TO: dict[BotState, list[BotState | str]] = {R: [], P: [P], S: [S], E: [E], T: ["halt"]}


def _verify_ok(data_dir: Path) -> None:
    conn = connect(data_dir)
    try:
        res = verify(conn)
    finally:
        conn.close()
    assert res.ok, res.first_discrepancy


async def _close(engine) -> None:  # type: ignore[no-untyped-def]
    await engine.flush(final=True)
    await engine.store.close()


@pytest.mark.parametrize("old", list(BotState))
@pytest.mark.parametrize("new", list(BotState))
async def test_transition_table(tmp_path: Path, old: BotState, new: BotState) -> None:
    engine, rec = await make_engine(tmp_path, [spec("a")])
    bot_id = engine.runner_by_name("a").rec.id
    try:
        for step in PATH_TO[old]:
            if step == "halt":
                await engine.halt("test")
            else:
                assert isinstance(step, BotState)
                await engine.set_bot_state(bot_id, step, f"to {step}")
        assert engine.runners[bot_id].rec.state is old
        n_events = len(rec.of(BotStateChanged))
        if new in ALLOWED[old]:
            await engine.set_bot_state(bot_id, new, "because")
            assert engine.runners[bot_id].rec.state is new
            ev = rec.of(BotStateChanged)[-1]
            assert (ev.bot_id, ev.old, ev.new, ev.reason) == (bot_id, old, new, "because")
            assert bots(tmp_path)["a"]["state"] == new.value  # written through at once
            assert bots(tmp_path)["a"]["state_reason"] == "because"
        else:
            with pytest.raises(EngineError) as info:
                await engine.set_bot_state(bot_id, new, "because")
            assert old.value in str(info.value) and new.value in str(info.value)
            assert engine.runners[bot_id].rec.state is old
            assert len(rec.of(BotStateChanged)) == n_events
            assert bots(tmp_path)["a"]["state"] == old.value
    finally:
        await _close(engine)


async def test_set_state_of_unknown_bot_is_an_engine_error(tmp_path: Path) -> None:
    engine, _ = await make_engine(tmp_path, [spec("a")])
    try:
        with pytest.raises(EngineError):
            await engine.set_bot_state(999, BotState.PAUSED)
        with pytest.raises(EngineError):
            engine.runner_by_name("nope")
    finally:
        await _close(engine)


def _stop_loss_scenario() -> tuple[int, int]:
    """(i, k): entering on candle i fills at i+1's open; the 5% stop triggers on candle k >= i+3."""
    cs = candles(BTC_1H)
    for i in range(100, len(cs) - 80):
        entry = F(cs[i + 1].open) * (1 + Fraction(SLIP))
        level = entry * Fraction(95, 100)
        for k in range(i + 1, i + 72):
            if F(cs[k].low) <= level:
                if k >= i + 3:
                    return i, k
                break
    raise AssertionError("no 5% drop in the data")


async def test_paused_bot_opens_nothing_but_exits_by_stop_loss(tmp_path: Path) -> None:
    cs = candles(BTC_1H)
    i, k = _stop_loss_scenario()
    engine, _ = await make_engine(tmp_path, [spec("a", stop_loss="0.05")])
    bot = engine.runner_by_name("a")
    # ENTER on i, then ENTER on every candle from i+2 on: a paused bot must ignore them all
    bot.strategy = Scripted(enter=[cs[i].ts], enter_from=cs[i + 2].ts)
    try:
        feed(engine, cs[: i + 2])
        assert [(f.side, f.ts) for f in engine.fill_log] == [(Side.BUY, cs[i + 1].ts)]
        await engine.set_bot_state(bot.rec.id, BotState.PAUSED, "pause")
        feed(engine, cs[i + 2 : k + 30])
        assert [(f.side, f.ts) for f in engine.fill_log] == [
            (Side.BUY, cs[i + 1].ts),
            (Side.SELL, cs[k + 1].ts),
        ]
        sell = engine.fill_log[-1]
        assert sell.quantity == engine.fill_log[0].quantity
        assert abs(F(sell.price) - F(cs[k + 1].open) * (1 - Fraction(SLIP))) <= Fraction(1, 2 * 10**8)
        assert bot.rec.state is BotState.PAUSED
        assert not bot.long
    finally:
        await _close(engine)
    ords = orders(tmp_path)
    assert len(ords) == 2
    sell_order = ords[sell.client_order_id]
    assert sell_order["decision_ts"] == cs[k].ts
    assert sell_order["reason"].startswith("stop-loss 5.0%")
    _verify_ok(tmp_path)


async def test_paused_bot_places_no_entry_and_resumes_trading(tmp_path: Path) -> None:
    cs = candles(BTC_1H)
    engine, _ = await make_engine(tmp_path, [spec("a")])
    bot = engine.runner_by_name("a")
    bot.strategy = Scripted(enter_from=cs[10].ts)
    try:
        await engine.set_bot_state(bot.rec.id, BotState.PAUSED, "wait")
        feed(engine, cs[:60])
        assert engine.fill_log == [] and orders(tmp_path) == {}
        await engine.set_bot_state(bot.rec.id, BotState.RUNNING, "go")
        feed(engine, cs[60:62])  # decides on 60, fills on 61
        assert [(f.side, f.ts) for f in engine.fill_log] == [(Side.BUY, cs[61].ts)]
    finally:
        await _close(engine)


async def test_stopped_bot_closes_its_position_then_does_nothing(tmp_path: Path) -> None:
    """Stopped after candle t: the exit is decided on the next candle (t+1) and fills at the
    open of the candle after it (t+2), like every decision; then nothing more, whatever the strategy says."""
    cs = candles(BTC_1H)
    i = 200
    engine, _rec = await make_engine(tmp_path, [spec("a")])
    bot = engine.runner_by_name("a")
    bot.strategy = Scripted(enter=[cs[i].ts], enter_from=cs[i + 3].ts)
    try:
        feed(engine, cs[: i + 2])
        assert bot.long
        await engine.set_bot_state(bot.rec.id, BotState.STOPPED, "user stop")
        feed(engine, cs[i + 2 : i + 40])
        sides = [(f.side, f.ts) for f in engine.fill_log]
        assert sides == [(Side.BUY, cs[i + 1].ts), (Side.SELL, cs[i + 3].ts)]
        sell = engine.fill_log[-1]
        assert sell.quantity == engine.fill_log[0].quantity
        assert abs(F(sell.price) - F(cs[i + 3].open) * (1 - Fraction(SLIP))) <= Fraction(1, 2 * 10**8)
        assert bot.rec.state is BotState.STOPPED and not bot.long
    finally:
        await _close(engine)
    ords = orders(tmp_path)
    assert len(ords) == 2
    assert ords[sell.client_order_id]["decision_ts"] == cs[i + 2].ts
    assert ords[sell.client_order_id]["reason"] == "user stop"
    assert bots(tmp_path)["a"]["state"] == "stopped"
    _verify_ok(tmp_path)


async def test_stopped_while_a_buy_is_in_flight_still_ends_flat(tmp_path: Path) -> None:
    cs = candles(BTC_1H)
    i = 200
    engine, _ = await make_engine(tmp_path, [spec("a")])
    bot = engine.runner_by_name("a")
    bot.strategy = Scripted(enter=[cs[i].ts], exit=[cs[t].ts for t in range(i + 2, i + 40)])
    try:
        feed(engine, cs[: i + 1])  # decided on i: the buy is open at the broker
        assert bot.in_flight is not None and not bot.long
        await engine.set_bot_state(bot.rec.id, BotState.STOPPED, "user stop")
        feed(engine, cs[i + 1 : i + 40])
        assert [f.side for f in engine.fill_log] == [Side.BUY, Side.SELL]
        assert not bot.long
    finally:
        await _close(engine)


async def test_error_bot_trades_nothing_until_resumed(tmp_path: Path) -> None:
    cs = candles(BTC_1H)
    i = 300
    engine, _ = await make_engine(tmp_path, [spec("a")])
    bot = engine.runner_by_name("a")
    bot.strategy = Scripted(enter=[cs[i].ts], exit=[cs[t].ts for t in range(i + 3, i + 30)])
    try:
        feed(engine, cs[: i + 2])
        assert bot.long
        await engine.set_bot_state(bot.rec.id, BotState.ERROR, "operator")
        feed(engine, cs[i + 2 : i + 20])
        assert [f.side for f in engine.fill_log] == [Side.BUY]
        await engine.set_bot_state(bot.rec.id, BotState.RUNNING, "fixed")
        feed(engine, cs[i + 20 : i + 22])  # EXIT on i+20, filled on i+21
        assert [(f.side, f.ts) for f in engine.fill_log] == [
            (Side.BUY, cs[i + 1].ts),
            (Side.SELL, cs[i + 21].ts),
        ]
    finally:
        await _close(engine)
    _verify_ok(tmp_path)


async def test_pause_all_and_resume_all(tmp_path: Path) -> None:
    engine, rec = await make_engine(tmp_path, [spec("a"), spec("b"), spec("c"), spec("d")])
    ids = {n: engine.runner_by_name(n).rec.id for n in "abcd"}
    try:
        await engine.set_bot_state(ids["c"], BotState.STOPPED, "off")
        await engine.set_bot_state(ids["d"], BotState.PAUSED, "by hand")
        assert await engine.pause_all() == 2
        states = {n: engine.runners[i].rec.state for n, i in ids.items()}
        assert states == {"a": P, "b": P, "c": S, "d": P}
        assert {n: b["state"] for n, b in bots(tmp_path).items()} == {k: v.value for k, v in states.items()}
        assert bots(tmp_path)["d"]["state_reason"] == "by hand"  # was paused already: untouched
        assert await engine.resume_all() == 3  # a, b and the hand-paused d; never the stopped c
        states = {n: engine.runners[i].rec.state for n, i in ids.items()}
        assert states == {"a": R, "b": R, "c": S, "d": R}
        assert {n: b["state"] for n, b in bots(tmp_path).items()} == {k: v.value for k, v in states.items()}
        assert await engine.resume_all() == 0
        changes = [(e.name, e.old, e.new) for e in rec.of(BotStateChanged)]
        assert changes[-5:] == [("a", R, P), ("b", R, P), ("a", P, R), ("b", P, R), ("d", P, R)]
    finally:
        await _close(engine)


class _Boom:
    """Wraps a bot's real strategy and raises from the Nth candle on."""

    def __init__(self, inner, n: int) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.n, self.calls = inner, n, 0
        self.name = inner.name

    @property
    def warmup(self) -> int:
        return int(self.inner.warmup)

    @property
    def params(self):  # type: ignore[no-untyped-def]
        return self.inner.params

    def on_candle(self, candle):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls >= self.n:
            raise ZeroDivisionError(f"boom at {candle.ts}")
        return self.inner.on_candle(candle)


async def _run_with_a_failing_bot(data_dir: Path) -> tuple[object, list[BotStateChanged]]:
    engine, feed_ = await open_engine(
        load_settings(None), data_dir, ReplayArgs([str(BTC_1H), str(ETH_1H)], until_end=True)
    )
    events: list[BotStateChanged] = []
    engine.bus.subscribe(BotStateChanged, events.append)
    bad = engine.runner_by_name("btc-rsi")
    bad.strategy = _Boom(bad.strategy, BOOM_AT)
    try:
        await engine.run(feed_)
    finally:
        await engine.store.close()
    return bad, events


BOOM_AT = 1000  # the strategy raises from its 1000th candle on


async def test_a_raising_strategy_puts_only_its_bot_in_error(full_1h_run: Path, tmp_path: Path) -> None:
    bad, events = await _run_with_a_failing_bot(tmp_path)
    boom_ts = candles(BTC_1H)[BOOM_AT - 1].ts
    assert bad.rec.state is BotState.ERROR  # type: ignore[attr-defined]
    assert bad.rec.state_reason.startswith("strategy raised ZeroDivisionError: boom at ")  # type: ignore[attr-defined]
    # the other bots change state only when one of their breakers trips on the real data
    others = [e for e in events if e.new is not BotState.ERROR]
    assert all(e.new is BotState.CIRCUIT_TRIPPED and e.reason.startswith("breaker ") for e in others), others
    events = [e for e in events if e.new is BotState.ERROR]
    assert events and {(e.name, e.new) for e in events} == {("btc-rsi", BotState.ERROR)}
    assert events[0].old is BotState.RUNNING
    assert events[0].reason == f"strategy raised ZeroDivisionError: boom at {boom_ts}"
    stored = bots(tmp_path)
    assert stored["btc-rsi"]["state"] == "error"
    assert stored["btc-rsi"]["state_reason"].startswith("strategy raised ZeroDivisionError")
    assert all(b["state"] in ("running", "circuit_tripped") for n, b in stored.items() if n != "btc-rsi")
    # the broken bot made no decision from the failing candle on ...
    bad_id = stored["btc-rsi"]["id"]
    assert all(o["decision_ts"] < boom_ts for o in orders(tmp_path).values() if o["bot_id"] == bad_id)
    # ... and every other bot traded exactly as in a run without the failure
    mine = [f for f in fills(tmp_path) if f["bot"] != "btc-rsi"]
    ref = [f for f in fills(full_1h_run) if f["bot"] != "btc-rsi"]
    assert fill_tuples(mine) == fill_tuples(ref)
    assert any(f["ts"] > boom_ts for f in mine)
    _verify_ok(tmp_path)


async def test_a_failing_bot_is_put_in_error_once(tmp_path: Path) -> None:
    _bad, events = await _run_with_a_failing_bot(tmp_path)
    boom_ts = candles(BTC_1H)[BOOM_AT - 1].ts
    events = [e for e in events if e.name == "btc-rsi"]
    assert len(events) == 1, f"{len(events)} BotStateChanged events"
    assert (
        bots(tmp_path)["btc-rsi"]["state_reason"] == f"strategy raised ZeroDivisionError: boom at {boom_ts}"
    )


def test_engine_mode_is_paper_even_when_config_says_live(tmp_path: Path) -> None:
    """general.mode = "live" in the file is not honoured: going live needs the confirmed switch."""
    settings = settings_from(tmp_path, '[general]\nmode = "live"\n')
    half = tmp_path / "half"
    path = write_prefix(BTC_1H, half, candles(BTC_1H)[300].ts)
    engine = asyncio.run(replay(settings, tmp_path / "data", [path]))
    assert engine.mode.value == "paper"
    conn = connect(tmp_path / "data")
    try:
        assert conn.execute("SELECT value FROM kv WHERE key = 'trading_mode'").fetchone()[0] == "paper"
    finally:
        conn.close()


async def test_create_bot_validates_and_funds(tmp_path: Path) -> None:
    engine, rec = await make_engine(tmp_path, [])
    try:
        runner = await engine.create_bot(spec("new", capital="1234.5"))
        assert engine.broker.balance(runner.rec.id).cash == Decimal("1234.5")
        assert [e.name for e in rec.of(BotCreated)] == ["new"]
        with pytest.raises(EngineError, match="exists"):
            await engine.create_bot(spec("new"))
        with pytest.raises(EngineError, match="capital"):
            await engine.create_bot(spec("broke", capital="0"))
        bad = dataclasses.replace(spec("x"), strategy="moon_shot")
        with pytest.raises(EngineError, match="moon_shot"):
            await engine.create_bot(bad)
        with pytest.raises(EngineError, match="mtgox"):
            await engine.create_bot(dataclasses.replace(spec("y"), exchange="mtgox"))
        for n in range(5):
            await engine.create_bot(dataclasses.replace(spec(f"l{n}", pair="BTC/ZAR"), exchange="luno"))
        with pytest.raises(EngineError, match="luno has 5 bots; its cap is 5"):
            await engine.create_bot(dataclasses.replace(spec("l5", pair="BTC/ZAR"), exchange="luno"))
        ovex_limit = dataclasses.replace(spec("o1", pair="BTC/ZAR"), exchange="ovex", order_type="limit")
        with pytest.raises(EngineError, match="OVEX trades by request-for-quote: market orders only"):
            await engine.create_bot(ovex_limit)
    finally:
        await _close(engine)
    stored = bots(tmp_path)
    assert sorted(stored) == ["l0", "l1", "l2", "l3", "l4", "new"]  # nothing of the refused ones
    conn = connect(tmp_path)
    try:
        funding = conn.execute(
            "SELECT amount, currency FROM ledger_events WHERE bot_id = ?", (stored["new"]["id"],)
        ).fetchall()
    finally:
        conn.close()
    assert [tuple(r) for r in funding] == [("1234.5", "USDT")]


async def test_new_capital_is_not_todays_profit_and_open_order_is_visible(tmp_path: Path) -> None:
    engine, _rec = await make_engine(tmp_path, [spec("a")])
    try:
        cs = candles()
        feed(engine, cs[:50])
        before = engine.today_pnl()
        await engine.create_bot(spec("late", capital="5000"))
        assert engine.today_pnl() == before  # funding moved equity, not today's PnL
        assert engine.account_equity() > Decimal(5000)
        # an order in flight is visible with its side until it fills
        runner = engine.runner_by_name("a")
        for c in cs[50:]:
            engine.process(c)
            if runner.in_flight is not None:
                order = engine.open_order(runner.rec.id)
                assert order is not None and order.client_order_id == runner.in_flight
                assert order.side is (Side.SELL if runner.long else Side.BUY)
                break
        else:
            pytest.fail("the bot never placed an order on 1h BTC data")
        assert engine.open_order(engine.runner_by_name("late").rec.id) is None
    finally:
        await _close(engine)


async def test_limit_entries_rest_at_the_decision_close_and_exits_stay_market(tmp_path: Path) -> None:
    engine, _ = await make_engine(tmp_path, [dataclasses.replace(spec("lim"), order_type="limit")])
    cs = candles()
    runner = next(iter(engine.runners.values()))
    runner.strategy = Scripted(enter=[cs[5].ts], exit=[cs[40].ts])
    try:
        feed(engine, cs[:60])
        await engine.flush()
    finally:
        await _close(engine)
    conn = connect(tmp_path)
    try:
        rows = conn.execute("SELECT side, order_type, limit_price FROM orders ORDER BY id").fetchall()
    finally:
        conn.close()
    assert [tuple(r) for r in rows][:2] == [
        ("buy", "limit", str(Decimal(repr(cs[5].close)))),
        ("sell", "market", None),
    ]
