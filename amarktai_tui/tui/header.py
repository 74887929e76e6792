"""The header line: mode badge, HALTED badge, data source, equity, today's PnL, trips, engine clock.

One widget drawing one line of styled text (colours from the ``header--*``
component classes, i.e. from the theme), so a redraw never needs a layout pass.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.widgets import Static

from amarktai_tui.domain.enums import TradingMode
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.market.base import FeedState, FeedStatus
from amarktai_tui.risk.breakers import Breaker
from amarktai_tui.tui import fmt


def source_text(status: FeedStatus | None) -> str:
    """``"binance live"``, ``"REPLAY 42% max speed"``, ``"REPLAY ended 100%"``..."""
    if status is None:
        return "starting..."
    if status.source != "replay":
        text = f"{status.source} {status.state.value}"
        return f"{text} ({status.detail})" if status.detail and status.state is FeedState.RETRYING else text
    pct = "" if status.progress is None else f" {status.progress * 100:.0f}%"
    if status.state is FeedState.ENDED:
        return f"REPLAY ended{pct}"
    speed = "max speed" if not status.speed else f"{status.speed:g}x"
    return f"REPLAY{pct} {speed}"


class AppHeader(Static):
    """One line at the top; ``show(engine)`` redraws it from the engine's in-memory state."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "header--title",
        "header--paper",
        "header--live",
        "header--muted",
        "header--problem",
        "header--equity",
        "header--up",
        "header--down",
        "header--halted",
        "header--tripped",
    }
    DEFAULT_CSS = """
    AppHeader { height: 1; dock: top; width: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__("", id="header")
        self.text = ""
        """The header as plain text (what tests and screen readers see)."""
        self._engine: TradingEngine | None = None
        self._problem: str | None = None
        self._stopped = False
        self._mode = TradingMode.PAPER

    def show(
        self,
        engine: TradingEngine | None,
        problem: str | None = None,
        *,
        stopped: bool = False,
        mode: TradingMode = TradingMode.PAPER,
    ) -> None:
        """Redraw from ``engine`` (None while it starts); ``problem`` replaces the source text.

        ``stopped``: the run has ended normally (``--until-end``): said next to the source.
        ``mode``: the account's mode, for the badge while no engine runs (a live start that failed).
        """
        self._engine, self._problem, self._stopped, self._mode = engine, problem, stopped, mode
        line = self._line()
        if line.plain != self.text or engine is None:
            self.text = line.plain
            self.update(line, layout=False)

    def on_resize(self) -> None:
        self.show(self._engine, self._problem, stopped=self._stopped, mode=self._mode)

    def _line(self) -> Text:
        style = self.get_component_rich_style
        engine, problem = self._engine, self._problem
        left = Text(no_wrap=True, overflow="crop")
        left.append(" amarktai ", style("header--title"))
        live = (engine.mode if engine is not None else self._mode) is TradingMode.LIVE
        left.append(" LIVE " if live else " PAPER ", style("header--live" if live else "header--paper"))
        if engine is not None and (Breaker.HALT, None) in engine.board.active:
            left.append(" ")
            left.append(" HALTED ", style("header--halted"))
        left.append("  ")
        if engine is None:
            left.append(problem or "starting...", style("header--problem" if problem else "header--muted"))
            return left
        status = engine.feed.status() if engine.feed is not None else None
        left.append(problem or source_text(status), style("header--problem" if problem else "header--muted"))
        if self._stopped and not problem:
            left.append(" (engine stopped)", style("header--problem"))
        left.append("   Equity ", style("header--muted"))
        left.append(f"{fmt.money(engine.account_equity())} {engine.quote_currency}", style("header--equity"))
        today = engine.today_pnl()
        left.append("   Today ", style("header--muted"))
        kind = fmt.pnl_class(today)
        left.append(fmt.money(today, signed=True), style(f"header--{kind}") if kind != "flat" else "")
        tripped = sum(1 for breaker, _ in engine.board.active if breaker is not Breaker.HALT)
        if tripped:
            left.append(f"   {tripped} breaker{'s' if tripped > 1 else ''} tripped", style("header--tripped"))
        clock = Text(f"{fmt.ts(engine.now_ms)} UTC " if engine.now_ms else "- ", style("header--muted"))
        gap = max(self.size.width - left.cell_len - clock.cell_len, 1)
        return left + Text(" " * gap) + clock
