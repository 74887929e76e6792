"""Autonomy pane (tab 8): what the automatic processes want, did and found, with the user's answers.

- One line: the mode (``[autonomy] mode``: expert = every change is a proposal; autonomous = changes
  apply within the bounds), the bounds, the protected figures.
- Proposals pending (``bot_adjustments`` rows ``proposed`` not yet accepted or rejected): ``a``
  accepts the one under the cursor, ``x`` rejects it, each after a confirmation.
- The change history (applied, accepted, rejected, reverted, refused rows, newest first): ``r``
  reverts the applied or accepted change under the cursor, after a confirmation.
- Quarantines (self-healing) and each pair's market regime (``engine.regimes``).
- Evolution: the latest run's generations and the lineage of a bot that came from it (its
  ``dna_id``; the run's best member when no bot did), chosen in the lineage box. ``e`` opens the
  Evolve dialog (``tui.screens.evolve``) for a new run.

The ledger is read in a thread (``autonomy.views.read_view``) when the tab is shown, after a
``BotAdjusted``, ``BotQuarantined`` or ``GenerationEvolved`` event while it is on screen (at most
every ``TICK_S``), and every ``SLOW_S`` (changes made by CLI processes); the regimes are read from
the engine's memory at each redraw. The answers run as the app's ``commands`` workers through the engine's
``Adjuster`` (``autonomy.changes.adjuster_for``); a refusal reaches the app's one error path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import Any, ClassVar

from rich.text import Text
from rich.tree import Tree
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Select, Static

from amarktai_tui.autonomy.adjust_store import Adjustment, withdrawn
from amarktai_tui.autonomy.bounds import NEW_BOT_FIELDS, Bounds
from amarktai_tui.autonomy.changes import Adjuster, adjuster_for
from amarktai_tui.autonomy.evolution_store import LineageNode, MemberRow
from amarktai_tui.autonomy.regime import scale_for
from amarktai_tui.autonomy.settings import AutonomySettings
from amarktai_tui.autonomy.views import AutonomyView, HistoryEntry, change_text, read_view, value_text
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.engine.events import BotAdjusted, BotQuarantined, EventBus, GenerationEvolved
from amarktai_tui.tui import fmt
from amarktai_tui.tui.bots_pane import StyledTable, regime_cell
from amarktai_tui.tui.screens.confirm import ConfirmScreen

TICK_S = 0.25
"""How often the pane checks whether it has something new to read or draw (while on screen)."""
SLOW_S = 10.0
"""Wall-clock seconds between two ledger reads with no event (changes made by other processes)."""
PENDING_SHOWN = 500
"""Pending proposals drawn at most (the oldest; the box title counts them all)."""
BEST = "best"
"""The lineage choice "the latest run's best member"."""

PROPOSAL_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("id", "#", 5),
    ("time", "Proposed (UTC)", 16),
    ("bot", "Bot", 14),
    ("source", "Source", 9),
    ("field", "Field", 15),
    ("change", "Change", 34),
    ("reason", "Reason", 80),
)
HISTORY_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("id", "#", 5),
    ("time", "Time (UTC)", 16),
    ("bot", "Bot", 14),
    ("source", "Source", 9),
    ("field", "Field", 15),
    ("status", "Status", 13),
    ("change", "Change", 30),
    ("reason", "Reason", 80),
)
QUARANTINE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("bot", "Bot", 14),
    ("level", "Lvl", 3),
    ("rule", "Rule", 12),
    ("until", "Until (UTC)", 16),
    ("reason", "Reason", 60),
)
REGIME_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("pair", "Pair", 10),
    ("tf", "TF", 3),
    ("regime", "Regime", 7),
    ("size", "Size", 5),
    ("figures", "ADX · BB width · ATR", 60),
)
GENERATION_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("gen", "Gen", 3),
    ("best", "Best", 8),
    ("mean", "Mean", 8),
    ("member", "Best member", 24),
)
STATUS_ROLE = {
    "applied": "ok",
    "accepted": "ok",
    "rejected": "muted",
    "reverted": "warn",
    "refused": "error",
    "proposed": "",
}
PROTECTED_TEXT = "daily loss, drawdown, capital, mode"


def _frac(lo: Decimal, hi: Decimal) -> str:
    return f"{value_text('stop_loss', lo)[:-1]}–{value_text('stop_loss', hi)}"


def bounds_text(b: Bounds) -> str:
    """``risk/trade 0.5–2% · SL 1–10% · TP 2–10% · size x0.7–1.3`` (SL stop-loss, TP take-profit)."""
    lo, hi = b.size_multiplier
    return (
        f"risk/trade {_frac(*b.risk_per_trade)} · SL {_frac(*b.stop_loss)} · "
        f"TP {_frac(*b.take_profit)} · size {value_text('size_multiplier', lo)}–"
        f"{value_text('size_multiplier', hi)[1:]}"
    )


def fitness_text(value: Decimal | None) -> str:
    """A fitness score with 4 decimals and its sign; None or NaN (too few trades): ``-``."""
    if value is None or value.is_nan():
        return "-"
    return f"{value:+.4f}"


def short_member(member: str, run: str | None) -> str:
    """``'evo-1/g3/m2'`` -> ``'g3/m2'`` within run ``evo-1``; another run's member keeps its run."""
    prefix = f"{run}/" if run else ""
    return member[len(prefix) :] if prefix and member.startswith(prefix) else member


