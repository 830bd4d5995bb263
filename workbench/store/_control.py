"""Events (what happened), commands (what is asked for) and checkpoint records.

Commands are the control channel: any process (dashboard, notebook, CLI) appends a
"pending" row; the session that runs the run reads them between steps and marks each
"applied" or "rejected" with a message. Marking only succeeds on a pending command, so
two readers can never both apply the same one. ``send_command`` checks the command
(``_commands.check_command``) before it is written; commands left pending while no
trainer ran are "expired" by the next resume unless it is asked to apply them.

Checkpoint paths are stored relative to the workspace; ``checkpoints()`` returns them
resolved (see ``resolve_checkpoint`` for records written by older versions).
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
from workbench.store._commands import check_command

COMMAND_OUTCOMES = ("applied", "rejected", "expired")


def _event(r: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": r["id"],
        "step": r["step"],
        "kind": r["kind"],
        "payload": cd.loads(r["payload"]),
        "created_at": r["created_at"],
    }


def _payload(text: Any) -> Any:
    """A command's payload as written; text that is not JSON comes back as the text itself
    (the session rejects it), so one bad row cannot break reading the others."""
    try:
        return cd.loads(text)
    except (TypeError, ValueError):
        return text


def _command(r: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": r["id"],
        "run_id": r["run_id"],
        "kind": r["kind"],
        "payload": _payload(r["payload"]),
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
        """Ask the session running ``run_id`` to do something between steps; returns the id.

        The command is checked first (kind, payload fields and their types and ranges):
        a malformed one is a ConfigError here and never reaches the table.
        """
        text = cd.dumps(check_command(kind, payload), "payload")
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
        """Close a pending command as "applied", "rejected" or "expired" (with the step and a message)."""
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

    def expire_commands(self, run_id: str, before: float, step: int | None, message: str) -> list[dict[str, Any]]:
        """Mark the run's commands still pending that were sent before ``before`` (a UNIX
        time) as "expired" with ``message``; returns them as they were (oldest first)."""
        step = None if step is None else cd.to_int(step, "step")
        with self._db.write() as c:
            self._require_run(c, run_id)
            rows = c.execute("SELECT * FROM commands WHERE run_id = ? AND status = 'pending' AND created_at < ? "
                             "ORDER BY id", (run_id, float(before))).fetchall()
            if rows:
                c.executemany("UPDATE commands SET status = 'expired', handled_at = ?, step = ?, message = ? "
                              "WHERE id = ?", [(time.time(), step, message, r["id"]) for r in rows])
                self._touch(c, run_id)
        return [_command(r) for r in rows]

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
        """Record that a checkpoint of ``step`` was written at ``path`` (re-recording replaces).

        A path inside the workspace is stored relative to it, so the record stays right
        when the store is opened from another directory or the workspace is moved.
        """
        step = cd.to_int(step, "step")
        stored = str(path)
        try:
            stored = Path(path).resolve().relative_to(self.root.resolve()).as_posix()
        except (ValueError, OSError):
            pass  # outside the workspace: kept as given
        with self._db.write() as c:
            self._require_run(c, run_id)
            c.execute(
                "INSERT OR REPLACE INTO checkpoints (run_id, step, path, created_at) VALUES (?, ?, ?, ?)",
                (run_id, step, stored, time.time()),
            )
            self._touch(c, run_id)

    def resolve_checkpoint(self, run_id: str, step: int, stored: str) -> Path:
        """Where the checkpoint recorded as ``stored`` is on disk.

        Records are relative to the workspace; older versions stored the path as the
        trainer saw it (absolute, or relative to the directory it ran in). The first of
        these that exists wins: the path inside the workspace, an absolute path as is,
        the path from the current directory, the checkpoint's usual place in the
        workspace. When none exists, the first candidate (for error messages).
        """
        p = Path(stored)
        candidates = [p] if p.is_absolute() else [self.root / p, p]
        candidates.append(self.checkpoint_dir(run_id, step))
        for cand in candidates:
            if cand.exists():
                return cand
        return candidates[0]

    def checkpoints(self, run_id: str) -> list[dict[str, Any]]:
        """Checkpoint records of the run, by step; ``path`` resolved (``stored_path`` as written)."""
        self._require_run(None, run_id)
        rows = self._db.rows("SELECT step, path, created_at FROM checkpoints WHERE run_id = ? ORDER BY step", (run_id,))
        return [self._checkpoint(run_id, r) for r in rows]

    def _checkpoint(self, run_id: str, r: sqlite3.Row) -> dict[str, Any]:
        return {"step": r["step"], "path": str(self.resolve_checkpoint(run_id, r["step"], r["path"])),
                "stored_path": r["path"], "created_at": r["created_at"]}

    def last_checkpoint(self, run_id: str) -> dict[str, Any] | None:
        """The latest checkpoint record, or None when the run has none."""
        self._require_run(None, run_id)
        rows = self._db.rows(
            "SELECT step, path, created_at FROM checkpoints WHERE run_id = ? ORDER BY step DESC LIMIT 1", (run_id,)
        )
        return self._checkpoint(run_id, rows[0]) if rows else None
