"""One trainer per run, and whether that trainer is still alive.

A trainer *claims* its run before it writes anything: an exclusive OS lock
(``fcntl.flock``) on ``<workspace>/locks/<run_id>.lock``, held for as long as it trains.
The operating system drops the lock when the process ends in any way (kill -9
included), so a second trainer is refused while the first lives and allowed once it is
gone. While it holds the lock, a background thread writes a *heartbeat* (a timestamp
and ``host:pid``) into the run's row every few seconds, during steps, evaluations and
pauses alike; it does not count as a change of the run (pollers keep their caches).

A run whose stored status says a trainer is at work (created, running, paused) is
reported as ``crashed`` when its lock is free (same machine) or its heartbeat is older
than ``STALE_SECONDS`` (a store shared with another machine). Runs that never had a
heartbeat (written by older versions) keep their stored status.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from workbench.errors import StoreError
from workbench.store import _codec as cd
from workbench.store._base import StoreBase

try:  # POSIX; elsewhere only the heartbeat tells
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: How often a trainer's heartbeat is written (seconds).
HEARTBEAT_SECONDS = 5.0
#: A heartbeat older than this means the trainer is gone (when the lock cannot tell).
STALE_SECONDS = 60.0
#: Stored statuses that claim a trainer is at work.
ACTIVE = ("created", "running", "paused")
#: The status reported for an active run whose trainer is gone.
CRASHED = "crashed"

HOST = socket.gethostname()


def owner_tag() -> str:
    return f"{HOST}:{os.getpid()}"


def lock_path(root: Path, run_id: str) -> Path:
    return Path(root) / "locks" / f"{cd.check_run_id(run_id)}.lock"


def lock_held(path: Path) -> bool | None:
    """True if some process holds the run's lock, False if not, None if this system cannot tell."""
    if fcntl is None:
        return None
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        fh.close()  # closing drops a shared lock taken just above
    return False


def live_status(root: Path, run_id: str, status: str, heartbeat_at: float | None, owner: str | None) -> str:
    """The stored status, or ``crashed`` when it claims a trainer that is gone."""
    if status not in ACTIVE or heartbeat_at is None:
        return status
    if (owner or "").rpartition(":")[0] == HOST:
        held = lock_held(lock_path(root, run_id))
        if held is not None:
            return status if held else CRASHED
    return CRASHED if time.time() - float(heartbeat_at) > STALE_SECONDS else status


def _beat_loop(ref: "weakref.ref[Lease]", db_path: str, run_id: str, owner: str,
               stop: threading.Event, interval: float) -> None:
    """The heartbeat thread: its own connection, closed when the lease ends or is dropped."""
    conn = None
    try:
        while not stop.wait(interval):
            if ref() is None:
                return
            try:
                if conn is None:
                    conn = sqlite3.connect(db_path, timeout=interval, isolation_level=None)
                conn.execute("UPDATE runs SET heartbeat_at = ?, owner = ? WHERE run_id = ?",
                             (time.time(), owner, run_id))
            except sqlite3.Error:
                pass  # a busy store: the next beat tries again
    finally:
        if conn is not None:
            conn.close()


class Lease:
    """A trainer's claim on one run: the OS lock and the heartbeat thread. ``release()``
    (or dropping the object, or the process ending) gives the run back."""

    def __init__(self, store: "LeaseMixin", run_id: str, handle: Any, interval: float):
        self.store, self.run_id, self._fh = store, run_id, handle
        self.owner = owner_tag()
        self._stop = threading.Event()
        store.heartbeat(run_id, self.owner)
        self._thread = threading.Thread(
            target=_beat_loop, args=(weakref.ref(self), str(store.path), run_id, self.owner, self._stop, interval),
            daemon=True, name=f"heartbeat-{run_id}")
        self._thread.start()

    @property
    def held(self) -> bool:
        return self._fh is not None

    def beat(self) -> None:
        """Write the heartbeat now (the thread also does, every few seconds)."""
        if self.held:
            self.store.heartbeat(self.run_id, self.owner)

    def release(self) -> None:
        self._stop.set()
        fh, self._fh = self._fh, None
        if fh is not None:
            try:
                if fcntl is not None:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            finally:
                fh.close()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __repr__(self) -> str:
        return f"Lease({self.run_id!r}, held={self.held})"


class LeaseMixin(StoreBase):
    """Claiming a run for a trainer, its heartbeat, and the status readers see."""

    def claim(self, run_id: str, wait: float = 2.0, interval: float = HEARTBEAT_SECONDS) -> Lease:
        """Take the run for this process, or raise StoreError naming the trainer that has it.

        ``wait`` covers a reader probing the lock at the same instant (a few microseconds).
        """
        row = self._require_run(None, run_id)
        path = lock_path(self.root, run_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(path, "a+")
        except OSError as exc:
            raise StoreError(f"cannot create the run's lock file {path}: {exc}. Choose a writable workspace.") from exc
        if fcntl is not None:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        fh.close()
                        raise StoreError(self._busy_message(run_id, row)) from None
                    time.sleep(0.05)
        elif row["heartbeat_at"] is not None and time.time() - row["heartbeat_at"] < STALE_SECONDS \
                and row["status"] in ACTIVE and row["owner"] != owner_tag():  # pragma: no cover - no fcntl
            fh.close()
            raise StoreError(self._busy_message(run_id, row))
        fh.seek(0)
        fh.truncate()
        fh.write(owner_tag() + "\n")
        fh.flush()
        return Lease(self, run_id, fh, interval)

    def _busy_message(self, run_id: str, row: Any) -> str:
        who = row["owner"] or "another process"
        beat = row["heartbeat_at"]
        ago = f", last heartbeat {time.time() - beat:.0f} s ago" if beat else ""
        return (f"run {run_id} is being trained by another process ({who}{ago}); two trainers on one run would "
                "overwrite each other's steps. Stop that process first (or wait for it to end), then resume; "
                "`workbench runs` shows its status.")

    def heartbeat(self, run_id: str, owner: str | None = None) -> None:
        """Record that the run's trainer is alive now (not a change of the run for pollers)."""
        with self._db.write() as c:
            self._require_run(c, run_id)
            c.execute("UPDATE runs SET heartbeat_at = ?, owner = ? WHERE run_id = ?",
                      (time.time(), owner or owner_tag(), run_id))

    def _live(self, row: Any) -> str:
        return live_status(self.root, row["run_id"], row["status"], row["heartbeat_at"], row["owner"])
