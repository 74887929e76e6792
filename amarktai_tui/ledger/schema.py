"""SQLite schema and migrations (PRAGMA user_version).

Money columns are TEXT holding ``str(Decimal)``; never REAL. ``fills`` and
``ledger_events`` are append-only: triggers reject UPDATE and DELETE, so a
correction is a new row. Timestamps are INTEGER ms since the epoch, UTC.

Each entry of ``MIGRATIONS`` moves the database from version i to i+1; the
function ``migrate`` applies the missing ones in one transaction each.
"""

from __future__ import annotations

import sqlite3

DB_FILENAME = "amarktai.sqlite3"

_V1 = """
CREATE TABLE bots (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    exchange        TEXT NOT NULL,
    pair            TEXT NOT NULL,
    timeframe       TEXT NOT NULL,
    strategy        TEXT NOT NULL,
    params_json     TEXT NOT NULL DEFAULT '{}',
    risk_mode       TEXT NOT NULL,
    capital         TEXT NOT NULL,
    stop_loss       TEXT,              -- fraction below entry, e.g. '0.05'
    take_profit     TEXT,              -- fraction above entry
    trailing_stop   TEXT,              -- fraction below the peak since entry
    state           TEXT NOT NULL,     -- BotState
    state_reason    TEXT NOT NULL DEFAULT '',
    stage           TEXT NOT NULL,     -- LifecycleStage
    last_candle_ts  INTEGER,           -- open time of the last candle the bot acted on
    created_ts      INTEGER NOT NULL,
    updated_ts      INTEGER NOT NULL
);

CREATE TABLE orders (
    id                INTEGER PRIMARY KEY,
    client_order_id   TEXT NOT NULL UNIQUE,
    bot_id            INTEGER NOT NULL REFERENCES bots(id),
    exchange          TEXT NOT NULL,
    pair              TEXT NOT NULL,
    side              TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    order_type        TEXT NOT NULL CHECK (order_type IN ('market', 'limit')),
    quantity          TEXT NOT NULL,
    limit_price       TEXT,
    state             TEXT NOT NULL CHECK (state IN
                        ('pending', 'open', 'filled', 'cancelled', 'rejected', 'expired')),
    reason            TEXT NOT NULL DEFAULT '',   -- why the bot wanted it
    reject_reason     TEXT NOT NULL DEFAULT '',   -- why it was refused / cancelled
    exchange_order_id TEXT,
    decision_ts       INTEGER NOT NULL,
    edge_bps          REAL NOT NULL DEFAULT 0,
    created_ts        INTEGER NOT NULL,
    updated_ts        INTEGER NOT NULL
);
CREATE INDEX orders_state ON orders(state);
CREATE INDEX orders_bot ON orders(bot_id);

CREATE TABLE fills (
    id               INTEGER PRIMARY KEY,
    fill_id          TEXT NOT NULL UNIQUE,
    client_order_id  TEXT NOT NULL REFERENCES orders(client_order_id),
    bot_id           INTEGER NOT NULL REFERENCES bots(id),
    exchange         TEXT NOT NULL,
    pair             TEXT NOT NULL,
    side             TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity         TEXT NOT NULL,
    price            TEXT NOT NULL,
    fee              TEXT NOT NULL,
    fee_currency     TEXT NOT NULL,
    liquidity        TEXT NOT NULL CHECK (liquidity IN ('maker', 'taker')),
    realised_pnl     TEXT NOT NULL,
    ts               INTEGER NOT NULL
);
CREATE INDEX fills_bot ON fills(bot_id, pair, ts);

CREATE TABLE ledger_events (
    id        INTEGER PRIMARY KEY,
    ts        INTEGER NOT NULL,
    bot_id    INTEGER REFERENCES bots(id),   -- NULL = account level
    kind      TEXT NOT NULL CHECK (kind IN ('funding', 'allocation', 'adjustment')),
    amount    TEXT NOT NULL,                 -- signed, quote currency
    currency  TEXT NOT NULL,
    note      TEXT NOT NULL DEFAULT ''
);

CREATE TABLE equity_snapshots (
    id            INTEGER PRIMARY KEY,
    ts            INTEGER NOT NULL,
    bot_id        INTEGER REFERENCES bots(id),   -- NULL = whole account
    equity        TEXT NOT NULL,
    realised      TEXT NOT NULL,
    unrealised    TEXT NOT NULL,
    fees          TEXT NOT NULL,
    position_qty  TEXT NOT NULL,
    mark_price    TEXT,                           -- NULL for the account row
    fill_count    INTEGER NOT NULL DEFAULT 0      -- fills of this bot (account: all fills) included
);
CREATE INDEX equity_bot_ts ON equity_snapshots(bot_id, ts);

CREATE TABLE kv (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TRIGGER fills_no_update BEFORE UPDATE ON fills
BEGIN SELECT RAISE(ABORT, 'fills are append-only'); END;
CREATE TRIGGER fills_no_delete BEFORE DELETE ON fills
BEGIN SELECT RAISE(ABORT, 'fills are append-only'); END;
CREATE TRIGGER ledger_events_no_update BEFORE UPDATE ON ledger_events
BEGIN SELECT RAISE(ABORT, 'ledger_events are append-only'); END;
CREATE TRIGGER ledger_events_no_delete BEFORE DELETE ON ledger_events
BEGIN SELECT RAISE(ABORT, 'ledger_events are append-only'); END;
"""

