"""``workbench``: pretrain, train, eval, runs, tasks.

Options of ``train`` are generated from the typed config (``workbench/config.py``): every
field is ``--section.field VALUE`` (e.g. ``--rollout.group_size 8``), the common ones have
short aliases, and ``--set KEY=VALUE`` sets any field or a strategy parameter.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

from workbench import keys as K
from workbench.config import RunConfig, iter_fields
from workbench.errors import ConfigError, WorkbenchError

ALIASES = {
    "model.name_or_path": ["--model"],
    "task.name": ["--task"],
    "optim.lr": ["--lr"],
    "rollout.group_size": ["-G", "--group-size"],
    "rollout.prompts_per_step": ["-B", "--prompts-per-step"],
    "eval.every": ["--eval-every"],
    "eval.n": ["--eval-n"],
}


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="RLVR Collapse Workbench")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a LoRA adapter with RLVR (progress bar, evaluations, checkpoints)")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint (other options override its config)")
    p.add_argument("--apply-pending", action="store_true",
                   help="with --resume: apply the commands sent while no trainer ran (default: they are expired)")
    p.add_argument("--config", metavar="FILE", help="a JSON file with a (partial) run config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="set a config field (rollout.group_size=8) or a strategy parameter (grpo.eps=1e-6)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--run-id", help="id of the new run (default: <time>-<name>-<random>)")
    p.add_argument("--backend", choices=["workbench", "trl"], default="workbench",
                   help="training engine: the workbench's own (default), or TRL's GRPOTrainer with the workbench's "
                        "strategies and measurements (several GPUs with `accelerate launch -m workbench train`; "
                        "TRL-only options as --trl.FIELD VALUE, e.g. --trl.use_vllm true). See docs/scale-out.md")
    for dotted, hint, default, help_text in iter_fields():
        names = [f"--{dotted}"] + ALIASES.get(dotted, [])
        if "." not in dotted:
            names = [f"--{dotted.replace('_', '-')}"] + ([f"--{dotted}"] if "_" in dotted else [])
        shown = json.dumps(default) if isinstance(default, (dict, list)) else default
        p.add_argument(*names, dest=f"cfg:{dotted}", default=None, metavar=getattr(hint, "__name__", "V").upper(),
                       help=f"{help_text} (default: {shown})")

    from workbench.pretrain import PretrainConfig

    p = sub.add_parser("pretrain", help="build the embedded tiny base model (tokenizer + Llama) from a synthetic task")
    for f in dataclasses.fields(PretrainConfig):
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f"pt:{f.name}", type=type(f.default), default=None,
                       help=f"{f.metadata.get('help', '')} (default: {f.default})")
    p.add_argument("--out", help="output folder (default: data/models/<name>)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = sub.add_parser("eval", help="evaluate a model or a run's checkpoint on a task split (pass@k, entropy, modes)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", default=None, help="embedded model name, local folder or Hub id (default: tiny-primes)")
    src.add_argument("--run", help="evaluate this run's checkpoint (its model, task and adapter)")
    p.add_argument("--step", type=int, help="with --run: the checkpoint step (default: the last)")
    p.add_argument("--task", default=None, help="task family (default: two_primes, or the run's)")
    p.add_argument("--task-params", default=None, help="task parameters as JSON")
    p.add_argument("--split", default="eval", help="split to evaluate (default: eval)")
    p.add_argument("--n", type=int, default=64, help="samples per problem (default: 64)")
    p.add_argument("--ks", default="", help="comma-separated k values (default: 1,2,4,...,n)")
    p.add_argument("--max-problems", type=int, default=0, help="evaluate at most this many problems")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--max-new-tokens", type=int, default=0, help="0 = the task's default")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default=None,
                   help="weights dtype (default: the run's, or auto: bfloat16 on a GPU, float32 on a CPU)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (default: the run's, or auto)")
    p.add_argument("--workspace", default="runs", help="run store folder (with --run)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    p = sub.add_parser("runs", help="list runs in the store, or export one to CSV/Parquet")
    p.add_argument("--workspace", default="runs", help="run store folder (default: runs)")
    p.add_argument("--export", metavar="RUN", help="export this run's per-step scalars")
    p.add_argument("--out", help="export path (.csv or .parquet; default: <RUN>.csv)")
    p.add_argument("--merge", action="append", default=[], metavar="WORKSPACE",
                   help="copy the runs (rows, checkpoints, experiments) of another workspace into this one")
    p.add_argument("--skip-existing", action="store_true", help="with --merge: leave runs already here as they are")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    p = sub.add_parser("export", help="write a run's adapter (or merged model) with its tokenizer and a model card")
    p.add_argument("run", metavar="RUN", help="the run to export")
    p.add_argument("--step", type=int, help="the checkpoint step (default: the last)")
    p.add_argument("--merge", action="store_true", help="merge the adapter into the base weights (a plain model)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; must be empty if it exists)")
    p.add_argument("--workspace", default="runs", help="run store folder (default: runs)")

    sub.add_parser("tasks", help="list task families and their parameters")

    p = sub.add_parser("strategies", help="list strategy presets and pieces with their parameters and defaults")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    p = sub.add_parser("dashboard", help="serve the live dashboard (Gradio) on the run store")
    p.add_argument("--workspace", default="runs", help="run store folder (default: runs)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link (needs --auth)")
    p.add_argument("--auth", default=None, metavar="USER:PASS",
                   help="require this sign-in ('generate': a random password, printed once); needed with --share "
                        "or a --host other than loopback. Default: $WORKBENCH_DASHBOARD_AUTH if set")
    p.add_argument("--allow-model", action="append", default=[], metavar="NAME",
                   help="also allow runs started from the dashboard on this local model folder or Hub id "
                        "(repeatable; by default only the embedded models)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests addressed to this host name (repeatable; e.g. the machine's DNS "
                        "name when serving with --host 0.0.0.0)")

    from workbench.experiments.commands import add_parsers  # sweep, report, reproduce

    add_parsers(sub)
    return parser


# ---------------------------------------------------------------------- commands
def config_from_args(args: argparse.Namespace) -> tuple[RunConfig | None, dict[str, Any]]:
    """(base config or None when resuming, dotted overrides from the command line)."""
    overrides: dict[str, Any] = {}
    for key, value in vars(args).items():
        if key.startswith("cfg:") and value is not None:
            overrides[key[4:]] = value
    section_names = {f.name for f in dataclasses.fields(RunConfig)}
    strategy_params: dict[str, Any] = {}
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set rollout.group_size=8")
        key, value = item.split("=", 1)
        if key.split(".")[0] in section_names:
            overrides[key] = value
        else:
            strategy_params[key] = value
    if strategy_params:
        overrides["strategy_params"] = strategy_params
    base = None
    if args.config:
        try:
            base = RunConfig.from_dict(json.loads(Path(args.config).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--config {args.config}: cannot read a JSON config: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"--config {args.config}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                              f"offset {exc.start}); save the file as UTF-8") from exc
    return base, overrides


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from workbench.session import Session

    base, overrides = config_from_args(args)
    if getattr(args, "backend", "workbench") == "trl":
        from workbench.integrations.trl import cli_train

        return cli_train(args, base, overrides)
    if args.apply_pending and not args.resume:
        raise ConfigError("--apply-pending only applies with --resume RUN")
    if args.resume:
        workspace = overrides.pop("workspace", "runs")
        sess = Session.resume(args.resume, workspace=workspace, apply_pending=args.apply_pending, **overrides)
        print(f"resuming run {sess.run_id} at step {sess.step_count}")
        for msg in sess.checkpoint_warnings:
            print(f"warning: {msg}", file=sys.stderr)
        if sess.expired_commands:
            print(f"expired {len(sess.expired_commands)} command(s) sent while no trainer ran this run: "
                  f"{_commands_text(sess.expired_commands)}. Send them again, or resume with --apply-pending "
                  "to apply such commands.", file=sys.stderr)
        if sess.pending_commands:
            print(f"applying {len(sess.pending_commands)} command(s) sent while no trainer ran "
                  f"(--apply-pending): {_commands_text(sess.pending_commands)}")
    else:
        sess = Session(base or RunConfig(), run_id=args.run_id, **overrides)
        print(f"run {sess.run_id}: model {sess.config.model.name_or_path}, task {sess.config.task.name}, "
              f"strategy {sess.config.strategy}")
    store_path = Path(sess.store.root).resolve() / "store.sqlite"
    print(f"run store: {store_path}")
    if sess.step_count == 0 and not sess.base:
        print(f"evaluating the base model on {sum(len(v) for v in sess.eval_sets.values())} problems "
              f"x {sess.config.eval.n} samples ...", flush=True)
    sess.ensure_base()
    base_eval = sess.store.evaluations(sess.run_id, label="base", split="eval")
    if base_eval:
        print("base: " + _eval_line(base_eval[-1]["summary"]))
    total = sess.config.steps
    bar = tqdm(total=total, initial=sess.step_count, desc="train", unit="step", disable=args.quiet, dynamic_ncols=True)
    try:
        for rec in sess.run():
            bar.set_postfix(reward=f"{rec[K.REWARD_MEAN]:.3f}", entropy=f"{rec[K.ENTROPY]:.3f}",
                            pass1=f"{rec[K.PASS1]:.3f}", refresh=False)
            bar.update(1)
            if sess._last_eval_step == rec["step"]:  # the session evaluated after this step
                evs = sess.store.evaluations(sess.run_id, label="policy", split="eval")
                bar.write(f"step {evs[-1]['step']}: " + _eval_line(evs[-1]["summary"]))
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted at step {sess.step_count}; resume with: workbench train --resume {sess.run_id}",
              file=sys.stderr)
        return 130
    bar.close()
    evs = sess.store.evaluations(sess.run_id, label="policy", split="eval")
    if evs:
        print(f"final (step {evs[-1]['step']}): " + _eval_line(evs[-1]["summary"]))
    print(f"run {sess.run_id} {sess.store.get_run(sess.run_id)['status']} at step {sess.step_count}; "
          f"store: {store_path}")
    print(f"export: workbench runs --workspace {sess.store.root} --export {sess.run_id} --out {sess.run_id}.csv")
    return 0


def _commands_text(cmds: list[dict]) -> str:
    return ", ".join(f"#{c['id']} {c['kind']}" + (f" {json.dumps(c['payload'])}" if c.get("payload") else "")
                     for c in cmds)


def _eval_line(summary: dict[str, float]) -> str:
    ks = sorted(int(k.split("@")[1]) for k in summary if k.startswith(K.EVAL_PASS))
    parts = [f"pass@{k} {summary[K.eval_pass(k)]:.3f}" for k in ks if k in (1, ks[-1]) or k == 8]
    parts.append(f"unsolved {summary.get(K.EVAL_FRAC_UNSOLVED, float('nan')):.2f}")
    parts.append(f"modes {summary.get(K.EVAL_MEAN_DISTINCT_CORRECT_MODES, float('nan')):.2f}")
    parts.append(f"entropy {summary.get(K.EVAL_MEAN_ENTROPY, float('nan')):.3f}")
    if "boundary/gained" in summary:
        parts.append(f"boundary +{summary['boundary/gained']:.0f}/-{summary['boundary/lost']:.0f}")
    k = summary.get("boundary/report_k")
    if k is not None and f"boundary/passk_delta@{int(k)}" in summary:
        parts.append(f"Δpass@{int(k)} {summary[f'boundary/passk_delta@{int(k)}']:+.3f}")
    if "collapse/mean_index" in summary:
        parts.append(f"collapse {summary['collapse/mean_index']:.2f} (m {summary.get('collapse/matched_m_mean', float('nan')):.1f})")
    return ", ".join(parts)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from workbench.pretrain import PretrainConfig, pretrain

    kwargs = {k[3:]: v for k, v in vars(args).items() if k.startswith("pt:") and v is not None}
    cfg = PretrainConfig(**kwargs)
    report = pretrain(cfg, out_dir=args.out, progress=not args.json)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"saved to {args.out or 'data/models/' + cfg.name} ({report['params']:,} parameters, "
              f"{report['train_seconds']} s)")
        for split in [k for k in report if isinstance(report[k], dict) and "pass@1" in report[k]]:
            r = report[split]
            print(f"  {split}: pass@1 {r['pass@1']:.3f}, pass@64 {r.get('pass@64', float('nan')):.3f}, "
                  f"unsolved {r['frac_unsolved']:.2f}, distinct correct modes {r['mean_distinct_correct_modes']:.2f}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from workbench.config import ModelConfig
    from workbench.evaluation import evaluate_model
    from workbench.models.memory import check_evaluation, model_shape
    from workbench.tasks import get_task

    ks = _eval_ks(args)
    # everything cheap is checked before a model loads: settings, the run, the task and its data
    model_fields = {k: v for k, v in (("dtype", args.dtype), ("device", args.device)) if v is not None}
    RunConfig(model=ModelConfig(**model_fields)).validate()  # --dtype / --device
    run_cfg = None
    if args.run:
        from workbench.store import RunStore

        run = RunStore(args.workspace).get_run(args.run)
        run_cfg = RunConfig.from_dict({k: v for k, v in run["config"].items() if k != "resolved"})
    elif args.step is not None:
        raise ConfigError(f"--step {args.step}: a checkpoint step applies only with --run RUN")
    task_name = args.task or (run_cfg.task.name if run_cfg else "two_primes")
    if args.task_params is not None:
        params = _json_object(args.task_params, "--task-params")
    else:
        params = run_cfg.task.params if run_cfg and not args.task else {}
    task = get_task(task_name, **params)
    problems = task.load_split(args.split)
    if args.max_problems:
        problems = problems[: args.max_problems]
    if not problems:
        raise ConfigError(f"--split {args.split!r} of task {task_name!r} has no problems to evaluate")
    if args.run:
        from workbench.session import load_run_policy

        model, tok, run_cfg, info = load_run_policy(args.run, workspace=args.workspace, step=args.step,
                                                    model=model_fields)
    else:
        from workbench.models.loading import load_model_and_tokenizer

        model, tok, info = load_model_and_tokenizer(ModelConfig(name_or_path=args.model or "tiny-primes", **model_fields))
    max_new_tokens = args.max_new_tokens or task.max_new_tokens
    use_chat = bool(info["chat_template"])
    check_evaluation(model_shape(model), tok, task, problems, args.n, max_new_tokens, EVAL_CHUNK, use_chat,
                     info["device"])
    res = evaluate_model(model, tok, task, problems, n=args.n, ks=ks, seed=args.seed, temperature=args.temperature,
                         max_new_tokens=max_new_tokens, chunk_size=EVAL_CHUNK, use_chat=use_chat)
    s = res.summary
    out = {
        "model": info.get("source"), "run": args.run, "step": info.get("step"), "task": task_name, "split": args.split,
        "pass_at_k": {str(k): v for k, v in res.pass_at_k().items()},
        "mean_entropy": s[K.EVAL_MEAN_ENTROPY],
        "mean_distinct_correct_modes": s[K.EVAL_MEAN_DISTINCT_CORRECT_MODES],
        "mean_eff_modes": s[K.EVAL_MEAN_EFF_MODES],
        "frac_unsolved": s[K.EVAL_FRAC_UNSOLVED],
        "parse_error_frac": s[K.EVAL_PARSE_ERROR_FRAC],
        "n": args.n, "num_problems": len(problems),
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{task_name}/{args.split}: {len(problems)} problems x {args.n} samples")
        print("  " + _eval_line(s))
    return 0


#: Most sequences ``workbench eval`` samples in one batched forward.
EVAL_CHUNK = 1024


def _eval_ks(args: argparse.Namespace) -> list[int] | None:
    """Check the numeric options of ``eval``; return the k values of --ks (None = the default)."""
    if args.n < 1:
        raise ConfigError(f"--n {args.n} is not allowed: expected at least 1 sample per problem")
    if not (0 < args.temperature < math.inf):
        raise ConfigError(f"--temperature {args.temperature} is not allowed: expected a finite number > 0 "
                          "(pass@k needs sampled completions; for near-greedy decoding use e.g. 0.1)")
    for flag, value in (("--max-problems", args.max_problems), ("--max-new-tokens", args.max_new_tokens),
                        ("--step", args.step)):
        if value is not None and value < 0:
            raise ConfigError(f"{flag} {value} is not allowed: expected a whole number >= 0")
    if not args.ks:
        return None
    try:
        ks = [int(k) for k in args.ks.split(",") if k.strip()]
    except ValueError:
        raise ConfigError(f"--ks {args.ks!r} is not allowed: expected comma-separated whole numbers, e.g. 1,8,64") from None
    if not ks or min(ks) < 1:
        raise ConfigError(f"--ks {args.ks!r} is not allowed: expected positive whole numbers, e.g. 1,8,64")
    if max(ks) > args.n:
        raise ConfigError(f"--n {args.n} is smaller than the largest k in --ks ({max(ks)}); raise --n or drop k > {args.n}")
    return ks


def _json_object(text: str, flag: str) -> dict:
    """A JSON object given on the command line, or a ConfigError naming ``flag``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{flag} {text!r} is not valid JSON ({exc.msg} at character {exc.pos}); "
                          f"give an object, e.g. {flag} '{{\"eval_size\": 8}}'") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{flag} {text!r} is a JSON {type(value).__name__}; expected an object of parameter "
                          f"names and values, e.g. {flag} '{{\"eval_size\": 8}}'")
    return value


