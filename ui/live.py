"""The live view's refresh path: poll ``store.version``, fetch only what is new, and tell
which figures changed.

``CachedStore`` wraps a RunStore with the same read API the view functions use, served
from per-run caches that grow incrementally (new steps via ``since_step``, new events
via ``since_id``; evaluation rows never change once written, so they are kept by id).
``refresh`` recomputes a group of figures only when the parts of the version token it
depends on changed; the Gradio app returns ``gr.skip()`` for the others, so a tick with
no new data costs one small query.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ui import drilldown, metrics_view, style, tables, views

#: Scalars the live figures read; fetched incrementally. Other keys go to the store.
LIVE_KEYS = views.STEP_KEYS


@dataclass
class _RunCache:
    version: tuple | None = None
    last_step: int = -1                                             # steps fetched so far
    scalars: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    evaluations: list[dict] | None = None
    eval_problems: dict[int, list[dict]] = field(default_factory=dict)
    bank: dict[str | None, list[dict]] = field(default_factory=dict)


class CachedStore:
    """A RunStore read-through cache for pollers (thread-safe; one per app)."""

    def __init__(self, store: Any):
        self.store = store
        self._runs: dict[str, _RunCache] = {}
        self._lock = threading.RLock()

    # -- syncing ------------------------------------------------------------------------
    def sync(self, run_id: str) -> tuple[tuple, bool]:
        """(version, changed): one query when nothing changed, else fetch the new rows.

        A resumed run rewrites steps after its checkpoint (``truncate_after``): a lower
        last step or a new ``resumed`` event drops the run's cache and refetches it.
        """
        with self._lock:  # one sync at a time: two pollers must not interleave their fetches
            version = self.store.version(run_id)  # raises UnknownNameError for unknown runs
            rc = self._runs.setdefault(run_id, _RunCache())
            if version == rc.version:
                return version, False
            last_step, n_events, n_evals = version[0], version[1], version[2]
            if last_step < rc.last_step or n_events < len(rc.events) or (rc.evaluations and n_evals < len(rc.evaluations)):
                rc = self._runs[run_id] = _RunCache()
            new_events = self.store.events(run_id, since_id=rc.events[-1]["id"] if rc.events else 0)
            if rc.events and any(e["kind"] == "resumed" for e in new_events):
                rc = self._runs[run_id] = _RunCache()
                new_events = self.store.events(run_id)
            rc.events.extend(new_events)
            if last_step > rc.last_step:
                fresh = self.store.scalars(run_id, keys=LIVE_KEYS, since_step=rc.last_step)
                for k, pts in fresh.items():
                    rc.scalars.setdefault(k, []).extend(pts)
                # steps written since version() came along too: the next fetch starts after them
                rc.last_step = max([last_step] + [pts[-1][0] for pts in fresh.values() if pts])
            if rc.evaluations is None or n_evals != len(rc.evaluations):
                rc.evaluations = self.store.evaluations(run_id)
                rc.bank.clear()
            rc.version = version
            return version, True

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def _cache(self, run_id: str) -> _RunCache:
        with self._lock:
            rc = self._runs.get(run_id)
        if rc is None or rc.version is None:
            self.sync(run_id)
            rc = self._runs[run_id]
        return rc

    # -- the read API of RunStore that the views use --------------------------------------
    def last_step(self, run_id: str) -> int:
        return int(self._cache(run_id).version[0])

    def scalars(self, run_id: str, keys=None, since_step: int = -1) -> dict[str, list[tuple[int, float]]]:
        wanted = None if keys is None else list(dict.fromkeys(keys))
        if wanted is None or any(k not in LIVE_KEYS for k in wanted):
            return self.store.scalars(run_id, keys=keys, since_step=since_step)
        rc = self._cache(run_id)
        with self._lock:
            return {k: [p for p in rc.scalars.get(k, []) if p[0] > since_step] for k in wanted}

    def events(self, run_id: str, kind: str | None = None, since_id: int = 0) -> list[dict]:
        rc = self._cache(run_id)
        with self._lock:
            return [e for e in rc.events if e["id"] > since_id and (kind is None or e["kind"] == kind)]

    def evaluations(self, run_id: str, label: str | None = None, split: str | None = None) -> list[dict]:
        rc = self._cache(run_id)
        with self._lock:
            return [e for e in rc.evaluations or [] if (label is None or e["label"] == label)
                    and (split is None or e["split"] == split)]

    def eval_problems(self, run_id: str, eval_id: int) -> list[dict]:
        rc = self._cache(run_id)
        with self._lock:
            rows = rc.eval_problems.get(eval_id)
        if rows is None:
            rows = self.store.eval_problems(run_id, eval_id)
            with self._lock:
                rc.eval_problems[eval_id] = rows
        return rows

    def bank(self, run_id: str, problem_id: str | None = None) -> list[dict]:
        rc = self._cache(run_id)
        with self._lock:
            rows = rc.bank.get(problem_id)
        if rows is None:
            rows = self.store.bank(run_id, problem_id=problem_id)
            with self._lock:
                rc.bank[problem_id] = rows
        return rows

    def __getattr__(self, name: str) -> Any:  # get_run, list_runs, commands, eval_samples, ...
        return getattr(self.store, name)


# ---------------------------------------------------------------------- the panel registry
@dataclass(frozen=True)
class Options:
    """What the user chose in the live view (part of each figure's change key)."""

    passk_steps: tuple[int, ...] = ()
    color: str = "eff_modes"
    split: str = "eval"
    problem: str | None = None
    tab: str = "live"                 # the tab on screen: panels of hidden tabs are not redrawn
    metrics: tuple = ("", (), 0.0, False, "step")   # All metrics: query, groups, smoothing, log y, x axis


@dataclass(frozen=True)
class Panel:
    """One thing the live view draws: ``render(store, run_id, opts)`` gives its value (a
    figure, or a dict {output: value} when it fills several components), recomputed only
    when ``key(run_id, version, opts)`` changes. ``throttled``: the key's last element is
    the step, and new steps alone redraw it at most every THROTTLE_SECONDS. ``row``: the
    layout row a figure goes in (``ui.app`` builds one ``gr.Plot`` per figure panel)."""

    name: str
    key: Callable[[str, tuple, Options], tuple]
    render: Callable[[Any, str, Options], Any]
    outputs: tuple[str, ...] = ()      # the components filled, when not just ``name``
    throttled: bool = False
    row: str = ""

    @property
    def components(self) -> tuple[str, ...]:
        return self.outputs or (self.name,)


def _tables(store: Any, run_id: str, opts: Options) -> dict[str, Any]:
    return {"events": tables.events_table(store, run_id), "commands": tables.commands_table(store, run_id)}


def _detail(store: Any, run_id: str, opts: Options) -> dict[str, Any]:
    return drilldown.problem_detail(store, run_id, opts.problem, split=opts.split)


def _metrics_key(run_id: str, v: tuple, o: Options) -> tuple:
    if o.tab != "metrics":  # drawn only while its tab is on screen
        return (run_id, "hidden", None)
    return (run_id, v[1], v[2], v[3], o.metrics, v[0])


def _all_metrics(store: Any, run_id: str, o: Options) -> Any:
    if o.tab != "metrics":
        return style.empty_figure("All metrics", "open the All metrics tab")
    query, groups, smoothing, log_y, x_axis = o.metrics
    return metrics_view.all_metrics_figure(store, run_id, query, list(groups), smoothing, log_y, x_axis)


#: Every panel of the live view, in layout order. A new panel is one entry here (and, for
#: a figure in a new row, that row's place in ``ui.app``).
PANELS: dict[str, Panel] = {p.name: p for p in (
    Panel("reward", lambda r, v, o: (r, v[1], v[2], v[3], v[0]), lambda s, r, o: views.reward_figure(s, r),
          throttled=True, row="steps"),
    Panel("entropy", lambda r, v, o: (r, v[1], v[2], v[3], v[0]), lambda s, r, o: views.entropy_figure(s, r),
          throttled=True, row="steps"),
    Panel("passk", lambda r, v, o: (r, v[2], o.passk_steps, o.split),
          lambda s, r, o: views.passk_figure(s, r, steps=list(o.passk_steps), split=o.split), row="evals"),
    Panel("boundary", lambda r, v, o: (r, v[2], v[1], o.split),
          lambda s, r, o: views.boundary_figure(s, r, split=o.split), row="evals"),
    Panel("heatmap", lambda r, v, o: (r, v[2], v[1], o.color, o.split),
          lambda s, r, o: views.collapse_heatmap(s, r, color=o.color, split=o.split), row="heatmap"),
    Panel("detail", lambda r, v, o: (r, v[2], v[1], o.split, o.problem), _detail,
          outputs=("summary", "modes", "bank", "samples")),
    Panel("diagnostics", lambda r, v, o: (r, v[1], v[3], v[0]), lambda s, r, o: views.diagnostics_figure(s, r),
          throttled=True, row="diagnostics"),
    Panel("tables", lambda r, v, o: (r, v[3], v[4]), _tables,
          outputs=("events", "commands"), throttled=True),
    Panel("all_metrics", _metrics_key, _all_metrics, throttled=True, row="metrics"),
)}

THROTTLED = tuple(n for n, p in PANELS.items() if p.throttled)

#: A browser spends ~0.1 s of CPU redrawing the three step plots (headless Chromium on
#: 2 cores); every 4 s instead of at every 2 s poll halves that cost while the status line
#: and evaluation figures stay at the poll's pace (benchmarks/dashboard_refresh.py --browser).
THROTTLE_SECONDS = 4.0


def keys_for(run_id: str, version: tuple, opts: Options) -> dict[str, tuple]:
    """The change key of each panel: a panel is redrawn only when its key changes."""
    return {name: p.key(run_id, version, opts) for name, p in PANELS.items()}


def render(cache: CachedStore, run_id: str, name: str, opts: Options) -> Any:
    """Recompute one panel (a figure, or a dict {output: value})."""
    return PANELS[name].render(cache, run_id, opts)


def figure_rows() -> dict[str, list[str]]:
    """Figure panels grouped by layout row, in registry order."""
    rows: dict[str, list[str]] = {}
    for name, p in PANELS.items():
        if not p.outputs:
            rows.setdefault(p.row, []).append(name)
    return rows


def outputs() -> list[tuple[str, str]]:
    """(panel, component) of every component the live view fills, in registry order."""
    return [(name, comp) for name, p in PANELS.items() for comp in p.components]


def refresh(cache: CachedStore, run_id: str | None, seen: dict[str, tuple] | None, opts: Options,
            force: bool = False, now: float | None = None,
            throttle: float = THROTTLE_SECONDS) -> tuple[dict[str, Any], dict[str, tuple], tuple | None]:
    """One poll: ({group: new value, only for groups that changed}, new seen keys, version).

    ``seen`` is what the caller last drew (per group change key, and when); ``None`` or
    ``force`` redraws everything. A run that does not exist (yet) gives empty figures once.
    """
    now = time.monotonic() if now is None else now
    seen = dict(seen or {})
    try:
        version, _ = cache.sync(run_id) if run_id else (None, False)
    except Exception:  # noqa: BLE001 - unknown run: not created yet by its process, or deleted
        version = None
    if version is None:
        key = ("none", run_id)
        if not force and seen.get("_none") == key:
            return {}, seen, None
        out = {name: render_empty(name) for name in PANELS}
        return out, {"_none": key}, None
    out = {}
    for name, key in keys_for(run_id, version, opts).items():
        old = seen.get(name)
        if not force and old == key:
            continue
        if (not force and name in THROTTLED and old is not None and old[:-1] == key[:-1]
                and now - seen.get(f"_t:{name}", -math.inf) < throttle):
            continue  # only new steps: wait for the throttle
        out[name] = render(cache, run_id, name, opts)
        seen[name] = key
        seen[f"_t:{name}"] = now
    seen.pop("_none", None)
    return out, seen, version


def render_empty(name: str) -> Any:
    if name == "detail":
        return drilldown.problem_detail(None, None, None)
    if name == "tables":
        return {"events": [], "commands": []}
    return render(_NoStore(), "", name, Options())  # type: ignore[arg-type]


class _NoStore:
    """Stands in for a store when no run is selected: every view draws its empty figure."""

    def last_step(self, run_id: str) -> int:
        raise KeyError(run_id)