_V2 = """
-- issue 3: the risk pipeline's refusals, circuit breakers, bot errors, sizing mode
ALTER TABLE orders ADD COLUMN gate TEXT NOT NULL DEFAULT '';          -- pipeline gate that refused it
ALTER TABLE orders ADD COLUMN figures_json TEXT NOT NULL DEFAULT '';  -- what the gate compared (JSON)
ALTER TABLE bots ADD COLUMN sizing TEXT NOT NULL DEFAULT 'fixed';     -- 'fixed' | 'kelly'

CREATE TABLE breaker_trips (
    id         INTEGER PRIMARY KEY,
    ts         INTEGER NOT NULL,
    scope      TEXT NOT NULL CHECK (scope IN ('account', 'bot')),
    bot_id     INTEGER REFERENCES bots(id),           -- NULL for the account scope
    breaker    TEXT NOT NULL,                          -- risk.breakers.Breaker
    threshold  TEXT NOT NULL,                          -- Decimal: fraction or count
    value      TEXT NOT NULL,                          -- what was measured
    cause      TEXT NOT NULL,                          -- the event that caused it
    message    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX breaker_trips_bot ON breaker_trips(bot_id);

CREATE TABLE breaker_resets (
    id        INTEGER PRIMARY KEY,
    trip_id   INTEGER NOT NULL UNIQUE REFERENCES breaker_trips(id),
    ts        INTEGER NOT NULL,
    actor     TEXT NOT NULL,                           -- user | cli | ai | engine
    reason    TEXT NOT NULL CHECK (length(trim(reason)) > 0)
);

CREATE TABLE bot_errors (
    id       INTEGER PRIMARY KEY,
    ts       INTEGER NOT NULL,
    bot_id   INTEGER NOT NULL REFERENCES bots(id),
    source   TEXT NOT NULL,                            -- strategy | broker | exchange
    message  TEXT NOT NULL
);
CREATE INDEX bot_errors_bot_ts ON bot_errors(bot_id, ts);

CREATE TRIGGER breaker_trips_no_update BEFORE UPDATE ON breaker_trips
BEGIN SELECT RAISE(ABORT, 'breaker_trips are append-only'); END;
CREATE TRIGGER breaker_trips_no_delete BEFORE DELETE ON breaker_trips
BEGIN SELECT RAISE(ABORT, 'breaker_trips are append-only'); END;
CREATE TRIGGER breaker_resets_no_update BEFORE UPDATE ON breaker_resets
BEGIN SELECT RAISE(ABORT, 'breaker_resets are append-only'); END;
CREATE TRIGGER breaker_resets_no_delete BEFORE DELETE ON breaker_resets
BEGIN SELECT RAISE(ABORT, 'breaker_resets are append-only'); END;
"""

_V3 = """
-- issue 4: API keys (status only: secrets live in the OS keyring, never here),
-- live-order reconciliation reports
CREATE TABLE api_keys (
    provider     TEXT PRIMARY KEY,                     -- vault provider id (binance, openai, ...)
    status       TEXT NOT NULL CHECK (status IN
                   ('not_configured', 'saved_untested', 'test_ok', 'test_failed')),
    saved_ts     INTEGER,                              -- ms UTC of the last `keys set`
    tested_ts    INTEGER,                              -- ms UTC of the last `keys test`
    reason       TEXT NOT NULL DEFAULT '',             -- why the last test failed (one line)
    can_withdraw INTEGER,                              -- 1/0 from the exchange, NULL = unknown
    updated_ts   INTEGER NOT NULL
);

ALTER TABLE bots ADD COLUMN order_type TEXT NOT NULL DEFAULT 'market';  -- entries: market | limit

CREATE TABLE reconciliations (
    id        INTEGER PRIMARY KEY,
    ts        INTEGER NOT NULL,
    exchange  TEXT NOT NULL,
    ok        INTEGER NOT NULL,                        -- 1 = clean, 0 = failed or drift found
    resolved  INTEGER NOT NULL DEFAULT 0,              -- pending/open orders resolved
    recovered INTEGER NOT NULL DEFAULT 0,              -- fills fetched that the ledger lacked
    details   TEXT NOT NULL DEFAULT ''                 -- JSON: per-order outcomes, balance drift, error
);
CREATE INDEX reconciliations_ts ON reconciliations(exchange, ts);
"""

