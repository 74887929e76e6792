"""Command palette provider: the engine's commands.

Pause/resume/stop/details/promote/demote <bot>, pause all, resume all, new bot, emergency
stop or resume trading (whichever applies), API keys, balances, a backtest, an optimisation, an
evolution run, the account mode, allocate
capital, and a reset for each tripped breaker.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from amarktai_tui.domain.enums import BotState, LifecycleStage
from amarktai_tui.risk.breakers import Breaker
from amarktai_tui.tui import fmt
from amarktai_tui.tui.breakers_pane import rule_name

if TYPE_CHECKING:
    from amarktai_tui.tui.app import AmarktaiApp

Command = tuple[str, Callable[[], object], str]


class BotCommands(Provider):
    """Offers the engine commands that make sense now (e.g. 'Pause bot X' only for a running bot)."""

    def _commands(self) -> list[Command]:
        app = cast("AmarktaiApp", self.app)
        keys: Command = ("API keys", app.action_keys, "Set, test and delete exchange, AI and mail keys (K)")
        balances: Command = (
            "Balances",
            app.action_balances,
            f"Free, used and total per exchange, valued in {app.settings.general.quote_currency} (B)",
        )
        backtest: Command = (
            "Backtest a strategy",
            app.action_backtest,
            "A strategy and its parameters over candle files, on a temporary ledger (b)",
        )
        optimise: Command = (
            "Optimise a strategy",
            app.action_optimize,
            "An optuna study of its parameters, walk-forward; apply the best to a bot (O)",
        )
        evolve: Command = (
            "Evolve bot DNA",
            app.action_evolve,
            "A seeded evolution run over candle files, recorded for the Autonomy tab (e there)",
        )
        mode: Command = (
            "Account mode: paper or live",
            app.action_mode_switch,
            "Switch to live (readiness checks, typed phrase) or back to paper (M)",
        )
        engine = app.engine
        if engine is None:
            return [keys, balances, backtest, optimise, evolve, mode]
        out: list[Command] = [
            (
                "Pause all bots",
                app.action_pause_all,
                "Pause every running bot (exits by stop rules continue)",
            ),
            ("Resume all bots", app.action_resume_all, "Resume every paused bot"),
            ("New bot", app.action_new_bot, "Open the new-bot form"),
        ]
        halt = engine.board.active.get((Breaker.HALT, None))
        if halt is None:
            out.append(
                (
                    "Emergency stop: halt all trading",
                    app.action_halt,
                    "No bot opens anything new; exits keep working (asks first)",
                )
            )
        else:
            out.append(
                (
                    "Resume trading after the emergency stop",
                    app.action_resume_trading,
                    f"Halted {fmt.ts(halt.ts)} UTC (asks for a reason)",
                )
            )
        out.append(keys)
        out.append(balances)
        out.append(backtest)
        out.append(optimise)
        out.append(evolve)
        out.append(mode)
        out.append(
            (
                "Allocate capital",
                app.action_allocate,
                "Preview what the allocator would move between bots; apply with y",
            )
        )
        trips = sorted(engine.board.active.values(), key=lambda t: t.id)
        for trip in trips:
            if trip.breaker is Breaker.HALT:
                continue
            who = app.scope_name(trip.bot_id)
            out.append(
                (
                    f"Reset breaker {rule_name(trip.breaker)} on {who}",
                    partial(app.reset_breaker, trip.breaker, trip.bot_id),
                    f"Trip {trip.id}, {fmt.ts(trip.ts)} UTC: {trip.message} (asks for a reason)",
                )
            )
        for runner in sorted(engine.runners.values(), key=lambda r: r.rec.name):
            name, state, bot_id = runner.rec.name, runner.rec.state, runner.rec.id
            if state is BotState.RUNNING:
                out.append(
                    (f"Pause bot {name}", partial(app.bot_action, "pause", bot_id), "Stop opening trades")
                )
            if state is not BotState.RUNNING:
                out.append(
                    (f"Resume bot {name}", partial(app.bot_action, "start", bot_id), f"Now {state.value}")
                )
            if state is not BotState.STOPPED:
                out.append(
                    (
                        f"Stop bot {name}",
                        partial(app.bot_action, "stop", bot_id),
                        "Closes its position (asks first)",
                    )
                )
            stage = runner.rec.stage
            if stage is LifecycleStage.ELIGIBLE_FOR_LIVE:
                out.append((f"Promote bot {name} to live", partial(app.bot_action, "promote", bot_id),
                            "Eligible: it met every promotion criterion (asks first; L)"))  # fmt: skip
            if stage in (LifecycleStage.ELIGIBLE_FOR_LIVE, LifecycleStage.LIVE):
                out.append((f"Demote bot {name} to paper", partial(app.bot_action, "demote", bot_id),
                            f"Now {stage.value}; back to paper_training (asks for a reason; D)"))  # fmt: skip
            out.append(
                (f"Bot details {name}", partial(app.bot_action, "details", bot_id), "Trades and chart")
            )
        return out

    async def discover(self) -> Hits:
        for text, callback, help_text in self._commands()[:3]:
            yield DiscoveryHit(text, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, callback, help_text in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), callback, text=text, help=help_text)
