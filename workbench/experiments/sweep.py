"""Sweeps: run a grid of strategies (and parameter values) × seeds as one experiment.

Every planned run is an ordinary ``workbench train`` process writing to the run store;
the experiment (its spec and a table of planned runs with their cell and seed) lives in
the same store. The design is paired: seed s of every cell is the same run seed, so the
cells' seed-s runs share the adapter initialisation, the prompt order and the training
sampling streams, and every run uses the same evaluation sampling seed.

Backends:

- ``local`` (default): at most ``parallel`` training processes at once on this machine,
  each with ``threads`` torch threads (OMP_NUM_THREADS / MKL_NUM_THREADS, which torch
  reads at start), ``parallel`` defaulting to cores // threads so the pool does not
  oversubscribe. On Linux each child is killed with the sweep (``PR_SET_PDEATHSIG``), so
  a killed sweep leaves no trainer behind; ``resume`` then continues every unfinished
  run from its last checkpoint (``workbench train --resume``) and keeps finished ones.
- ``ray``: one Ray task per run (``workbench.experiments.ray_backend``), writing to the
  shared workspace or (``ray_storage="per-run"``) each to its own, merged when it finishes.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError, StoreError, UnknownNameError
from workbench.store._experiments import ExperimentStore

#: Fields a sweep sets itself: not allowed in --set / --grid.
RESERVED = {"seed": "--seeds", "steps": "--steps", "strategy": "--strategies", "workspace": "--workspace",
            "name": "--name"}
BACKENDS = ("local", "ray")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def available_cores() -> int:
    """CPU cores this process may use (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_parallel(threads: int) -> int:
    return max(1, available_cores() // max(1, threads))


def parse_seeds(value: int | str | Sequence[int]) -> list[int]:
    """``3`` -> [0, 1, 2]; ``"0,5,7"`` -> [0, 5, 7]; a list is checked and kept."""
    if isinstance(value, str):
        text = value.strip()
        if "," not in text:
            try:
                value = int(text)
            except ValueError:
                raise ConfigError(f"--seeds {value!r}: expected a count (3) or a list of seeds (0,1,2)") from None
        else:
            try:
                value = [int(s) for s in text.split(",") if s.strip()]
            except ValueError:
                raise ConfigError(f"--seeds {value!r}: expected integers separated by commas, e.g. 0,1,2") from None
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"--seeds {value}: expected at least 1 seed (3 or more for intervals)")
        return list(range(value))
    seeds = [int(s) for s in value]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"seeds {seeds}: expected distinct non-negative integers")
    return seeds