_V4 = """
-- issue 5: bot lifecycle stages (audited), the account trading mode (audited; the newest row is
-- the mode in force, none = paper)
-- bots.stage (v1) holds the current stage: domain.enums.LifecycleStage
ALTER TABLE bots ADD COLUMN stage_ts INTEGER;         -- ms UTC (market time) the stage was entered

CREATE TABLE stage_changes (
    id         INTEGER PRIMARY KEY,
    ts         INTEGER NOT NULL,                       -- ms UTC
    bot_id     INTEGER NOT NULL REFERENCES bots(id),
    from_stage TEXT NOT NULL,
    to_stage   TEXT NOT NULL,
    actor      TEXT NOT NULL,                          -- user | cli | ai | engine
    reason     TEXT NOT NULL CHECK (length(trim(reason)) > 0),
    figures    TEXT NOT NULL DEFAULT ''                -- JSON: the criteria as measured
);
CREATE INDEX stage_changes_bot ON stage_changes(bot_id, ts);

CREATE TABLE mode_switches (
    id         INTEGER PRIMARY KEY,
    ts         INTEGER NOT NULL,                       -- ms UTC (wall clock)
    from_mode  TEXT NOT NULL,
    to_mode    TEXT NOT NULL CHECK (to_mode IN ('paper', 'live')),
    actor      TEXT NOT NULL,                          -- user | cli | engine
    reason     TEXT NOT NULL DEFAULT '',
    doctor     TEXT NOT NULL DEFAULT ''                -- JSON: the readiness checks that allowed it
);

CREATE TRIGGER stage_changes_no_update BEFORE UPDATE ON stage_changes
BEGIN SELECT RAISE(ABORT, 'stage_changes are append-only'); END;
CREATE TRIGGER stage_changes_no_delete BEFORE DELETE ON stage_changes
BEGIN SELECT RAISE(ABORT, 'stage_changes are append-only'); END;
CREATE TRIGGER mode_switches_no_update BEFORE UPDATE ON mode_switches
BEGIN SELECT RAISE(ABORT, 'mode_switches are append-only'); END;
CREATE TRIGGER mode_switches_no_delete BEFORE DELETE ON mode_switches
BEGIN SELECT RAISE(ABORT, 'mode_switches are append-only'); END;
"""

_V5 = """
-- issue 6: the AI console: chat history (searchable, per day), token use against the daily
-- budget, and the audit of every proposal and what became of it (append-only)
CREATE TABLE chat_messages (
    id            INTEGER PRIMARY KEY,
    ts            INTEGER NOT NULL,                    -- ms UTC (wall clock)
    conversation  INTEGER NOT NULL,                    -- /clear starts a new one; history is kept
    role          TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'tool', 'system')),
    content       TEXT NOT NULL,
    model         TEXT NOT NULL DEFAULT '',            -- the model that answered ('' for user/commands)
    tool_call     TEXT NOT NULL DEFAULT ''             -- JSON of a tool call or tool result, if any
);
CREATE INDEX chat_messages_ts ON chat_messages(ts);

CREATE TABLE ai_usage (
    id                 INTEGER PRIMARY KEY,
    ts                 INTEGER NOT NULL,               -- ms UTC
    day                TEXT NOT NULL,                  -- UTC date YYYY-MM-DD (the budget's day)
    model              TEXT NOT NULL,
    prompt_tokens      INTEGER NOT NULL,
    completion_tokens  INTEGER NOT NULL
);
CREATE INDEX ai_usage_day ON ai_usage(day);

CREATE TABLE ai_actions (
    id          INTEGER PRIMARY KEY,
    ts          INTEGER NOT NULL,                      -- ms UTC
    proposal    TEXT NOT NULL,                         -- proposal id (one id, several rows)
    event       TEXT NOT NULL CHECK (event IN
                  ('proposed', 'confirmed', 'cancelled', 'expired', 'refused', 'executed', 'failed')),
    tool        TEXT NOT NULL,
    args        TEXT NOT NULL DEFAULT '{}',            -- JSON, as validated
    actor       TEXT NOT NULL,                         -- ai | user | commands
    detail      TEXT NOT NULL DEFAULT ''               -- why refused / what it did / the error
);
CREATE INDEX ai_actions_proposal ON ai_actions(proposal);

CREATE TRIGGER ai_actions_no_update BEFORE UPDATE ON ai_actions
BEGIN SELECT RAISE(ABORT, 'ai_actions are append-only'); END;
CREATE TRIGGER ai_actions_no_delete BEFORE DELETE ON ai_actions
BEGIN SELECT RAISE(ABORT, 'ai_actions are append-only'); END;
"""

