"""The Ray backend of ``workbench sweep``: one Ray task per run, Ray does the scheduling.

Each task runs the same ``workbench train`` process the local backend would (``threads``
torch threads, ``num_cpus=threads`` reserved for it). Two ways to store:

- ``storage="shared"`` (default): every task writes to the sweep's workspace, which must
  be a folder every Ray node sees at the same path on a filesystem where SQLite's
  locking works (a local disk for a one-machine Ray instance).
- ``storage="per-run"``: each task writes its own workspace ``<workspace>/parts/<run>``
  (one writer per SQLite file, which network filesystems handle), and the sweep merges
  each finished run into the workspace (``workbench.store.merge``, as
  ``workbench runs --merge`` does) and removes its part. An unfinished run keeps its part
  and resumes there.

Install with ``pip install 'rlvr-workbench[ray]'``.

``address``: a running cluster (``ray start --head`` / ``RAY_ADDRESS``); without one a
local Ray instance is started for the sweep and stopped after it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError


def _train_task(cmd: list[str], env: dict[str, str], log: str, cwd: str) -> tuple[int, float]:
    """Run one training process to its end (inside a Ray worker); (exit code, seconds)."""
    t0 = time.time()
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"\n$ {shlex.join(cmd)}   (ray task)\n")
        fh.flush()
        rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd)
    return rc, time.time() - t0


STORAGES = ("shared", "per-run")


def _part_job(sweep: Any, job: Any) -> tuple[list[str], Path]:
    """The ``workbench train`` arguments of ``job`` in its own workspace (resume if it started there)."""
    part = sweep.workspace / "parts" / job.run.run_id
    started = False
    if (part / "store.sqlite").exists():
        from workbench.store import RunStore

        started = any(r["run_id"] == job.run.run_id for r in RunStore(part).list_runs())
    if started:
        return ["train", "--resume", job.run.run_id, "--workspace", str(part), "--quiet"], part
    if job.action == "resume":  # started in the shared workspace: keep it there
        return job.args, sweep.workspace
    args = list(job.args)
    args[args.index("--workspace") + 1] = str(part)
    return args, part


def run_jobs_on_ray(sweep: Any, jobs: list, threads: int = 1, address: str | None = None,
                    parallel: int | None = None, echo: Callable[[str], None] = lambda m: None,
                    storage: str = "shared") -> list:
    from workbench.experiments.sweep import RunOutcome, child_env, train_command

    if storage not in STORAGES:
        raise ConfigError(f"--ray-storage {storage!r}: expected one of {', '.join(STORAGES)}")

    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--backend ray needs Ray: pip install 'rlvr-workbench[ray]' (or pip install ray), "
                          "or use --backend local") from exc
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        addr = address or os.environ.get("RAY_ADDRESS")
        if addr:
            kwargs["address"] = addr
        else:
            kwargs["num_cpus"] = (parallel or max(1, (os.cpu_count() or 1) // threads)) * threads
        try:
            ray.init(**kwargs)
        except Exception as exc:  # noqa: BLE001 - Ray raises plain Exceptions on start-up problems
            where = f"the Ray cluster at {addr}" if addr else "a local Ray instance"
            raise ConfigError(f"could not start or reach {where}: {exc}. Check the address (ray status), or use "
                              "--backend local") from exc
        started = True
    try:
        task = ray.remote(num_cpus=threads, max_retries=0)(_train_task)
        env = child_env(threads)
        refs = {}
        parts: dict[str, Path] = {}
        for job in jobs:
            log = str(sweep.log_path(job.run.run_id))
            args = job.args
            if storage == "per-run":
                args, where = _part_job(sweep, job)
                if where != sweep.workspace:
                    parts[job.run.run_id] = where
            refs[task.remote(train_command(args), env, log, os.getcwd())] = (job, time.time())
            sweep.store.mark_experiment_run(sweep.exp_id, job.run.run_id, pid=None, started=True)
            echo(f"submitted {job.run.run_id} ({job.action}) as a Ray task")
        out = []
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            job, t_submit = refs[done[0]]
            try:
                rc, seconds = ray.get(done[0])
            except Exception as exc:  # noqa: BLE001 - a worker died: the run stays resumable
                rc, seconds = -1, time.time() - t_submit
                echo(f"Ray task of {job.run.run_id} failed: {exc}")
            rid = job.run.run_id
            if rid in parts:
                _gather(sweep, rid, parts[rid], echo)
            sweep.store.mark_experiment_run(sweep.exp_id, rid, message=None if rc == 0 else
                                            f"exit {rc}; log {sweep.log_path(rid)}")
            out.append(RunOutcome(rid, job.run.cell_key, job.run.seed, job.action, rc, seconds, sweep._status(rid),
                                  str(sweep.log_path(rid))))
            echo(f"{'finished' if rc == 0 else 'FAILED (exit ' + str(rc) + ')'} {rid} in {seconds:.1f} s; "
                 f"{len(out)}/{len(jobs)} done")
        return out
    finally:
        if started:
            ray.shutdown()


def _gather(sweep: Any, run_id: str, part: Path, echo: Callable[[str], None]) -> None:
    """Merge a finished run's own workspace into the sweep's and remove it; leave an
    unfinished one in place (the next resume continues it there)."""
    from workbench.store import RunStore
    from workbench.store.merge import merge_workspace

    if not (part / "store.sqlite").exists():
        return
    src = RunStore(part)
    try:
        finished = src.get_run(run_id)["status"] == "finished"
    finally:
        src.close()
    if not finished:
        echo(f"{run_id} did not finish; its workspace {part} stays for a resume")
        return
    merge_workspace(sweep.store, part, [run_id])
    shutil.rmtree(part, ignore_errors=True)
