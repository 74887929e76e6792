"""Parameter optimisation with optuna, validated walk-forward (``amarktai optimize``).

A study searches one strategy's parameters over candle files:

- **Space** (``autonomy.search_space``): the strategy's ``SEARCH`` ranges (its ParamSpec bounds
  where it declares none), choices over all their values, constrained ranges sampled in order;
  with ``exits``, the bots' ``stop_loss`` and ``take_profit`` too, within ``[autonomy.bounds]``.
- **Walk-forward** (``autonomy.walkforward``): the data range, after the warm-up the strategy
  needs at the top of its search ranges, is cut into ``folds`` blocks, each a train window then a
  test window. A trial backtests its parameters (``ops.backtest.run_backtest``, the replay path:
  same strategies, gates, breakers and paper broker) on every TRAIN window: its objective values
  are the means over the folds. It also backtests every TEST window and stores those figures as
  the trial's out-of-sample score (user attrs ``test``): never seen by the sampler. Each window's
  backtest warms its strategy up on the candles just before the window (no orders) and trades
  from the window's first candle (``BacktestRequest.trade_from_ms``).
- **Objectives**: ``tpe`` (``TPESampler(seed)``): maximise the mean train return (total profit /
  capital, a fraction). ``nsga2`` (``NSGAIISampler(seed)``): maximise that return and minimise the
  mean train max drawdown (a fraction); the result's choice from the Pareto front is the trial
  with the highest return - max drawdown (in-sample).
- **Storage**: optuna's ``RDBStorage``: ``sqlite:///<data dir>/optuna.sqlite3`` by default, or
  ``[autonomy.optimize] storage`` / ``--storage`` (PostgreSQL for workers on many machines).
  ``workers`` > 1 starts that many processes (multiprocessing, spawn) that load the study from
  the storage and share the trials; worker ``i`` seeds its sampler with ``seed + i``.
  Reproducible: the same seed with one worker gives the same trials and the same best params.
- **Ledger** (``autonomy.optimize_store``): the run and its trials are appended to
  ``optimization_runs`` / ``optimization_trials`` in the data dir's ledger when the run ends
  (done, failed or interrupted), in one transaction.

Errors: ``OptimizeUsageError`` (one line: unknown strategy, bad data, trials or workers < 1, a
bad storage URL, a study that exists with other settings) and ``market.errors.CandleFileError``
are bad usage, raised before any study or ledger row is written; anything else is a runtime
failure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from amarktai_tui.autonomy.optimize_store import record_run
from amarktai_tui.autonomy.search_space import (
    EXITS,
    Dim,
    OptimizeUsageError,
    search_space,
    suggest,
    warmup_candles,
)
from amarktai_tui.autonomy.walkforward import Window, walk_forward_windows
from amarktai_tui.domain.types import Candle, timeframe_to_ms
from amarktai_tui.ops.backtest import BacktestRequest, BacktestResult, BacktestUsageError, run_backtest
from amarktai_tui.strategies.base import StrategyParamError

if TYPE_CHECKING:
    import optuna

    from amarktai_tui.autonomy.changes import Change
    from amarktai_tui.config import Settings

log = logging.getLogger(__name__)

Sampler = Literal["tpe", "nsga2"]
OBJECTIVES: dict[str, tuple[str, ...]] = {"tpe": ("return",), "nsga2": ("return", "max_drawdown")}
DIRECTIONS: dict[str, list[Literal["maximize", "minimize"]]] = {
    "tpe": ["maximize"],
    "nsga2": ["maximize", "minimize"],
}
STORAGE_FILE = "optuna.sqlite3"
ProgressFn = Callable[[int, int, "float | None"], None]
"""``(trials finished in this run, trials asked, best in-sample return so far or None)``."""


@dataclass(frozen=True, slots=True)
class OptimizeRequest:
    """What to optimise (module doc). ``trials``: trials this run adds to the study, split
    between ``workers`` processes; ``storage``: an optuna storage URL ("" = the data dir's SQLite
    file); ``study``: a study name to create or join (None = a new name); ``exits``: also search
    stop-loss and take-profit; ``capital`` per bot in quote (None = the ``[[bots]]`` default)."""

    strategy: str
    files: tuple[str, ...]
    pair: str | None = None
    timeframe: str | None = None
    trials: int = 100
    sampler: Sampler = "tpe"
    seed: int = 42
    folds: int = 3
    train_fraction: Decimal = Decimal("0.7")
    workers: int = 1
    storage: str = ""
    study: str | None = None
    exits: bool = False
    capital: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Score:
    """One backtest window: ``return_`` total profit / capital and ``max_drawdown`` (fractions),
    closed ``trades``."""

    return_: float
    max_drawdown: float
    trades: int

    def as_dict(self) -> dict[str, Any]:
        return {"return": self.return_, "max_drawdown": self.max_drawdown, "trades": self.trades}


@dataclass(frozen=True, slots=True)
class TrialResult:
    """One optuna trial: ``params`` (strategy params, plus ``stop_loss``/``take_profit`` as
    decimal strings when exits are searched), ``values`` (the in-sample objectives, see
    ``OBJECTIVES``), ``train``/``test`` one Score per fold, ``state`` complete|pruned|fail,
    ``worker`` host:pid, ``ts`` ms UTC of its end (wall)."""

    number: int
    params: dict[str, Any]
    values: list[float] | None
    train: list[Score]
    test: list[Score]
    state: str
    worker: str
    ts: int

    @property
    def train_return(self) -> float | None:
        return _mean([s.return_ for s in self.train])

    @property
    def train_max_drawdown(self) -> float | None:
        return _mean([s.max_drawdown for s in self.train])

    @property
    def test_return(self) -> float | None:
        return _mean([s.return_ for s in self.test])

    @property
    def test_max_drawdown(self) -> float | None:
        return _mean([s.max_drawdown for s in self.test])


@dataclass(frozen=True, slots=True)
class Fold:
    """One walk-forward fold: its ``window`` (ms UTC) and the sliced candle files of each side."""

    window: Window
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Prepared:
    """The study's data: per-stream ``streams`` (pair, timeframe), the ``warmup`` candles kept
    before every window, the folds with their files (in ``work_dir``)."""

    streams: list[tuple[str, str]]
    warmup: int
    folds: list[Fold]
    work_dir: Path


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a worker process needs (picklable): the study, the data, the seed of its sampler."""

    settings: Settings
    request: OptimizeRequest
    prepared: Prepared
    storage_url: str
    study_name: str
    run_token: str
    seed: int
    trials: int
    log_file: str
    error_file: str