_V6 = """
-- issue 7: the audit log (ops.audit). NOT part of the ledger: rows older than [audit] retention_days
-- are pruned, so no append-only triggers; ledger tables are never pruned. No foreign key on bot_id:
-- an entry may name a bot the ledger no longer knows (a replaced ledger) and must still be kept.
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY,
    ts        INTEGER NOT NULL,                        -- ms UTC (wall clock)
    type      TEXT NOT NULL,                           -- ops.audit.AUDIT_TYPES
    severity  TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    actor     TEXT NOT NULL,                           -- user | ai | engine | autopilot | cli
    bot_id    INTEGER,
    bot       TEXT,                                    -- the bot's name when the entry is about one
    details   TEXT NOT NULL DEFAULT '{}'               -- JSON object (money as decimal strings)
);
CREATE INDEX audit_log_ts ON audit_log(ts);
CREATE INDEX audit_log_type_ts ON audit_log(type, ts);
CREATE INDEX audit_log_severity_ts ON audit_log(severity, ts);
CREATE INDEX audit_log_bot_ts ON audit_log(bot_id, ts);
"""

_V7 = """
-- issue 8: autonomy. Every automatic (or proposed) change to a bot, optimisation runs and their
-- trials (the parameter history), evolution generations and members, self-healing quarantines.
ALTER TABLE bots ADD COLUMN size_multiplier TEXT NOT NULL DEFAULT '1';  -- self-learning's size factor
ALTER TABLE bots ADD COLUMN dna_id TEXT;                                -- evolution member it came from

CREATE TABLE bot_adjustments (
    id          INTEGER PRIMARY KEY,
    ts          INTEGER NOT NULL,                      -- ms UTC (engine time)
    bot_id      INTEGER NOT NULL REFERENCES bots(id),
    source      TEXT NOT NULL,                         -- optimizer|learning|regime|evolution|autopilot|healing|user|ai
    field       TEXT NOT NULL,                         -- params|risk_mode|size_multiplier|stop_loss|take_profit|capital|state
    before_json TEXT NOT NULL,                         -- JSON value (money/fractions as decimal strings)
    after_json  TEXT NOT NULL,
    reason      TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('applied', 'proposed', 'accepted', 'rejected', 'reverted', 'refused')),
    actor       TEXT NOT NULL,                         -- who made this row: engine|autopilot|user|cli|ai
    ref_id      INTEGER REFERENCES bot_adjustments(id) -- the proposal accepted/rejected, the change reverted
);
CREATE INDEX bot_adjustments_bot ON bot_adjustments(bot_id, ts);
CREATE INDEX bot_adjustments_ref ON bot_adjustments(ref_id);
CREATE TRIGGER bot_adjustments_no_update BEFORE UPDATE ON bot_adjustments
BEGIN SELECT RAISE(ABORT, 'bot_adjustments are append-only'); END;
CREATE TRIGGER bot_adjustments_no_delete BEFORE DELETE ON bot_adjustments
BEGIN SELECT RAISE(ABORT, 'bot_adjustments are append-only'); END;

CREATE TABLE optimization_runs (
    id             INTEGER PRIMARY KEY,
    study_name     TEXT NOT NULL,                      -- the optuna study (in optuna's own storage)
    storage        TEXT NOT NULL,                      -- optuna storage URL, password masked
    strategy       TEXT NOT NULL,
    objectives     TEXT NOT NULL,                      -- JSON list, e.g. ["return"] or ["return","max_drawdown"]
    sampler        TEXT NOT NULL,                      -- tpe | nsga2
    seed           INTEGER,
    data_json      TEXT NOT NULL,                      -- JSON: files, pair, timeframe, windows (ms UTC)
    n_trials       INTEGER NOT NULL,
    workers        INTEGER NOT NULL DEFAULT 1,
    started_ts     INTEGER NOT NULL,                   -- ms UTC (wall)
    finished_ts    INTEGER,
    status         TEXT NOT NULL,                      -- running | done | failed | interrupted
    best_params_json TEXT,                             -- JSON object (TPE best / NSGA-II chosen)
    best_values_json TEXT                              -- JSON: in-sample and out-of-sample scores
);
CREATE TABLE optimization_trials (
    id           INTEGER PRIMARY KEY,
    run_id       INTEGER NOT NULL REFERENCES optimization_runs(id),
    number       INTEGER NOT NULL,                     -- optuna trial number
    params_json  TEXT NOT NULL,
    values_json  TEXT,                                 -- JSON list: in-sample objective values
    test_json    TEXT,                                 -- JSON: out-of-sample (walk-forward) scores
    state        TEXT NOT NULL,                        -- complete | pruned | fail
    ts           INTEGER NOT NULL,                     -- ms UTC (wall)
    UNIQUE (run_id, number)
);

CREATE TABLE evolution_generations (
    id            INTEGER PRIMARY KEY,
    run           TEXT NOT NULL,                       -- evolution run id (e.g. 'evo-<ts>')
    generation    INTEGER NOT NULL,
    seed          INTEGER NOT NULL,
    best_fitness  TEXT NOT NULL,                       -- decimal string
    mean_fitness  TEXT NOT NULL,
    best_member   TEXT NOT NULL,
    ts            INTEGER NOT NULL,                    -- ms UTC (wall)
    UNIQUE (run, generation)
);
CREATE TABLE evolution_members (
    id            INTEGER PRIMARY KEY,
    generation_id INTEGER NOT NULL REFERENCES evolution_generations(id),
    member        TEXT NOT NULL UNIQUE,                -- '<run>/g<gen>/m<idx>'
    dna_json      TEXT NOT NULL,                       -- strategy, params, pair, exchange, risk_mode, capital_share
    fitness       TEXT,                                -- decimal string; NULL: not enough trades
    metrics_json  TEXT NOT NULL DEFAULT '{}',          -- return, max_drawdown, trades
    parent_a      TEXT,                                -- member ids; NULL for the first generation
    parent_b      TEXT,
    elite         INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE quarantines (
    id        INTEGER PRIMARY KEY,
    ts        INTEGER NOT NULL,                        -- ms UTC (engine time)
    bot_id    INTEGER NOT NULL REFERENCES bots(id),
    level     INTEGER NOT NULL,                        -- 1: 1 h, 2: 3 h, 3: 24 h, 4: retired
    rule      TEXT NOT NULL,                           -- hourly_loss | idle | trade_limit | capital_loss
    reason    TEXT NOT NULL,
    until_ts  INTEGER                                  -- NULL when retired
);
CREATE INDEX quarantines_bot ON quarantines(bot_id, ts);
"""

