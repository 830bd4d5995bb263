"""Experiments: a grid of cells (strategy and parameter values) × seeds, one run per pair.

An experiment is a row with its spec (JSON: strategies, seeds, steps, the settings every
run shares, the grid) and one ``experiment_runs`` row per planned run: its run id, its
cell and its seed. The runs themselves are ordinary runs in the ``runs`` table (created
by the training process when it starts), so everything that reads runs reads them; a
planned run that has not started yet has no ``runs`` row and shows as "pending".

The two tables are part of the schema (a migration adds them to older stores); a store
that lacks them (written by another version) gets them on the first write of an
experiment, and its readers just see no experiments.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from typing import Any

from workbench.errors import ConfigError, StoreError, UnknownNameError
from workbench.store import _codec as cd
from workbench.store._base import StoreBase

from workbench.store.schema import EXPERIMENT_STATEMENTS  # noqa: E402  (the tables, as in the schema)


class ExperimentsMixin(StoreBase):
    """Experiments and their planned runs."""

    def _has_experiment_tables(self) -> bool:
        rows = self._db.rows("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'experiment_runs'")
        return bool(rows)

    def create_experiment(self, exp_id: str, spec: Mapping[str, Any], runs: Iterable[Mapping[str, Any]]) -> str:
        """Register an experiment and its planned runs (``run_id``, ``cell`` dict, ``cell_key``,
        ``seed``) in one transaction. An existing ``exp_id`` is a StoreError."""
        cd.check_run_id(exp_id)
        spec_text = cd.dumps(cd.check_dict(spec, "spec"), "spec")
        rows = []
        for i, r in enumerate(runs):
            cd.check_run_id(r["run_id"])
            rows.append((exp_id, r["run_id"], json.dumps(r["cell"], sort_keys=True), str(r["cell_key"]),
                         cd.to_int(r["seed"], f"runs[{i}] seed"), i))
        now = time.time()
        with self._db.write() as c:
            for statement in EXPERIMENT_STATEMENTS:
                c.execute(statement)
            try:
                c.execute("INSERT INTO experiments (exp_id, spec, created_at, updated_at) VALUES (?, ?, ?, ?)",
                          (exp_id, spec_text, now, now))
            except sqlite3.IntegrityError as exc:
                raise StoreError(
                    f"an experiment {exp_id!r} already exists in {self.path}: continue it with "
                    f"`workbench sweep --resume {exp_id}`, or choose another --name"
                ) from exc
            try:
                c.executemany("INSERT INTO experiment_runs (exp_id, run_id, cell, cell_key, seed, position) "
                              "VALUES (?, ?, ?, ?, ?, ?)", rows)
            except sqlite3.IntegrityError as exc:
                raise StoreError(f"experiment {exp_id!r}: two planned runs share a run id or a (cell, seed): {exc}") from exc
        return exp_id

    def list_experiments(self) -> list[dict[str, Any]]:
        """Every experiment (newest first): exp_id, spec, created_at, and run counts by status."""
        if not self.path.exists() or not self._has_experiment_tables():
            return []
        out = []
        for r in self._db.rows("SELECT * FROM experiments ORDER BY created_at DESC, exp_id"):
            runs = self.experiment_runs(r["exp_id"])
            counts: dict[str, int] = {}
            for run in runs:
                counts[run["status"]] = counts.get(run["status"], 0) + 1
            out.append({"exp_id": r["exp_id"], "spec": cd.loads(r["spec"]), "created_at": r["created_at"],
                        "num_runs": len(runs), "status_counts": counts})
        return out

    def get_experiment(self, exp_id: str) -> dict[str, Any]:
        """The experiment's spec and planned runs (see ``experiment_runs``)."""
        row = self._require_experiment(exp_id)
        return {"exp_id": row["exp_id"], "spec": cd.loads(row["spec"]), "created_at": row["created_at"],
                "updated_at": row["updated_at"], "runs": self.experiment_runs(exp_id)}

    def experiment_runs(self, exp_id: str) -> list[dict[str, Any]]:
        """Planned runs in plan order: run_id, cell, cell_key, seed, pid, attempts, message,
        and from the runs table (when the run has started) status, last_step; "pending" before."""
        self._require_experiment(exp_id)
        rows = self._db.rows("SELECT * FROM experiment_runs WHERE exp_id = ? ORDER BY position", (exp_id,))
        out = []
        for r in rows:
            item = {"run_id": r["run_id"], "cell": json.loads(r["cell"]), "cell_key": r["cell_key"], "seed": r["seed"],
                    "pid": r["pid"], "attempts": r["attempts"], "message": r["message"], "status": "pending",
                    "last_step": -1}
            try:
                run = self.get_run(r["run_id"])  # type: ignore[attr-defined]
            except UnknownNameError:
                pass
            else:
                item["status"], item["last_step"] = run["status"], run["last_step"]
            out.append(item)
        return out

    def mark_experiment_run(self, exp_id: str, run_id: str, *, pid: int | None = None, started: bool = False,
                            message: str | None = None) -> None:
        """Record the process now training ``run_id`` (``started`` counts an attempt) or a message."""
        with self._db.write() as c:
            cur = c.execute(
                "UPDATE experiment_runs SET pid = ?, attempts = attempts + ?, message = COALESCE(?, message) "
                "WHERE exp_id = ? AND run_id = ?", (pid, 1 if started else 0, message, exp_id, run_id))
            if cur.rowcount == 0:
                raise UnknownNameError("experiment run", run_id, [], hint=f"runs of experiment {exp_id!r}")
            c.execute("UPDATE experiments SET updated_at = ? WHERE exp_id = ?", (time.time(), exp_id))

    def experiment_of_run(self, run_id: str) -> tuple[str, dict[str, Any], int] | None:
        """(exp_id, cell, seed) of a run that belongs to an experiment, else None."""
        if not self.path.exists() or not self._has_experiment_tables():
            return None
        rows = self._db.rows("SELECT exp_id, cell, seed FROM experiment_runs WHERE run_id = ? LIMIT 1", (run_id,))
        return (rows[0]["exp_id"], json.loads(rows[0]["cell"]), int(rows[0]["seed"])) if rows else None

    def delete_experiment(self, exp_id: str) -> None:
        """Forget the experiment (its runs stay in the store)."""
        self._require_experiment(exp_id)
        with self._db.write() as c:
            c.execute("DELETE FROM experiment_runs WHERE exp_id = ?", (exp_id,))
            c.execute("DELETE FROM experiments WHERE exp_id = ?", (exp_id,))

    def _require_experiment(self, exp_id: str) -> sqlite3.Row:
        if not isinstance(exp_id, str) or not exp_id:
            raise ConfigError(f"experiment name must be a non-empty string, got {exp_id!r}")
        if self.path.exists() and self._has_experiment_tables():
            rows = self._db.rows("SELECT * FROM experiments WHERE exp_id = ?", (exp_id,))
            if rows:
                return rows[0]
            known = [r[0] for r in self._db.rows("SELECT exp_id FROM experiments ORDER BY created_at DESC LIMIT 20")]
        else:
            known = []
        raise UnknownNameError("experiment", exp_id, known,
                               hint=f"experiments in {self.root}: `workbench sweep --list --workspace {self.root}`")


def __getattr__(name: str):
    """``ExperimentStore``: the run store class (``RunStore`` includes this mixin)."""
    if name == "ExperimentStore":
        from workbench.store.runstore import RunStore

        return RunStore
    raise AttributeError(name)
