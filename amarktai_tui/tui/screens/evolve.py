"""The Evolve dialog: one evolution run of bot DNA over candle files, beside the running engine.

Opened with ``e`` on the Autonomy tab or "Evolve bot DNA" in the palette. The form: population,
generations and seed (defaults from ``[autonomy.evolution]``) and the data files, one per pair
(prefilled from the running replay's files, checked as typed as on the Backtest screen; the pair and
timeframe come from each file's name). Every registered strategy is in the gene space; the exchange
is ``[market] exchange``.

Run (``ctrl+r``) runs ``autonomy.evolution.evolve`` as an asyncio worker on the app's loop, as
``amarktai evolve`` does: generation 0 is seeded from the engine's paper bots whose pair has a file
(never a live one), each DNA is replayed (``BacktestEvaluator``, temporary ledgers, logs kept out of
the user's log), and every generation is recorded in the ledger of the app's data dir
(``evolution_generations``/``evolution_members``) and published as ``GenerationEvolved`` on the
engine's bus (engine time), so the Autonomy tab's Evolution and Lineage boxes show it at once and
the audit log records it. Evolution changes no bot. ``esc`` cancels a run (the generations recorded
stay), else closes the dialog. Bad input is one line naming the field.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

from pydantic import ValidationError
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, ProgressBar, Static

from amarktai_tui.autonomy.dna import GeneSpace
from amarktai_tui.autonomy.evolution import (
    BacktestEvaluator,
    EvolutionResult,
    EvolutionUsageError,
    evolve,
    new_run_id,
    seeds_from_bots,
    streams_by_pair,
)
from amarktai_tui.autonomy.settings import EvolutionSettings
from amarktai_tui.config import Settings
from amarktai_tui.engine.engine import TradingEngine
from amarktai_tui.locations import db_path
from amarktai_tui.ops.audit_store import connect
from amarktai_tui.ops.evolve_commands import dna_text
from amarktai_tui.strategies.registry import STRATEGIES
from amarktai_tui.tui.autonomy_pane import fitness_text, short_member
from amarktai_tui.tui.screens.backtest import _quiet_run
from amarktai_tui.tui.screens.new_bot import FormError
from amarktai_tui.tui.screens.run_form import RunForm

log = logging.getLogger(__name__)

FIELDS = (("ev-population", "population"), ("ev-generations", "generations"), ("ev-seed", "seed"))
"""The number inputs and the ``EvolutionSettings`` field each sets."""
GENERATIONS_SHOWN = 8
"""Generations listed in the dialog after a run (the Autonomy tab lists them all)."""


class EvolveScreen(ModalScreen[None], RunForm[tuple[EvolutionSettings, dict[str, tuple[str, str]]]]):
    """The dialog (module doc). ``result`` is the last finished run; ``progressed`` is set at a
    run's first replay; ``engine`` returns the running engine (None: no seeds, no events)."""

    PREFIX = "ev"
    WORKER_GROUP = "evolve"
    BUSY_TEXT = "an evolution run is going on: esc cancels it"
    STARTING = "starting…"
    NO_FILES_TEXT = "no file yet: one candle file per pair, separated by commas"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "run", "Run", id="evolve.run", priority=True),
        Binding("escape", "escape", "Cancel run / close", id="evolve.back"),
    ]
    DEFAULT_CSS = """
    EvolveScreen #evolve-dialog { width: 100; height: auto; max-height: 95%; }
    EvolveScreen #ev-about { color: $text-muted; margin-bottom: 1; }
    EvolveScreen .ev-row { height: 1; }
    EvolveScreen .ev-label { width: 13; color: $text-muted; }
    EvolveScreen .ev-num { width: 8; }
    EvolveScreen .ev-hint { width: 1fr; color: $text-muted; padding-left: 1; }
    EvolveScreen #ev-files { width: 1fr; }
    EvolveScreen #ev-file-check { height: auto; max-height: 4; color: $text-muted; }
    EvolveScreen #ev-file-check.ev-bad { color: $error; }
    EvolveScreen #ev-progress-row { height: 1; margin-top: 1; }
    EvolveScreen #ev-progress { width: auto; }
    EvolveScreen #ev-progress Bar { width: 30; }
    EvolveScreen #ev-progress-text { width: 1fr; color: $text-muted; padding-left: 1; }
    EvolveScreen #ev-error { color: $error; text-style: bold; height: auto; }
    EvolveScreen #ev-result { height: auto; margin-top: 1; }
    EvolveScreen Input.ev-invalid { background: $error 35%; text-style: bold; }
    """

    def __init__(
        self,
        settings: Settings,
        data_dir: Path,
        engine: Callable[[], TradingEngine | None],
        files: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.settings = settings
        self.data_dir = data_dir
        self._engine = engine
        self._files = list(files)
        self.result: EvolutionResult | None = None

    def compose(self) -> ComposeResult:
        evo = self.settings.autonomy.evolution
        with Vertical(id="evolve-dialog", classes="dialog"):
            yield Label("Evolve bot DNA", classes="dialog-title")
            yield Static(
                f"Each DNA (strategy, parameters, pair, risk mode, capital share) is replayed on its "
                f"pair's file; fitness = return − {evo.drawdown_penalty} × max drawdown (at least "
                f"{evo.min_trades} trades). The top {_pct(evo.elite_share)} are kept, the bottom "
                f"replaced by children of two elite parents (mutation {_pct(evo.mutation_rate)} per "
                "gene). Generations go to the ledger and the Autonomy tab; no bot changes.",
                id="ev-about",
            )
            for field, label, value, hint in (
                ("ev-population", "Population", evo.population, "4-200 DNAs per generation"),
                ("ev-generations", "Generations", evo.generations, "1-1000, generation 0 included"),
                ("ev-seed", "Seed", evo.seed, "same seed and data, same generations"),
            ):
                with Horizontal(classes="ev-row"):
                    yield Label(label, classes="ev-label")
                    yield Input(str(value), compact=True, id=field, classes="ev-num")
                    yield Label(hint, classes="ev-hint")
            with Horizontal(classes="ev-row"):
                yield Label("Data files", classes="ev-label")
                yield Input(
                    ", ".join(self._files),
                    placeholder="BTC_USDT-1h.json, ETH_USDT-1h.json (one per pair)",
                    compact=True,
                    id="ev-files",
                )
            yield Static("", id="ev-file-check")
            with Horizontal(id="ev-progress-row"):
                yield ProgressBar(total=None, show_eta=False, id="ev-progress")
                yield Label("no run yet", id="ev-progress-text")
            yield Static("", id="ev-error")
            yield Static("", id="ev-result")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close  esc", id="ev-close", compact=True)
                yield Button("Run  ctrl+r", id="ev-run", variant="primary", compact=True)

    def on_mount(self) -> None:
        self._check_files()
        self.query_one("#ev-population", Input).focus()

    # -- the form --------------------------------------------------------------------------------
    def pair_timeframe(self) -> tuple[str | None, str | None]:
        """No Pair and Timeframe fields: each file's name gives them."""
        return None, None

    def request(self) -> tuple[EvolutionSettings, dict[str, tuple[str, str]]]:
        """The form as evolution settings and ``{pair: (file, timeframe)}``; raises FormError."""
        given: dict[str, object] = {}
        for field, name in FIELDS:
            text = self.query_one(f"#{field}", Input).value.strip()
            try:
                given[name] = int(text)
            except ValueError:
                raise FormError(field, f"{name}: {text!r} is not a whole number") from None
        try:
            evo = EvolutionSettings.model_validate({**self.settings.autonomy.evolution.model_dump(), **given})
        except ValidationError as exc:
            err = exc.errors()[0]
            name = str(err["loc"][0]) if err["loc"] else ""
            field = next((f for f, n in FIELDS if n == name), "")
            raise FormError(field, f"{name}: {err['msg']}") from None
        try:
            streams = streams_by_pair(self.files())
        except EvolutionUsageError as exc:
            raise FormError("ev-files", str(exc).replace("--data", "data files")) from None
        return evo, streams

    # -- the run --------------------------------------------------------------------------------
    def _start(self, request: tuple[EvolutionSettings, dict[str, tuple[str, str]]]) -> None:
        self._run(*request)

    def _set_cancel(self, running: bool) -> None:
        """No Cancel button: Close cancels a run."""
        self.query_one("#ev-close", Button).label = "Cancel  esc" if running else "Close  esc"

    @on(Button.Pressed, "#ev-close")
    def _on_close(self) -> None:
        self.action_escape()

    def _close(self) -> None:
        self.dismiss(None)

    def _progress(self, done: int, planned: int) -> None:
        self.query_one("#ev-progress", ProgressBar).update(total=max(planned, done, 1), progress=done)
        self.query_one("#ev-progress-text", Label).update(f"{done:,} / {planned:,} replays")
        self.progressed.set()

    @work(exclusive=True, group="evolve", exit_on_error=False, name="evolve")
    async def _run(self, evo: EvolutionSettings, streams: dict[str, tuple[str, str]]) -> None:
        engine = self._engine()
        space = GeneSpace(
            tuple(STRATEGIES),
            tuple(streams),
            (self.settings.market.exchange,),
            timeframes={pair: tf for pair, (_f, tf) in streams.items()},
        )
        evaluator = BacktestEvaluator(self.settings, streams, evo)
        seeds = (
            seeds_from_bots([r.rec for r in engine.runners.values()], space, evaluator.budget)
            if engine
            else []
        )
        outcome = "failed"
        conn = None
        t0 = time.perf_counter()
        try:
            conn = await asyncio.to_thread(connect, db_path(self.data_dir), check_same_thread=False)
            run = new_run_id(conn)
            with _quiet_run():
                result = await evolve(
                    evo,
                    space,
                    evaluator,
                    run=run,
                    seeds=seeds,
                    conn=conn,
                    bus=engine.bus if engine is not None else None,
                    clock=(lambda: engine.now_ms or int(time.time() * 1000)) if engine is not None else None,
                    on_progress=self._progress,
                )
        except EvolutionUsageError as exc:
            self._show_error(str(exc).replace("--data", "data files"))
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception as exc:  # a runtime failure: one line here, the traceback in the log
            log.exception("evolution run failed")
            self._show_error(
                f"evolution failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            )
        else:
            outcome = "done"
            self.result = result
            self._show(result, time.perf_counter() - t0)
        finally:
            if conn is not None:
                conn.close()
            self.running = False
            if self.is_attached:
                self._set_running(False)
                if outcome != "done":
                    self._stop_progress(f"{outcome}; the generations recorded before stay in the ledger")

    def _show(self, r: EvolutionResult, elapsed: float) -> None:
        self.query_one("#ev-progress-text", Label).update(
            f"done: {len(r.generations)} generations, {r.replays} replays in {elapsed:.1f} s"
        )
        text = Text()
        text.append(f"Run {r.run} (seed {r.seed}) recorded; the Autonomy tab shows it.\n", style="bold")
        text.append(f"{'gen':>3}  {'best':>9}  {'mean':>9}  best member\n", style="dim")
        shown = r.generations[-GENERATIONS_SHOWN:]
        if len(shown) < len(r.generations):
            text.append(f"(the last {len(shown)} of {len(r.generations)})\n", style="dim")
        for g in shown:
            text.append(
                f"{g.number:>3}  {fitness_text(g.best_fitness):>9}  {fitness_text(g.mean_fitness):>9}  "
                f"{short_member(g.best.id, r.run)}\n"
            )
        best = r.best
        text.append(f"best {short_member(best.id, r.run)} {fitness_text(best.fitness)}: ", style="bold")
        text.append(dna_text(best.dna))
        self.query_one("#ev-result", Static).update(text)


def _pct(fraction: Decimal) -> str:
    """``Decimal("0.30")`` -> ``30%``."""
    return f"{(fraction * 100).normalize():f}%"