MIGRATIONS: list[str] = [_V1, _V2, _V3, _V4, _V5, _V6, _V7]
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNewError(RuntimeError):
    """The database was written by a newer version of the app."""


def configure(conn: sqlite3.Connection) -> None:
    """Connection pragmas every connection uses: WAL, foreign keys, a busy timeout."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA synchronous=NORMAL")


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to ``SCHEMA_VERSION``; return the version found before.

    An existing ledger (version > 0) is first copied into ``backups/`` beside it (``ops.backup``;
    not an in-memory one). Raises SchemaTooNewError when the file is newer than this code, and
    ``ops.backup.MigrationBackupError`` (a sqlite3.OperationalError, one line) when that copy failed:
    the migration is then refused and the file keeps its version.
    """
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"database schema v{found} is newer than this app (v{SCHEMA_VERSION}); upgrade amarktai-tui"
        )
    if 0 < found < SCHEMA_VERSION:
        from amarktai_tui.ops.backup import backup_before_migration

        backup_before_migration(conn, found)
    for version in range(found, SCHEMA_VERSION):
        conn.executescript(f"BEGIN;\n{MIGRATIONS[version]}\nPRAGMA user_version={version + 1};\nCOMMIT;")
    return found


def connect_readonly(path: str) -> sqlite3.Connection:
    """A reader connection (CLI commands, a second TUI) that never writes.

    Raises FileNotFoundError when the database does not exist.
    """
    import os

    if not os.path.exists(path):
        raise FileNotFoundError(f"no ledger at {path}: run the engine first (amarktai --daemon ...)")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.execute("PRAGMA busy_timeout=5000")
    conn.row_factory = sqlite3.Row
    return conn
