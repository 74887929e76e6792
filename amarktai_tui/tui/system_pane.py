"""System pane (tab 7): the process, the event loop, the engine, the build, and the live log.

- Process: CPU (100% = one core), resident memory, open file descriptors, threads, free disk in
  the data dir (psutil, ``ops.sysinfo``).
- Event loop: lag p50/p99/max over the last minute (``ops.looplag``; started with the services).
- Engine: running, mode, feed, newest candle (close, market time), last trade, the errors in
  effect, counts (``ops.health.engine_status``, read from memory on the UI loop).
- Build: version, git commit, Python, platform.
- The end of ``logs/amarktai.log``, then the lines appended to it, secrets masked again on
  display (``ops.logtail``).

It refreshes itself every ``REFRESH_S`` while it is on screen (and at once when shown): the
system calls and the file read run in a thread, the engine is read on the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Log, Static

from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.ops import looplag
from amarktai_tui.ops.health import engine_status
from amarktai_tui.ops.logtail import LogTail, log_file
from amarktai_tui.ops.sysinfo import BuildInfo, ProcessInfo, ProcessSampler, build_info
from amarktai_tui.tui import fmt

REFRESH_S = 1.0
LOG_LINES = 1000
"""Log lines kept in the pane (the newest)."""


@dataclass(frozen=True, slots=True)
class _Sample:
    """What the thread gathered: process figures, new log lines (or the read error), the build."""

    process: ProcessInfo
    lines: list[str]
    log_error: str
    build: BuildInfo


def size(n: int | None) -> str:
    """Bytes for people: ``1536`` -> ``"1.5 KB"`` (1 KB = 1,000 bytes); None -> ``"-"``."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    return f"{value:,.1f} TB"  # pragma: no cover - the loop returns


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f} ms"


def _rows(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


class SystemPane(Vertical):
    """Process, loop lag, engine status, build info and the log tail of ``data_dir``.

    ``engine`` returns the running engine (None while none runs). ``updates`` counts finished
    refreshes; ``updated`` is set after each (tests wait on it).
    """

    DEFAULT_CSS = """
    SystemPane #system-top { height: auto; }
    SystemPane .system-box {
        width: 1fr;
        height: auto;
        min-height: 9;
        border: round $panel-lighten-2;
        border-title-color: $text-accent;
        padding: 0 1;
    }
    SystemPane #sys-engine { width: 2fr; }
    SystemPane #system-log { height: 1fr; }
    """

    def __init__(
        self, data_dir: Path, engine: Callable[[], TradingEngine | None], *, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.data_dir = data_dir
        self._engine = engine
        self._tail = LogTail(log_file(data_dir), initial=200)
        self._sampler = ProcessSampler(data_dir)  # from now: CPU use is measured from here
        self._busy = False
        self.updates = 0
        self.updated = asyncio.Event()

    def compose(self) -> ComposeResult:
        with Horizontal(id="system-top"):
            for box_id, title in (
                ("sys-process", "Process"),
                ("sys-loop", "Event loop"),
                ("sys-engine", "Engine"),
                ("sys-build", "Build"),
            ):
                box = Static("…", id=box_id, classes="system-box")
                box.border_title = title
                yield box
        yield Label(f"Log: {log_file(self.data_dir)} (secrets masked)", classes="section-title")
        yield Log(max_lines=LOG_LINES, id="system-log")

    def on_mount(self) -> None:
        self.set_interval(REFRESH_S, self._tick, name="system-refresh")

    def on_show(self) -> None:
        self.refresh_now()

    def _tick(self) -> None:
        if self.is_on_screen:
            self.refresh_now()

    def refresh_now(self) -> None:
        """Start a refresh unless one is under way (never two: the log tail reads on from where the
        last read stopped, so a refresh is finished, not cancelled and repeated)."""
        if not self._busy:
            self._busy = True
            self._refresh()

    @work(group="system", exit_on_error=False)
    async def _refresh(self) -> None:
        """Sample in a thread, read the engine here, then redraw the boxes and append the log."""
        try:
            sample = await asyncio.to_thread(self._gather)
            self._show(sample)
        finally:
            self._busy = False
        self.updates += 1
        self.updated.set()

    def _gather(self) -> _Sample:
        """Blocking: psutil, statvfs, the log file. Never raises (a read error is shown instead)."""
        try:
            lines, error = self._tail.read_new(), ""
        except OSError as exc:
            lines, error = [], f"cannot read the log: {exc}"
        return _Sample(self._sampler.sample(), lines, error, build_info())

    def _show(self, s: _Sample) -> None:
        p = s.process
        self.query_one("#sys-process", Static).update(
            _rows(
                [
                    ("CPU", "-" if p.cpu_percent is None else f"{p.cpu_percent:.1f}%"),
                    ("Memory (RSS)", size(p.rss_bytes)),
                    ("Open fds", "-" if p.open_fds is None else str(p.open_fds)),
                    ("Threads", str(p.threads)),
                    ("Disk free", size(p.disk_free_bytes)),
                ]
            )
        )
        monitor = looplag.current()
        loop_text = "not measured (no engine services)"
        if monitor is not None:
            lag = monitor.stats()
            loop_text = _rows(
                [
                    ("Lag p50", _ms(lag.p50_ms)),
                    ("Lag p99", _ms(lag.p99_ms)),
                    ("Lag max", _ms(lag.max_ms)),
                    ("Samples", f"{lag.samples:,} (last {monitor.window_s:g} s)"),
                ]
            )
        self.query_one("#sys-loop", Static).update(loop_text)
        engine = self._engine()
        self.query_one("#sys-engine", Static).update(
            "no engine running" if engine is None else _rows(_engine_rows(engine_status(engine)))
        )
        b = s.build
        self.query_one("#sys-build", Static).update(
            _rows(
                [
                    ("Version", b.version),
                    ("Commit", b.commit or "-"),
                    ("Python", b.python),
                    ("Platform", b.platform),
                ]
            )
        )
        log = self.query_one("#system-log", Log)
        if s.log_error:
            log.write_line(s.log_error)
        if s.lines:
            log.write_lines(s.lines)


def _engine_rows(st: dict[str, Any]) -> list[tuple[str, str]]:
    feed = st["feed"]
    if feed is None:
        feed_text = "-"
    elif feed["state"] == "retrying":
        feed_text = f"{feed['source']} retrying: {feed['detail']}"
    else:
        progress = "" if feed["progress"] is None else f" ({feed['progress']:.0%})"
        feed_text = f"{feed['source']} {feed['state']}{progress}"
    trade = st["last_trade"]
    by_state = ", ".join(f"{n} {state}" for state, n in st["bots"]["by_state"].items() if n)
    errors: list[str] = st["errors"]
    return [
        ("State", f"{'running' if st['running'] else 'stopped'}, {st['mode']}"),
        ("Feed", feed_text),
        ("Last candle", f"{fmt.ts(st['last_candle_close_ms'])} UTC (close)"),
        (
            "Last trade",
            "-"
            if trade is None
            else f"{fmt.ts(trade['ts'])} {trade['bot']} {trade['side']}"
            f" {fmt.qty(Decimal(trade['quantity']))} {trade['pair']} @ {fmt.price(Decimal(trade['price']))}",
        ),
        ("Last error", errors[-1] if errors else "none"),
        ("Bots", f"{st['bots']['total']} ({by_state or 'none'})"),
        ("Counts", f"{st['candles']:,} candles, {st['fills']:,} fills, {len(st['breakers'])} trips active"),
    ]
