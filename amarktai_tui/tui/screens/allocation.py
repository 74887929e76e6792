"""The capital allocation preview: what the allocator would move now, applied only on the user's word.

The screen shows an ``AllocationPlan`` (``engine.allocation_plan()``), one
row per bot, and dismisses with True (apply) or False (cancel); the app then
runs ``engine.apply_allocation`` as a command worker. Nothing changes while
the preview is open.
"""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual import on
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from amarktai_tui.risk.allocator import Allocation, AllocationPlan, AllocatorSettings
from amarktai_tui.tui import fmt
from amarktai_tui.tui.bots_pane import StyledTable
from amarktai_tui.tui.widgets.tape import foreground

PLAN_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("bot", "Bot", 14),
    ("tier", "Tier", 8),
    ("score", "Score", 7),
    ("capital", "Capital", 10),
    ("target", "Target", 10),
    ("new", "New", 10),
    ("change", "Change", 18),
    ("reason", "Reason", 36),
)
"""(key, title, width); a long reason wraps onto more lines of its row."""
_RIGHT = frozenset({"score", "capital", "target", "new", "change"})


def change_text(a: Allocation) -> str:
    """The move of a changed row: ``"+250.00 (+25.0%)"``; ``"-"`` when the capital stays.

    Quote currency; the percent is of the current capital (``"new"`` for a bot that had none).
    """
    if not a.changed:
        return "-"
    delta = a.new_capital - a.old_capital
    if not a.old_capital:
        return f"{fmt.money(delta, signed=True)} (new)"
    return f"{fmt.money(delta, signed=True)} ({delta / a.old_capital * 100:+.1f}%)"


def score_text(score: Decimal | None) -> str:
    """A ranked bot's score with 3 decimals; ``"-"`` for an unranked bot."""
    return "-" if score is None else f"{score:.3f}"


class PlanTable(StyledTable):
    """The plan's rows; changed rows in the ``plan--changed`` style. ``enter`` is left to the dialog."""

    COMPONENT_CLASSES: ClassVar[set[str]] = StyledTable.COMPONENT_CLASSES | {"plan--changed"}

    def action_select_cursor(self) -> None:
        raise SkipAction()  # enter goes on to the screen: apply

    def changed_style(self) -> Style:
        return foreground(self.get_component_rich_style("plan--changed"))


class AllocationScreen(ModalScreen[bool]):
    """Previews ``plan``; dismisses with True (apply it) or False (cancel). Apply is off without changes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "cancel", "Cancel", id="allocate.cancel"),
        Binding("enter,y", "apply", "Apply", id="allocate.apply"),
    ]

    def __init__(self, plan: AllocationPlan, settings: AllocatorSettings) -> None:
        super().__init__()
        self.plan = plan
        self._settings = settings

    def compose(self) -> ComposeResult:
        plan, s = self.plan, self._settings
        n, changes = len(plan.allocations), len(plan.changes)
        with Vertical(id="allocate-dialog", classes="dialog"):
            yield Label("Capital allocation", id="allocate-title", classes="dialog-title")
            yield Static(
                f"Account equity {fmt.money(plan.account_equity)}, allocatable {fmt.money(plan.allocatable)} "
                f"({s.allocatable_share * 100:.0f}% of equity less the capital of unranked bots).\n"
                f"Bots with at least {s.min_trades} closed trades are ranked; a bot's capital moves when "
                f"its target differs from it by more than {s.change_threshold * 100:.0f}%. A bot gives back "
                "at most its free cash.",
                id="allocate-explanation",
            )
            table = PlanTable(id="allocate-table", cursor_type="none", zebra_stripes=True)
            for key, title, width in PLAN_COLUMNS:
                table.add_column(
                    Text(title, justify="right") if key in _RIGHT else title, key=key, width=width
                )
            yield table
            summary = (
                f"{changes} of {n} bots change." if changes else f"Nothing to apply: no bot of {n} changes."
            )
            yield Static(summary, id="allocate-summary")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (n)", id="allocate-cancel")
                yield Button("Apply (y)", id="allocate-ok", variant="primary", disabled=not changes)

    def on_mount(self) -> None:
        table = self.query_one(PlanTable)
        for a in self.plan.allocations:
            table.add_row(*self._cells(table, a), key=str(a.bot_id), height=None)  # the reason wraps
        table.focus()

    @staticmethod
    def _cells(table: PlanTable, a: Allocation) -> tuple[Text, ...]:
        """A row: a changed row bold in the ``plan--changed`` colour (its change up/down), others muted."""
        changed = table.changed_style()

        def cell(text: str, key: str) -> Text:
            t = Text(text, style=changed) if a.changed else table.styled(text, "muted")
            t.justify = "right" if key in _RIGHT else "left"
            return t

        if a.changed:
            change = table.pnl(a.new_capital - a.old_capital, change_text(a))
            change.stylize("bold")
            change.justify = "right"
        else:
            change = cell(change_text(a), "change")
        return (
            cell(a.name, "bot"),
            cell(str(a.tier), "tier"),
            cell(score_text(a.score), "score"),
            cell(fmt.money(a.old_capital), "capital"),
            cell(fmt.money(a.target), "target"),
            cell(fmt.money(a.new_capital), "new"),
            change,
            cell(a.reason, "reason"),
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "apply":
            return bool(self.plan.changes)
        return True

    @on(Button.Pressed, "#allocate-ok")
    def action_apply(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#allocate-cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)
