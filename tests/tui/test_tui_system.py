"""The System tab (7), driven by keys: the real app over a real engine replaying the real BTC 1h
candles into a real ledger, the loop-lag monitor the services start, psutil on this process, and
the real log file in the data dir. Waits are on the pane's own refresh signal (``updated``)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

import pytest
from textual.widgets import Log, Static, TabbedContent
from tui_helpers import SIZE, replay_done

from amarktai_tui.ops import looplag
from amarktai_tui.ops.logtail import log_file
from amarktai_tui.ops.redact import MASK, SECRETS
from amarktai_tui.ops.sysinfo import git_commit
from amarktai_tui.tui import fmt
from amarktai_tui.tui.app import AmarktaiApp
from amarktai_tui.tui.system_pane import SystemPane

MakeApp = Callable[..., AmarktaiApp]
SECRET = "MARKERsystem-pane-4f4f4f4f"
TIMEOUT_S = 30  # a guard against a hang, not a wait


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    SECRETS.clear()
    yield
    SECRETS.clear()


async def refreshed(pane: SystemPane) -> None:
    """Refresh now and wait until a refresh that started after this call has finished (one under
    way may have started before; the one after it cannot have: refreshes never overlap)."""
    for _ in range(2):
        pane.updated.clear()
        pane.refresh_now()  # no-op while one is under way: then that one is waited for
        await asyncio.wait_for(pane.updated.wait(), TIMEOUT_S)


def text(app: AmarktaiApp, box: str) -> str:
    return str(app.query_one(f"#{box}", Static).content)


async def test_the_system_tab_shows_the_process_the_loop_the_engine_the_build_and_a_masked_log(
    make_app: MakeApp, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    log = log_file(data_dir)
    log.parent.mkdir(parents=True)
    log.write_text(  # written before this process knew the secret (no filter): masked on display
        f"2021-01-01 00:00:00,000 INFO amarktai.test: old line with {SECRET}\n"
        "2021-01-01 00:00:01,000 INFO amarktai.test: headers {'X-MBX-APIKEY': 'MARKERhdr-1234'}\n"
    )
    SECRETS.register([SECRET])  # as the vault does when it hands the secret out
    app = make_app(data_dir=data_dir)
    async with app.run_test(size=SIZE) as pilot:
        await replay_done(app, pilot)
        engine = app.engine
        assert engine is not None
        monitor = looplag.current()
        assert monitor is not None, "the services start the loop-lag monitor in the TUI too"
        if monitor.stats().samples == 0:
            await asyncio.wait_for(monitor.sampled.wait(), TIMEOUT_S)

        pane = app.query_one(SystemPane)
        await pilot.press("7")
        assert app.query_one("#tabs", TabbedContent).active == "system"
        assert app.focused is app.query_one("#system-log", Log)
        await refreshed(pane)

        process = text(app, "sys-process")
        assert re.search(r"CPU\s+\d+\.\d%", process), "the second sample measures CPU use"
        assert re.search(r"Memory \(RSS\)\s+[\d,.]+ [MG]B", process)  # GB once the process passes 1,000 MB
        assert re.search(r"Open fds\s+\d+", process) and re.search(r"Disk free\s+[\d,.]+ [KMGT]?B", process)

        loop = text(app, "sys-loop")
        assert re.search(r"Lag p50\s+[\d,.]+ ms", loop) and re.search(r"Lag p99\s+[\d,.]+ ms", loop)

        eng = text(app, "sys-engine")
        assert re.search(r"State\s+running, paper", eng)
        assert f"{fmt.ts(engine.now_ms)} UTC (close)" in eng
        last = engine.fill_log[-1]
        name = engine.runners[last.bot_id].rec.name
        assert (
            f"{fmt.ts(last.ts)} {name} {last.side.value} {fmt.qty(last.quantity)} BTC/USDT"
            f" @ {fmt.price(last.price)}"
        ) in eng
        assert f"{engine.candles_seen:,} candles, {engine.fills_seen:,} fills, 0 trips active" in eng
        assert re.search(r"Feed\s+replay ended \(100%\)", eng)
        assert re.search(r"Last error\s+none", eng)

        build = text(app, "sys-build")
        assert re.search(rf"Version\s+{re.escape(metadata.version('amarktai-tui'))}", build)
        commit = git_commit(Path(__file__).resolve().parents[2])
        assert re.search(rf"Commit\s+{commit or '-'}", build)
        assert re.search(r"Python\s+CPython 3\.", build)

        shown = app.query_one("#system-log", Log).lines
        assert f"old line with {MASK}" in shown[0] and SECRET not in "\n".join(shown)
        assert f"{{'X-MBX-APIKEY': '{MASK}'}}" in shown[1]

        with log.open("a") as f:  # the tail follows the file
            f.write(f"2021-01-01 00:00:02,000 WARNING amarktai.test: new line {SECRET}\n")
        await refreshed(pane)
        shown = app.query_one("#system-log", Log).lines
        assert shown[-1].endswith(f"new line {MASK}")
        assert SECRET not in "\n".join(shown)
