"""Form choices and validation: a bad value becomes a message, never a traceback.

Strategies are checked against the torch-free catalog (``workbench.strategies.catalog``);
run settings go through the same typed ``RunConfig`` validation the CLI uses, so the form
rejects exactly what ``workbench train`` would reject. The command line of a new run is
built here (``train_argv``); ``ui.runner`` starts it.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.config import RunConfig
from workbench.errors import WorkbenchError
from workbench.store.ids import new_run_id as store_run_id
from workbench.strategies.catalog import PIECES, PRESETS, describe_params, parse_strategy
from workbench.tasks import list_tasks
from ui.security import WEB_TASK_PARAMS, PolicyError, WebPolicy, embedded_models


class FormError(ValueError):
    """An invalid form value; the message says which field and what is expected."""


def _defaults() -> dict[str, Any]:
    """The new-run form's defaults: those of ``RunConfig`` (one source for the CLI, the form
    and ``Session``), so the same click and the same command make the same run."""
    c = RunConfig()
    return {"steps": c.steps, "group_size": c.rollout.group_size, "prompts_per_step": c.rollout.prompts_per_step,
            "eval_every": c.eval.every, "eval_n": c.eval.n, "eval_max_problems": c.eval.max_problems,
            "eval_seen_problems": c.eval.seen_problems, "lr": c.optim.lr, "seed": c.seed}


DEFAULTS = _defaults()

PARAM_COLUMNS = ["parameter", "value", "default", "help"]


# ---------------------------------------------------------------------- choices
def model_choices(policy: WebPolicy | None = None) -> list[str]:
    """The models a run may be started on from the dashboard (the default first)."""
    names = policy.models() if policy is not None else embedded_models()
    default = RunConfig().model.name_or_path
    return sorted(names, key=lambda n: (n != default, names.index(n)))


def default_model() -> str:
    names = model_choices()
    return names[0] if names else RunConfig().model.name_or_path


def task_choices() -> list[str]:
    """Task families a web client may start (``custom`` runs a verifier, which is code)."""
    return [t for t in list_tasks() if t in WEB_TASK_PARAMS]


def strategy_choices() -> list[tuple[str, str]]:
    """(label, value) of each preset: "bbg — grpo+bbg"."""
    return [(f"{name} — {p['composition']}", name) for name, p in PRESETS.items()]


def strategy_doc(spec: str | None) -> str:
    """A markdown description of a preset or composition (pieces, kinds, summaries)."""
    if not spec:
        return ""
    try:
        pieces = check_strategy(spec)
    except FormError as exc:
        return f"⚠️ {exc}"
    head = f"**{spec}**"
    if spec.strip() in PRESETS:
        p = PRESETS[spec.strip()]
        head += f" = `{p['composition']}` — {p['doc']}"
        if p["loss"]:
            head += " Loss: " + ", ".join(f"{k}={v}" for k, v in p["loss"].items()) + "."
    lines = [head] + [f"- `{n}` ({PIECES[n].kind}): {PIECES[n].summary}" for n in pieces]
    return "\n".join(lines)


# ---------------------------------------------------------------------- strategies
def check_strategy(spec: Any) -> list[str]:
    """The piece names of a preset or a '+'-joined composition, or FormError (the engine's
    own parser, ``workbench.strategies.catalog.parse_strategy``)."""
    try:
        return list(parse_strategy(spec).pieces)
    except WorkbenchError as exc:
        raise FormError(str(exc)) from None


def param_rows(spec: str | None) -> list[list[Any]]:
    """Rows [parameter, value, default, help] of every parameter of the strategy's pieces."""
    try:
        pieces = check_strategy(spec)
    except FormError:
        return []
    rows = []
    for n in pieces:
        for pname, d in describe_params(n).items():
            rows.append([f"{n}.{pname}", _show(d["default"]), _show(d["default"]), d["help"]])
    return rows


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return str(v)


