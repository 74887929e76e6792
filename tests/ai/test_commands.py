"""The console's deterministic commands (no AI at all) on a real engine: read answers that match
the ledger, actions through the same proposal and confirmation flow (typed words included), and
helpful answers, never a traceback, for anything else.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from ai_helpers import FLEET, audit, both, connect, console, rows

from amarktai_tui.ai.commands import CommandConsole
from amarktai_tui.ledger.report import period_starts, status_report

D = Decimal


async def _console(tmp_path: Path, hours: int = 600, **kw: object):  # type: ignore[no-untyped-def]
    c = await console(tmp_path, FLEET, **kw)  # type: ignore[arg-type]
    c.feed(both(hours))
    return c, CommandConsole(c.engine, c.book)


def _money(text: str) -> Decimal:
    return D(text.replace(",", ""))


async def test_help_status_and_bots_answer_from_the_engine(tmp_path: Path) -> None:
    c, con = await _console(tmp_path)
    try:
        assert "/pause NAME|all" in (await con.handle("/help")).text
        await c.engine.flush(final=True)
        conn = connect(tmp_path)
        try:
            ledger = status_report(conn, c.engine.now_ms)
        finally:
            conn.close()
        status = (await con.handle("/status")).text
        m = re.search(r"equity ([\d,.]+) USDT", status)
        assert m and _money(m.group(1)) == D(ledger["equity"]).quantize(D("0.01"))
        assert status.startswith("mode paper") and "bots 4 (4 running)" in status
        bots = (await con.handle("  /BOTS  ")).text.splitlines()
        assert [line.split()[0] for line in bots[1:]] == ["btc-fast", "btc-slow", "eth-fast", "eth-rsi"]
    finally:
        await c.close()


@pytest.mark.parametrize("period", ["today", "week", "month"])
async def test_profit_matches_the_ledgers_fills(tmp_path: Path, period: str) -> None:
    c, con = await _console(tmp_path, 1400)
    try:
        await c.engine.flush()
        day, week, month = period_starts(c.engine.now_ms)
        start = {"today": day, "week": week, "month": month}[period]
        fills = rows(tmp_path, "SELECT ts, side, realised_pnl FROM fills")
        cur = sum((D(f["realised_pnl"]) for f in fills if f["ts"] >= start), D(0))
        sells = sum(1 for f in fills if f["ts"] >= start and f["side"] == "sell")
        s = datetime.fromtimestamp(start / 1000, tz=UTC)
        prev_start = {
            "today": s - timedelta(days=1),
            "week": s - timedelta(days=7),
            "month": (s - timedelta(days=1)).replace(day=1),
        }[period]
        p0 = int(prev_start.timestamp() * 1000)
        prev = sum((D(f["realised_pnl"]) for f in fills if p0 <= f["ts"] < start), D(0))
        text = (await con.handle(f"/profit {period}")).text
        m = re.search(
            r"\(since (\S+)\): ([+-][\d,.]+) USDT over (\d+) closing fill\(s\); \w+ ?\w*: ([+-][\d,.]+)", text
        )
        assert m, text
        assert m.group(1) == s.date().isoformat()
        assert _money(m.group(2)) == cur.quantize(D("0.01")) and int(m.group(3)) == sells
        assert _money(m.group(4)) == prev.quantize(D("0.01"))
        assert ("equity change today" in text) == (period == "today")
    finally:
        await c.close()


async def test_pause_and_resume_go_through_the_confirmation(tmp_path: Path) -> None:
    c, con = await _console(tmp_path, 100)
    try:
        reply = await con.handle("/pause eth-fast")
        p = reply.proposal
        assert p is not None and reply.text.startswith(
            f"Proposal {p.id}, expires in 120 s: Pause bot eth-fast"
        )
        assert "to run it: confirm with yes" in reply.text
        assert c.engine.runner_by_name("eth-fast").rec.state.value == "running"
        done = await con.handle(f"/confirm {p.id}")
        assert done.ok and done.text == "Done: eth-fast is paused"
        all_ = (await con.handle("/pause all")).proposal
        assert all_ is not None and all_.bots == ("btc-fast", "btc-slow", "eth-rsi")
        assert (await con.handle(f"/confirm {all_.id}")).text == "Done: paused 3 bot(s)"
        back = (await con.handle("/resume all")).proposal
        assert back is not None and len(back.bots) == 4
        assert (await con.handle(f"/cancel {back.id}")).text == "Cancelled: cancelled by the user"
        one = (await con.handle("/resume btc-slow")).proposal
        assert one is not None and (await con.handle(f"/confirm {one.id}")).ok
        assert {r.rec.name: r.rec.state.value for r in c.engine.runners.values()} == {
            "btc-fast": "paused", "btc-slow": "running", "eth-fast": "paused", "eth-rsi": "paused",
        }  # fmt: skip
        assert audit(tmp_path, p.id) == [
            (p.id, "proposed", "pause_bot", "commands"),
            (p.id, "confirmed", "pause_bot", "user"),
            (p.id, "executed", "pause_bot", "user"),
        ]
    finally:
        await c.close()


async def test_stop_halt_and_reset_need_the_typed_word(tmp_path: Path) -> None:
    c, con = await _console(tmp_path, 100)
    try:
        stop = (await con.handle("/stop btc-slow")).proposal
        assert (
            stop is not None
            and "type btc-slow to confirm" in (await con.handle("/status")).text + stop.text()
        )
        refused = await con.handle(f"/confirm {stop.id}")
        assert (
            not refused.ok
            and refused.text == "Refused: confirmation refused: type btc-slow exactly (still pending)"
        )
        assert (await con.handle(f"/confirm {stop.id} btc-slow")).text == "Done: btc-slow is stopped"

        halt = (await con.handle("/halt exchange is acting up")).proposal
        assert halt is not None and halt.why == "/halt exchange is acting up"
        assert not (await con.handle(f"/confirm {halt.id} yes")).ok and not c.engine.board.active
        assert (await con.handle(f"/confirm {halt.id} HALT")).text.startswith("Done: account halted (trip 1)")
        breakers = (await con.handle("/breakers")).text
        assert (
            breakers.startswith("TRIPPED trip 1 halt (account) since ") and "/reset TRIP REASON" in breakers
        )
        assert "HALTED" in (await con.handle("/status")).text

        reset = (await con.handle("/reset 1 exchange is fine again")).proposal
        assert reset is not None and reset.confirm_word == "RESET"
        assert (await con.handle(f"/confirm {reset.id} RESET")).text == "Done: trip 1 (halt) reset"
        assert (await con.handle("/breakers")).text == "No breaker is tripped or near its limit."
        (r,) = rows(tmp_path, "SELECT actor, reason FROM breaker_resets")
        assert (r["actor"], r["reason"]) == ("user", "exchange is fine again")
    finally:
        await c.close()


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("", "Type a command"),
        ("why did btc-fast stop trading?", "Commands only: free text needs the AI"),
        ("/paus btc-fast", "Unknown command /paus. Did you mean /pause?"),
        ("/switch-to-live", "Unknown command /switch-to-live."),
        ("/pause", "Usage: /pause NAME|all"),
        ("/stop", "Usage: /stop NAME"),
        (
            "/stop ghost",
            "Not proposed: no bot named 'ghost'; the bots are: btc-fast, btc-slow, eth-fast, eth-rsi",
        ),
        ("/resume btc-fast", "Not proposed: btc-fast is running; resume_bot is for paused bots"),
        ("/profit year", "Usage: /profit today|week|month"),
        ("/reset one because", "Usage: /reset TRIP REASON"),
        ("/reset 7 because", "Not proposed: no active trip with id 7; active trips: none"),
        ("/confirm", "Usage: /confirm ID [WORD] (pending: none)"),
        ("/confirm p-deadbeef", "Refused: confirm refused: no pending proposal 'p-deadbeef'"),
        ("/cancel ../../etc/passwd", "Refused: cancel refused: no pending proposal '<path>'"),
        ("/pause " + "x" * 5000, "Not proposed: pause_bot: bot: String should have at most 64 characters"),
        ("/pause ☃️ ; DROP TABLE bots", "Not proposed: no bot named"),
    ],
)
async def test_anything_else_gets_a_helpful_answer_never_a_traceback(
    tmp_path: Path, line: str, says: str
) -> None:
    c, con = await _console(tmp_path, 30)
    try:
        reply = await con.handle(line)
        assert says in reply.text, reply.text
        assert reply.proposal is None and "Traceback" not in reply.text
        assert c.book.pending() == []
        assert {r.rec.state.value for r in c.engine.runners.values()} == {"running"}
    finally:
        await c.close()
