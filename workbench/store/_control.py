"""Events (what happened), commands (what is asked for) and checkpoint records.

Commands are the control channel: any process (dashboard, notebook, CLI) appends a
"pending" row; the session that runs the run reads them between steps and marks each
"applied" or "rejected" with a message. Marking only succeeds on a pending command, so
two readers can never both apply the same one.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError, StoreError, UnknownNameError
from workbench.store import _codec as cd
from workbench.store._base import StoreBase

COMMAND_OUTCOMES = ("applied", "rejected")


def _event(r: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": r["id"],
        "step": r["step"],
        "kind": r["kind"],
        "payload": cd.loads(r["payload"]),
        "created_at": r["created_at"],
    }


def _command(r: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": r["id"],
        "run_id": r["run_id"],
        "kind": r["kind"],
        "payload": cd.loads(r["payload"]),
        "status": r["status"],
        "created_at": r["created_at"],
        "handled_at": r["handled_at"],
        "step": r["step"],
        "message": r["message"],
    }


class ControlMixin(StoreBase):
    """Events, commands and checkpoints of a run."""

    # -- events ------------------------------------------------------------------------
    def add_event(self, run_id: str, step: int, kind: str, payload: Mapping[str, Any] | None = None) -> int:
        """Record that something happened at ``step`` (strategy switch, pause, ...); returns its id."""
        step = cd.to_int(step, "step")
        if not isinstance(kind, str) or not kind:
            raise ConfigError(f"event kind must be a non-empty string, got {kind!r}")
        text = cd.dumps(cd.check_dict(payload, "payload"), "payload")
        with self._db.write() as c:
            self._require_run(c, run_id)
            cur = c.execute(
                "INSERT INTO events (run_id, step, kind, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                (run_id, step, kind, text, time.time()),
            )
            self._touch(c, run_id)
        return int(cur.lastrowid or 0)

    def events(self, run_id: str, kind: str | None = None, since_id: int = 0) -> list[dict[str, Any]]:
        """The run's events in the order they were added; ``since_id`` returns only newer ones."""
        self._require_run(None, run_id)
        sql, params = "SELECT * FROM events WHERE run_id = ? AND id > ?", [run_id, cd.to_int(since_id, "since_id")]
        if kind is not None:
            sql, params = sql + " AND kind = ?", [*params, kind]
        return [_event(r) for r in self._db.rows(sql + " ORDER BY id", params)]

    # -- commands ----------------------------------------------------------------------
    def send_command(self, run_id: str, kind: str, payload: Mapping[str, Any] | None = None) -> int:
        """Ask the session running ``run_id`` to do something between steps; returns the id."""
        if not isinstance(kind, str) or not kind:
            raise ConfigError(f"command kind must be a non-empty string, got {kind!r}")
        text = cd.dumps(cd.check_dict(payload, "payload"), "payload")
        with self._db.write() as c:
            self._require_run(c, run_id)
            cur = c.execute(
                "INSERT INTO commands (run_id, kind, payload, status, created_at) VALUES (?, ?, ?, 'pending', ?)",
                (run_id, kind, text, time.time()),
            )
            self._touch(c, run_id)
        return int(cur.lastrowid or 0)

    def pending_commands(self, run_id: str) -> list[dict[str, Any]]:
        """Commands not yet applied or rejected, oldest first."""
        self._require_run(None, run_id)
        rows = self._db.rows("SELECT * FROM commands WHERE run_id = ? AND status = 'pending' ORDER BY id", (run_id,))
        return [_command(r) for r in rows]

    def mark_command(self, cmd_id: int, status: str, step: int | None = None, message: str | None = None) -> None:
        """Close a pending command as "applied" or "rejected" (with the step and a message)."""
        if status not in COMMAND_OUTCOMES:
            raise ConfigError(f"command status {status!r} is not one of {', '.join(COMMAND_OUTCOMES)}")
        cmd_id = cd.to_int(cmd_id, "cmd_id")
        step = None if step is None else cd.to_int(step, "step")
        with self._db.write() as c:
            row = c.execute("SELECT run_id, status FROM commands WHERE id = ?", (cmd_id,)).fetchone()
            if row is None:
                raise UnknownNameError("command", str(cmd_id), hint="see RunStore.commands(run_id)")
            if row["status"] != "pending":
                raise StoreError(f"command {cmd_id} is already {row['status']}; only pending commands can be marked")
            c.execute(
                "UPDATE commands SET status = ?, handled_at = ?, step = ?, message = ? WHERE id = ?",
                (status, time.time(), step, message, cmd_id),
            )
            self._touch(c, row["run_id"])

    def commands(self, run_id: str) -> list[dict[str, Any]]:
        """Every command of the run (any status), oldest first."""
        self._require_run(None, run_id)
        rows = self._db.rows("SELECT * FROM commands WHERE run_id = ? ORDER BY id", (run_id,))
        return [_command(r) for r in rows]

    # -- checkpoints -------------------------------------------------------------------
    def checkpoint_dir(self, run_id: str, step: int) -> Path:
        """Where the checkpoint of ``step`` belongs (the path only; nothing is created)."""
        return self.root / "checkpoints" / cd.check_run_id(run_id) / f"step-{cd.to_int(step, 'step')}"

    def record_checkpoint(self, run_id: str, step: int, path: str | Path) -> None:
        """Record that a checkpoint of ``step`` was written at ``path`` (re-recording replaces)."""
        step = cd.to_int(step, "step")
        with self._db.write() as c:
            self._require_run(c, run_id)
            c.execute(
                "INSERT OR REPLACE INTO checkpoints (run_id, step, path, created_at) VALUES (?, ?, ?, ?)",
                (run_id, step, str(path), time.time()),
            )
            self._touch(c, run_id)

    def checkpoints(self, run_id: str) -> list[dict[str, Any]]:
        """Checkpoint records of the run, by step."""
        self._require_run(None, run_id)
        rows = self._db.rows("SELECT step, path, created_at FROM checkpoints WHERE run_id = ? ORDER BY step", (run_id,))
        return [dict(r) for r in rows]

    def last_checkpoint(self, run_id: str) -> dict[str, Any] | None:
        """The latest checkpoint record, or None when the run has none."""
        self._require_run(None, run_id)
        rows = self._db.rows(
            "SELECT step, path, created_at FROM checkpoints WHERE run_id = ? ORDER BY step DESC LIMIT 1", (run_id,)
        )
        return dict(rows[0]) if rows else None