def parse_params(spec: str, rows: Any = None, text: str | None = None) -> dict[str, Any]:
    """Validated {"piece.param": value} from the parameter table (only values that differ
    from the default) and/or text ("k=v" per line or comma, or a JSON object).

    Keys are whatever the engine accepts (``parse_strategy``): a parameter of one of the
    strategy's pieces, ``loss.<field>`` (or ``clip.<field>``), ``optim.updates_per_batch``.
    """
    raw: dict[str, Any] = {}
    for row in _table_rows(rows):
        if len(row) < 2 or row[0] in (None, ""):
            continue
        key, value = str(row[0]).strip(), row[1]
        default = row[2] if len(row) > 2 else None
        if value is None or str(value).strip() == "" or str(value).strip() == str(default).strip():
            continue
        raw[key] = value
    raw.update(parse_pairs(text))
    try:
        return dict(parse_strategy(spec, raw).values)
    except WorkbenchError as exc:
        raise FormError(str(exc)) from None


def _table_rows(rows: Any) -> list[list[Any]]:
    if rows is None:
        return []
    if hasattr(rows, "values") and hasattr(rows, "columns"):  # a pandas DataFrame
        return [list(r) for r in rows.values.tolist()]
    if isinstance(rows, dict) and "data" in rows:
        return [list(r) for r in rows["data"]]
    return [list(r) for r in rows]