def member_label(row: MemberRow, run: str | None) -> Text:
    """A lineage node: ``g3/m2 ★ +0.1532 child · sma_cross BTC/USDT fast=9 slow=30``."""
    text = Text(short_member(row.member, run), style="bold", no_wrap=True, overflow="ellipsis")
    text.append(" ★" if row.elite else "  ", style="yellow")
    text.append(f" {fitness_text(row.fitness):>8}")
    text.append(f" {row.origin or '-':<6}", style="dim")
    d = row.dna
    text.append(f" {d.strategy} {d.pair} {value_text('params', d.params)}", style="dim")
    return text


def lineage_tree(nodes: list[LineageNode], run: str | None) -> Tree | Text:
    """The member (root) and its parents, recursively; a member met again is named, not expanded."""
    if not nodes:
        return Text("no lineage: no evolution member recorded for this choice", style="dim")
    by_id = {n.row.member: n for n in nodes}
    root = nodes[0]
    tree = Tree(member_label(root.row, run), guide_style="dim")
    shown = {root.row.member}
    stack: list[tuple[Tree, LineageNode]] = [(tree, root)]
    while stack:
        branch, node = stack.pop(0)  # breadth first: a member sits at its nearest place
        for parent in node.parents:
            found = by_id.get(parent)
            if found is None:
                branch.add(Text(f"{short_member(parent, run)} (not read)", style="dim"))
            elif parent in shown:
                branch.add(Text(f"{short_member(parent, run)} (above)", style="dim"))
            else:
                shown.add(parent)
                stack.append((branch.add(member_label(found.row, run)), found))
    return tree