def cmd_runs(args: argparse.Namespace) -> int:
    from workbench.store import RunStore

    store = RunStore(args.workspace)
    if args.merge:
        from workbench.store.merge import merge_workspace

        merged = [{"source": src, **merge_workspace(store, src, skip_existing=args.skip_existing)} for src in args.merge]
        for m in merged if not args.json else []:
            print(f"merged {len(m['runs'])} run(s) from {m['source']}"
                  + (f" (kept {len(m['skipped'])} already here)" if m["skipped"] else "")
                  + (f"; experiments: {', '.join(m['experiments'])}" if m["experiments"] else ""))
        if args.json:
            print(json.dumps(merged, indent=2))
        return 0
    if args.export:
        out = Path(args.out or f"{args.export}.csv")
        path = store.export(args.export, out)
        print(json.dumps({"run_id": args.export, "path": str(path)}) if args.json else f"exported {args.export} to {path}")
        return 0
    if not (Path(args.workspace) / "store.sqlite").exists():
        runs: list[dict] = []
    else:
        runs = store.list_runs()
    rows = []
    for r in runs:
        last = store.scalars(r["run_id"], keys=[K.REWARD_MEAN, K.ENTROPY], since_step=max(r["last_step"] - 1, -1))
        evs = store.evaluations(r["run_id"], split="eval")
        rows.append({
            "run_id": r["run_id"], "name": r["name"], "status": r["status"], "strategy": r["strategy"],
            "step": r["last_step"], "created_at": r["created_at"],
            "reward": _last(last.get(K.REWARD_MEAN)), "entropy": _last(last.get(K.ENTROPY)),
            "eval_pass@1": evs[-1]["summary"].get(K.EVAL_PASS1) if evs else None,
            "model": (r.get("config") or {}).get("model", {}).get("name_or_path"),
            "task": (r.get("config") or {}).get("task", {}).get("name"),
        })
    if args.json:
        print(json.dumps(rows, indent=2, default=_json_default))
        return 0
    if not rows:
        print(f"no runs in {Path(args.workspace).resolve()}")
        return 0
    print(f"{'run':<40} {'status':<9} {'strategy':<14} {'step':>5} {'reward':>7} {'entropy':>8} {'pass@1':>7}")
    for r in rows:
        print(f"{r['run_id']:<40} {r['status']:<9} {str(r['strategy']):<14} {r['step']:>5} "
              f"{_fmt(r['reward']):>7} {_fmt(r['entropy']):>8} {_fmt(r['eval_pass@1']):>7}")
    crashed = [r["run_id"] for r in rows if r["status"] == "crashed"]
    if crashed:
        print(f"\ncrashed: the trainer of {', '.join(crashed)} ended without finishing; continue from the last "
              f"checkpoint with: workbench train --workspace {args.workspace} --resume RUN")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from workbench.tasks import TASKS, task_params

    for name, cls in TASKS.items():
        params = ", ".join(f"{k}={v.default!r}" if v.default is not v.empty else k for k, v in task_params(name).items())
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name:<12} {doc}")
        if params:
            print(f"{'':<12} params: {params}")
    return 0


