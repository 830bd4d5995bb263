"""Tables of the dashboard: the runs in the store, a run's events and its commands.

Pure: a store (the read API of RunStore) -> rows (lists), columns named by the constants.
"""

from __future__ import annotations

import time
from typing import Any

from ui.timeline import finite, spans_from_events
from ui.views import _has_run
from workbench import keys as K

RUN_COLUMNS = ["run", "status", "strategy", "step", "of", "reward", "entropy", "eval pass@1", "model", "task", "started",
               "name", "tags"]


def runs_table(store: Any, extra_status: dict[str, str] | None = None) -> list[list[Any]]:
    """One row per run (newest first), columns RUN_COLUMNS; ``extra_status`` (run id ->
    text) overrides the status shown, e.g. for a dashboard process that crashed."""
    rows = []
    for r in store.list_runs():
        rid = r["run_id"]
        last = store.scalars(rid, keys=[K.REWARD_MEAN, K.ENTROPY], since_step=max(r["last_step"] - 1, -1))
        evs = store.evaluations(rid, label="policy", split="eval")
        cfg = r.get("config") or {}
        status = (extra_status or {}).get(rid, r["status"])
        rows.append([
            rid, status, strategy_sequence(store, rid) or r["strategy"] or cfg.get("strategy", ""),
            max(r["last_step"], 0), cfg.get("steps", ""),
            _fmt(_last(last.get(K.REWARD_MEAN))), _fmt(_last(last.get(K.ENTROPY))),
            _fmt(evs[-1]["summary"].get(K.EVAL_PASS1) if evs else None),
            (cfg.get("model") or {}).get("name_or_path", ""), (cfg.get("task") or {}).get("name", ""),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created_at"])),
            r.get("name") or "", ", ".join(r.get("tags") or []),
        ])
    return rows


def strategy_sequence(store: Any, run_id: str) -> str:
    """The strategies a run used, in order, with the step each switch took effect after:
    "grpo→bbg@33" (the span list of ``ui.timeline``)."""
    try:
        spans = spans_from_events(store.events(run_id, kind="strategy"), 0)
    except Exception:  # noqa: BLE001 - a run being created has no events yet
        return ""
    return "→".join(sp.name if i == 0 else f"{sp.name}@{sp.start}" for i, sp in enumerate(spans))


def _last(series: list[tuple[int, float]] | None) -> float | None:
    return series[-1][1] if series else None


def _fmt(v: Any) -> str:
    f = finite(v)
    return "–" if f is None else f"{f:.3f}"


EVENT_COLUMNS = ["step", "kind", "what"]
COMMAND_COLUMNS = ["id", "kind", "payload", "status", "step", "message"]


def events_table(store: Any, run_id: str | None, limit: int = 50) -> list[list[Any]]:
    """The run's latest events (newest first): step, kind, what."""
    if not _has_run(store, run_id):
        return []
    rows = []
    for ev in store.events(run_id)[-limit:][::-1]:
        p = ev.get("payload") or {}
        if ev["kind"] == "strategy":
            params = {k: v for k, v in (p.get("params") or {}).items()}
            what = f"{p.get('name')} ({'+'.join(p.get('pieces') or [])})" + (f" {params}" if params else "")
            what += f" loss {p['loss']}" if p.get("loss") else ""
            what += f" optim {p['optim']}" if p.get("optim") else ""
            what += f" updates/batch >= {p['min_updates_per_batch']}" if p.get("min_updates_per_batch", 1) > 1 else ""
            what += f" — in force from step {ev['step'] + 1}"
        elif ev["kind"] == "error":
            what = str(p.get("message", p))
        else:
            what = ", ".join(f"{k}={v}" for k, v in p.items())
        rows.append([ev["step"], ev["kind"], what])
    return rows


def commands_table(store: Any, run_id: str | None, limit: int = 30) -> list[list[Any]]:
    """The run's latest commands (newest first): id, kind, payload, status, step, message."""
    if not _has_run(store, run_id):
        return []
    out = []
    for c in store.commands(run_id)[-limit:][::-1]:
        out.append([c["id"], c["kind"], _short(c.get("payload")), c["status"],
                    "" if c.get("step") is None else c["step"], c.get("message") or ""])
    return out


def _short(payload: Any) -> str:
    if not payload:
        return ""
    text = ", ".join(f"{k}={v}" for k, v in payload.items()) if isinstance(payload, dict) else str(payload)
    return text if len(text) <= 80 else text[:77] + "..."