@dataclass(frozen=True, slots=True)
class OptimizeResult:
    """A finished run (module doc). ``run_id``: its ``optimization_runs`` row; ``storage`` the URL
    with the password masked; ``trials`` this run's trials (oldest first); ``study_trials`` all
    finished trials in the study (other runs and machines included); ``best`` the best complete
    trial of the whole study by in-sample score (nsga2: the chosen Pareto member), None when none
    completed; ``pareto`` (nsga2) the study's Pareto front; ``status`` done|failed|interrupted."""

    run_id: int
    study_name: str
    storage: str
    strategy: str
    sampler: str
    seed: int
    objectives: tuple[str, ...]
    streams: list[tuple[str, str]]
    warmup: int
    windows: list[Window]
    trials: list[TrialResult]
    study_trials: int
    best: TrialResult | None
    pareto: list[TrialResult]
    elapsed_s: float
    status: str
    error: str | None = None


def result_changes(bot_id: int, best: TrialResult, why: str) -> list[Change]:
    """What applying ``best`` to bot ``bot_id`` submits (source ``optimizer``): its strategy
    parameters as one ``params`` change, then, when exits were searched, ``stop_loss`` and
    ``take_profit`` (Decimal fractions), each with the reason ``why``."""
    from amarktai_tui.autonomy.changes import Change

    params = {k: v for k, v in best.params.items() if k not in EXITS}
    changes = [Change(bot_id, "optimizer", "params", params, why)]
    changes += [
        Change(bot_id, "optimizer", k, Decimal(best.params[k]), why) for k in EXITS if k in best.params
    ]
    return changes


