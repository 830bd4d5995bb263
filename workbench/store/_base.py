"""What every part of the run store API shares: the database and the run lookup."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import TypeVar

from workbench.errors import UnknownNameError
from workbench.paths import DEFAULT_WORKSPACE
from workbench.store._db import Database
from workbench.store.schema import ensure_schema, schema_ready

#: How long a write waits for another process's write before giving up (seconds).
DEFAULT_TIMEOUT = 15.0

_S = TypeVar("_S", bound="StoreBase")


class StoreBase:
    """Holds the workspace paths and the per-thread SQLite connections.

    Nothing touches the disk until the first call that needs the database, so building a
    RunStore (e.g. in a dashboard's module scope) has no side effects.
    """

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_WORKSPACE, timeout: float = DEFAULT_TIMEOUT):
        self.root = Path(root)
        self.path = self.root / "store.sqlite"
        self._db = Database(self.path, timeout, init=ensure_schema, ready=schema_ready)

    def close(self) -> None:
        """Close this store's connections (a later call opens new ones)."""
        self._db.close()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    # -- shared helpers ----------------------------------------------------------------
    def _require_run(self, c: sqlite3.Connection | None, run_id: str) -> sqlite3.Row:
        """The run's row, or an error that lists the runs that do exist."""
        if c is None:
            rows = self._db.rows("SELECT * FROM runs WHERE run_id = ?", (run_id,))
            row = rows[0] if rows else None
        else:
            row = c.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            known = self._db.rows("SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 20")
            raise UnknownNameError(
                "run", str(run_id), [r["run_id"] for r in known], hint="list runs with `workbench runs`"
            )
        return row

    @staticmethod
    def _touch(c: sqlite3.Connection, run_id: str) -> None:
        """Mark the run changed: pollers compare ``revision`` (see RunStore.version)."""
        c.execute(
            "UPDATE runs SET updated_at = ?, revision = revision + 1 WHERE run_id = ?",
            (time.time(), run_id),
        )
