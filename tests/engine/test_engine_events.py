"""The event bus as the engine uses it: order of events per order, and broken subscribers."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from engine_helpers import (
    BTC_1H,
    ETH_1H,
    HOUR,
    connect,
    fill_tuples,
    fills,
    orders,
    replay,
    settings_from,
    write_prefix,
)

from amarktai_tui.engine.events import (
    EngineStopped,
    EngineTick,
    Event,
    EventBus,
    OrderFilled,
    OrderSubmitted,
)
from amarktai_tui.ledger.verify import verify

CUT = 1_610_000_000_000  # about 900 candles of each pair


@pytest.fixture(scope="module")
def prefix_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("prefix")
    return [write_prefix(BTC_1H, d, CUT), write_prefix(ETH_1H, d, CUT)]


async def test_events_are_published_in_order_for_every_fill(tmp_path: Path, prefix_files: list[Path]) -> None:
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(Event, events.append)
    await replay(settings_from(tmp_path), tmp_path, prefix_files, bus=bus)

    stored = fills(tmp_path)
    ords = orders(tmp_path)
    filled = [e for e in events if isinstance(e, OrderFilled)]
    submitted = [e for e in events if isinstance(e, OrderSubmitted)]
    assert len(filled) == len(stored) > 20
    assert [e.client_order_id for e in filled] == [f["client_order_id"] for f in stored]
    assert {e.client_order_id for e in submitted} == set(ords)
    assert isinstance(events[-1], EngineStopped)

    pos = {id(e): n for n, e in enumerate(events)}
    tick_at = {(e.candle.pair, e.candle.ts): pos[id(e)] for e in events if isinstance(e, EngineTick)}
    sub_by = {e.client_order_id: e for e in submitted}
    for f_ev, f_row in zip(filled, stored, strict=True):
        s_ev = sub_by[f_ev.client_order_id]
        order = ords[f_ev.client_order_id]
        # OrderSubmitted ... tick of the decision candle ... OrderFilled ... tick of the filling candle;
        # an order the staggerer held (same exchange, seconds apart) is submitted just before it fills
        decided = tick_at[(order["pair"], order["decision_ts"])]
        staggered = pos[id(s_ev)] > decided
        assert pos[id(s_ev)] < pos[id(f_ev)] < tick_at[(f_row["pair"], f_row["ts"])]
        # engine time: the close of the newest candle processed
        assert s_ev.ts == order["decision_ts"] + HOUR * (2 if staggered else 1)
        assert f_ev.ts == f_row["ts"] + HOUR
        assert (str(f_ev.quantity), str(f_ev.price), str(f_ev.fee)) == (
            f_row["quantity"],
            f_row["price"],
            f_row["fee"],
        )
        assert str(f_ev.realised_pnl) == f_row["realised_pnl"]
        assert f_ev.side.value == f_row["side"] and s_ev.side.value == f_row["side"]


async def test_a_raising_subscriber_does_not_stop_the_engine(
    tmp_path: Path, prefix_files: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    baseline = tmp_path / "baseline"
    await replay(settings_from(tmp_path), baseline, prefix_files)

    bus = EventBus()
    calls = {"raised": 0}

    def broken(e: Event) -> None:
        calls["raised"] += 1
        raise RuntimeError("subscriber bug")

    after: list[OrderFilled] = []
    bus.subscribe(OrderFilled, broken)
    bus.subscribe(OrderSubmitted, broken)
    bus.subscribe(OrderFilled, after.append)  # subscribed after the broken one: still called
    caplog.set_level(logging.ERROR, logger="amarktai_tui.engine.events")
    data_dir = tmp_path / "data"
    engine = await replay(settings_from(tmp_path), data_dir, prefix_files, bus=bus)

    got = fills(data_dir)
    assert fill_tuples(got) == fill_tuples(fills(baseline))
    assert len(after) == len(got) > 20
    assert calls["raised"] == len(got) + len(orders(data_dir))
    assert engine.candles_seen == sum(len(json.loads(p.read_text())) for p in prefix_files)
    assert any("subscriber" in r.getMessage() for r in caplog.records)
    conn = connect(data_dir)
    try:
        assert verify(conn).ok
    finally:
        conn.close()


def test_unsubscribe() -> None:
    bus = EventBus()
    seen: list[Event] = []
    off = bus.subscribe(EngineStopped, seen.append)
    bus.publish(EngineStopped(1, "x"))
    off()
    bus.publish(EngineStopped(2, "y"))
    assert [e.ts for e in seen] == [1]