def parse_pairs(text: str | None) -> dict[str, str]:
    """``k=v`` pairs separated by newlines or commas, or a JSON object; {} for blank."""
    if text is None or not str(text).strip():
        return {}
    text = str(text).strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FormError(f"parameters: not valid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(obj, dict):
            raise FormError("parameters: a JSON object {\"piece.param\": value} is expected")
        return {str(k): v for k, v in obj.items()}
    out = {}
    # a comma or semicolon separates pairs only before the next "key=": JSON values keep theirs
    for item in re.split(r"\n+|[,;]\s*(?=[A-Za-z_][\w.]*\s*=)", text):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise FormError(f"parameters: {item!r} is not KEY=VALUE (e.g. bbg.k=8)")
        k, v = item.split("=", 1)
        if not k.strip():
            raise FormError(f"parameters: {item!r} has no key")
        out[k.strip()] = v.strip()
    return out


# ---------------------------------------------------------------------- new runs
@dataclass
class RunRequest:
    run_id: str
    argv: list[str]
    overrides: dict[str, Any]
    strategy: str
    params: dict[str, Any]


def _int(value: Any, name: str, lo: int, hint: str) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise FormError(f"{name}: {value!r} is not a number; expected {hint}") from None
    if not math.isfinite(f) or not f.is_integer():
        raise FormError(f"{name}: {value!r} is not a whole number; expected {hint}")
    if f < lo:
        raise FormError(f"{name} = {int(f)} is too small; expected {hint}")
    return int(f)


def check_model(name: Any, policy: WebPolicy) -> str:
    """A model the dashboard's policy allows (embedded, or named by the operator with
    ``--allow-model``), or FormError."""
    try:
        return policy.check_model(name)
    except PolicyError as exc:
        raise FormError(str(exc)) from None


def new_run_id(strategy: str, name: str = "") -> str:
    """A fresh run id, known before the process starts: the store's own scheme (the same as
    ``workbench train`` gives: time, name or strategy, random suffix)."""
    return store_run_id(name or strategy)


def run_request(form: dict[str, Any], workspace: str | Path, policy: WebPolicy | None = None) -> RunRequest:
    """Validate the new-run form and build its ``workbench train`` command line.

    ``form`` keys: model, task, strategy, params (table rows), params_text, steps,
    group_size, prompts_per_step, eval_every, eval_n, and optionally lr, eval_max_problems,
    eval_seen_problems, seed, name, extra ("section.field=value" lines). ``policy`` (default:
    the embedded models only) limits models, tasks, task files and config fields to what a
    web client may ask for (``ui.security``); the run always goes to ``workspace``.
    """
    policy = policy or WebPolicy.create(workspace)
    model = check_model(form.get("model"), policy)
    task = form.get("task")
    try:
        policy.check_task(task)
    except PolicyError as exc:
        raise FormError(str(exc)) from None
    strategy = str(form.get("strategy") or "").strip()
    check_strategy(strategy)
    params = parse_params(strategy, form.get("params"), form.get("params_text"))
    steps = _int(form.get("steps"), "steps", 1, "at least 1 training step")
    G = _int(form.get("group_size"), "G (samples per prompt)", 2, "at least 2 (a group needs a baseline)")
    B = _int(form.get("prompts_per_step"), "prompts per step", 1, "at least 1")
    every = _int(form.get("eval_every"), "evaluate every", 0, "0 (start and end only) or more steps")
    n = _int(form.get("eval_n"), "evaluation samples n", 1, "at least 1 sample per problem")
    overrides: dict[str, Any] = {"model.name_or_path": model, "task.name": task, "strategy": strategy, "steps": steps,
                                 "rollout.group_size": G, "rollout.prompts_per_step": B, "eval.every": every,
                                 "eval.n": n}
    optional = {"eval_max_problems": ("eval.max_problems", 0), "eval_seen_problems": ("eval.seen_problems", 0),
                "seed": ("seed", 0)}
    for field_name, (dotted, lo) in optional.items():
        if form.get(field_name) not in (None, ""):
            overrides[dotted] = _int(form[field_name], dotted, lo, f"an integer >= {lo}")
    if form.get("lr") not in (None, ""):
        try:
            lr = float(form["lr"])
        except (TypeError, ValueError):
            raise FormError(f"learning rate: {form['lr']!r} is not a number (e.g. 5e-4)") from None
        overrides["optim.lr"] = lr
    form_fields = dict(overrides)
    try:
        extra = policy.check_extra(parse_pairs(form.get("extra")), str(task))
    except PolicyError as exc:
        raise FormError(str(exc)) from None
    overrides.update(extra)
    name = str(form.get("name") or "").strip()
    if name:
        overrides["name"] = form_fields["name"] = name
    try:
        RunConfig().override({**overrides, "strategy_params": params}).validate()
    except WorkbenchError as exc:
        raise FormError(str(exc)) from exc
    run_id = new_run_id(strategy, name)
    # "--option=value" throughout: a value can never be read as another option
    argv = [sys.executable, "-m", "workbench.cli", "train", "--quiet", f"--workspace={policy.workspace}",
            f"--run-id={run_id}", f"--model={model}", f"--task={task}", f"--strategy={strategy}",
            f"--steps={steps}", f"-G={G}", f"-B={B}", f"--eval-every={every}", f"--eval-n={n}"]
    for dotted in ("eval.max_problems", "eval.seen_problems", "seed", "optim.lr", "name"):
        if dotted in form_fields and dotted not in extra:  # "other config fields" win
            argv.append(f"--{dotted}={form_fields[dotted]}")
    for k, v in extra.items():
        argv.append(f"--set={k}={_cli_value(v)}")
    for k, v in params.items():
        argv.append(f"--set={k}={_cli_value(v)}")
    return RunRequest(run_id, argv, overrides, strategy, params)


def _cli_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


def switch_payload(strategy: Any, rows: Any = None, text: str | None = None) -> dict[str, Any]:
    """The ``set_strategy`` command payload for a preset/composition and its parameters."""
    spec = str(strategy or "").strip()
    check_strategy(spec)
    return {"strategy": spec, "params": parse_params(spec, rows, text)}


def check_step_count(n: Any, name: str = "step N", lo: int = 1) -> int:
    return _int(n, name, lo, f"at least {lo} step{'' if lo == 1 else 's'}" if lo else "a step number >= 0")