class AutonomyPane(Vertical):
    """The Autonomy tab (module doc). ``engine`` returns the running engine (None while none runs);
    ``settings`` is ``[autonomy]`` (the mode and bounds when no Adjuster runs). ``reads`` counts
    finished ledger reads and ``view`` is the last one shown (tests wait on them)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "accept", "Accept", id="autonomy.accept"),
        Binding("x", "reject", "Reject", id="autonomy.reject"),
        Binding("r", "revert", "Revert", id="autonomy.revert"),
        Binding("e", "app.evolve", "Evolve", id="autonomy.evolve"),
    ]

    DEFAULT_CSS = """
    AutonomyPane #autonomy-mode { height: 1; padding: 0 1; background: $panel; }
    AutonomyPane .autonomy-box {
        border: round $panel-lighten-2;
        border-title-color: $text-accent;
        border-subtitle-color: $text-muted;
        padding: 0 0;
    }
    AutonomyPane .autonomy-box:focus-within { border: round $accent; }
    AutonomyPane #autonomy-proposals-box { height: 8; }
    AutonomyPane #autonomy-history-box { height: 1fr; min-height: 6; }
    AutonomyPane #autonomy-detail { height: 2; padding: 0 1; color: $text-muted; }
    AutonomyPane #autonomy-middle { height: 8; }
    AutonomyPane #autonomy-bottom { height: 12; }
    AutonomyPane #autonomy-quarantines-box { width: 1fr; }
    AutonomyPane #autonomy-regimes-box { width: 1fr; }
    AutonomyPane #autonomy-evolution-box { width: 2fr; }
    AutonomyPane #autonomy-lineage-box { width: 3fr; }
    AutonomyPane #autonomy-lineage-bot { height: 1; margin: 0 1; }
    AutonomyPane #autonomy-lineage-bot > SelectCurrent { border: none; height: 1; padding: 0 1; }
    AutonomyPane #autonomy-lineage { height: 1fr; padding: 0 1; }
    AutonomyPane DataTable { height: 1fr; overflow-x: hidden; }
    """

    def __init__(
        self,
        settings: AutonomySettings,
        bus: EventBus,
        engine: Callable[[], TradingEngine | None],
        *,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.settings = settings
        self._bus = bus
        self._engine = engine
        self._unsubscribe: list[Callable[[], None]] = []
        self._dirty = True
        self._busy = False
        self._since_read = 0.0
        self._bot_options: tuple[tuple[str, str], ...] = ()
        self._mode_text: Text | None = None
        self._engine_seen: TradingEngine | None = None
        self.view = AutonomyView()
        self.reads = 0

    # -- layout ----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("", id="autonomy-mode")
        with Vertical(id="autonomy-proposals-box", classes="autonomy-box") as box:
            box.border_title = "Proposals"
            box.border_subtitle = "a accept · x reject"
            yield _Table(PROPOSAL_COLUMNS, id="autonomy-proposals")
        with Vertical(id="autonomy-history-box", classes="autonomy-box") as box:
            box.border_title = "Change history"
            box.border_subtitle = "r revert"
            yield _Table(HISTORY_COLUMNS, id="autonomy-history")
        yield Static("", id="autonomy-detail")
        with Horizontal(id="autonomy-middle"):
            with Vertical(id="autonomy-quarantines-box", classes="autonomy-box") as box:
                box.border_title = "Quarantines"
                yield _Table(QUARANTINE_COLUMNS, id="autonomy-quarantines")
            with Vertical(id="autonomy-regimes-box", classes="autonomy-box") as box:
                box.border_title = "Market regimes"
                yield _Table(REGIME_COLUMNS, id="autonomy-regimes")
        with Horizontal(id="autonomy-bottom"):
            with Vertical(id="autonomy-evolution-box", classes="autonomy-box") as box:
                box.border_title = "Evolution"
                yield _Table(GENERATION_COLUMNS, id="autonomy-generations")
            with Vertical(id="autonomy-lineage-box", classes="autonomy-box") as box:
                box.border_title = "Lineage"
                yield Select(
                    [("best member of the latest run", BEST)],
                    value=BEST,
                    allow_blank=False,
                    id="autonomy-lineage-bot",
                )
                with VerticalScroll(id="autonomy-lineage-scroll"):
                    yield Static("", id="autonomy-lineage")

    def on_mount(self) -> None:
        self._unsubscribe = [
            self._bus.subscribe(kind, self._on_record)
            for kind in (BotAdjusted, BotQuarantined, GenerationEvolved)
        ]
        self.set_interval(TICK_S, self._tick, name="autonomy-refresh")
        self._show_mode()

    def on_unmount(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    def on_show(self) -> None:
        self._dirty = True
        self.refresh_view()

    def invalidate(self) -> None:
        """Forget the resolved colours (the theme changed): everything is drawn again."""
        for table in self.query(_Table):
            table.forget()
        self._dirty = True

    # -- when to read ------------------------------------------------------------------------
    def _on_record(self, _event: object) -> None:
        self._dirty = True  # bus handlers must not block: the read happens at the next tick

    def _tick(self) -> None:
        self._since_read += TICK_S
        if self._since_read >= SLOW_S:
            self._dirty = True
        if self.is_on_screen:
            self.refresh_view()

    def refresh_view(self) -> None:
        """Draw what the engine's memory holds (mode, regimes, the lineage choices) and start a
        ledger read if something was recorded since the last one (the app's redraw calls this)."""
        engine = self._engine()
        self._show_mode()
        if engine is None:
            return
        if engine is not self._engine_seen:  # a new engine (a mode switch): its ledger, its bots
            self._engine_seen = engine
            self._dirty = True
        self._update_bot_options(engine)
        self._show_regimes(engine)  # from memory: a few rows, redrawn only when they changed
        if self._dirty and not self._busy:
            self._dirty = False
            self._busy = True
            self._since_read = 0.0
            self._read(engine)

    def _read(self, engine: TradingEngine) -> None:
        choice = self.query_one("#autonomy-lineage-bot", Select).value
        member = None if choice in (BEST, Select.NULL) else str(choice)
        self.run_worker(self._read_and_show(engine, member), group="autonomy-read", exit_on_error=False)

    async def _read_and_show(self, engine: TradingEngine, member: str | None) -> None:
        try:
            view = await asyncio.to_thread(read_view, engine.store.path, lineage_of=member)
            if self.is_attached:
                self._show(view)
        finally:
            self._busy = False
        self.reads += 1

    # -- drawing -----------------------------------------------------------------------------
    def _adjuster(self) -> Adjuster | None:
        engine = self._engine()
        return None if engine is None else adjuster_for(engine)

    def _show_mode(self) -> None:
        adjuster = self._adjuster()
        mode = adjuster.mode if adjuster is not None else self.settings.mode
        bounds = adjuster.bounds if adjuster is not None else Bounds.from_settings(self.settings.bounds)
        if mode == "autonomous":
            badge, what = " AUTONOMOUS ", " auto in bounds"
        else:
            badge, what = " EXPERT ", " proposals only"
        text = Text.assemble(
            (badge, "bold reverse"),
            what,
            ("  bounds ", "dim"),
            bounds_text(bounds),
            ("  protected ", "dim"),
            (PROTECTED_TEXT, "dim"),
        )
        if adjuster is None and self._engine() is not None:
            text.append("  │ autonomy not running", style="bold")
        if text != self._mode_text:
            self._mode_text = text
            self.query_one("#autonomy-mode", Static).update(text)

    def _show(self, view: AutonomyView) -> None:
        self.view = view
        self._show_proposals(view.pending)
        self._show_history(view.history)
        self._show_quarantines(view)
        self._show_evolution(view)
        self._show_detail()

    def _show_proposals(self, pending: list[Adjustment]) -> None:
        table = self.query_one("#autonomy-proposals", _Table)

        def row(p: Adjustment) -> tuple[str | Text, ...]:
            return (f"#{p.id}", fmt.ts(p.ts), p.bot, p.source, p.field,
                    change_text(p.field, p.before, p.after), p.reason)  # fmt: skip

        table.refill((str(p.id), row(p)) for p in pending[:PENDING_SHOWN])
        box = self.query_one("#autonomy-proposals-box")
        box.border_title = f"Proposals · {len(pending)} pending" if pending else "Proposals · none pending"

    def _show_history(self, history: list[HistoryEntry]) -> None:
        table = self.query_one("#autonomy-history", _Table)

        def status(h: HistoryEntry) -> Text:
            a = h.row
            if h.reverted_by is not None:
                return table.styled(f"{a.status} ↺#{h.reverted_by}", "muted")
            if a.status == "reverted" and a.ref_id is not None:
                return table.styled(f"reverted #{a.ref_id}", STATUS_ROLE["reverted"])
            if withdrawn(a):
                return table.styled(f"withdrawn #{a.ref_id}", STATUS_ROLE["rejected"])
            if a.status in ("accepted", "rejected") and a.ref_id is not None:
                return table.styled(f"{a.status} #{a.ref_id}", STATUS_ROLE[a.status])
            return table.styled(a.status, STATUS_ROLE.get(a.status, ""))

        def row(h: HistoryEntry) -> tuple[str | Text, ...]:
            a = h.row
            return (f"#{a.id}", fmt.ts(a.ts), a.bot, a.source, a.field, status(h),
                    change_text(a.field, a.before, a.after), a.reason)  # fmt: skip

        table.refill((str(h.row.id), row(h)) for h in history)
        box = self.query_one("#autonomy-history-box")
        box.border_title = (
            f"Change history · {len(history)} latest" if history else "Change history · none yet"
        )

    def _show_quarantines(self, view: AutonomyView) -> None:
        table = self.query_one("#autonomy-quarantines", _Table)
        engine = self._engine()
        now = engine.now_ms if engine is not None else 0

        def until(ts: int | None) -> Text:
            if ts is None:
                return table.styled("retired", "error")
            return table.styled(fmt.ts(ts), "warn" if ts > now else "muted")

        table.refill(
            (
                (str(q.id), (q.bot, str(q.level), q.rule, until(q.until_ts), q.reason))
                for q in view.quarantines
            ),
        )
        active = sum(1 for q in view.quarantines if q.until_ts is None or q.until_ts > now)
        box = self.query_one("#autonomy-quarantines-box")
        box.border_title = f"Quarantines · {active} in force" if view.quarantines else "Quarantines · none"

    def _show_regimes(self, engine: TradingEngine) -> None:
        table = self.query_one("#autonomy-regimes", _Table)
        book = engine.regimes
        box = self.query_one("#autonomy-regimes-box")
        if book is None:
            box.border_title = "Market regimes · off"
            table.refill(())
            return
        scaling = book.settings.size_scaling
        table.refill(
            (
                (
                    f"{pair}|{tf}",
                    (
                        pair,
                        tf,
                        regime_cell(table, r.regime),
                        value_text("size_multiplier", scale_for(scaling, r.regime)),
                        r.figures(),
                    ),
                )
                for (_exchange, pair, tf), r in book.readings().items()
            ),
        )
        autonomous = engine.size_hook is not None
        box.border_title = "Market regimes · " + ("sizes scaled" if autonomous else "shown, sizes not scaled")

    def _show_evolution(self, view: AutonomyView) -> None:
        table = self.query_one("#autonomy-generations", _Table)
        run = view.run
        table.refill(
            (
                (
                    str(g.generation),
                    (
                        str(g.generation),
                        fitness_text(g.best_fitness),
                        fitness_text(g.mean_fitness),
                        short_member(g.best_member, g.run),
                    ),
                )
                for g in reversed(view.generations)
            ),
        )
        box = self.query_one("#autonomy-evolution-box")
        if run is None:
            box.border_title = "Evolution · no run yet"
            box.border_subtitle = "e evolve"
        else:
            box.border_title = f"Evolution · {run.run}"
            box.border_subtitle = (
                f"seed {run.seed} · {run.generations} gen · best {fitness_text(run.best_fitness)}"
            )
        lineage_box = self.query_one("#autonomy-lineage-box")
        target = view.lineage_of
        lineage_box.border_title = "Lineage" + (f" · {target}" if target else "")
        lineage_box.border_subtitle = "★ elite · parents below their child" if view.lineage else ""
        renderable = (
            lineage_tree(view.lineage, run.run if run is not None else None)
            if target
            else Text("no evolution run recorded yet", style="dim")
        )
        self.query_one("#autonomy-lineage", Static).update(renderable)

    def _update_bot_options(self, engine: TradingEngine) -> None:
        """The lineage choices: the latest run's best member, then each bot that has a DNA."""
        options = tuple(
            (f"{r.rec.name} · {r.rec.dna_id}", str(r.rec.dna_id))
            for _id, r in sorted(engine.runners.items())
            if r.rec.dna_id
        )
        if options == self._bot_options:
            return
        first = not self._bot_options
        self._bot_options = options
        select: Select[str] = self.query_one("#autonomy-lineage-bot", Select)
        current = select.value
        with select.prevent(Select.Changed):
            select.set_options([*options, ("best member of the latest run", BEST)])
            values = {v for _label, v in options} | {BEST}
            if first and options:
                select.value = options[0][1]  # a bot that came from evolution, when there is one
            elif current in values:
                select.value = current
            else:
                select.value = options[0][1] if options else BEST
        self._dirty = True

    @on(Select.Changed, "#autonomy-lineage-bot")
    def _lineage_choice(self) -> None:
        self._dirty = True
        self.refresh_view()

    # -- the row under the cursor --------------------------------------------------------------
    def selected_proposal(self) -> Adjustment | None:
        """The pending proposal under the proposals table's cursor."""
        key = _cursor_key(self.query_one("#autonomy-proposals", _Table))
        return next((p for p in self.view.pending if str(p.id) == key), None)

    def selected_change(self) -> HistoryEntry | None:
        """The history row under the history table's cursor."""
        key = _cursor_key(self.query_one("#autonomy-history", _Table))
        return next((h for h in self.view.history if str(h.row.id) == key), None)

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.has_focus and event.data_table.id in ("autonomy-proposals", "autonomy-history"):
            self._show_detail(event.data_table.id)

    def on_descendant_focus(self) -> None:
        self._show_detail()

    def _show_detail(self, table_id: str | None = None) -> None:
        """Under the history: the whole change and reason of the focused table's row (or why the
        ledger was not read)."""
        if table_id is None:
            focused = self.app.focused if self.is_attached else None
            table_id = (
                "autonomy-history" if focused is not None and focused.id == "autonomy-history" else None
            )
        a: Adjustment | None
        if table_id == "autonomy-history":
            entry = self.selected_change()
            a = None if entry is None else entry.row
        else:
            a = self.selected_proposal()
        if self.view.error is not None:
            text = Text(self.view.error, style="bold")
        elif a is None:
            text = Text("no proposal pending" if table_id != "autonomy-history" else "no change recorded yet")
        else:
            text = Text.assemble(
                (f"#{a.id} {a.status} by {a.actor}", "bold"),
                f" · {a.bot} · {a.source} · {a.field}: {change_text(a.field, a.before, a.after)}\n",
                a.reason,
            )
        self.query_one("#autonomy-detail", Static).update(text)

    # -- answers ----------------------------------------------------------------------------
    def action_accept(self) -> None:
        p = self.selected_proposal()
        adjuster = self._usable_adjuster(p, "no proposal pending")
        if p is None or adjuster is None:
            return
        bounded = p.field in ("params", "risk_mode", "size_multiplier", "stop_loss", "take_profit", "capital")
        how = f", brought within the bounds ({bounds_text(adjuster.bounds)})" if bounded else ""
        undo = "" if p.field in NEW_BOT_FIELDS else ", and r in the change history reverts it"
        why = (
            f"{p.source} proposes for {p.bot}: {p.field} {change_text(p.field, p.before, p.after)}.\n"
            f"Reason: {p.reason}\n\nAccepting applies it now{how}; it is recorded{undo}."
        )
        self._confirm(f"Accept proposal #{p.id}?", why, "Accept",
                      lambda: adjuster.accept(p.id, actor="user"), f"#{p.id} accepted: {p.bot} {p.field} changed")  # fmt: skip

    def action_reject(self) -> None:
        p = self.selected_proposal()
        adjuster = self._usable_adjuster(p, "no proposal pending")
        if p is None or adjuster is None:
            return
        why = (
            f"{p.source} proposes for {p.bot}: {p.field} {change_text(p.field, p.before, p.after)}.\n"
            f"Reason: {p.reason}\n\nRejecting changes nothing; the answer is recorded."
        )
        self._confirm(f"Reject proposal #{p.id}?", why, "Reject",
                      lambda: adjuster.reject(p.id, actor="user"), f"#{p.id} rejected: {p.bot} unchanged")  # fmt: skip

    def action_revert(self) -> None:
        h = self.selected_change()
        adjuster = self._usable_adjuster(h, "no change recorded yet")
        if h is None or adjuster is None:
            return
        a = h.row
        if not h.revertible:
            why = (
                f"it was reverted by #{h.reverted_by}"
                if h.reverted_by is not None
                else "a new bot is stopped, not reverted"
                if a.field in NEW_BOT_FIELDS
                else f"it is {a.status}: only an applied or accepted change can be reverted"
            )
            self.notify(f"#{a.id} cannot be reverted: {why}", severity="warning")
            return
        why = (
            f"#{a.id} ({a.source}, {a.status}) changed {a.bot}'s {a.field}: "
            f"{change_text(a.field, a.before, a.after)}.\n\n"
            f"Reverting puts back {value_text(a.field, a.before)} exactly (no bounds: it is what the bot "
            "had); the revert is recorded."
        )
        self._confirm(f"Revert change #{a.id}?", why, "Revert",
                      lambda: adjuster.revert(a.id, actor="user"), f"#{a.id} reverted: {a.bot} {a.field} restored")  # fmt: skip

    def _usable_adjuster(self, row: object, nothing: str) -> Adjuster | None:
        if row is None:
            self.notify(nothing, severity="warning")
            return None
        adjuster = self._adjuster()
        if adjuster is None:
            self.notify(
                "autonomy is not running beside an engine: nothing can be changed now", severity="warning"
            )
        return adjuster

    def _confirm(
        self, question: str, why: str, label: str, call: Callable[[], Awaitable[Any]], done: str
    ) -> None:
        def confirmed(ok: bool | None) -> None:
            if ok:
                # an app worker: a refusal (AdjustmentError) reaches the app's one error path
                self.app.run_worker(self._answer(call, done), group="commands", exit_on_error=False)

        self.app.push_screen(ConfirmScreen(question, why, label), confirmed)

    async def _answer(self, call: Callable[[], Awaitable[Any]], done: str) -> None:
        await call()
        self.notify(done)
        self._dirty = True
        self.refresh_view()


class _Table(StyledTable):
    """A StyledTable filled whole by ``refill``, which does nothing when the rows have not changed."""

    def __init__(self, columns: tuple[tuple[str, str, int], ...], *, id: str) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        for key, title, width in columns:
            self.add_column(title, key=key, width=width)
        self._shown: tuple[int, list[tuple[str, tuple[str | Text, ...]]]] | None = None

    def refill(self, rows: Iterable[tuple[str, tuple[str | Text, ...]]]) -> None:
        """Replace the rows (``(key, cells)``), keeping the cursor on the same key when it is still
        there. The last column takes the room the others leave (the tables do not scroll sideways)."""
        columns = list(self.columns.values())
        room = self.content_region.width - sum(c.get_render_width(self) for c in columns[:-1])
        room -= 2 * self.cell_padding + self.styles.scrollbar_size_vertical  # room for a scrollbar
        new = (room, list(rows))
        if new == self._shown:
            return
        self._shown = new
        key = _cursor_key(self)
        self.clear()
        for row_key, cells in new[1]:
            if room > 4:
                cells = (*cells[:-1], _fit(cells[-1], room))
            self.add_row(*cells, key=row_key)
        if key is not None and key in self.rows:  # else the row is gone: the cursor stays at the top
            self.move_cursor(row=self.get_row_index(key), animate=False)

    def on_resize(self) -> None:
        if self._shown is not None:  # the last column takes the new width
            self.refill(self._shown[1])

    def forget(self) -> None:
        """Draw again at the next ``refill`` (the theme's colours changed)."""
        self._shown = None
        self.reset_styles()


def _cursor_key(table: DataTable[Any]) -> str | None:
    if not table.row_count:
        return None
    key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
    return None if key.value is None else str(key.value)


def _fit(cell: str | Text, width: int) -> str | Text:
    """``cell`` cut to ``width`` cells with an ellipsis (the detail line shows it whole)."""
    text = Text(cell) if isinstance(cell, str) else cell.copy()
    if text.cell_len > width:
        text.truncate(width, overflow="ellipsis")
    return text
