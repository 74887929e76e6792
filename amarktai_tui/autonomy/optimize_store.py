"""The ledger's record of optimisation runs: ``optimization_runs`` and ``optimization_trials``
(schema v7), appended when a run ends (done, failed or interrupted), in one transaction."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amarktai_tui.ledger.schema import configure, migrate
from amarktai_tui.locations import db_path

if TYPE_CHECKING:
    from amarktai_tui.autonomy.optimize import OptimizeRequest, OptimizeResult, TrialResult


def record_run(data_dir: Path, request: OptimizeRequest, r: OptimizeResult, started_ts: int) -> int:
    """Append the run and its trials to the data dir's ledger in one transaction; its run id."""

    def values(t: TrialResult | None) -> dict[str, Any] | None:
        if t is None:
            return None
        return {
            "trial": t.number,
            "in_sample": {"return": t.train_return, "max_drawdown": t.train_max_drawdown},
            "out_of_sample": {"return": t.test_return, "max_drawdown": t.test_max_drawdown},
        }

    data = {
        "files": list(request.files),
        "pair": request.pair,
        "timeframe": request.timeframe,
        "streams": [list(s) for s in r.streams],
        "folds": request.folds,
        "train_fraction": str(request.train_fraction),
        "warmup": r.warmup,
        "exits": request.exits,
        "windows": [w._asdict() for w in r.windows],
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(db_path(data_dir), timeout=30)) as conn:
        configure(conn)
        migrate(conn)
        with conn:
            cur = conn.execute(
                "INSERT INTO optimization_runs (study_name, storage, strategy, objectives, sampler, seed,"
                " data_json, n_trials, workers, started_ts, finished_ts, status, best_params_json,"
                " best_values_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r.study_name,
                    r.storage,
                    r.strategy,
                    json.dumps(list(r.objectives)),
                    r.sampler,
                    r.seed,
                    json.dumps(data),
                    request.trials,
                    request.workers,
                    started_ts,
                    int(time.time() * 1000),
                    r.status,
                    None if r.best is None else json.dumps(r.best.params),
                    None if r.best is None else json.dumps(values(r.best)),
                ),
            )
            run_id = int(cur.lastrowid or 0)
            conn.executemany(
                "INSERT INTO optimization_trials (run_id, number, params_json, values_json, test_json, state, ts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        run_id,
                        t.number,
                        json.dumps(t.params),
                        None if t.values is None else json.dumps(t.values),
                        json.dumps(
                            {
                                "folds": [s.as_dict() for s in t.test],
                                "return": t.test_return,
                                "max_drawdown": t.test_max_drawdown,
                            }
                        ),
                        t.state,
                        t.ts,
                    )
                    for t in r.trials
                ],
            )
    return run_id
