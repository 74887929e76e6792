"""``amarktai optimize --strategy NAME --data FILE[,FILE] [--pair P --timeframe T] [--trials N]
[--sampler tpe|nsga2] [--seed S] [--folds K] [--workers N] [--storage URL] [--study NAME]
[--exits] [--capital Q] [--json] [--apply BOT]``: an optuna study over candle files, validated
walk-forward (``autonomy.optimize``).

Defaults come from ``[autonomy.optimize]`` (trials, seed, folds, train_fraction, storage). The
study lives in optuna's storage (``sqlite:///<data dir>/optuna.sqlite3`` unless ``--storage`` or
the config names another; PostgreSQL for many machines); ``--study NAME`` creates or joins a named
study (a run on another machine against the same storage adds its trials to it), else every run
starts a new one. ``--workers N`` runs N processes sharing the study. The run and its trials are
appended to the data dir's ledger (``optimization_runs``/``optimization_trials``). Engine logs of
the backtests go to a temporary directory, never to the terminal; a progress bar is drawn on
stderr when it is a terminal.

``--apply BOT`` submits the best parameters (and exits, with ``--exits``) for the bot BOT (a
``[[bots]]`` name in the ledger running the same strategy) as a change from the ``optimizer``
through the autonomy door (``ops.autonomy_commands.submit_change``): a proposal in expert mode,
applied within ``[autonomy.bounds]`` in autonomous mode.

``--json`` keys (fractions are floats, 0.25 = 25 %; times ms UTC): ``run_id``, ``study``,
``storage`` (password masked), ``strategy``, ``sampler``, ``seed``, ``objectives``
(``["return"]`` or ``["return", "max_drawdown"]``), ``status`` (done|interrupted), ``streams``
(``[pair, timeframe]``), ``warmup`` (candles before each window), ``windows`` (per fold
``train_start``, ``train_end``, ``test_start``, ``test_end``), ``trials`` (this run's), ``study_trials``
(finished trials in the whole study), ``elapsed_s``, ``trials_per_s``, ``best`` (null or ``number``,
``params``, ``values``, ``in_sample`` and ``out_of_sample`` each ``return``/``max_drawdown`` means
and ``folds`` [{``return``, ``max_drawdown``, ``trades``}]), ``pareto`` (nsga2: the front, same
shape), ``top`` (this run's five best complete trials, same shape), ``applied`` (null or the
adjustments ``--apply`` made: ``id``, ``field``, ``status``, ``after``).

Exit codes: 0 done; 2 bad usage (unknown strategy, bad data, trials/workers < 1, a bad storage URL,
a study that exists with other settings, an unknown ``--apply`` bot or one with another strategy),
one line on stderr, nothing written; 1 a runtime failure or an interrupted run (the trials done
are recorded), one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from amarktai_tui.autonomy.optimize import (
    OptimizeRequest,
    OptimizeResult,
    ProgressFn,
    TrialResult,
    optimize,
    result_changes,
)
from amarktai_tui.autonomy.search_space import (
    OptimizeUsageError,
)
from amarktai_tui.config import Settings
from amarktai_tui.ledger.export import iso_ms
from amarktai_tui.market.errors import CandleFileError
from amarktai_tui.ops.progress import BarUpdate, progress_bar, quiet_logs
from amarktai_tui.ops.reports import pct

PROG = "amarktai optimize"


def run_optimize(args: argparse.Namespace, settings: Settings, data_dir: Path) -> int:
    """Run ``amarktai optimize``; returns the exit code (module doc)."""
    conf = settings.autonomy.optimize
    try:
        request = OptimizeRequest(
            strategy=args.strategy,
            files=tuple(f for f in args.data.split(",") if f.strip()),
            pair=args.opt_pair,
            timeframe=args.opt_timeframe,
            trials=conf.trials if args.trials is None else args.trials,
            sampler=args.sampler,
            seed=conf.seed if args.seed is None else args.seed,
            folds=conf.folds if args.folds is None else args.folds,
            train_fraction=conf.train_fraction,
            workers=args.workers,
            storage=args.storage or "",
            study=args.study,
            exits=args.exits,
            capital=args.capital,
        )
        target = _apply_target(data_dir, args.apply, request.strategy) if args.apply else None
        with (
            tempfile.TemporaryDirectory(prefix="amarktai-optimize-") as tmp,
            quiet_logs(Path(tmp)),
            progress_bar("optimize", "trials  best {task.fields[best]}", best="-") as bar,
        ):
            progress = _trial_progress(bar)
            result = optimize(settings, data_dir, request, work_dir=Path(tmp), on_progress=progress)
    except (OptimizeUsageError, CandleFileError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a runtime failure: one line, no traceback (the run is recorded failed)
        print(
            f"{PROG}: failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr
        )
        return 1
    applied: list[dict[str, Any]] | None = None
    code = 0
    if target is not None and result.best is not None and result.status == "done":
        try:
            applied = _apply(settings, data_dir, target, result)
        except Exception as exc:
            print(f"{PROG}: --apply {args.apply}: {str(exc).splitlines()[0]}", file=sys.stderr)
            code = 1
    if args.json:
        json.dump(to_json(result, applied), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write("\n".join(table_lines(result, applied)) + "\n")
    if result.status == "interrupted":
        print(f"{PROG}: interrupted after {len(result.trials)} trials (run {result.run_id})", file=sys.stderr)
        return 1
    return code


def _apply_target(data_dir: Path, name: str, strategy: str) -> int:
    """The id of bot ``name`` in the ledger; OptimizeUsageError when it is unknown or runs another
    strategy (checked before the study, so a long run is not wasted)."""
    from amarktai_tui.ledger import reader
    from amarktai_tui.ledger.schema import connect_readonly
    from amarktai_tui.locations import db_path

    try:
        conn = connect_readonly(str(db_path(data_dir)))
    except FileNotFoundError:
        raise OptimizeUsageError(f"--apply {name}: no ledger in {data_dir} (no bots yet)") from None
    try:
        bots = {b.name: b for b in reader.bots(conn)}
    except sqlite3.Error as exc:
        raise OptimizeUsageError(f"--apply {name}: cannot read the ledger: {exc}") from None
    finally:
        conn.close()
    bot = bots.get(name)
    if bot is None:
        raise OptimizeUsageError(f"--apply: unknown bot {name!r}; bots: {', '.join(sorted(bots)) or 'none'}")
    if bot.strategy != strategy:
        raise OptimizeUsageError(f"--apply {name}: the bot runs {bot.strategy}, not {strategy}")
    return bot.id


def _apply(settings: Settings, data_dir: Path, bot_id: int, r: OptimizeResult) -> list[dict[str, Any]]:
    """Submit the best trial's params (and exits) as optimizer changes; the adjustments made."""
    from amarktai_tui.ops.autonomy_commands import submit_change

    best = r.best
    assert best is not None
    why = (
        f"optuna study {r.study_name} trial {best.number} ({r.sampler}, seed {r.seed}): "
        f"walk-forward in-sample return {pct(best.train_return, 2)}, "
        f"out-of-sample {pct(best.test_return, 2)} over {len(r.windows)} folds"
    )
    out = []
    for change in result_changes(bot_id, best, why):
        adj = submit_change(settings, data_dir, change)
        out.append({"id": adj.id, "field": adj.field, "status": adj.status, "after": _plain(adj.after)})
    return out