def cmd_strategies(args: argparse.Namespace) -> int:
    from workbench.strategies import catalog

    cat = catalog()
    if args.json:
        print(json.dumps(cat, indent=2))
        return 0
    print("Presets (--strategy NAME):")
    for name, p in cat["presets"].items():
        loss = ", ".join(f"{k}={v}" for k, v in p["loss"].items())
        floor = p["min_updates_per_batch"]
        print(f"  {name:<24} {p['composition']:<30} {p['doc']}" + (f" [loss: {loss}]" if loss else "")
              + (f" [updates per batch >= {floor}]" if floor > 1 else ""))
    print("\nPieces (compose with '+', e.g. --strategy grpo+negative_only; set with --set PIECE.PARAM=VALUE):")
    for kind in ("reward", "estimator", "calibration", "token", "sampling"):
        print(f"  {kind}:")
        for name, piece in cat["pieces"].items():
            if piece["kind"] != kind:
                continue
            print(f"    {name:<20} {piece['summary']}")
            for pname, spec in piece["params"].items():
                print(f"      {name}.{pname} = {spec['default']!r:<10} {spec['help']}")
    print("\nLoss overrides: --set loss.FIELD=VALUE (or clip.eps_low / clip.eps_high), e.g. --set clip.eps_high=0.28;"
          " updates per batch: --set optim.updates_per_batch=N")
    return 0


