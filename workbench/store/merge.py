"""Merge the runs of one workspace into another (``workbench runs --merge``).

For runs trained apart (on other machines, or as Ray tasks that each wrote their own
workspace) and gathered afterwards. Every row of a run is copied in one transaction,
the checkpoint folders are copied beside it, and experiments come along. Ids that are
local to a store (evaluation, event and command ids, row ids) are renumbered; run ids are
kept, so a run that already exists in the target is an error (or, with ``skip_existing``,
left as it is).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from workbench.errors import StoreError
from workbench.store import _codec as cd


def _columns(c: sqlite3.Connection, schema: str, table: str) -> list[tuple[str, bool]]:
    """(name, is an integer row id) of a table's columns in ``schema``; [] when it has no such table."""
    rows = c.execute(f"PRAGMA {schema}.table_info({table})").fetchall()
    pks = [r for r in rows if r[5]]
    return [(r[1], len(pks) == 1 and bool(r[5]) and str(r[2]).upper() == "INTEGER") for r in rows]


def merge_workspace(target: Any, source: str | os.PathLike, run_ids: Iterable[str] | None = None, *,
                    skip_existing: bool = False, copy_checkpoints: bool = True) -> dict[str, Any]:
    """Copy runs (default: all) of the store in ``source`` into ``target`` (a RunStore).

    Returns {"runs": merged run ids, "skipped": runs already in the target, "experiments": ids}."""
    src_root = Path(source)
    src_db = src_root / "store.sqlite"
    if not src_db.exists():
        raise StoreError(f"{src_root} has no run store (no store.sqlite); give the workspace folder of the runs to merge")
    if src_root.resolve() == Path(target.root).resolve():
        raise StoreError(f"cannot merge {src_root} into itself")
    from workbench.store import RunStore

    RunStore(src_root).list_runs()  # opens (and if needed upgrades) the source's schema
    c = target._db.conn()
    target.list_runs()  # the target's schema is ready
    c.execute("ATTACH DATABASE ? AS src", (str(src_db),))
    try:
        with target._db.write() as w:
            have = {r[0] for r in w.execute("SELECT run_id FROM main.runs")}
            wanted = [r[0] for r in w.execute("SELECT run_id FROM src.runs ORDER BY created_at")]
            if run_ids is not None:
                asked = list(run_ids)
                missing = sorted(set(asked) - set(wanted))
                if missing:
                    raise StoreError(f"{src_root} has no run(s) {', '.join(missing)}")
                wanted = [r for r in wanted if r in set(asked)]
            clash = [r for r in wanted if r in have]
            if clash and not skip_existing:
                raise StoreError(f"run(s) {', '.join(clash)} already exist in {target.root}; merge the others with "
                                 "skip_existing (--skip-existing) or delete them first")
            runs = [r for r in wanted if r not in have]
            if runs:
                _copy_rows(w, runs, src_root)
            experiments = _copy_experiments(w)
    finally:
        c.execute("DETACH DATABASE src")
    if copy_checkpoints:
        for rid in runs:
            folder = src_root / "checkpoints" / cd.check_run_id(rid)
            if folder.is_dir():
                shutil.copytree(folder, Path(target.root) / "checkpoints" / rid, dirs_exist_ok=True)
    return {"runs": runs, "skipped": [r for r in wanted if r in have], "experiments": experiments}


def _copy_rows(w: sqlite3.Connection, runs: list[str], src_root: Path) -> None:
    marks = ",".join("?" * len(runs))
    tables = [r[0] for r in w.execute("SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE "
                                      "'sqlite_%' AND name NOT IN ('meta', 'experiments', 'experiment_runs')")]
    order = ["runs", "steps", "evaluations"] + sorted(t for t in tables if t not in ("runs", "steps", "evaluations"))
    eval_map: dict[int, int] = {}
    for table in order:
        if table not in tables:
            continue
        main_cols = _columns(w, "main", table)
        src_names = {n for n, _ in _columns(w, "src", table)}
        if not src_names:
            continue
        if table == "evaluations":
            cols = [n for n, _ in main_cols if n in src_names and n != "eval_id"]
            for row in w.execute(f"SELECT eval_id, {', '.join(cols)} FROM src.evaluations WHERE run_id IN ({marks}) "
                                 "ORDER BY eval_id", runs).fetchall():
                cur = w.execute(f"INSERT INTO main.evaluations ({', '.join(cols)}) VALUES "
                                f"({', '.join('?' * len(cols))})", tuple(row[1:]))
                eval_map[int(row[0])] = int(cur.lastrowid)
            continue
        cols = [n for n, rowid in main_cols if n in src_names and not rowid]
        if "run_id" in cols:
            where, params = f"run_id IN ({marks})", runs
        elif "eval_id" in cols:
            if not eval_map:
                continue
            where, params = f"eval_id IN ({','.join('?' * len(eval_map))})", list(eval_map)
        else:
            continue
        rowid = [n for n, is_rowid in main_cols if is_rowid and n in src_names]
        order_by = f" ORDER BY {rowid[0]}" if rowid else ""  # keep the order rows were written in
        rows = w.execute(f"SELECT {', '.join(cols)} FROM src.{table} WHERE {where}{order_by}", params).fetchall()
        if "eval_id" in cols:
            i = cols.index("eval_id")
            rows = [(*r[:i], eval_map[int(r[i])], *r[i + 1:]) for r in rows]
        if table == "checkpoints" and "path" in cols:
            i = cols.index("path")
            rows = [(*r[:i], _relative(r[i], src_root), *r[i + 1:]) for r in rows]
        w.executemany(f"INSERT INTO main.{table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)


def _relative(path: str, src_root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(src_root.resolve()).as_posix() if Path(path).is_absolute() else path
    except ValueError:
        return path


def _copy_experiments(w: sqlite3.Connection) -> list[str]:
    if not w.execute("SELECT 1 FROM src.sqlite_master WHERE type = 'table' AND name = 'experiment_runs'").fetchone():
        return []
    from workbench.store._experiments import EXPERIMENT_STATEMENTS

    for statement in EXPERIMENT_STATEMENTS:
        w.execute(statement)
    out = []
    for exp_id, spec, created, updated in w.execute("SELECT exp_id, spec, created_at, updated_at FROM src.experiments"
                                                    ).fetchall():
        w.execute("INSERT OR IGNORE INTO main.experiments (exp_id, spec, created_at, updated_at) VALUES (?, ?, ?, ?)",
                  (exp_id, spec, created, updated))
        w.execute("INSERT OR IGNORE INTO main.experiment_runs (exp_id, run_id, cell, cell_key, seed, position, "
                  "attempts, message) SELECT exp_id, run_id, cell, cell_key, seed, position, attempts, message "
                  "FROM src.experiment_runs WHERE exp_id = ?", (exp_id,))
        out.append(exp_id)
    return out
