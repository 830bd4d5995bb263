"""Evaluation points and the base model's bank of correct completions."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from workbench.errors import ConfigError, UnknownNameError
from workbench.store import _codec as cd
from workbench.store._base import StoreBase


class EvalsMixin(StoreBase):
    """An evaluation is a point (step, label, split) with a summary, per-problem rows and
    optional samples; label "base" marks the adapter-disabled base model (step 0)."""

    def write_evaluation(
        self,
        run_id: str,
        step: int,
        label: str,
        split: str,
        summary: Mapping[str, Any],
        problems: Iterable[Mapping[str, Any]],
        samples: Iterable[Mapping[str, Any]] = (),
    ) -> int:
        """Store one evaluation in one transaction; returns its eval_id."""
        step = cd.to_int(step, "step")
        if not label or not isinstance(label, str) or not isinstance(split, str) or not split:
            raise ConfigError(f"label and split must be non-empty strings, got {label!r}, {split!r}")
        summary_text = cd.dumps(cd.check_dict(summary, "summary"), "summary")

        def problem_params(eval_id: int) -> Iterable[tuple[Any, ...]]:
            for i, p in enumerate(problems):
                where = f"problems[{i}]"
                cols, extra = cd.split_row(p, where, ("problem_id", "n", "c"))
                n, c = cd.to_int(cols["n"], f"{where} n"), cd.to_int(cols["c"], f"{where} c")
                yield eval_id, str(cols["problem_id"]), n, c, extra

        with self._db.write() as c:
            self._require_run(c, run_id)
            cur = c.execute(
                "INSERT INTO evaluations (run_id, step, label, split, summary, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, step, label, split, summary_text, time.time()),
            )
            eval_id = int(cur.lastrowid or 0)
            c.executemany(
                "INSERT INTO eval_problems (eval_id, problem_id, n, c, extra) VALUES (?, ?, ?, ?, ?)",
                problem_params(eval_id),
            )
            c.executemany(
                "INSERT INTO eval_samples (eval_id, problem_id, completion, reward, correct, "
                "mode_key, extra) VALUES (?, ?, ?, ?, ?, ?, ?)",
                ((eval_id, *cd.sample_params(s, f"samples[{i}]")) for i, s in enumerate(samples)),
            )
            self._touch(c, run_id)
        return eval_id

    def delete_evaluations(self, run_id: str, eval_ids: Iterable[int]) -> int:
        """Delete these evaluations of the run (with their rows) in one transaction; returns how many."""
        ids = [cd.to_int(i, "eval_id") for i in eval_ids]
        if not ids:
            return 0
        with self._db.write() as c:
            self._require_run(c, run_id)
            q = cd.placeholders(ids)
            c.execute(f"DELETE FROM eval_problems WHERE eval_id IN ({q})", ids)
            c.execute(f"DELETE FROM eval_samples WHERE eval_id IN ({q})", ids)
            n = c.execute(f"DELETE FROM evaluations WHERE run_id = ? AND eval_id IN ({q})", [run_id, *ids]).rowcount
            self._touch(c, run_id)
        return n

    def evaluations(self, run_id: str, label: str | None = None, split: str | None = None) -> list[dict[str, Any]]:
        """The run's evaluation points, ordered by step (then by when they were written)."""
        self._require_run(None, run_id)
        sql, params = "SELECT * FROM evaluations WHERE run_id = ?", [run_id]
        if label is not None:
            sql, params = sql + " AND label = ?", [*params, label]
        if split is not None:
            sql, params = sql + " AND split = ?", [*params, split]
        rows = self._db.rows(sql + " ORDER BY step, eval_id", params)
        return [
            {
                "eval_id": r["eval_id"],
                "step": r["step"],
                "label": r["label"],
                "split": r["split"],
                "summary": cd.loads(r["summary"]),
                "created_at": r["created_at"],
            }
            for r in rows
        ]

    def _require_eval(self, run_id: str, eval_id: int) -> None:
        self._require_run(None, run_id)
        if not self._db.rows("SELECT 1 FROM evaluations WHERE run_id = ? AND eval_id = ?", (run_id, eval_id)):
            known = self._db.rows("SELECT eval_id FROM evaluations WHERE run_id = ? ORDER BY eval_id", (run_id,))
            raise UnknownNameError(
                "evaluation", str(eval_id), [str(r[0]) for r in known][-20:],
                hint=f"evaluations of run {run_id!r}: RunStore.evaluations(run_id)",
            )

    def eval_problems(self, run_id: str, eval_id: int) -> list[dict[str, Any]]:
        """Per-problem rows of one evaluation: problem_id, n, c and the extra fields."""
        self._require_eval(run_id, eval_id)
        rows = self._db.rows("SELECT * FROM eval_problems WHERE eval_id = ? ORDER BY id", (eval_id,))
        return [cd.merge_extra({"problem_id": r["problem_id"], "n": r["n"], "c": r["c"]}, r["extra"]) for r in rows]

    def eval_samples(
        self, run_id: str, eval_id: int, problem_id: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Sample completions of one evaluation (optionally of one problem), in write order."""
        self._require_eval(run_id, eval_id)
        sql, params = "SELECT * FROM eval_samples WHERE eval_id = ?", [eval_id]
        if problem_id is not None:
            sql, params = sql + " AND problem_id = ?", [*params, str(problem_id)]
        sql += " ORDER BY id"
        if limit is not None:
            sql, params = sql + " LIMIT ?", [*params, cd.to_int(limit, "limit")]
        return [cd.sample_row(r) for r in self._db.rows(sql, params)]

    # -- bank --------------------------------------------------------------------------
    def write_bank(self, run_id: str, rows: Iterable[Mapping[str, Any]], replace: bool = False) -> None:
        """Add the base model's distinct correct completions (one transaction).

        Adding is idempotent: a row with the same (problem_id, mode_key, completion)
        updates its ref_logprob instead of duplicating, so evaluating the base model
        split by split, or again after a crash, is harmless. ``replace`` clears first.
        """

        def params() -> Iterable[tuple[Any, ...]]:
            for i, row in enumerate(rows):
                where = f"bank rows[{i}]"
                cols, extra = cd.split_row(row, where, ("problem_id", "mode_key", "completion"), ("ref_logprob",))
                if cols["mode_key"] is None:
                    raise ConfigError(f"{where} mode_key must not be None: the bank holds correct completions")
                logp = cd.to_float(cols["ref_logprob"], f"{where} ref_logprob")
                yield run_id, str(cols["problem_id"]), str(cols["mode_key"]), str(cols["completion"]), logp, extra

        with self._db.write() as c:
            self._require_run(c, run_id)
            if replace:
                c.execute("DELETE FROM bank WHERE run_id = ?", (run_id,))
            c.executemany(
                "INSERT INTO bank (run_id, problem_id, mode_key, completion, ref_logprob, extra) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, problem_id, mode_key, completion) "
                "DO UPDATE SET ref_logprob = excluded.ref_logprob, extra = excluded.extra",
                params(),
            )
            self._touch(c, run_id)

    def bank(self, run_id: str, problem_id: str | None = None) -> list[dict[str, Any]]:
        """The bank's rows (problem_id, mode_key, completion, ref_logprob, extra fields)."""
        self._require_run(None, run_id)
        sql, params = "SELECT * FROM bank WHERE run_id = ?", [run_id]
        if problem_id is not None:
            sql, params = sql + " AND problem_id = ?", [*params, str(problem_id)]
        rows = self._db.rows(sql + " ORDER BY id", params)
        return [
            cd.merge_extra(
                {
                    "problem_id": r["problem_id"],
                    "mode_key": r["mode_key"],
                    "completion": r["completion"],
                    "ref_logprob": cd.from_float(r["ref_logprob"]),
                },
                r["extra"],
            )
            for r in rows
        ]
