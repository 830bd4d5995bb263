"""The run store: everything a run writes, readable by other processes while it runs.

One training process writes; dashboards and notebooks read at the same time and write
commands. Every public write is one SQLite transaction, so a process killed at any point
leaves whole steps or none. Values in and out are plain JSON-serialisable Python; rows
come back as dicts. Evaluations/bank live in ``_evals.py``, events/commands/checkpoints
in ``_control.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError, StoreError
from workbench.store import _codec as cd
from workbench.store import export as ex
from workbench.store._control import ControlMixin
from workbench.store._evals import EvalsMixin
from workbench.store._experiments import ExperimentsMixin
from workbench.store._lease import CRASHED, LeaseMixin
from workbench.store.ids import new_run_id

STATUSES = ("created", "running", "paused", "finished", "failed", "stopped")
#: What readers may see besides STATUSES: a run whose trainer is gone (see ``_lease.py``).
RUN_STATES = (*STATUSES, CRASHED)


def _run(r: sqlite3.Row, status: str, with_config: bool = True) -> dict[str, Any]:
    out = {
        "run_id": r["run_id"],
        "name": r["name"],
        "status": status,
        "stored_status": r["status"],
        "strategy": r["strategy"],
        "created_at": r["created_at"],
        "updated_at": r["updated_at"],
        "last_step": r["last_step"],
        "revision": r["revision"],
        "heartbeat_at": r["heartbeat_at"],
        "owner": r["owner"],
        "notes": r["notes"] or "",
        "tags": cd.loads(r["tags"]) if r["tags"] else [],
    }
    if with_config:
        out["config"] = cd.loads(r["config"])
    return out


class RunStore(EvalsMixin, ControlMixin, LeaseMixin, ExperimentsMixin):
    """SQLite (WAL) run store under ``root``: ``store.sqlite`` plus ``checkpoints/<run_id>/``.

    Safe to share between threads (a connection per thread) and between processes.
    """

    # -- runs --------------------------------------------------------------------------
    def create_run(
        self,
        config: Mapping[str, Any],
        name: str | None = None,
        run_id: str | None = None,
        strategy: str | None = None,
    ) -> str:
        """Register a new run (status "created"); returns its id."""
        if run_id is None:  # the same scheme as the dashboard's (name, else the strategy)
            run_id = new_run_id(name or strategy)
        cd.check_run_id(run_id)
        text = cd.dumps(cd.check_dict(config, "config"), "config")
        now = time.time()
        with self._db.write() as c:
            try:
                c.execute(
                    "INSERT INTO runs (run_id, name, status, strategy, config, created_at, updated_at) "
                    "VALUES (?, ?, 'created', ?, ?, ?, ?)",
                    (run_id, name, strategy, text, now, now),
                )
            except sqlite3.IntegrityError as exc:
                raise StoreError(f"a run {run_id!r} already exists in {self.path}; choose another run_id") from exc
        return run_id

    def get_run(self, run_id: str) -> dict[str, Any]:
        """The run's fields, its config (dict) and last_step (-1 before the first step).

        ``status`` is what is true now: ``crashed`` when the stored status says a trainer
        is at work but that trainer is gone (``stored_status`` keeps what was written).
        """
        row = self._require_run(None, run_id)
        return _run(row, self._live(row))

    def list_runs(self) -> list[dict[str, Any]]:
        """All runs, newest first, with the same fields as get_run."""
        return [_run(r, self._live(r)) for r in self._db.rows("SELECT * FROM runs ORDER BY created_at DESC, run_id DESC")]

    def set_status(self, run_id: str, status: str) -> None:
        if status not in STATUSES:
            raise ConfigError(f"run status {status!r} is not one of {', '.join(STATUSES)}")
        self._set(run_id, "status", status)

    def set_strategy(self, run_id: str, strategy: str) -> None:
        if not isinstance(strategy, str) or not strategy:
            raise ConfigError(f"strategy must be a non-empty string, got {strategy!r}")
        self._set(run_id, "strategy", strategy)

    def update_config(self, run_id: str, config: Mapping[str, Any]) -> None:
        """Replace (not merge) the run's config."""
        self._set(run_id, "config", cd.dumps(cd.check_dict(config, "config"), "config"))

    def _set(self, run_id: str, column: str, value: Any) -> None:
        with self._db.write() as c:
            self._require_run(c, run_id)
            c.execute(f"UPDATE runs SET {column} = ? WHERE run_id = ?", (value, run_id))
            self._touch(c, run_id)

    def annotate(self, run_id: str, name: str | None = None, notes: str | None = None,
                 tags: Iterable[str] | str | None = None) -> dict[str, Any]:
        """Rename a run (its display name; the id stays), set its notes, or its tags (a list,
        or a comma-separated string); None leaves a field as it is. Returns the run."""
        if name is not None:
            name = str(name).strip()
            if len(name) > 100 or "\n" in name:
                raise ConfigError("name: at most 100 characters on one line")
            self._set(run_id, "name", name or None)
        if notes is not None:
            if len(str(notes)) > 20_000:
                raise ConfigError("notes: at most 20,000 characters")
            self._set(run_id, "notes", str(notes))
        if tags is not None:
            items = [t.strip() for t in (tags.split(",") if isinstance(tags, str) else tags) if str(t).strip()]
            bad = [t for t in items if not re.fullmatch(r"[\w.:+@/-]{1,40}", t)]
            if bad:
                raise ConfigError(f"tags: {', '.join(map(repr, bad))} — a tag is 1-40 letters, digits or . _ - : + @ /, "
                                  "tags separated by commas")
            self._set(run_id, "tags", cd.dumps(list(dict.fromkeys(items)), "tags"))
        return self.get_run(run_id)

    def delete_run(self, run_id: str, remove_checkpoints: bool = True) -> None:
        """Delete the run and all its rows; also its ``checkpoints/<run_id>/`` folder."""
        with self._db.write() as c:
            self._require_run(c, run_id)
            c.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))  # cascades
        folder = self.root / "checkpoints" / cd.check_run_id(run_id)
        if remove_checkpoints and folder.is_dir():
            shutil.rmtree(folder)

    # -- steps -------------------------------------------------------------------------
    def write_step(
        self,
        run_id: str,
        step: int,
        scalars: Mapping[str, Any],
        problems: Iterable[Mapping[str, Any]] = (),
        samples: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        """Write one training step (scalars, per-problem rows, samples) in one transaction.

        A step that already exists is a StoreError: a resumed session must call
        ``truncate_after`` first, so a step is never a mix of two attempts.
        """
        step = cd.to_int(step, "step")
        if not isinstance(scalars, Mapping):
            raise ConfigError(f"scalars must be a dict of name -> float, got {type(scalars).__name__}")

        def scalar_rows() -> Iterable[tuple[Any, ...]]:
            for key, value in scalars.items():
                if not isinstance(key, str) or not key:
                    raise ConfigError(f"scalar names must be non-empty strings, got {key!r}")
                yield run_id, step, key, cd.to_float(value, f"scalar {key!r}")

        def problem_rows() -> Iterable[tuple[Any, ...]]:
            for i, p in enumerate(problems):
                where = f"problems[{i}]"
                cols, extra = cd.split_row(p, where, ("problem_id", "n", "c"), ("split",))
                n, c = cd.to_int(cols["n"], f"{where} n"), cd.to_int(cols["c"], f"{where} c")
                split = None if cols["split"] is None else str(cols["split"])
                yield run_id, step, str(cols["problem_id"]), split, n, c, extra

        with self._db.write() as c:
            self._require_run(c, run_id)
            try:
                c.execute("INSERT INTO steps (run_id, step, created_at) VALUES (?, ?, ?)", (run_id, step, time.time()))
            except sqlite3.IntegrityError as exc:
                raise StoreError(
                    f"run {run_id!r} already has step {step}; call truncate_after({run_id!r}, {step - 1}) "
                    "before rewriting it (e.g. when resuming from a checkpoint)"
                ) from exc
            c.executemany("INSERT INTO scalars (run_id, step, key, value) VALUES (?, ?, ?, ?)", scalar_rows())
            c.executemany("INSERT OR IGNORE INTO scalar_keys (run_id, key) VALUES (?, ?)", ((run_id, k) for k in scalars))
            c.executemany(
                "INSERT INTO step_problems (run_id, step, problem_id, split, n, c, extra) VALUES (?, ?, ?, ?, ?, ?, ?)",
                problem_rows(),
            )
            c.executemany(
                "INSERT INTO samples (run_id, step, problem_id, completion, reward, correct, mode_key, extra) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                ((run_id, step, *cd.sample_params(s, f"samples[{i}]")) for i, s in enumerate(samples)),
            )
            c.execute("UPDATE runs SET last_step = MAX(last_step, ?) WHERE run_id = ?", (step, run_id))
            self._touch(c, run_id)

    def last_step(self, run_id: str) -> int:
        """The highest written step, -1 when none."""
        return int(self._require_run(None, run_id)["last_step"])

    def scalars(
        self, run_id: str, keys: Iterable[str] | None = None, since_step: int = -1
    ) -> dict[str, list[tuple[int, float]]]:
        """``{key: [(step, value), ...]}`` sorted by step, only steps after ``since_step``.

        Asked-for keys with no rows come back as empty lists, so a plot can be drawn
        before its first point arrives. NaN comes back as float('nan').
        """
        self._require_run(None, run_id)
        since = cd.to_int(since_step, "since_step")
        sql, params = "SELECT key, step, value FROM scalars WHERE run_id = ? AND step > ?", [run_id, since]
        out: dict[str, list[tuple[int, float]]] = {}
        order = " ORDER BY step, key"  # lets SQLite range-scan (run_id, step): new rows only
        if keys is not None:
            wanted = list(dict.fromkeys(keys))
            if not wanted:
                return {}
            out = {k: [] for k in wanted}
            sql, params = sql + f" AND key IN ({cd.placeholders(wanted)})", [*params, *wanted]
            order = " ORDER BY key, step"  # primary key (run_id, key, step) range per key
        for r in self._db.rows(sql + order, params):
            out.setdefault(r["key"], []).append((r["step"], cd.from_float(r["value"])))
        return out if keys is not None else dict(sorted(out.items()))

    def scalar_keys(self, run_id: str) -> list[str]:
        """Names of every scalar the run has logged, sorted."""
        self._require_run(None, run_id)
        return [r[0] for r in self._db.rows("SELECT key FROM scalar_keys WHERE run_id = ? ORDER BY key", (run_id,))]

    def step_times(self, run_id: str) -> dict[int, float]:
        """{step: wall-clock time (epoch seconds) the step was stored}, for time axes."""
        self._require_run(None, run_id)
        return {int(r[0]): float(r[1]) for r in
                self._db.rows("SELECT step, created_at FROM steps WHERE run_id = ? ORDER BY step", (run_id,))}

    def step_problems(self, run_id: str, since_step: int = -1, problem_id: str | None = None) -> list[dict[str, Any]]:
        """Per-problem rows of training steps after ``since_step`` (step, problem_id, split, n, c, extras)."""
        self._require_run(None, run_id)
        sql = "SELECT * FROM step_problems WHERE run_id = ? AND step > ?"
        params: list[Any] = [run_id, cd.to_int(since_step, "since_step")]
        if problem_id is not None:
            sql, params = sql + " AND problem_id = ?", [*params, str(problem_id)]
        rows = self._db.rows(sql + " ORDER BY step, id", params)
        return [
            cd.merge_extra(
                {"step": r["step"], "problem_id": r["problem_id"], "split": r["split"], "n": r["n"], "c": r["c"]},
                r["extra"],
            )
            for r in rows
        ]

    def step_samples(
        self, run_id: str, step: int | None = None, problem_id: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Sample completions written with training steps (all steps, or one), in write order."""
        self._require_run(None, run_id)
        sql, params = "SELECT * FROM samples WHERE run_id = ?", [run_id]
        if step is not None:
            sql, params = sql + " AND step = ?", [*params, cd.to_int(step, "step")]
        if problem_id is not None:
            sql, params = sql + " AND problem_id = ?", [*params, str(problem_id)]
        sql += " ORDER BY step, id"
        if limit is not None:
            sql, params = sql + " LIMIT ?", [*params, cd.to_int(limit, "limit")]
        return [{"step": r["step"], **cd.sample_row(r)} for r in self._db.rows(sql, params)]

    # -- resume, polling, export -------------------------------------------------------
    def truncate_after(self, run_id: str, step: int) -> dict[str, int]:
        """Delete everything recorded after ``step`` (one transaction), for a resume.

        Removes steps (with their scalars, problems and samples), evaluations (with
        their rows), events and checkpoint records with a later step. Keeps the bank
        (it describes the base model) and the commands (the control history). Returns
        the number of rows removed per table. Checkpoint folders on disk are not touched.
        """
        step = cd.to_int(step, "step")
        after = (run_id, step)
        later_evals = "SELECT eval_id FROM evaluations WHERE run_id = ? AND step > ?"
        deletes = {
            "scalars": "DELETE FROM scalars WHERE run_id = ? AND step > ?",
            "step_problems": "DELETE FROM step_problems WHERE run_id = ? AND step > ?",
            "samples": "DELETE FROM samples WHERE run_id = ? AND step > ?",
            "steps": "DELETE FROM steps WHERE run_id = ? AND step > ?",
            "eval_problems": f"DELETE FROM eval_problems WHERE eval_id IN ({later_evals})",
            "eval_samples": f"DELETE FROM eval_samples WHERE eval_id IN ({later_evals})",
            "evaluations": "DELETE FROM evaluations WHERE run_id = ? AND step > ?",
            "events": "DELETE FROM events WHERE run_id = ? AND step > ?",
            "checkpoints": "DELETE FROM checkpoints WHERE run_id = ? AND step > ?",
        }
        with self._db.write() as c:
            self._require_run(c, run_id)
            counts = {table: c.execute(sql, after).rowcount for table, sql in deletes.items()}
            c.execute(
                "DELETE FROM scalar_keys WHERE run_id = ? AND NOT EXISTS (SELECT 1 FROM scalars s "
                "WHERE s.run_id = scalar_keys.run_id AND s.key = scalar_keys.key)",
                (run_id,),
            )
            c.execute(
                "UPDATE runs SET last_step = COALESCE((SELECT MAX(step) FROM steps WHERE run_id = ?), -1) "
                "WHERE run_id = ?",
                (run_id, run_id),
            )
            self._touch(c, run_id)
        return counts

    def version(self, run_id: str) -> tuple[int, int, int, str, int]:
        """``(last_step, n_events, n_evaluations, status, revision)``: one cheap query.

        A poller redraws only when this changes; ``revision`` grows with every write to
        the run, so it also catches changes the counts miss (a command, a truncation).
        """
        rows = self._db.rows(
            "SELECT run_id, last_step, status, revision, heartbeat_at, owner, "
            "(SELECT COUNT(*) FROM events e WHERE e.run_id = r.run_id) AS n_events, "
            "(SELECT COUNT(*) FROM evaluations v WHERE v.run_id = r.run_id) AS n_evals "
            "FROM runs r WHERE run_id = ?",
            (run_id,),
        )
        if not rows:
            self._require_run(None, run_id)  # raises with the list of runs
        r = rows[0]
        return int(r["last_step"]), int(r["n_events"]), int(r["n_evals"]), str(self._live(r)), int(r["revision"])

    def export(self, run_id: str, path: str | os.PathLike[str], fmt: str | None = None) -> Path:
        """Write the run's scalars as a wide table (step, then one column per key)."""
        target = Path(path)
        chosen = ex.resolve_format(target, fmt)
        columns, rows = ex.wide(self.scalars(run_id))
        return ex.write_table(target, chosen, columns, rows)
