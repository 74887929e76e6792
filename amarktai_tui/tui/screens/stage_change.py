"""The stage modal: confirm promoting a bot to live, or demoting it to paper_training (audited).

Shows the bot's criteria as measured now (``engine.stages``), asks for the
reason recorded with the change, and runs the engine command. The engine does
the checks: a bot that is no longer eligible, or an empty demotion reason,
comes back as its ``EngineError`` message, shown inline; the modal stays open
until the change is made or the user cancels.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from amarktai_tui.domain.enums import LifecycleStage
from amarktai_tui.engine.engine import EngineError, TradingEngine
from amarktai_tui.ledger.store import StageChange

PROMOTE_REASON = "confirmed in the TUI"
"""The reason recorded when the promotion's reason field is left empty."""


class StageChangeScreen(ModalScreen[StageChange | None]):
    """Asks ``question`` with the criteria and a reason; ``run(reason)`` makes the change.

    Dismisses with the engine's StageChange, or None when cancelled.
    """

    DEFAULT_CSS = """
    #stage-dialog { width: 90; }
    #stage-explanation { margin-bottom: 1; }
    #stage-checks { margin-bottom: 1; padding: 0 2; }
    #stage-error { color: $error; text-style: bold; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="stage.cancel"),
        Binding("ctrl+s", "submit", "Confirm", id="stage.submit", priority=True),
    ]

    def __init__(
        self,
        question: str,
        explanation: str,
        checks: str,
        confirm_label: str,
        run: Callable[[str], Awaitable[StageChange]],
        *,
        default_reason: str = "",
        notice: str = "",
    ) -> None:
        super().__init__()
        self._question = question
        self._explanation = explanation
        self._checks = checks
        self._confirm_label = confirm_label
        self._run = run
        self._default = default_reason
        self._notice = notice

    def compose(self) -> ComposeResult:
        with Vertical(id="stage-dialog", classes="dialog"):
            yield Label(self._question, id="stage-question", classes="dialog-title")
            yield Static(self._explanation, id="stage-explanation")
            yield Static(self._checks, id="stage-checks")
            hint = f" (empty: {self._default!r})" if self._default else " (required)"
            yield Label(f"Reason, recorded in the ledger{hint}", classes="field-label")
            yield Input(placeholder="why?", id="stage-reason")
            yield Static("", id="stage-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel (esc)", id="stage-cancel")
                yield Button(f"{self._confirm_label} (enter)", id="stage-ok", variant="error")

    def on_mount(self) -> None:
        self.query_one("#stage-reason", Input).focus()

    @on(Button.Pressed, "#stage-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted, "#stage-reason")
    @on(Button.Pressed, "#stage-ok")
    def action_submit(self) -> None:
        reason = self.query_one("#stage-reason", Input).value.strip() or self._default
        self._change(reason)

    @work(exclusive=True, group="stage", exit_on_error=False)
    async def _change(self, reason: str) -> None:
        try:
            change = await self._run(reason)
        except EngineError as exc:
            self.query_one("#stage-error", Static).update(str(exc))
            self.query_one("#stage-reason", Input).add_class("field-error")
            self.query_one("#stage-reason", Input).focus()
            return
        if self._notice:
            self.app.notify(f"{self._notice} (recorded: {change.reason})")
        self.dismiss(change)


def stage_screen(engine: TradingEngine, bot_id: int, action: str) -> StageChangeScreen:
    """The modal for ``action`` ("promote" or "demote") on bot ``bot_id``, with its figures now."""
    runner = engine.runners[bot_id]
    name, stage = runner.rec.name, runner.rec.stage
    verdict = engine.stages.verdict(bot_id)
    checks = "no criteria while quarantined" if verdict is None else "\n".join(
        ("✓ " if c.ok else "✗ ") + c.progress for c in verdict.checks
    )  # fmt: skip
    if action == "promote":

        def promote(reason: str) -> Awaitable[StageChange]:
            return engine.promote_bot(bot_id, "user", reason)

        if stage is LifecycleStage.ELIGIBLE_FOR_LIVE:
            why = (
                f"{name} earned eligibility on paper. Live, it trades real money on {runner.rec.exchange} "
                "once the account is in live mode. Its live floors send it back to paper on their own."
            )
            if verdict is not None and verdict.failing:  # eligibility stays; the figures move on
                missed = ", ".join(c.progress for c in verdict.failing)
                why += f"\nSince it became eligible it no longer meets: {missed}."
        else:
            why = f"{name} is {stage.value}: only an eligible_for_live bot can be promoted."
        return StageChangeScreen(
            f"Promote {name} to live?", why, checks, "Promote", promote,
            default_reason=PROMOTE_REASON, notice=f"{name} promoted to live",
        )  # fmt: skip

    def demote(reason: str) -> Awaitable[StageChange]:
        return engine.demote_bot(bot_id, "user", reason)

    why = (
        f"{name} ({stage.value}) goes back to paper_training and starts a new paper track: "
        "it must earn eligibility again before it can go live."
    )
    return StageChangeScreen(
        f"Demote {name} to paper?", why, checks, "Demote", demote, notice=f"{name} demoted to paper_training"
    )