def parse_pairs(items: Iterable[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE, e.g. {flag} rollout.group_size=8")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def parse_grid(items: Iterable[str]) -> dict[str, list[str]]:
    grid: dict[str, list[str]] = {}
    for item in items:
        key, values = next(iter(parse_pairs([item], "--grid").items()))
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not vals:
            raise ConfigError(f"--grid {key}=: expected one or more values separated by commas, e.g. {key}=1e-4,5e-4")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; list all its values once: --grid {key}=v1,v2")
        grid[key] = vals
    return grid


@dataclass
class PlannedRun:
    run_id: str
    cell: dict[str, str]
    cell_key: str
    seed: int


@dataclass
class SweepSpec:
    """What a sweep runs: strategies (and grid values) × seeds, each for ``steps`` steps,
    with ``sets`` applied to every run (``--set`` semantics of ``workbench train``)."""

    name: str
    strategies: list[str]
    seeds: list[int]
    steps: int
    sets: dict[str, str] = field(default_factory=dict)
    grid: dict[str, list[str]] = field(default_factory=dict)

    # ------------------------------------------------------------------ checks
    def validate(self) -> "SweepSpec":
        """Raise ConfigError on anything a training process would reject, before any starts."""
        from workbench.config import RunConfig
        from workbench.strategies.catalog import LOSS_PREFIXES, PIECES, PRESETS, describe_params, split_composition

        if not _NAME.match(self.name or ""):
            raise ConfigError(f"--name {self.name!r}: expected 1-64 letters, digits, '.', '_' or '-', "
                              "starting with a letter or digit (it prefixes every run id)")
        if not self.strategies:
            raise ConfigError("--strategies: expected one or more strategies separated by commas, e.g. grpo,bbg")
        if len(set(self.strategies)) != len(self.strategies):
            raise ConfigError(f"--strategies {','.join(self.strategies)}: a strategy is listed twice")
        for s in self.strategies:
            for piece in split_composition(s):
                if piece not in PIECES:
                    raise UnknownNameError("strategy", s, list(PRESETS),
                                           hint="a preset or pieces joined by '+'; see `workbench strategies`")
        if self.steps < 1:
            raise ConfigError(f"--steps {self.steps}: expected at least 1 training step")
        self.seeds = parse_seeds(self.seeds)
        sections = {f.name for f in dataclasses.fields(RunConfig)}
        config_over: dict[str, str] = {}
        for key, value in [*self.sets.items(), *((k, v[0]) for k, v in self.grid.items())]:
            head = key.split(".")[0]
            if key in RESERVED:
                raise ConfigError(f"{key} is set by the sweep itself; use {RESERVED[key]} instead of --set/--grid {key}")
            if head in sections:
                config_over[key] = value
                continue
            piece, _, param = key.partition(".")
            if piece in LOSS_PREFIXES:
                continue
            if piece not in PIECES or not param:
                raise ConfigError(f"--set/--grid {key}: not a config field (e.g. rollout.group_size) nor a strategy "
                                  f"parameter PIECE.PARAM (e.g. bbg.k); see `workbench strategies`")
            if param not in describe_params(piece):
                raise ConfigError(f"--set/--grid {key}: piece {piece!r} has no parameter {param!r}; "
                                  f"it has: {', '.join(describe_params(piece)) or 'none'}")
            if not any(piece in split_composition(s) for s in self.strategies):
                raise ConfigError(f"--set/--grid {key}: none of the strategies {', '.join(self.strategies)} uses the "
                                  f"piece {piece!r}")
        for key in self.grid:
            if key in self.sets:
                raise ConfigError(f"{key} is both in --set and in --grid; keep one")
        try:  # every grid value must give a valid config
            for combo in itertools.product(*self.grid.values()) if self.grid else [()]:
                over = {**{k: v for k, v in config_over.items() if k not in self.grid},
                        **{k: v for k, v in zip(self.grid, combo) if k.split(".")[0] in sections}}
                RunConfig().override({**over, "steps": self.steps}).validate()
        except ConfigError as exc:
            raise ConfigError(f"sweep settings: {exc}") from exc
        return self

    # ------------------------------------------------------------------ plan
    def cells(self) -> list[dict[str, str]]:
        """Grid cells in order: strategies outer, grid values inner."""
        combos = list(itertools.product(*self.grid.values())) if self.grid else [()]
        return [{"strategy": s, **dict(zip(self.grid, combo))} for s in self.strategies for combo in combos]

    def plan(self) -> list[PlannedRun]:
        cells = self.cells()
        labels = [slug(cell_label(c)) for c in cells]
        unique = len(set(labels)) == len(labels)
        runs = []
        for i, cell in enumerate(cells):
            tag = labels[i] if unique else f"c{i}-{slug(cell['strategy'])}"
            for seed in self.seeds:
                runs.append(PlannedRun(f"{self.name}-{tag}-s{seed}"[:128], cell, cell_key(cell), seed))
        return runs

    def train_args(self, run: PlannedRun, workspace: str | Path) -> list[str]:
        """``workbench train`` arguments of a fresh run."""
        from workbench.strategies.catalog import LOSS_PREFIXES, split_composition

        pieces = set(split_composition(run.cell["strategy"]))
        args = ["train", "--run-id", run.run_id, "--workspace", str(workspace), "--quiet",
                "--strategy", run.cell["strategy"], "--seed", str(run.seed), "--steps", str(self.steps),
                "--name", f"{self.name} {cell_label(run.cell)} seed {run.seed}"]
        values = {**self.sets, **{k: v for k, v in run.cell.items() if k != "strategy"}}
        for key, value in values.items():
            head = key.split(".")[0]
            if "." in key and head not in LOSS_PREFIXES and _is_piece(head) and head not in pieces:
                continue  # a parameter of a piece this run's strategy does not have
            args += ["--set", f"{key}={value}"]
        return args

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SweepSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _is_piece(name: str) -> bool:
    from workbench.strategies.catalog import PIECES

    return name in PIECES


def cell_key(cell: Mapping[str, str]) -> str:
    """A stable text key of a cell: "strategy=grpo" or "strategy=grpo,optim.lr=1e-3"."""
    return ",".join(f"{k}={v}" for k, v in cell.items())


def cell_label(cell: Mapping[str, str]) -> str:
    """A short label: "grpo" or "grpo lr=1e-3"."""
    extra = " ".join(f"{k.split('.')[-1]}={v}" for k, v in cell.items() if k != "strategy")
    return f"{cell['strategy']}{' ' + extra if extra else ''}"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._") or "cell"


# ---------------------------------------------------------------------- execution
@dataclass
class RunOutcome:
    run_id: str
    cell_key: str
    seed: int
    action: str               # "kept" (already finished), "fresh", "resume"
    returncode: int | None    # None when kept
    seconds: float
    status: str               # the run's status in the store afterwards
    log: str | None


@dataclass
class SweepResult:
    exp_id: str
    workspace: str
    outcomes: list[RunOutcome]
    seconds: float

    @property
    def run_ids(self) -> list[str]:
        return [o.run_id for o in self.outcomes]

    @property
    def ok(self) -> bool:
        return all(o.status == "finished" for o in self.outcomes)

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.status != "finished"]

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": self.exp_id, "workspace": self.workspace, "ok": self.ok,
                "seconds": round(self.seconds, 2), "run_ids": self.run_ids,
                "runs": [dataclasses.asdict(o) for o in self.outcomes]}


