"""Mirror a run to the experiment trackers a lab already uses (``report_to``).

``report_to`` follows the convention of Hugging Face's trainers: a comma-separated list of
tracker names (``"trackio,tensorboard,wandb"``), ``"all"`` for every one that is installed,
or ``"none"`` (the default). The run store stays the source of truth: the trackers receive
a copy of the same per-step scalars (``train/``, ``perf/``, ``time/``) and evaluation
summaries (``eval/``, ``collapse/``, ``boundary/``, ``sharpen/``) as they are written.

- A tracker whose package is missing is refused when the session starts
  (``check_report_to``), with the optional extra that installs it; nothing is created.
- A tracker that fails during the run is dropped for the rest of the session: an event
  ``tracker_error`` (tracker, step, message) goes to the store and training continues.

Where each tracker writes:

- ``tensorboard``: ``<workspace>/tensorboard/<run_id>/`` (``tensorboard --logdir runs/tensorboard``).
  A resumed run purges the steps it recomputes, so each step appears once.
- ``trackio``: Trackio's local database (``$TRACKIO_DIR``, by default under the Hugging Face
  cache), project ``$TRACKIO_PROJECT`` or ``rlvr-workbench``, run name = run id
  (``trackio show``). Trackio keeps one active run per Python process.
- ``wandb``: project ``$WANDB_PROJECT`` or ``rlvr-workbench``, run id and name = run id,
  files under ``<workspace>/wandb/``; ``WANDB_MODE=offline`` keeps everything local
  (``wandb sync`` uploads later).

An evaluation is logged at its step under the store's names, the "seen" split prefixed
``seen/``. The base model's evaluation is step 0 of the same curves: the LoRA adapter starts
at zero, so the policy at step 0 is the base model.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError

#: tracker name -> (module it needs, the optional extra that installs it)
TRACKERS: dict[str, tuple[str, str]] = {
    "trackio": ("trackio", "trackio"),
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
}
PROJECT = "rlvr-workbench"


def parse_report_to(value: str | list | tuple | None) -> list[str]:
    """Tracker names in ``value`` (no package check). ``""``/``"none"`` -> ``[]``;
    ``"all"`` -> every installed tracker. Unknown names raise ConfigError."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    names: list[str] = []
    for raw in items:
        name = str(raw).strip().lower()
        if not name or name == "none":
            continue
        if name == "all":
            names += [n for n, (mod, _) in TRACKERS.items() if _installed(mod)]
            continue
        if name not in TRACKERS:
            raise ConfigError(f"report_to = {value!r}: unknown tracker {name!r}; expected a comma-separated list of "
                              f"{', '.join(TRACKERS)}, or 'all' (every installed one) or 'none'")
        names.append(name)
    return list(dict.fromkeys(names))


