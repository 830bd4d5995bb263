"""Training processes started from the dashboard.

A run starts as ``python -m workbench.cli train ... --run-id ID`` in a subprocess, so the
dashboard never imports torch and steers its own runs exactly as it steers runs of other
processes: through the store's command table. The Popen handles are kept so that a stop
can also end a process that does not answer (stuck loading a model, say), and each
process's output goes to ``<workspace>/logs/<run_id>.log`` so a crash is shown as a message.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Proc:
    run_id: str
    popen: subprocess.Popen
    log: Path
    started: float = field(default_factory=time.time)
    killed: bool = False


def log_message(path: Path, max_chars: int = 600) -> str:
    """The useful last words of a log: the CLI's ``error: ...`` line, else the exception of
    the last traceback (its first unindented line after the frames: "ValueError: ..."),
    else the last line — never the traceback's frames nor what was printed after them."""
    try:
        lines = [ln.rstrip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    for ln in reversed(lines):
        if ln.startswith("error:"):
            return ln[len("error:"):].strip()[:max_chars]
    starts = [i for i, ln in enumerate(lines) if ln.startswith("Traceback (most recent call last)")]
    if starts:
        tail = lines[starts[-1] + 1:]
        exc = [ln for ln in tail if not ln.startswith((" ", "\t"))]
        if exc:
            return exc[0][:max_chars]
    return lines[-1][:max_chars] if lines else ""


class RunManager:
    """The training subprocesses this dashboard started (thread-safe)."""

    def __init__(self, workspace: str | Path, store: Any):
        self.workspace = Path(workspace)
        self.store = store
        self.logs = self.workspace / "logs"
        self._procs: dict[str, Proc] = {}
        self._lock = threading.Lock()

    def start(self, run_id: str, argv: list[str], append: bool = False) -> Proc:
        """Start ``argv`` for ``run_id`` (``append``: keep the log of an earlier process)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{run_id}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
        with open(log, "ab" if append else "wb") as fh:
            popen = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        proc = Proc(run_id, popen, log)
        with self._lock:
            self._procs[run_id] = proc
        return proc

    def get(self, run_id: str | None) -> Proc | None:
        with self._lock:
            return self._procs.get(run_id or "")

    def started(self) -> list[str]:
        """Every run id this dashboard started a process for, newest first."""
        with self._lock:
            procs = sorted(self._procs.values(), key=lambda p: -p.started)
        return [p.run_id for p in procs]

    def running(self) -> list[str]:
        with self._lock:
            return [rid for rid, p in self._procs.items() if p.popen.poll() is None]

    def state(self, run_id: str | None) -> dict[str, Any] | None:
        """None for runs this dashboard did not start; else {"alive", "returncode", "message", "log"}."""
        p = self.get(run_id)
        if p is None:
            return None
        rc = p.popen.poll()
        msg = "" if rc in (None, 0) or p.killed else log_message(p.log)
        return {"alive": rc is None, "returncode": rc, "message": msg, "log": str(p.log), "pid": p.popen.pid,
                "killed": p.killed, "started": p.started}

    def status_overrides(self) -> dict[str, str]:
        """Run id -> status text for dashboard processes that ended without telling the store."""
        out = {}
        with self._lock:
            procs = list(self._procs.values())
        for p in procs:
            rc = p.popen.poll()
            if rc not in (None, 0) and not p.killed:
                out[p.run_id] = f"crashed (exit {rc})"
        return out

    def stop(self, run_id: str, grace: float = 30.0) -> bool:
        """After a ``stop`` command was sent: end the process if it is still alive after
        ``grace`` seconds (terminate, then kill). True if a process is being watched."""
        p = self.get(run_id)
        if p is None or p.popen.poll() is not None:
            return False

        def watchdog() -> None:
            deadline = time.time() + grace
            while time.time() < deadline:
                if p.popen.poll() is not None:
                    return
                time.sleep(0.5)
            self.kill(run_id)

        threading.Thread(target=watchdog, daemon=True, name=f"stop-{run_id}").start()
        return True

    def kill(self, run_id: str, wait: float = 10.0) -> bool:
        """End the process now (SIGTERM, then SIGKILL); mark a run it left 'running' as stopped."""
        p = self.get(run_id)
        if p is None or p.popen.poll() is not None:
            return False
        p.killed = True
        p.popen.terminate()
        try:
            p.popen.wait(wait)
        except subprocess.TimeoutExpired:
            p.popen.kill()
            p.popen.wait(wait)
        try:  # a killed process cannot record its own end
            if self.store.get_run(run_id)["stored_status"] in ("running", "paused", "created"):
                self.store.set_status(run_id, "stopped")
        except Exception:  # noqa: BLE001 - the run may not exist yet (killed while loading)
            pass
        return True

    def shutdown(self, wait: float = 10.0) -> None:
        """End every process this dashboard started (tests, and the dashboard's exit)."""
        for rid in self.running():
            self.kill(rid, wait)