@dataclass
class Job:
    """One training process to run: the planned run and its ``workbench train`` arguments."""

    run: PlannedRun
    action: str
    args: list[str]


class Sweep:
    """An experiment in a run store: create it (``Sweep.create``) or load it (``Sweep.load``),
    then ``run()`` it; ``run()`` again (or ``workbench sweep --resume``) finishes what is left.

        sw = Sweep.create("runs", SweepSpec("demo", ["grpo", "bbg"], [0, 1], steps=50))
        result = sw.run(parallel=2)
    """

    def __init__(self, workspace: str | os.PathLike, spec: SweepSpec, store: ExperimentStore | None = None):
        self.workspace = Path(workspace).resolve()
        self.spec = spec
        self.store = store or ExperimentStore(self.workspace)

    @property
    def exp_id(self) -> str:
        return self.spec.name

    @classmethod
    def create(cls, workspace: str | os.PathLike, spec: SweepSpec, command: str | None = None) -> "Sweep":
        spec.validate()
        sw = cls(workspace, spec)
        record = {**spec.to_dict(), "command": command or "", "created_by": "workbench sweep"}
        sw.store.create_experiment(spec.name, record, [dataclasses.asdict(r) for r in spec.plan()])
        return sw

    @classmethod
    def load(cls, workspace: str | os.PathLike, name: str) -> "Sweep":
        store = ExperimentStore(Path(workspace).resolve())
        exp = store.get_experiment(name)
        return cls(workspace, SweepSpec.from_dict(exp["spec"]), store)

    # ------------------------------------------------------------------ what to do
    def planned(self) -> list[dict[str, Any]]:
        return self.store.experiment_runs(self.exp_id)

    def jobs(self) -> tuple[list[Job], list[RunOutcome]]:
        """(processes to start, runs already finished): a finished run is kept, a started one
        resumes from its last checkpoint, a planned one starts fresh."""
        todo, kept = [], []
        plan = {r.run_id: r for r in self.spec.plan()}
        for row in self.planned():
            run = plan.get(row["run_id"]) or PlannedRun(row["run_id"], row["cell"], row["cell_key"], row["seed"])
            if row["status"] == "finished":
                kept.append(RunOutcome(run.run_id, run.cell_key, run.seed, "kept", None, 0.0, "finished", None))
                continue
            _check_not_running(row)
            if row["status"] == "pending":
                todo.append(Job(run, "fresh", self.spec.train_args(run, self.workspace)))
            else:
                todo.append(Job(run, "resume", ["train", "--resume", run.run_id, "--workspace", str(self.workspace),
                                                "--quiet"]))
        return todo, kept

    def log_path(self, run_id: str) -> Path:
        return self.workspace / "sweeps" / self.exp_id / f"{run_id}.log"

    # ------------------------------------------------------------------ run
    def run(self, parallel: int | None = None, threads: int = 1, backend: str = "local",
            address: str | None = None, echo: Callable[[str], None] | None = None,
            ray_storage: str = "shared") -> SweepResult:
        """Run every unfinished planned run; returns when all have ended (finished or not)."""
        if backend not in BACKENDS:
            raise ConfigError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        if threads < 1:
            raise ConfigError(f"--threads {threads}: expected at least 1 torch thread per run")
        if parallel is not None and parallel < 1:
            raise ConfigError(f"--parallel {parallel}: expected at least 1 run at a time")
        echo = echo or (lambda msg: None)
        t0 = time.time()
        jobs, kept = self.jobs()
        for k in kept:
            echo(f"kept {k.run_id} (finished)")
        if backend == "ray":
            from workbench.experiments.ray_backend import run_jobs_on_ray

            done = run_jobs_on_ray(self, jobs, threads=threads, address=address, parallel=parallel, echo=echo,
                                   storage=ray_storage)
        else:
            done = self._run_local(jobs, parallel or default_parallel(threads), threads, echo)
        order = {r["run_id"]: i for i, r in enumerate(self.planned())}
        outcomes = sorted([*kept, *done], key=lambda o: order.get(o.run_id, 0))
        return SweepResult(self.exp_id, str(self.workspace), outcomes, time.time() - t0)

    def _run_local(self, jobs: list[Job], parallel: int, threads: int, echo: Callable[[str], None]) -> list[RunOutcome]:
        queue, running, out = list(jobs), {}, []
        total = len(jobs)
        env = child_env(threads)
        try:
            while queue or running:
                while queue and len(running) < parallel:
                    job = queue.pop(0)
                    log = self.log_path(job.run.run_id)
                    log.parent.mkdir(parents=True, exist_ok=True)
                    fh = open(log, "a", encoding="utf-8")
                    cmd = train_command(job.args)
                    fh.write(f"\n$ {shlex.join(cmd)}\n")
                    fh.flush()
                    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
                    self.store.mark_experiment_run(self.exp_id, job.run.run_id, pid=proc.pid, started=True)
                    running[job.run.run_id] = (job, proc, fh, time.time())
                    echo(f"[{total - len(queue)}/{total}] "
                         f"{'started' if job.action == 'fresh' else 'resuming'} {job.run.run_id} (pid {proc.pid})")
                for rid, (job, proc, fh, t_start) in list(running.items()):
                    rc = proc.poll()
                    if rc is None:
                        continue
                    fh.close()
                    del running[rid]
                    status = self._status(rid)
                    self.store.mark_experiment_run(self.exp_id, rid, pid=None,
                                                   message=None if rc == 0 else f"exit {rc}; log {self.log_path(rid)}")
                    out.append(RunOutcome(rid, job.run.cell_key, job.run.seed, job.action, rc, time.time() - t_start,
                                          status, str(self.log_path(rid))))
                    echo(f"{'finished' if rc == 0 else 'FAILED (exit ' + str(rc) + ')'} {rid} "
                         f"in {time.time() - t_start:.1f} s; {len(out)}/{total} done")
                if running:
                    time.sleep(0.2)
        except BaseException:
            for job, proc, fh, _ in running.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            for job, proc, fh, _ in running.values():
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                fh.close()
            raise
        return out

    def _status(self, run_id: str) -> str:
        try:
            return str(self.store.get_run(run_id)["status"])
        except UnknownNameError:
            return "pending"