def _plain(v: Any) -> Any:
    return str(v) if isinstance(v, Decimal) else v


def _trial_progress(bar: BarUpdate | None) -> ProgressFn | None:
    """The study reports (trials finished, trials asked, best return so far as a fraction)."""
    if bar is None:
        return None

    def update(done: int, total: int, best: float | None) -> None:
        bar(done, total, best="-" if best is None else f"{best * 100:+.2f} %")

    return update


# -- output ------------------------------------------------------------------------------------


def trial_json(t: TrialResult) -> dict[str, Any]:
    """One trial: number, params, values, in_sample / out_of_sample means and folds, state."""
    return {
        "number": t.number,
        "params": t.params,
        "values": t.values,
        "state": t.state,
        "worker": t.worker,
        "in_sample": {
            "return": t.train_return,
            "max_drawdown": t.train_max_drawdown,
            "folds": [s.as_dict() for s in t.train],
        },
        "out_of_sample": {
            "return": t.test_return,
            "max_drawdown": t.test_max_drawdown,
            "folds": [s.as_dict() for s in t.test],
        },
    }


def top_trials(r: OptimizeResult, n: int = 5) -> list[TrialResult]:
    """This run's ``n`` best complete trials by in-sample return (ties: lowest number)."""
    done = [t for t in r.trials if t.state == "complete" and t.values]
    return sorted(done, key=lambda t: (-(t.values or [0.0])[0], t.number))[:n]


