"""The run store's tables, indexes and schema version.

Why this shape:
- ``steps`` holds one row per written training step, and every per-step table
  references it with ``ON DELETE CASCADE``: "is step N written?" is a primary-key
  lookup, a duplicate step fails on that key, and a kill -9 can never leave scalars
  without their step row (they are all written in one transaction).
- ``scalars`` is long (run, key, step, value) with primary key (run_id, key, step), so
  the dashboard's "new points of these keys since step k" is an index range scan; a
  second index on (run_id, step) serves "all keys since step k" and the truncation.
- ``scalar_keys`` is a tiny side table so listing a run's keys does not scan scalars.
- ids of events, commands and evaluations use AUTOINCREMENT: never reused after a
  truncation, so a poller that remembers "last id seen" cannot miss a new row.
- dict payloads are JSON text; timestamps are UNIX floats; NaN scalars are NULL.
- ``runs.heartbeat_at`` / ``runs.owner`` are written by the run's trainer every few
  seconds without bumping ``revision`` (see ``_lease.py``).
- ``experiments`` / ``experiment_runs`` describe sweeps (a grid of cells × seeds); their
  runs are ordinary rows of ``runs``, and a planned run without one is pending.
- checkpoint paths are stored relative to the workspace, so a workspace can be opened
  from any directory (or moved) and still find its checkpoints.
"""

from __future__ import annotations

import re
import sqlite3

from workbench.errors import StoreError

#: Bump when the tables change, and add the step from the previous version to MIGRATIONS.
SCHEMA_VERSION = 4

DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS runs (
    run_id     TEXT PRIMARY KEY,
    name       TEXT,
    status     TEXT NOT NULL DEFAULT 'created',
    strategy   TEXT,
    config     TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_step  INTEGER NOT NULL DEFAULT -1,
    revision   INTEGER NOT NULL DEFAULT 0,
    heartbeat_at REAL,
    owner      TEXT,
    notes      TEXT,
    tags       TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs(created_at);

CREATE TABLE IF NOT EXISTS steps (
    run_id     TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    step       INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS scalars (
    run_id TEXT NOT NULL,
    step   INTEGER NOT NULL,
    key    TEXT NOT NULL,
    value  REAL,
    PRIMARY KEY (run_id, key, step),
    FOREIGN KEY (run_id, step) REFERENCES steps(run_id, step) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS scalars_by_step ON scalars(run_id, step);

CREATE TABLE IF NOT EXISTS scalar_keys (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS step_problems (
    id         INTEGER PRIMARY KEY,
    run_id     TEXT NOT NULL,
    step       INTEGER NOT NULL,
    problem_id TEXT NOT NULL,
    split      TEXT,
    n          INTEGER NOT NULL,
    c          INTEGER NOT NULL,
    extra      TEXT,
    FOREIGN KEY (run_id, step) REFERENCES steps(run_id, step) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS step_problems_by_step ON step_problems(run_id, step);
CREATE INDEX IF NOT EXISTS step_problems_by_problem ON step_problems(run_id, problem_id, step);

CREATE TABLE IF NOT EXISTS samples (
    id         INTEGER PRIMARY KEY,
    run_id     TEXT NOT NULL,
    step       INTEGER NOT NULL,
    problem_id TEXT NOT NULL,
    completion TEXT NOT NULL,
    reward     REAL,
    correct    INTEGER NOT NULL,
    mode_key   TEXT,
    extra      TEXT,
    FOREIGN KEY (run_id, step) REFERENCES steps(run_id, step) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS samples_by_step ON samples(run_id, step, problem_id);

CREATE TABLE IF NOT EXISTS evaluations (
    eval_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    step       INTEGER NOT NULL,
    label      TEXT NOT NULL,
    split      TEXT NOT NULL,
    summary    TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS evaluations_by_run ON evaluations(run_id, step);

CREATE TABLE IF NOT EXISTS eval_problems (
    id         INTEGER PRIMARY KEY,
    eval_id    INTEGER NOT NULL REFERENCES evaluations(eval_id) ON DELETE CASCADE,
    problem_id TEXT NOT NULL,
    n          INTEGER NOT NULL,
    c          INTEGER NOT NULL,
    extra      TEXT
);
CREATE INDEX IF NOT EXISTS eval_problems_by_eval ON eval_problems(eval_id, problem_id);

CREATE TABLE IF NOT EXISTS eval_samples (
    id         INTEGER PRIMARY KEY,
    eval_id    INTEGER NOT NULL REFERENCES evaluations(eval_id) ON DELETE CASCADE,
    problem_id TEXT NOT NULL,
    completion TEXT NOT NULL,
    reward     REAL,
    correct    INTEGER NOT NULL,
    mode_key   TEXT,
    extra      TEXT
);
CREATE INDEX IF NOT EXISTS eval_samples_by_eval ON eval_samples(eval_id, problem_id);

CREATE TABLE IF NOT EXISTS bank (
    id          INTEGER PRIMARY KEY,
    run_id      TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    problem_id  TEXT NOT NULL,
    mode_key    TEXT NOT NULL,
    completion  TEXT NOT NULL,
    ref_logprob REAL,
    extra       TEXT,
    UNIQUE (run_id, problem_id, mode_key, completion)
);

CREATE TABLE IF NOT EXISTS events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    step       INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_run ON events(run_id);
CREATE INDEX IF NOT EXISTS events_by_kind ON events(run_id, kind);

CREATE TABLE IF NOT EXISTS commands (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'pending',
    created_at REAL NOT NULL,
    handled_at REAL,
    step       INTEGER,
    message    TEXT
);
CREATE INDEX IF NOT EXISTS commands_by_status ON commands(run_id, status);

CREATE TABLE IF NOT EXISTS checkpoints (
    run_id     TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    step       INTEGER NOT NULL,
    path       TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS experiments (
    exp_id     TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS experiment_runs (
    exp_id   TEXT NOT NULL REFERENCES experiments(exp_id) ON DELETE CASCADE,
    run_id   TEXT NOT NULL,
    cell     TEXT NOT NULL,
    cell_key TEXT NOT NULL,
    seed     INTEGER NOT NULL,
    position INTEGER NOT NULL,
    pid      INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    message  TEXT,
    PRIMARY KEY (exp_id, run_id),
    UNIQUE (exp_id, cell_key, seed)
);
CREATE INDEX IF NOT EXISTS experiment_runs_by_run ON experiment_runs(run_id);
"""

#: The experiment tables' statements (also the migration that adds them).
EXPERIMENT_STATEMENTS = [st.strip() for st in DDL[DDL.index("CREATE TABLE IF NOT EXISTS experiments"):].split(";")
                         if st.strip()]

#: version -> statements that bring a store at ``version - 1`` up to ``version``.
MIGRATIONS: dict[int, list[str]] = {
    # 2: the trainer's heartbeat and who it is (host:pid), so a killed trainer shows as crashed
    2: ["ALTER TABLE runs ADD COLUMN heartbeat_at REAL", "ALTER TABLE runs ADD COLUMN owner TEXT"],
    # 3: the user's notes and tags on a run (the dashboard's housekeeping)
    3: ["ALTER TABLE runs ADD COLUMN notes TEXT", "ALTER TABLE runs ADD COLUMN tags TEXT"],
    # 4: experiments (workbench sweep): the grid and its planned runs; runs stay in 'runs'
    4: EXPERIMENT_STATEMENTS,
}


def schema_ready(c: sqlite3.Connection) -> bool:
    """True when the store is already at this version: a plain read, no write lock.

    Lets a reader open the store while a writer is inside a transaction.
    """
    try:
        row = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return False
        raise
    if row is not None and int(row[0]) > SCHEMA_VERSION:
        raise _too_new(int(row[0]))
    return row is not None and int(row[0]) == SCHEMA_VERSION


def _too_new(found: int) -> StoreError:
    return StoreError(
        f"the run store has schema version {found}, newer than this workbench "
        f"understands ({SCHEMA_VERSION}). Upgrade the workbench or use another workspace."
    )


def ensure_schema(c: sqlite3.Connection) -> None:
    """Create missing tables (idempotent) and check/upgrade the schema version.

    Runs inside the caller's transaction, so two processes opening a new store at once
    serialise on the write lock instead of racing.
    """
    for statement in DDL.split(";"):
        if statement.strip():
            c.execute(statement)
    row = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    found = int(row[0]) if row else None
    if found is None:
        c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        return
    if found > SCHEMA_VERSION:
        raise _too_new(found)
    for version in range(found + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS.get(version, []):
            added = re.match(r"ALTER TABLE (\w+) ADD COLUMN (\w+)", statement)
            if added and added[2] in {r[1] for r in c.execute(f"PRAGMA table_info({added[1]})")}:
                continue  # already there (a store that a newer version created, then rolled back)
            c.execute(statement)
    c.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
