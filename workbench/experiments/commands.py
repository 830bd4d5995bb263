"""``workbench sweep``, ``workbench report`` and ``workbench reproduce`` (registered by
``workbench/cli.py``)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from workbench.errors import ConfigError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from workbench.experiments.sweep import BACKENDS

    p = sub.add_parser("sweep", help="run strategies × seeds (× --grid values) as one experiment with paired seeds",
                       description="Run every (strategy, grid values) cell with the same seeds as `workbench train` "
                                   "processes; the experiment and its runs are recorded in the run store. "
                                   "A killed sweep continues with --resume NAME.")
    p.add_argument("--strategies", default="", help="comma-separated strategies, e.g. grpo,bbg,iac_dlc")
    p.add_argument("--seeds", default="3", help="number of seeds (3 = seeds 0,1,2) or a list such as 0,4,7 (default 3)")
    p.add_argument("--steps", type=int, default=100, help="training steps per run (default 100)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config field or strategy parameter for every run (as in `workbench train --set`)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="also cross the strategies with these values of KEY (repeatable)")
    p.add_argument("--name", help="experiment name (prefixes its run ids)")
    p.add_argument("--resume", metavar="NAME", help="continue experiment NAME: finished runs are kept, the others "
                                                     "resume from their last checkpoint")
    p.add_argument("--list", action="store_true", help="list the experiments in the workspace")
    p.add_argument("--workspace", default="runs", help="run store folder (default: runs)")
    p.add_argument("--parallel", type=int, default=None,
                   help="runs at once (default: cores // --threads)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--backend", choices=BACKENDS, default="local",
                   help="local: a process pool on this machine; ray: one Ray task per run")
    p.add_argument("--address", default=None, help="with --backend ray: the Ray cluster address (default: start "
                                                    "a local Ray instance, or $RAY_ADDRESS)")
    p.add_argument("--ray-storage", choices=("shared", "per-run"), default="shared",
                   help="with --backend ray: write every run to the workspace (shared, needs a filesystem where "
                        "SQLite locking works on every node) or each to <workspace>/parts/<run>, merged when it "
                        "finishes (per-run)")
    p.add_argument("--dry-run", action="store_true", help="print the planned runs and their commands; run nothing")
    p.add_argument("--json", action="store_true", help="print the experiment id and run ids as JSON")

    p = sub.add_parser("report", help="write a self-contained HTML report of an experiment (curves with bands, "
                                      "table with intervals, claims)")
    p.add_argument("experiment", help="experiment name (see `workbench sweep --list`)")
    p.add_argument("--out", default=None, help="output file (default: <experiment>.html)")
    p.add_argument("--workspace", default="runs", help="run store folder (default: runs)")
    p.add_argument("--baseline", default=None, help="cell the effects are measured against (default: the first "
                                                     "strategy, or grpo when present)")
    p.add_argument("-k", "--k", type=int, default=0, help="the k of the pass@k columns (default: 64 when the "
                                                          "evaluation has n >= 64, else n)")
    p.add_argument("--split", default="eval", help="evaluation split of the table (default: eval, held out)")

    p = sub.add_parser("reproduce", help="run the fixed reproduction experiment and simulator suite; write the "
                                         "report with its claims table")
    p.add_argument("--quick", action="store_true", help="a tiny version (2 strategies × 3 seeds × 3 steps): checks "
                                                        "the machinery, shows no claim")
    p.add_argument("--workspace", default="runs", help="run store folder (default: runs)")
    p.add_argument("--out", default=None, help="report file (default: <workspace>/reproduction.html)")
    p.add_argument("--name", default=None, help="experiment name (default: reproduce or reproduce-quick)")
    p.add_argument("--parallel", type=int, default=None, help="runs at once (default: cores // --threads)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--json", action="store_true", help="print the claims as JSON")


def cmd_sweep(args: argparse.Namespace) -> int:
    from workbench.experiments import sweep as sw

    def echo(msg: str) -> None:
        print(msg, file=sys.stderr if args.json else sys.stdout, flush=True)

    if args.list:
        from workbench.store._experiments import ExperimentStore

        exps = ExperimentStore(args.workspace).list_experiments() if (Path(args.workspace) / "store.sqlite").exists() else []
        if args.json:
            print(json.dumps(exps, indent=2))
        elif not exps:
            print(f"no experiments in {Path(args.workspace).resolve()}")
        for e in exps if not args.json else []:
            counts = ", ".join(f"{v} {k}" for k, v in sorted(e["status_counts"].items()))
            spec = e["spec"]
            print(f"{e['exp_id']:<28} {','.join(spec.get('strategies', [])):<30} seeds {len(spec.get('seeds', []))} "
                  f"steps {spec.get('steps')}: {counts}")
        return 0
    if args.resume:
        if args.name and args.name != args.resume:
            raise ConfigError(f"--resume {args.resume} and --name {args.name}: give one experiment name")
        sweep = sw.Sweep.load(args.workspace, args.resume)
    else:
        if not args.name:
            raise ConfigError("--name NAME is required for a new sweep (or --resume NAME to continue one)")
        strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
        spec = sw.SweepSpec(args.name, strategies, sw.parse_seeds(args.seeds), args.steps,
                            sw.parse_pairs(args.set, "--set"), sw.parse_grid(args.grid))
        if args.dry_run:
            spec.validate()
            plan = spec.plan()
            out = [{"run_id": r.run_id, "cell": r.cell, "seed": r.seed,
                    "command": shlex.join(sw.train_command(spec.train_args(r, Path(args.workspace).resolve())))}
                   for r in plan]
            print(json.dumps({"experiment": spec.name, "runs": out}, indent=2) if args.json else
                  "\n".join(f"{o['run_id']}: {o['command']}" for o in out))
            return 0
        sweep = sw.Sweep.create(args.workspace, spec, command=shlex.join(["workbench", *sys.argv[1:]]))
        echo(f"experiment {spec.name}: {len(spec.cells())} cells × {len(spec.seeds)} seeds = {len(spec.plan())} runs "
             f"in {sweep.workspace}")
    try:
        result = sweep.run(parallel=args.parallel, threads=args.threads, backend=args.backend, address=args.address,
                           echo=echo, ray_storage=args.ray_storage)
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: workbench sweep --resume {sweep.exp_id} --workspace {args.workspace}",
              file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(sw.describe(result))
        if result.ok:
            print(f"report: workbench report {result.exp_id} --workspace {args.workspace} --out {result.exp_id}.html")
    return 0 if result.ok else 1


def cmd_report(args: argparse.Namespace) -> int:
    from workbench.report import write_report

    out = Path(args.out or f"{args.experiment}.html")
    path = write_report(args.workspace, args.experiment, out, baseline=args.baseline, k=args.k or None,
                        split=args.split)
    print(f"wrote {path}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from workbench.experiments.reproduce import reproduce

    res = reproduce(args.workspace, quick=args.quick, out=args.out, name=args.name, parallel=args.parallel,
                    threads=args.threads, echo=(lambda m: print(m, file=sys.stderr, flush=True)) if args.json
                    else (lambda m: print(m, flush=True)),
                    command=shlex.join(["workbench", *sys.argv[1:]]))
    if args.json:
        print(json.dumps(res, indent=2, default=str))
    else:
        print(f"report: {res['report']} ({res['seconds']:.0f} s)")
        for c in res["claims"]:
            print(f"  [{c['verdict']}] {c['claim']} — {c['measure']}: {c['effect']}")
    return 0 if res["ok"] else 1


COMMANDS = {"sweep": cmd_sweep, "report": cmd_report, "reproduce": cmd_reproduce}
