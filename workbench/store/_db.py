"""SQLite plumbing for the run store: a connection per thread, one transaction per write.

Kept apart from the API so that the rules that make concurrent use safe live in one
place: WAL (readers never block the writer, the writer never blocks readers), a long
busy timeout (a dashboard's command write waits for the trainer's step instead of
failing), ``BEGIN IMMEDIATE`` for writes (the write lock is taken up front, so a write
transaction never fails half-way on a lock upgrade) and error messages that name the
file and the remedy instead of a bare ``sqlite3.OperationalError``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from workbench.errors import StoreError


class Database:
    """Opens ``path`` lazily, one connection per thread (and per process, after a fork)."""

    def __init__(
        self,
        path: Path,
        timeout: float,
        init: Callable[[sqlite3.Connection], None],
        ready: Callable[[sqlite3.Connection], bool],
    ):
        self.path = Path(path)
        self.timeout = float(timeout)
        self._init, self._is_ready = init, ready
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._generation = 0  # bumped by close(): thread-local connections go stale
        self._ready = False  # schema checked by this object

    # -- connections -------------------------------------------------------------------
    def conn(self) -> sqlite3.Connection:
        """This thread's connection; a forked child or a closed store opens a new one."""
        local = self._local
        key = (os.getpid(), self._generation)
        if getattr(local, "key", None) != key:
            local.conn, local.key, local.depth = self._open(), key, 0
        return local.conn

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the run store folder {self.path.parent}: {exc}. "
                "Choose a writable workspace folder (e.g. --workspace ./runs)."
            ) from exc
        try:
            c = sqlite3.connect(
                str(self.path), timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self.translate(exc) from exc
        c.row_factory = sqlite3.Row
        try:
            c.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            c.execute("PRAGMA journal_mode = WAL").fetchone()
            c.execute("PRAGMA synchronous = NORMAL")
            c.execute("PRAGMA foreign_keys = ON")
            with self._lock:
                if not self._ready:
                    if not self._is_ready(c):
                        self._run_init(c)
                    self._ready = True
                self._conns.append(c)
        except BaseException as exc:
            c.close()
            if isinstance(exc, sqlite3.Error):  # includes "not a database" on the first read
                raise self.translate(exc) from exc
            raise
        return c

    def _run_init(self, c: sqlite3.Connection) -> None:
        c.execute("BEGIN IMMEDIATE")
        try:
            self._init(c)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close every connection this object opened (any thread's)."""
        with self._lock:
            conns, self._conns = self._conns, []
            self._generation += 1
        for c in conns:
            try:
                c.close()
            except sqlite3.Error:
                pass

    # -- transactions and reads --------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One all-or-nothing transaction; nested uses join the outer one."""
        c = self.conn()
        local = self._local
        if local.depth:
            local.depth += 1
            try:
                yield c
            finally:
                local.depth -= 1
            return
        try:
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self.translate(exc) from exc
        local.depth = 1
        try:
            yield c
            c.execute("COMMIT")
        except BaseException as exc:
            if c.in_transaction:
                try:
                    c.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            if isinstance(exc, sqlite3.Error):
                raise self.translate(exc) from exc
            raise
        finally:
            local.depth = 0

    def rows(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[sqlite3.Row]:
        """Run a read; SQLite errors become StoreErrors that name the file."""
        try:
            return self.conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self.translate(exc) from exc

    def translate(self, exc: sqlite3.Error) -> StoreError:
        """A StoreError that says which file and what to do."""
        msg = str(exc)
        low = msg.lower()
        if "not a database" in low or "malformed" in low:
            return StoreError(
                f"{self.path} is not a SQLite run store ({msg}). Move the file away or "
                "choose another workspace folder."
            )
        if "locked" in low or "busy" in low:
            return StoreError(
                f"{self.path} stayed locked by another process for more than "
                f"{self.timeout:g} s ({msg}). Wait for that process (a long write, a stuck "
                "session) to finish or stop it, then retry."
            )
        if "readonly" in low or "unable to open" in low or "disk i/o" in low or "read-only" in low:
            return StoreError(
                f"cannot write the run store {self.path} ({msg}). Check that "
                f"{self.path.parent} exists and is writable, or choose another workspace."
            )
        return StoreError(f"run store {self.path}: {msg}")