def _last(series):
    return series[-1][1] if series else None


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _json_default(o):
    return None if isinstance(o, float) and math.isnan(o) else str(o)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from ui.app import serve

    serve(workspace=args.workspace, host=args.host, port=args.port, share=args.share, auth=args.auth,
          allow_models=args.allow_model, allow_hosts=args.allow_host)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from workbench.export import export_run

    out = export_run(args.run, args.out, workspace=args.workspace, step=args.step, merge=args.merge)
    print(f"exported run {args.run} (step {out['step']}, {'merged model' if args.merge else 'LoRA adapter'}) "
          f"to {out['path']}")
    return 0


def split_trl_args(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """(argv without them, {field: value}) of the ``--trl.FIELD VALUE`` / ``--trl.FIELD=VALUE``
    options (a flag without a value means true)."""
    rest, trl = [], {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--trl."):
            key, eq, value = a[len("--trl."):].partition("=")
            if not eq:
                if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                    value, i = argv[i + 1], i + 1
                else:
                    value = "true"
            trl[key] = value
        else:
            rest.append(a)
        i += 1
    return rest, trl


COMMANDS = {"dashboard": cmd_dashboard, "strategies": cmd_strategies, "train": cmd_train, "pretrain": cmd_pretrain, "eval": cmd_eval, "runs": cmd_runs, "tasks": cmd_tasks}


def _experiment_commands() -> None:
    from workbench.experiments.commands import COMMANDS as experiment_commands

    COMMANDS.update(experiment_commands)


_experiment_commands()
COMMANDS["export"] = cmd_export


def main(argv: list[str] | None = None) -> int:
    argv, trl_args = split_trl_args(sys.argv[1:] if argv is None else list(argv))
    args = build_parser().parse_args(argv)
    args.trl = trl_args
    if trl_args and getattr(args, "backend", None) != "trl":
        print("error: --trl.* options need --backend trl", file=sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](args)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
