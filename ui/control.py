"""What the dashboard's buttons and API endpoints do, without Gradio: start runs, send
commands, switch strategies, describe a run's state. Invalid input raises FormError
with a message the app shows (``gr.Warning``) or an API client receives.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ui import live, tables, views
from ui.drilldown import problem_ids
from ui.forms import FormError, check_step_count, run_request, switch_payload
from ui.live import CachedStore
from ui.runner import RunManager
from ui.security import WebPolicy
from workbench.errors import WorkbenchError
from workbench.store import RunStore

#: Commands a session applies between steps (``workbench.session.COMMANDS``), as the
#: dashboard sends them; ``set_strategy`` goes through ``Controller.switch``.
COMMANDS = ("pause", "resume", "stop", "step", "evaluate", "checkpoint")
#: Statuses of a run no session is running: commands would never be applied; Resume and
#: Step N continue it in a new process. "crashed" is what the store reports for a run
#: whose trainer is gone (killed, out of memory) without recording an end.
ENDED = ("finished", "failed", "stopped", "crashed")
#: A "running" run with no heartbeat (written by an older version) that has written nothing
#: for this long is flagged (its process may be gone).
STALE_SECONDS = 300


class Controller:
    """One per app: the store, its polling cache, and the processes this dashboard started."""

    def __init__(self, workspace: str | Path, allow_models: list[str] | tuple[str, ...] = ()):
        self.workspace = Path(workspace).expanduser().resolve()
        self.policy = WebPolicy.create(self.workspace, allow_models)
        self.store = RunStore(self.workspace)
        self.cache = CachedStore(self.store)
        self.manager = RunManager(self.workspace, self.store)

    # -- runs -----------------------------------------------------------------------------
    def has_store(self) -> bool:
        return self.store.path.exists()

    def run_ids(self) -> list[str]:
        """Runs in the store (newest first), then dashboard runs not in it yet (starting)."""
        ids = [r["run_id"] for r in self.store.list_runs()] if self.has_store() else []
        return [rid for rid in self.manager.started() if rid not in ids] + ids

    def runs_rows(self) -> list[list[Any]]:
        """The runs table; dashboard processes without a run in the store yet come first
        ("starting", or how they ended — the status line has the error message)."""
        rows = tables.runs_table(self.store, self.manager.status_overrides()) if self.has_store() else []
        known = {r[0] for r in rows}
        early = []
        for rid in self.manager.started():
            if rid not in known:
                st = self.manager.state(rid) or {}
                status = "starting" if st.get("alive") else f"exited before starting (code {st.get('returncode')})"
                early.append([rid, status, "", 0, "", "–", "–", "–", "", "", "", "", ""])
        return early + rows

    def filtered_rows(self, query: str | None = None) -> list[list[Any]]:
        """The runs table's rows containing every word of ``query`` (in any column: id, status,
        strategy sequence, model, task, tags), case-insensitive."""
        words = [w for w in (query or "").lower().split() if w]
        rows = self.runs_rows()
        return [r for r in rows if all(w in " ".join(str(x) for x in r).lower() for w in words)]

    def run_meta(self, run_id: str | None) -> tuple[str, str, str]:
        """(name, notes, tags as "a, b") of a run, for the housekeeping form ("" when unknown)."""
        try:
            run = self.store.get_run(run_id or "")
        except Exception:  # noqa: BLE001
            return "", "", ""
        return run.get("name") or "", run.get("notes") or "", ", ".join(run.get("tags") or [])

    def annotate(self, run_id: str | None, name: str, notes: str, tags: str) -> str:
        """Save a run's name, notes and tags (the id stays)."""
        if not run_id:
            raise FormError("no run selected: pick a run at the top of the page")
        try:
            self.store.annotate(run_id, name=name or "", notes=notes or "", tags=tags or "")
        except WorkbenchError as exc:
            raise FormError(str(exc)) from None
        except Exception:  # noqa: BLE001
            raise FormError(f"run {run_id!r} is not in the store {self.workspace}") from None
        return f"saved name, notes and tags of {run_id}"

    def delete(self, run_id: str | None, confirm: str = "") -> str:
        """Delete a run from the store with its checkpoints and log. ``confirm`` must repeat
        the run id (the dashboard asks for it); a run a trainer is working on is refused."""
        if not run_id:
            raise FormError("no run selected: pick a run at the top of the page")
        if (confirm or "").strip() != run_id:
            raise FormError(f"to delete {run_id}, type its id to confirm")
        try:
            run = self.store.get_run(run_id)
        except Exception:  # noqa: BLE001
            raise FormError(f"run {run_id!r} is not in the store {self.workspace}") from None
        proc = self.manager.state(run_id)
        if run["status"] in ("running", "paused", "created") or (proc and proc["alive"]):
            raise FormError(f"run {run_id} is {run['status']}: stop it first (a trainer is working on it)")
        self.store.delete_run(run_id, remove_checkpoints=True)
        (self.manager.logs / f"{run_id}.log").unlink(missing_ok=True)
        self.cache.forget(run_id)
        return f"deleted {run_id} (its rows, checkpoints and log)"

    def export(self, run_id: str | None, kind: str) -> Path:
        """Write the run's per-step scalars ("csv", "parquet") or its evaluations ("evaluations":
        JSON with every evaluation's summary and per-problem rows) to a file for download."""
        if not run_id:
            raise FormError("no run selected: pick a run at the top of the page")
        try:
            run = self.store.get_run(run_id)
        except Exception:  # noqa: BLE001
            raise FormError(f"run {run_id!r} is not in the store {self.workspace}") from None
        folder = Path(tempfile.gettempdir()) / "workbench-exports"
        folder.mkdir(parents=True, exist_ok=True)
        if kind in ("csv", "parquet"):
            return self.store.export(run_id, folder / f"{run_id}-scalars.{kind}", kind)
        if kind != "evaluations":
            raise FormError(f"unknown export {kind!r}; valid: csv, parquet, evaluations")
        evals = [{**{k: e[k] for k in ("eval_id", "step", "label", "split", "summary")},
                  "problems": self.store.eval_problems(run_id, e["eval_id"])} for e in self.store.evaluations(run_id)]
        path = folder / f"{run_id}-evaluations.json"
        doc = _finite({"run_id": run_id, "config": run.get("config"), "evaluations": evals})
        path.write_text(json.dumps(doc, default=str, allow_nan=False, indent=1))
        return path

    def runs_token(self) -> tuple:
        """Changes whenever the runs table would."""
        runs = self.store.list_runs() if self.has_store() else []
        return (tuple((r["run_id"], r["revision"], r["status"]) for r in runs),
                tuple(sorted(self.manager.status_overrides().items())), tuple(self.manager.running()),
                tuple(self.manager.started()))

    def start_run(self, form: dict[str, Any]) -> str:
        """Validate the form, start ``workbench train`` in a subprocess; return the run id."""
        req = run_request(form, self.workspace, self.policy)
        self.manager.start(req.run_id, req.argv)
        return req.run_id

    # -- commands -------------------------------------------------------------------------
    def _check_target(self, run_id: str | None) -> dict[str, Any]:
        if not run_id:
            raise FormError("no run selected: pick a run at the top of the page")
        try:
            run = self.store.get_run(run_id)
        except Exception:  # noqa: BLE001
            proc = self.manager.state(run_id)
            if proc and proc["alive"]:
                raise FormError(f"run {run_id} is still starting (loading the model); try again in a few seconds") from None
            raise FormError(f"run {run_id!r} is not in the store {self.workspace}") from None
        proc = self.manager.state(run_id)
        if run["status"] in ENDED and not (proc and proc["alive"]):
            raise FormError(f"run {run_id} is {run['status']}: no session applies commands to it. Resume or "
                            "Step N continue it from its last checkpoint in a new process")
        return run

    def send(self, run_id: str | None, kind: str, n: Any = None) -> tuple[int, str]:
        """Send a control command; (command id, message)."""
        if kind not in COMMANDS:
            raise FormError(f"unknown command {kind!r}; valid: {', '.join(COMMANDS)}, set_strategy")
        if kind == "stop":
            proc = self.manager.state(run_id)
            try:
                self.store.get_run(run_id or "")
            except Exception:  # noqa: BLE001 - not created yet: end the loading process itself
                if proc and proc["alive"]:
                    self.manager.kill(run_id)
                    return 0, f"run {run_id} was still starting: its process was ended"
        continued = self._continue(run_id, kind, n)
        if continued is not None:
            return continued
        run = self._check_target(run_id)
        payload: dict[str, Any] = {}
        if kind == "step":
            payload = {"n": check_step_count(n)}
            if run["status"] != "paused":
                note = " (the run is not paused: it pauses after them)"
            else:
                note = ""
        cmd_id = self.store.send_command(run_id, kind, payload)
        msg = {
            "pause": "pause: applied at the next step boundary",
            "resume": "resume sent",
            "stop": "stop: the run ends after its current step (and a final evaluation and checkpoint)",
            "evaluate": "evaluate now: runs at the next step boundary",
            "checkpoint": "checkpoint: written at the next step boundary",
        }.get(kind, "")
        if kind == "step":
            msg = f"step {payload['n']}: runs {payload['n']} step(s), then pauses" + note
        if kind == "stop" and self.manager.stop(run_id):
            msg += "; its process is ended if it has not stopped within 30 s"
        return cmd_id, f"command #{cmd_id} sent to {run_id}: {msg}"

    def _continue(self, run_id: str | None, kind: str, n: Any) -> tuple[int, str] | None:
        """Resume / Step N on a run no session is running: continue it from its last
        checkpoint in a new ``workbench train --resume`` process (None: not that case)."""
        if kind not in ("resume", "step") or not run_id:
            return None
        try:
            run = self.store.get_run(run_id)
        except Exception:  # noqa: BLE001 - _check_target says what is wrong
            return None
        proc = self.manager.state(run_id)
        if run["status"] not in ENDED or (proc and proc["alive"]):
            return None
        total = int((run.get("config") or {}).get("steps") or 0)
        last = int(run["last_step"])
        if not self.store.checkpoints(run_id) and last > 0:
            raise FormError(f"run {run_id} is {run['status']} and has no checkpoint to continue from")
        if kind == "step":
            total = last + check_step_count(n)
        elif last >= total and run["status"] != "crashed":  # crashed: its final evaluation may be missing
            raise FormError(f"run {run_id} has finished its {total} steps: use Step N to train N more")
        argv = [sys.executable, "-m", "workbench.cli", "train", "--quiet", "--workspace", str(self.workspace),
                "--resume", run_id, "--steps", str(total)]
        self.manager.start(run_id, argv, append=True)
        return 0, (f"{run_id} was {run['status']}: continuing it from its last checkpoint to step {total} "
                   "in a new process")

    def _switch(self, run_id: str | None, strategy: Any, rows: Any, text: str | None,
                at_step: Any) -> tuple[dict[str, Any], dict[str, Any], str]:
        """(payload, run, "when" in words) of a valid switch, or FormError."""
        payload = switch_payload(strategy, rows, text)
        run = self._check_target(run_id)
        if at_step in (None, ""):
            return payload, run, "at the next step boundary"
        n = check_step_count(at_step, "after step N", 0)
        if n < int(run["last_step"]):
            raise FormError(f"after step N: the run is already at step {run['last_step']}; choose N >= "
                            f"{run['last_step']} (or the next step boundary)")
        payload["at_step"] = n
        return payload, run, f"after step {n} (in force from step {n + 1})"

    def switch_question(self, run_id: str | None, strategy: Any, rows: Any = None, text: str | None = None,
                        at_step: Any = None) -> str:
        """The confirmation the dashboard asks before ``switch`` (validates, sends nothing)."""
        payload, run, when = self._switch(run_id, strategy, rows, text, at_step)
        params = ", ".join(f"{k}={v}" for k, v in payload["params"].items())
        return (f"Switch **{run_id}** (step {max(int(run['last_step']), 0)}, now **{run.get('strategy') or '?'}**) "
                f"to **{payload['strategy']}**" + (f" ({params})" if params else "") + f" {when}?")

    def switch(self, run_id: str | None, strategy: Any, rows: Any = None, text: str | None = None,
               at_step: Any = None) -> tuple[int, str]:
        """Send ``set_strategy``: in force from the next step boundary, or after step
        ``at_step`` (shown on every timeline)."""
        payload, _, when = self._switch(run_id, strategy, rows, text, at_step)
        cmd_id = self.store.send_command(run_id, "set_strategy", payload)
        params = ", ".join(f"{k}={v}" for k, v in payload["params"].items())
        return cmd_id, (f"command #{cmd_id} sent to {run_id}: switch to **{payload['strategy']}**"
                        + (f" ({params})" if params else "") + f" {when}")

    def events(self, run_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        if not run_id:
            raise FormError("run_id is required")
        try:
            return self.store.events(run_id, kind=kind or None)
        except Exception as exc:  # noqa: BLE001
            raise FormError(str(exc)) from None

    def commands(self, run_id: str) -> list[dict[str, Any]]:
        try:
            return self.store.commands(run_id)
        except Exception as exc:  # noqa: BLE001
            raise FormError(str(exc)) from None

    def run_state(self, run_id: str) -> dict[str, Any]:
        """{run_id, status, last_step, strategy, process} (status 'starting' before the run row exists)."""
        proc = self.manager.state(run_id)
        try:
            run = self.store.get_run(run_id)
        except Exception:  # noqa: BLE001
            if proc is None:
                raise FormError(f"run {run_id!r} is not in the store {self.workspace}") from None
            status = "starting" if proc["alive"] else f"exited ({proc['returncode']}): {proc['message']}"
            return {"run_id": run_id, "status": status, "last_step": -1, "strategy": None, "process": proc}
        return {"run_id": run_id, "status": run["status"], "last_step": run["last_step"], "strategy": run["strategy"],
                "process": proc}

    # -- the live view's poll ---------------------------------------------------------------
    def poll(self, run_id: str | None, seen: dict | None, opts: live.Options, force: bool = False) -> dict[str, Any]:
        """One refresh of the live view (what the app's timer calls): {"changed": {group:
        value} for the groups to redraw, "seen", "version", "status" (None if unchanged),
        "passk_steps" / "problems" (new choices, or None)}."""
        prev_status = (seen or {}).get("_status")
        changed, new_seen, version = live.refresh(self.cache, run_id, None if force else seen, opts)
        status = self.status_line(run_id, version)
        new_seen["_status"] = status
        out: dict[str, Any] = {"changed": changed, "seen": new_seen, "version": version,
                               "status": status if (force or status != prev_status) else None,
                               "passk_steps": None, "problems": None}
        if "passk" in changed:
            out["passk_steps"] = ([e["step"] for e in views.eval_points(self.cache, run_id, opts.split, label="policy")]
                                  if version is not None else [])
        if "heatmap" in changed:
            out["problems"] = problem_ids(self.cache, run_id, opts.split) if version is not None else []
        return out

    # -- the status line ----------------------------------------------------------------------
    def _progress(self, run_id: str, run: dict[str, Any], last_step: int, total: Any, status: str) -> str:
        """" · elapsed 1 m 20 s · 0.8 steps/s · ETA 2 m" from the steps' wall-clock times
        (evaluations included, over the last 20 steps)."""
        try:
            times = self.store.step_times(run_id)
        except Exception:  # noqa: BLE001 - a store from before step times: no progress figures
            return ""
        end = time.time() if status in ("running", "paused", "created") else float(run.get("updated_at") or 0)
        out = f" · elapsed {_duration(end - float(run['created_at']))}"
        steps = sorted(times)
        window = steps[-21:]
        if len(window) >= 2 and times[window[-1]] > times[window[0]]:
            rate = (window[-1] - window[0]) / (times[window[-1]] - times[window[0]])
            out += f" · {rate:.2f} steps/s" if rate >= 0.1 else f" · {1 / rate:.1f} s/step"
            if status == "running" and isinstance(total, int) and total > last_step:
                out += f" · ETA {_duration((total - last_step) / rate)}"
        return out

    def _last_error(self, run_id: str) -> str:
        """The message of the run's last error event (the real error, not a log line)."""
        try:
            errs = self.cache.events(run_id, kind="error")
        except Exception:  # noqa: BLE001
            return ""
        if not errs:
            return ""
        msg = str((errs[-1].get("payload") or {}).get("message", ""))
        return msg if len(msg) <= 400 else msg[:397] + "..."

    def status_line(self, run_id: str | None, version: tuple | None) -> str:
        if not run_id:
            return "No run selected: start one under **Runs**, or pick one above."
        proc = self.manager.state(run_id)
        if version is None:
            if proc and proc["alive"]:
                return (f"**{run_id}** · starting (process {proc['pid']}, {_duration(time.time() - proc['started'])}): "
                        "loading the model…")
            if proc:
                return (f"**{run_id}** · ⚠️ the process exited with code {proc['returncode']} before the run started: "
                        f"{proc['message'] or 'no message'} (log: `{proc['log']}`)")
            return f"**{run_id}** is not in the store `{self.workspace}`."
        last_step, _, n_evals, status, _ = version
        run: dict[str, Any] = {}
        try:
            run = self.cache.get_run(run_id)
            total = (run.get("config") or {}).get("steps", "?")
            idle = time.time() - float(run.get("updated_at") or time.time())
            spans = self.cache.events(run_id, kind="strategy")
            strategy = (spans[-1].get("payload") or {}).get("name", "?") if spans else "?"
            points = len(views.eval_points(self.cache, run_id, "eval", label="policy"))
        except Exception:  # noqa: BLE001
            total, strategy, idle, points = "?", "?", 0.0, 0
        text = (f"**{run_id}** · {status} · step {max(last_step, 0)}/{total} · strategy **{strategy}** · "
                f"{points} evaluation point{'s' if points != 1 else ''}")
        if last_step < 0 and status in ("created", "running") and n_evals == 0:
            started = float(run.get("created_at") or time.time())
            text += f" · evaluating the base model… ({_duration(time.time() - started)})"
        elif last_step >= 0 and run:
            text += self._progress(run_id, run, last_step, total, status)
        if status in ("failed", "crashed"):
            err = self._last_error(run_id)
            if err:
                text += f" · ⚠️ {err}"
        if status == "crashed":
            text += (" · ⚠️ its trainer is gone (killed or crashed) without recording an end: **Resume** continues "
                     "it from its last checkpoint")
        elif (status == "running" and idle > STALE_SECONDS and not (proc and proc["alive"])
              and run.get("heartbeat_at") is None):
            text += f" · no write for {idle / 60:.0f} min: is its process still alive?"
        if proc and proc["alive"]:
            text += f" · process {proc['pid']}"
        elif proc and proc["returncode"] not in (0, None) and not proc["killed"]:
            text += (f" · ⚠️ its process exited with code {proc['returncode']}: {proc['message'] or 'no message'} "
                     f"(log: `{proc['log']}`)")
        return text


def _duration(seconds: float) -> str:
    """3 s, 1 m 20 s, 2 h 05 m."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} m {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} m"


def _finite(o: Any) -> Any:
    """JSON-ready: NaN and infinities (undefined figures) become null."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o