def _mean(xs: Sequence[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


# -- data --------------------------------------------------------------------------------------


def prepare(request: OptimizeRequest, dims: Sequence[Dim], work_dir: Path) -> Prepared:
    """Load the candle files, cut the walk-forward windows and write each window's slice (with
    its warm-up candles before it) into ``work_dir`` as freqtrade JSON named ``BASE_QUOTE-TF.json``.

    Raises CandleFileError (a missing or malformed file) or OptimizeUsageError (two files of one
    stream, or too little data for the folds after the warm-up).
    """
    from amarktai_tui.market.loaders import load_candles

    if not request.files:
        raise OptimizeUsageError("--data needs at least one candle file")
    loaded: dict[tuple[str, str], list[Candle]] = {}
    for f in request.files:
        candles = load_candles(f, request.pair, request.timeframe)
        key = (candles[0].pair, candles[0].timeframe)
        if key in loaded:
            raise OptimizeUsageError(f"--data: {key[0]} {key[1]} is given twice")
        loaded[key] = candles
    warmup = warmup_candles(request.strategy, dims)
    step = max(timeframe_to_ms(tf) for _, tf in loaded)
    first = max(c[0].ts + warmup * timeframe_to_ms(c[0].timeframe) for c in loaded.values())
    last = min(c[-1].ts + timeframe_to_ms(c[-1].timeframe) for c in loaded.values())
    start = -(-first // step) * step
    try:
        windows = walk_forward_windows(start, last - last % step, request.folds, request.train_fraction, step)
    except ValueError as exc:
        raise OptimizeUsageError(
            f"--data: too little data for {request.folds} folds after {warmup} warm-up candles ({exc})"
        ) from None
    folds = []
    for i, w in enumerate(windows):
        train = _write_slices(loaded, w.train_start, w.train_end, warmup, work_dir / f"fold{i}-train")
        test = _write_slices(loaded, w.test_start, w.test_end, warmup, work_dir / f"fold{i}-test")
        folds.append(Fold(w, train, test))
    return Prepared(list(loaded), warmup, folds, work_dir)


def _write_slices(
    loaded: Mapping[tuple[str, str], list[Candle]], start: int, end: int, warmup: int, folder: Path
) -> tuple[str, ...]:
    import bisect

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for (pair, tf), candles in loaded.items():
        ts = [c.ts for c in candles]
        lo = bisect.bisect_left(ts, start - warmup * timeframe_to_ms(tf))
        first, hi = bisect.bisect_left(ts, start), bisect.bisect_left(ts, end)
        if hi <= first:
            raise OptimizeUsageError(f"--data: {pair} {tf} has no candles in a walk-forward window (a gap)")
        path = folder / f"{pair.replace('/', '_')}-{tf}.json"
        rows = [[c.ts, c.open, c.high, c.low, c.close, c.volume] for c in candles[lo:hi]]
        path.write_text(json.dumps(rows), encoding="utf-8")
        out.append(str(path))
    return tuple(out)


# -- one trial ---------------------------------------------------------------------------------


def score(result: BacktestResult) -> Score:
    """A backtest's return (total / capital), max drawdown (0 without an equity curve), trades."""
    f = result.figures
    ret = float(f.total / f.capital) if f.capital else 0.0
    return Score(ret, float(f.stats.max_drawdown or 0.0), f.stats.trades)


async def evaluate(
    settings: Settings, request: OptimizeRequest, prepared: Prepared, point: Mapping[str, Any]
) -> tuple[list[Score], list[Score]]:
    """Backtest ``point`` (params and exits) on every fold's train and test windows."""
    params = {k: v for k, v in point.items() if k not in EXITS}
    train: list[Score] = []
    test: list[Score] = []
    for fold in prepared.folds:
        for files, start, into in (
            (fold.train_files, fold.window.train_start, train),
            (fold.test_files, fold.window.test_start, test),
        ):
            bt = BacktestRequest(
                strategy=request.strategy,
                files=files,
                params=params,
                capital=request.capital,
                stop_loss=point.get("stop_loss"),
                take_profit=point.get("take_profit"),
                trade_from_ms=start,
            )
            with tempfile.TemporaryDirectory(prefix="bt-", dir=prepared.work_dir) as run_dir:
                into.append(score(await run_backtest(settings, bt, Path(run_dir))))
    return train, test


def _objective(
    settings: Settings, request: OptimizeRequest, prepared: Prepared, dims: Sequence[Dim], run_token: str
) -> Callable[[optuna.Trial], float | tuple[float, float]]:
    import optuna

    worker = f"{os.uname().nodename}:{os.getpid()}"

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        trial.set_user_attr("run", run_token)
        trial.set_user_attr("worker", worker)
        trial.set_user_attr("pid", os.getpid())
        point = suggest(trial, dims)
        try:
            train, test = asyncio.run(evaluate(settings, request, prepared, point))
        except (StrategyParamError, BacktestUsageError) as exc:
            raise optuna.TrialPruned(str(exc)) from None
        trial.set_user_attr("train", [s.as_dict() for s in train])
        trial.set_user_attr("test", [s.as_dict() for s in test])
        ret = statistics.fmean(s.return_ for s in train)
        if request.sampler == "nsga2":
            return ret, statistics.fmean(s.max_drawdown for s in train)
        return ret

    return objective


def make_sampler(sampler: str, seed: int, trials: int) -> optuna.samplers.BaseSampler:
    """``TPESampler(seed=seed, constant_liar=True)`` (concurrent workers see each other's running
    trials as bad results, so they do not all sample the same spot; no effect with one worker), or
    ``NSGAIISampler(seed=seed)`` with a population of ``trials // 4`` clamped to 4..50 (several
    generations even in a short study)."""
    import optuna

    if sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=min(50, max(4, trials // 4)))
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)  # workers: no two on one point


# -- storage and study -------------------------------------------------------------------------


def storage_url(request: OptimizeRequest, settings: Settings, data_dir: Path) -> str:
    """``--storage``, else ``[autonomy.optimize] storage``, else the data dir's SQLite file (the
    data dir is created then)."""
    url = request.storage or settings.autonomy.optimize.storage
    if url:
        return url
    data_dir.mkdir(parents=True, exist_ok=True)  # the ledger of the run goes there too
    return f"sqlite:///{(data_dir / STORAGE_FILE).absolute()}"


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (for messages and the ledger)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """optuna's RDBStorage at ``url`` (tables created on first use). SQLite waits up to 60 s for a
    lock held by another worker. Raises OptimizeUsageError naming the (masked) URL when it is
    malformed, its driver is missing or the database cannot be opened."""
    import optuna
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        raise OptimizeUsageError(f"--storage: not a database URL: {mask_url(url)!r}") from None
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and parsed.database and parsed.database != ":memory:":
        folder = Path(parsed.database).parent
        if not folder.is_dir():
            raise OptimizeUsageError(f"--storage {mask_url(url)}: no such directory {folder}")
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OptimizeUsageError(f"--storage {mask_url(url)}: cannot open: {first}") from None


def study_config(request: OptimizeRequest, prepared: Prepared) -> dict[str, Any]:
    """What must match for a run to join an existing study: strategy, sampler, exits, the
    streams, the warm-up and the windows (not file paths: other machines have their own)."""
    return {
        "strategy": request.strategy,
        "sampler": request.sampler,
        "exits": request.exits,
        "streams": [list(s) for s in prepared.streams],
        "warmup": prepared.warmup,
        "windows": [list(f.window) for f in prepared.folds],
    }


def open_study(
    storage: optuna.storages.RDBStorage, name: str, request: OptimizeRequest, prepared: Prepared
) -> optuna.Study:
    """Create the study ``name``, or join it when it exists with the same config (``study_config``).

    Raises OptimizeUsageError when it exists with other settings.
    """
    import optuna

    config = study_config(request, prepared)
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=DIRECTIONS[request.sampler],
        sampler=make_sampler(request.sampler, request.seed, request.trials),
        load_if_exists=True,
    )
    found = study.user_attrs.get("config")
    if found is None:
        study.set_user_attr("config", config)
    elif found != config:
        diff = ", ".join(k for k in config if found.get(k) != config[k])
        raise OptimizeUsageError(f"--study {name}: exists with other settings ({diff} differ)")
    if [d.name.lower() for d in study.directions] != DIRECTIONS[request.sampler]:
        raise OptimizeUsageError(f"--study {name}: exists with other objectives")
    return study


def run_trials(
    settings: Settings,
    request: OptimizeRequest,
    prepared: Prepared,
    study: optuna.Study,
    run_token: str,
    trials: int,
    on_trial: Callable[[], None] | None = None,
) -> None:
    """Run ``trials`` trials of ``study`` in this process (a worker's whole job)."""
    dims = search_space(request.strategy, settings.autonomy.bounds if request.exits else None)
    callbacks = [lambda _s, _t: on_trial()] if on_trial is not None else None
    study.optimize(
        _objective(settings, request, prepared, dims, run_token), n_trials=trials, callbacks=callbacks
    )


def worker_main(spec: WorkerSpec) -> None:
    """A worker process (spawned): join the study, run its trials, exit 0; on an error write one
    line to ``spec.error_file`` and exit 1."""
    import sys

    import optuna

    logging.basicConfig(
        filename=spec.log_file, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = open_storage(spec.storage_url)
        study = optuna.load_study(
            study_name=spec.study_name,
            storage=storage,
            sampler=make_sampler(spec.request.sampler, spec.seed, spec.request.trials),
        )
        run_trials(spec.settings, spec.request, spec.prepared, study, spec.run_token, spec.trials)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        Path(spec.error_file).write_text(f"{type(exc).__name__}: {exc}".splitlines()[0], encoding="utf-8")
        sys.exit(1)


# -- results -----------------------------------------------------------------------------------


def trial_result(t: optuna.trial.FrozenTrial) -> TrialResult:
    """A stored trial as a TrialResult (exits as decimal strings in ``params``)."""

    def scores(key: str) -> list[Score]:
        return [Score(s["return"], s["max_drawdown"], s["trades"]) for s in t.user_attrs.get(key, [])]

    params = {k: (str(Decimal(str(round(v, 4)))) if k in EXITS else v) for k, v in t.params.items()}
    end = t.datetime_complete or t.datetime_start
    return TrialResult(
        number=t.number,
        params=params,
        values=list(t.values) if t.values is not None else None,
        train=scores("train"),
        test=scores("test"),
        state=t.state.name.lower(),
        worker=str(t.user_attrs.get("worker", "")),
        ts=int(end.timestamp() * 1000) if end else _now_ms(),  # optuna's naive local time
    )


def best_trials(study: optuna.Study, sampler: str) -> tuple[TrialResult | None, list[TrialResult]]:
    """``(best, pareto)``: tpe: the best trial, []; nsga2: the Pareto member with the highest
    return - max drawdown (in-sample; ties: lowest number), the front by number."""
    import optuna

    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return None, []
    if sampler == "nsga2":
        front = sorted((trial_result(t) for t in study.best_trials), key=lambda r: r.number)
        best = max(front, key=lambda r: (_fitness(r), -r.number))
        return best, front
    return trial_result(study.best_trial), []


def _fitness(r: TrialResult) -> float:
    return (r.values[0] - r.values[1]) if r.values and len(r.values) == 2 else float("-inf")


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- the run -----------------------------------------------------------------------------------


def check_request(request: OptimizeRequest) -> None:
    """Raise OptimizeUsageError for trials or workers < 1, folds outside 1..20, a train fraction
    outside (0, 1) or an unknown sampler."""
    if request.trials < 1:
        raise OptimizeUsageError(f"--trials must be >= 1, got {request.trials}")
    if request.workers < 1:
        raise OptimizeUsageError(f"--workers must be >= 1, got {request.workers}")
    if not 1 <= request.folds <= 20:
        raise OptimizeUsageError(f"--folds must be 1 to 20, got {request.folds}")
    if not 0 < request.train_fraction < 1:
        raise OptimizeUsageError(f"train fraction must be between 0 and 1, got {request.train_fraction}")
    if request.sampler not in OBJECTIVES:
        raise OptimizeUsageError(f"--sampler must be tpe or nsga2, got {request.sampler!r}")


def optimize(
    settings: Settings,
    data_dir: Path,
    request: OptimizeRequest,
    *,
    work_dir: Path,
    on_progress: ProgressFn | None = None,
) -> OptimizeResult:
    """Run ``request`` (module doc) with its data slices in ``work_dir`` (an empty temporary
    directory the caller removes), record it in the data dir's ledger and return the result.

    ``on_progress(finished, asked, best return)`` is called after every trial (one worker) or
    about twice a second (several). A KeyboardInterrupt ends the run as ``interrupted`` (its
    finished trials recorded). Raises OptimizeUsageError or CandleFileError before anything is
    written; a runtime failure is recorded as ``failed`` and then raised.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check_request(request)
    dims = search_space(request.strategy, settings.autonomy.bounds if request.exits else None)
    prepared = prepare(request, dims, work_dir)
    url = storage_url(request, settings, data_dir)
    storage = open_storage(url)
    token = uuid.uuid4().hex
    name = request.study or f"{request.strategy}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{token[:6]}"
    study = open_study(storage, name, request, prepared)
    started, t0 = _now_ms(), time.perf_counter()
    status, error = "done", None
    try:
        if request.workers == 1:
            finished = [0]

            def one_done() -> None:
                finished[0] += 1
                if on_progress is not None:
                    on_progress(finished[0], request.trials, _best_return(study))

            run_trials(settings, request, prepared, study, token, request.trials, one_done)
        else:
            _run_workers(settings, request, prepared, url, name, token, on_progress, study)
    except KeyboardInterrupt:
        status = "interrupted"
    except Exception as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0]
    mine = [trial_result(t) for t in study.get_trials(deepcopy=False) if t.user_attrs.get("run") == token]
    mine = [t for t in mine if t.state in ("complete", "pruned", "fail")]
    best, pareto = best_trials(study, request.sampler)
    result = OptimizeResult(
        run_id=0,
        study_name=name,
        storage=mask_url(url),
        strategy=request.strategy,
        sampler=request.sampler,
        seed=request.seed,
        objectives=OBJECTIVES[request.sampler],
        streams=prepared.streams,
        warmup=prepared.warmup,
        windows=[f.window for f in prepared.folds],
        trials=sorted(mine, key=lambda t: t.number),
        study_trials=len([t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]),
        best=best,
        pareto=pareto,
        elapsed_s=time.perf_counter() - t0,
        status=status,
        error=error,
    )
    result = replace(result, run_id=record_run(data_dir, request, result, started))
    if status == "failed":
        raise RuntimeError(error)
    return result


def _best_return(study: optuna.Study) -> float | None:
    import optuna

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max((t.values[0] for t in done if t.values), default=None)


def _run_workers(
    settings: Settings,
    request: OptimizeRequest,
    prepared: Prepared,
    url: str,
    name: str,
    token: str,
    on_progress: ProgressFn | None,
    study: optuna.Study,
) -> None:
    """Spawn the worker processes, wait for them (reporting progress), raise if one failed."""
    ctx = multiprocessing.get_context("spawn")
    n, w = request.trials, request.workers
    shares = [n // w + (1 if i < n % w else 0) for i in range(w)]
    procs = []
    for i, share in enumerate(shares):
        if not share:
            continue
        spec = WorkerSpec(
            settings=settings,
            request=request,
            prepared=prepared,
            storage_url=url,
            study_name=name,
            run_token=token,
            seed=request.seed + i,
            trials=share,
            log_file=str(prepared.work_dir / f"worker-{i}.log"),
            error_file=str(prepared.work_dir / f"worker-{i}.err"),
        )
        p = ctx.Process(target=worker_main, args=(spec,), name=f"optimize-worker-{i}")
        p.start()
        procs.append((p, spec))
    try:
        while any(p.is_alive() for p, _ in procs):
            if on_progress is not None:
                done = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("run") == token]
                finished = sum(1 for t in done if t.state.is_finished())
                on_progress(finished, n, _best_return(study))
            for p, _ in procs:
                p.join(timeout=0.5 / len(procs))
    except KeyboardInterrupt:
        for p, _ in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
        raise
    failed = [(p, s) for p, s in procs if p.exitcode != 0]
    if failed:
        p, s = failed[0]
        err = Path(s.error_file)
        why = err.read_text(encoding="utf-8") if err.exists() else f"exit code {p.exitcode}"
        raise RuntimeError(f"worker {p.name} failed: {why}")
