"""Bot run-state transitions: one table, used by the engine, the CLI and the UI.

===============  ========================================
from             allowed to
===============  ========================================
running          paused, stopped, error, circuit_tripped
paused           running, stopped, error, circuit_tripped
stopped          running
error            running (after the user resumes), stopped
circuit_tripped  running (when no trip covers it), paused, stopped
===============  ========================================

``running`` trades; ``paused`` opens nothing new but still exits by its
stop-loss/take-profit/trailing rules (never trap a position); ``stopped``
closes its position at the next candle's open and then does nothing;
``error`` is set by the engine when the bot's strategy raised (reason shown),
and trades nothing until resumed; ``circuit_tripped`` is set by a breaker
trip: the bot still exits (strategy EXIT, stops) but opens nothing until
every trip covering it is reset.
"""

from __future__ import annotations

from amarktai_tui.domain.enums import BotState

TRANSITIONS: dict[BotState, frozenset[BotState]] = {
    BotState.RUNNING: frozenset(
        {BotState.PAUSED, BotState.STOPPED, BotState.ERROR, BotState.CIRCUIT_TRIPPED}
    ),
    BotState.PAUSED: frozenset(
        {BotState.RUNNING, BotState.STOPPED, BotState.ERROR, BotState.CIRCUIT_TRIPPED}
    ),
    BotState.STOPPED: frozenset({BotState.RUNNING}),
    BotState.ERROR: frozenset({BotState.RUNNING, BotState.STOPPED}),
    BotState.CIRCUIT_TRIPPED: frozenset({BotState.RUNNING, BotState.PAUSED, BotState.STOPPED}),
}


class InvalidTransition(ValueError):
    """A state change the table does not allow (message names both states)."""


def check_transition(old: BotState, new: BotState) -> None:
    """Raise InvalidTransition unless ``old -> new`` is in ``TRANSITIONS``."""
    if new not in TRANSITIONS[old]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[old]))
        raise InvalidTransition(f"a {old.value} bot cannot become {new.value} (allowed: {allowed})")
