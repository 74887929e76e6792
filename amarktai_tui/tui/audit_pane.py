"""Audit pane: the audit log's recent entries, newest first, filtered by severity, type and bot.

Entries come from the bus the pane is given (``ops.audit.classify`` on every event, stamped with the
wall clock, as the recorder stamps them) and, when an engine starts, from the ledger's
``audit_log`` (``attach``: the newest ``KEPT`` entries replace what the pane held). Entries made by
CLI processes reach it as ``AuditNoted`` events. The pane redraws on its own timer, only when
something changed and it is on screen; at most ``SHOWN`` matching entries are drawn.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Select

from amarktai_tui.domain.enums import TradingMode
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.engine.events import Event, EventBus
from amarktai_tui.ledger.schema import connect_readonly
from amarktai_tui.ops.audit import AUDIT_TYPES, AUDITED_EVENTS, AuditEntry, Severity, classify, wall_ms
from amarktai_tui.ops.audit_report import details_text
from amarktai_tui.ops.audit_store import AuditFilter, query
from amarktai_tui.tui import fmt
from amarktai_tui.tui.bots_pane import StyledTable

KEPT = 1000
"""Entries the pane holds (the newest); filters choose among them."""
SHOWN = 300
"""Matching entries drawn at most (the newest)."""
REDRAW_S = 0.25
"""How often the pane checks whether it has something new to draw."""
ALL = "all"
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("time", "Time (UTC)", 19),
    ("severity", "Severity", 8),
    ("type", "Type", 24),
    ("actor", "Actor", 9),
    ("bot", "Bot", 14),
    ("details", "Details", 60),
)
SEVERITY_ROLE = {Severity.CRITICAL: "error", Severity.WARNING: "warn", Severity.INFO: "muted"}


class AuditPane(Vertical):
    """The Audit tab: a filter row (severity, type, bot) over a table of entries, newest first."""

    DEFAULT_CSS = """
    AuditPane #audit-filters { height: 3; }
    AuditPane #audit-severity { width: 22; }
    AuditPane #audit-type { width: 36; }
    AuditPane #audit-bot { width: 28; }
    AuditPane #audit-table { height: 1fr; }
    """

    def __init__(self, bus: EventBus, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._bus = bus
        self._unsubscribe: list[Callable[[], None]] = []
        self.entries: deque[AuditEntry] = deque(maxlen=KEPT)
        """Newest first."""
        self._live = False
        self._bot_name: Callable[[int], str | None] = lambda _id: None
        self._dirty = True
        self.severity: str = ALL
        self.type: str = ALL
        self.bot: str = ""

    def compose(self) -> ComposeResult:
        with Horizontal(id="audit-filters"):
            yield Select(
                [("all severities", ALL), *((s.value, s.value) for s in Severity)],
                value=ALL, allow_blank=False, id="audit-severity",
            )  # fmt: skip
            yield Select([("all types", ALL), *((t, t) for t in AUDIT_TYPES)], value=ALL, allow_blank=False,
                         id="audit-type")  # fmt: skip
            yield Input(placeholder="bot name or id", id="audit-bot")
        table = StyledTable(id="audit-table", cursor_type="row", zebra_stripes=True)
        for key, title, width in COLUMNS:
            table.add_column(title, key=key, width=width)
        yield table

    def on_mount(self) -> None:
        self._unsubscribe = [self._bus.subscribe(kind, self._on_event) for kind in AUDITED_EVENTS]
        self.set_interval(REDRAW_S, self._tick, name="audit-redraw")

    def on_unmount(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    # -- entries ---------------------------------------------------------------------
    def attach(self, engine: TradingEngine) -> None:
        """A new engine runs: fills are live trades when it trades live; bots are named from its
        runners; the ledger's newest entries replace the pane's (read-only, a few ms)."""
        self._live = engine.mode is TradingMode.LIVE
        runners = engine.runners

        def bot_name(bot_id: int) -> str | None:
            runner = runners.get(bot_id)
            return runner.rec.name if runner is not None else None

        self._bot_name = bot_name
        try:
            conn = connect_readonly(str(engine.store.path))
            try:
                rows = query(conn, AuditFilter(limit=KEPT))
            finally:
                conn.close()
        except (OSError, sqlite3.Error) as exc:
            self.notify(f"audit log not read: {exc}", title="Audit", severity="warning")
            return
        self.entries.clear()
        self.entries.extend(r.entry for r in rows)
        self._dirty = True

    def _on_event(self, event: Event) -> None:
        entry = classify(event, live=self._live, now_ms=wall_ms())
        if entry is not None:
            self.add(entry)

    def add(self, entry: AuditEntry) -> None:
        """Show ``entry`` (newest first) at the next redraw; its bot is named when it has only an id."""
        if entry.bot is None and entry.bot_id is not None:
            name = self._bot_name(entry.bot_id)
            if name is not None:
                entry = AuditEntry(entry.ts, entry.type, entry.severity, entry.actor, entry.bot_id, name,
                                   entry.details)  # fmt: skip
        self.entries.appendleft(entry)
        self._dirty = True

    def matches(self, entry: AuditEntry) -> bool:
        """Whether ``entry`` passes the filters (severity, type, bot name or id)."""
        if self.severity != ALL and entry.severity.value != self.severity:
            return False
        if self.type != ALL and entry.type != self.type:
            return False
        bot = self.bot.strip()
        return not bot or bot == entry.bot or (bot.isdigit() and entry.bot_id == int(bot))

    def shown(self) -> list[AuditEntry]:
        """The entries the table shows: matching ones, newest first, at most ``SHOWN``."""
        out: list[AuditEntry] = []
        for e in self.entries:
            if self.matches(e):
                out.append(e)
                if len(out) >= SHOWN:
                    break
        return out

    # -- filters ---------------------------------------------------------------------
    @on(Select.Changed, "#audit-severity")
    def _severity(self, event: Select.Changed) -> None:
        self.severity = str(event.value)
        self.refresh_view(force=True)

    @on(Select.Changed, "#audit-type")
    def _type(self, event: Select.Changed) -> None:
        self.type = str(event.value)
        self.refresh_view(force=True)

    @on(Input.Changed, "#audit-bot")
    def _bot(self, event: Input.Changed) -> None:
        self.bot = event.value
        self.refresh_view(force=True)

    # -- drawing ---------------------------------------------------------------------
    def _tick(self) -> None:
        if self._dirty and self.is_on_screen:
            self.refresh_view()

    def refresh_view(self, *, force: bool = False) -> None:
        """Redraw the table if entries arrived or a filter changed since the last draw."""
        if not (self._dirty or force):
            return
        self._dirty = False
        table = self.query_one("#audit-table", StyledTable)
        table.clear()
        for i, e in enumerate(self.shown()):
            role = SEVERITY_ROLE[e.severity]
            table.add_row(
                fmt.ts(e.ts, seconds=True),
                table.styled(e.severity.value, role),
                Text(e.type),
                e.actor,
                e.bot or "-",
                details_text(e.details, width=40),
                key=str(i),
            )