def to_json(r: OptimizeResult, applied: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The result as one JSON-ready object (keys in the module doc)."""
    return {
        "run_id": r.run_id,
        "study": r.study_name,
        "storage": r.storage,
        "strategy": r.strategy,
        "sampler": r.sampler,
        "seed": r.seed,
        "objectives": list(r.objectives),
        "status": r.status,
        "streams": [list(s) for s in r.streams],
        "warmup": r.warmup,
        "windows": [w._asdict() for w in r.windows],
        "trials": len(r.trials),
        "study_trials": r.study_trials,
        "elapsed_s": r.elapsed_s,
        "trials_per_s": len(r.trials) / r.elapsed_s if r.elapsed_s > 0 else None,
        "best": None if r.best is None else trial_json(r.best),
        "pareto": [trial_json(t) for t in r.pareto],
        "top": [trial_json(t) for t in top_trials(r)],
        "applied": applied,
    }


def _day(ms: int) -> str:
    return iso_ms(ms)[:16].replace("T", " ")


def _signed(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.2f} %"


def _params(p: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items())


def table_lines(r: OptimizeResult, applied: list[dict[str, Any]] | None = None) -> list[str]:
    """The human-readable report: headline, windows, best trial per fold, top trials, Pareto front."""
    streams = "; ".join(f"{p} {tf}" for p, tf in r.streams)
    rate = f"{len(r.trials) / r.elapsed_s:.2f} trials/s" if r.elapsed_s > 0 else "-"
    out = [
        f"Optimised {r.strategy} on {streams}: {len(r.trials)} trials ({r.sampler}, seed {r.seed}) "
        f"in {r.elapsed_s:.1f} s ({rate}); study {r.study_name} has {r.study_trials} trials",
        f"Storage {r.storage}; recorded as optimisation run {r.run_id}",
        f"Walk-forward: {len(r.windows)} folds, each a train window then a test window "
        f"(after {r.warmup} warm-up candles)",
    ]
    for i, w in enumerate(r.windows, 1):
        out.append(
            f"  fold {i}: train {_day(w.train_start)} to {_day(w.train_end)}, "
            f"test {_day(w.test_start)} to {_day(w.test_end)} UTC"
        )
    out.append("")
    b = r.best
    if b is None:
        out.append("No trial completed.")
    else:
        out.append(f"Best by in-sample score: trial {b.number}: {_params(b.params)}")
        out.append(
            f"  {'':8}{'IN-SAMPLE':>12}{'MAX DD':>9}{'TRADES':>8}  {'OUT-OF-SAMPLE':>14}{'MAX DD':>9}{'TRADES':>8}"
        )
        for i, (tr, te) in enumerate(zip(b.train, b.test, strict=False), 1):
            out.append(
                f"  fold {i:<3}{_signed(tr.return_):>12}{pct(tr.max_drawdown):>9}{tr.trades:>8}  "
                f"{_signed(te.return_):>14}{pct(te.max_drawdown):>9}{te.trades:>8}"
            )
        out.append(
            f"  {'mean':<8}{_signed(b.train_return):>12}{pct(b.train_max_drawdown):>9}{'':>8}  "
            f"{_signed(b.test_return):>14}{pct(b.test_max_drawdown):>9}"
        )
    if r.pareto:
        out += ["", f"Pareto front ({len(r.pareto)}: in-sample return up, max drawdown down)"]
        out += [_trial_line(t) for t in r.pareto]
    top = top_trials(r)
    if top:
        out += ["", "This run's best trials (in-sample return; out-of-sample return)"]
        out += [_trial_line(t) for t in top]
    if applied:
        out += [""] + [f"--apply: {a['field']} -> {a['status']} (adjustment {a['id']})" for a in applied]
    return out


def _trial_line(t: TrialResult) -> str:
    return (
        f"  #{t.number:<4} {_signed(t.train_return):>9} dd {pct(t.train_max_drawdown):>7}   "
        f"test {_signed(t.test_return):>9} dd {pct(t.test_max_drawdown):>7}   {_params(t.params)}"
    )