def child_env(threads: int) -> dict[str, str]:
    """The environment of a training process: ``threads`` torch/BLAS threads."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def train_command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "workbench.cli", *args]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the child gets SIGTERM when the sweep process dies (also on kill -9)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _pid_runs(pid: int | None, run_id: str) -> bool:
    """True when process ``pid`` exists and is a trainer of ``run_id`` (Linux /proc check)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return run_id in cmdline and "workbench" in cmdline


def _check_not_running(row: Mapping[str, Any]) -> None:
    if _pid_runs(row.get("pid"), row["run_id"]):
        raise StoreError(
            f"run {row['run_id']} is still being trained by process {row['pid']} (started by an earlier sweep); "
            f"wait for it to end or stop it (kill {row['pid']}), then resume the sweep")


def run_sweep(workspace: str | os.PathLike, name: str, strategies: Sequence[str] = (), seeds: int | Sequence[int] = 3,
              steps: int = 100, sets: Mapping[str, Any] | None = None, grid: Mapping[str, Sequence[Any]] | None = None,
              resume: bool = False, parallel: int | None = None, threads: int = 1, backend: str = "local",
              address: str | None = None, echo: Callable[[str], None] | None = None,
              command: str | None = None, ray_storage: str = "shared") -> SweepResult:
    """Create (or with ``resume``, continue) experiment ``name`` and run it; the CLI's
    ``workbench sweep`` is this function."""
    if resume:
        sw = Sweep.load(workspace, name)
    else:
        spec = SweepSpec(name, list(strategies), parse_seeds(seeds) if not isinstance(seeds, list) else seeds, int(steps),
                         {str(k): str(v) for k, v in (sets or {}).items()},
                         {str(k): [str(v) for v in vs] for k, vs in (grid or {}).items()})
        sw = Sweep.create(workspace, spec, command=command)
    return sw.run(parallel=parallel, threads=threads, backend=backend, address=address, echo=echo,
                  ray_storage=ray_storage)


def describe(result: SweepResult) -> str:
    lines = [f"experiment {result.exp_id}: {sum(o.status == 'finished' for o in result.outcomes)}/"
             f"{len(result.outcomes)} runs finished in {result.seconds:.1f} s"]
    for o in result.failed:
        lines.append(f"  not finished: {o.run_id} ({o.status}; log {o.log})")
    if result.failed:
        lines.append(f"continue with: workbench sweep --resume {result.exp_id} --workspace {result.workspace}")
    return "\n".join(lines)


__all__ = ["Sweep", "SweepSpec", "SweepResult", "RunOutcome", "run_sweep", "parse_seeds", "parse_grid", "parse_pairs",
           "cell_key", "cell_label", "default_parallel", "child_env", "describe"]