def check_report_to(value: str | list | tuple | None) -> list[str]:
    """Parse ``value`` and make sure every named tracker's package is importable;
    a missing one raises ConfigError naming the extra to install."""
    names = parse_report_to(value)
    missing = [n for n in names if not _installed(TRACKERS[n][0])]
    if missing:
        extras = ",".join(TRACKERS[n][1] for n in missing)
        raise ConfigError(
            f"report_to = {value!r} needs {', '.join(TRACKERS[n][0] for n in missing)}, which is not installed: "
            f"pip install 'rlvr-workbench[{extras}]' (or pip install {' '.join(TRACKERS[n][0] for n in missing)}), "
            f"or drop {', '.join(missing)} from report_to")
    return names


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class Mirror:
    """Copies a run's scalars to the trackers in ``names``. Trackers start on the first
    write (a new run or a resumed one alike); a failing one is dropped with an event."""

    def __init__(self, names: list[str], run_id: str, config: dict, workspace: str | os.PathLike,
                 on_event: Callable[[str, dict], None] | None = None):
        self.names = list(names)
        self.run_id, self.config, self.workspace = run_id, config, Path(workspace)
        self.on_event = on_event
        self.failed: dict[str, str] = {}          # tracker -> why it was dropped
        self._backends: dict[str, _Backend] | None = None
        self._finalizer: weakref.finalize | None = None
        self._reopened = False                    # started before in this session (after a close)

    def __bool__(self) -> bool:
        return bool(self.names)

    # ---------------------------------------------------------------- writes
    def log_step(self, step: int, scalars: dict[str, Any]) -> None:
        """One training step's scalars."""
        self._log(step, _numbers(scalars), step)

    def log_evaluation(self, step: int, label: str, split: str, summary: dict[str, Any]) -> None:
        """One evaluation's summary (label "base" at step 0 or "policy"), on one split."""
        prefix = "" if split == "eval" else f"{split}/"
        # an evaluation at step s follows that step's scalars: a resumed log keeps them
        self._log(step, {prefix + k: v for k, v in _numbers(summary).items()}, step + 1)

    def close(self) -> None:
        """Finish every tracker (a later write starts them again, resuming the run)."""
        backends, self._backends = self._backends or {}, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        for name, backend in backends.items():
            self._call(name, backend.close, None)

    # ---------------------------------------------------------------- internals
    def _log(self, step: int, metrics: dict[str, float], first_new_step: int) -> None:
        if not self.names or not metrics:
            return
        if self._backends is None:
            self._start(step, None if self._reopened else first_new_step)
        for name, backend in list(self._backends.items()):
            self._call(name, backend.log, step, metrics, step)

    def _start(self, step: int, first_new_step: int | None) -> None:
        """Start the trackers; ``first_new_step``: values a tracker holds from this step on
        are stale (a resumed run recomputes them), None when this session wrote them itself."""
        self._backends, self._reopened = {}, True
        for name in self.names:
            if name in self.failed:
                continue
            backend = self._call(name, lambda n=name: _BACKENDS[n](self.run_id, self.config, self.workspace,
                                                                   first_new_step), step)
            if backend is not None:
                self._backends[name] = backend
        self._finalizer = weakref.finalize(self, _close_all, dict(self._backends))

    def _call(self, name: str, fn: Callable, step: int | None, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # a tracker must never stop training
            message = f"{type(exc).__name__}: {exc}"
            self.failed[name] = message
            if self._backends is not None:
                self._backends.pop(name, None)
            text = (f"mirroring to {name} failed{'' if step is None else f' at step {step}'} and is off for the "
                    f"rest of this session ({message}); the run store still has every value")
            warnings.warn(text, RuntimeWarning, stacklevel=3)
            if self.on_event is not None:
                try:
                    self.on_event("tracker_error", {"tracker": name, "step": step, "message": text})
                except Exception:
                    pass
            return None


def _numbers(d: dict[str, Any]) -> dict[str, float]:
    """The finite-or-not float values of ``d`` (booleans, strings and lists are not scalars)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        out[k] = float(v)
    return out


def _close_all(backends: dict) -> None:
    for backend in backends.values():
        try:
            backend.close()
        except Exception:
            pass


# -------------------------------------------------------------------- backends
class _Backend:
    def log(self, metrics: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _TensorBoard(_Backend):
    def __init__(self, run_id: str, config: dict, workspace: Path, first_new_step: int | None):
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = workspace / "tensorboard" / run_id
        resumed = self.logdir.exists() and any(self.logdir.iterdir())
        # purge_step: the steps a resumed run recomputes replace the ones logged before
        self.writer = SummaryWriter(log_dir=str(self.logdir), purge_step=first_new_step if resumed else None)
        if not resumed:
            self.writer.add_text("config", "```\n" + _json(config) + "\n```", 0)

    def log(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _Trackio(_Backend):
    def __init__(self, run_id: str, config: dict, workspace: Path, first_new_step: int | None):
        import inspect

        import trackio

        quiet = {"embed": False, "auto_log_cpu": False, "auto_log_gpu": False}   # no notebook iframe, no system metrics
        accepted = inspect.signature(trackio.init).parameters
        self.run = trackio.init(project=os.environ.get("TRACKIO_PROJECT", PROJECT), name=run_id, config=config,
                                resume="allow", **{k: v for k, v in quiet.items() if k in accepted})

    def log(self, metrics: dict[str, float], step: int) -> None:
        # Trackio stores JSON: non-finite values are left out (the store keeps them)
        self.run.log({k: v for k, v in metrics.items() if math.isfinite(v)}, step=step)

    def close(self) -> None:
        self.run.finish()


class _WandB(_Backend):
    def __init__(self, run_id: str, config: dict, workspace: Path, first_new_step: int | None):
        import wandb

        workspace.mkdir(parents=True, exist_ok=True)
        wid = re.sub(r"[^A-Za-z0-9_.-]", "-", run_id)
        kwargs: dict[str, Any] = dict(project=os.environ.get("WANDB_PROJECT", PROJECT), id=wid, name=run_id,
                                      config=config, dir=str(workspace), resume="allow")
        try:
            self.run = wandb.init(**kwargs, reinit="create_new")       # several sessions in one process
        except (TypeError, ValueError):                                 # older wandb: no "create_new"
            self.run = wandb.init(**kwargs, reinit=True)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


_BACKENDS: dict[str, type[_Backend]] = {"tensorboard": _TensorBoard, "trackio": _Trackio, "wandb": _WandB}


def _json(config: dict) -> str:
    import json

    return json.dumps(config, indent=2, default=str)
