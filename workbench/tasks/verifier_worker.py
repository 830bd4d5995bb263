"""Run a user's verifier in a child process, with a time limit on each call.

Custom verifiers are user code, and a verifier can hang on a completion the policy wrote
(a huge integer power, a catastrophic regular expression, a parser that loops). Only a
separate process can be stopped whatever it is stuck in: a thread cannot be killed, and a
signal-based alarm reaches neither C code that does not return to the interpreter nor a
session driven from a non-main thread. So custom verifiers run in one long-lived child
process (started on first use, restarted after a kill): a batch of (record, completion)
pairs goes down a socket pair, each verdict comes back as soon as it is computed, and the
parent waits at most ``timeout`` seconds for each. A call past its limit gets the child
killed; that sample counts as unparsed (reward 0) and the caller is told, so it can log an
event. The built-in verifiers do not come here: they run in the training process at no
extra cost.

The child is a fresh Python interpreter running ``_child`` (not a forked or
``multiprocessing``-spawned copy, which would re-run the user's main script); it takes the
parent's ``sys.path`` so the verifier imports the same way in both. Its standard output
goes to standard error, so a verifier's prints cannot corrupt the protocol.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Hashable, Sequence
from multiprocessing.connection import Connection, Pipe
from typing import Any

#: How long a fresh child may take to start and import the verifier.
START_TIMEOUT = 60.0


class WorkerFailed(Exception):
    """The child could not start, or died while verifying (not a timeout)."""


class VerifierWorker:
    """A child process that calls ``spec`` (``module:function`` or ``file.py:function``)."""

    def __init__(self, spec: str, timeout: float):
        self.spec, self.timeout = spec, float(timeout)
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None

    # ------------------------------------------------------------------ lifecycle
    def _start(self) -> None:
        parent, child = Pipe(duplex=True)
        fd = child.fileno()
        try:
            self._proc = subprocess.Popen([sys.executable, "-c", _CHILD_MAIN, str(fd)],
                                          pass_fds=[fd], stdin=subprocess.DEVNULL)
        except OSError as exc:
            parent.close()
            raise WorkerFailed(f"cannot start a verifier process ({exc})") from exc
        finally:
            child.close()
        self._conn = parent
        try:
            parent.send(("init", list(sys.path), os.getcwd(), self.spec))
            if not parent.poll(START_TIMEOUT):
                raise WorkerFailed(f"the verifier process did not start within {START_TIMEOUT:.0f} s")
            msg = parent.recv()
        except (OSError, EOFError) as exc:
            self.close()
            raise WorkerFailed(f"the verifier process exited while starting (exit code {self._exit_code()})") from exc
        except WorkerFailed:
            self.close()
            raise
        if msg[0] != "ready":
            self.close()
            raise WorkerFailed(msg[1])

    def close(self) -> None:
        """Stop the child (killed at once: it may be stuck)."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            conn.close()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def _exit_code(self) -> int | None:
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=2)  # it has closed its end: it is exiting
        except subprocess.TimeoutExpired:
            return None

    # ------------------------------------------------------------------ calls
    def run(self, records: Sequence[dict], completions: Sequence[str], keys: Sequence[Hashable],
            on_timeout: Callable[[int, float, int, int], None]) -> list[tuple[str, Any]]:
        """One result per pair, in order: ("ok", Verdict), ("error", exception) or ("timeout", None).

        ``keys[i]`` identifies pair i (e.g. (problem id, completion)): after a call times out,
        the other pairs with its key are not tried again (a collapsed policy repeats the same
        completion G times). ``on_timeout(index, seconds, repeats, streak)`` is called as each
        call passes its limit, with the number of pairs sharing its key and the number of
        timeouts in a row without a result in between; it may raise to abandon the batch."""
        results: list[tuple[str, Any] | None] = [None] * len(records)
        todo = list(range(len(records)))
        streak = 0
        while todo:
            if self._conn is None:
                self._start()
            try:
                self._conn.send(("batch", [(i, records[i], completions[i]) for i in todo]))
            except OSError:  # the child died since the last batch: start a new one
                self.close()
                self._start()
                self._conn.send(("batch", [(i, records[i], completions[i]) for i in todo]))
            while todo:
                current = todo[0]
                t0 = time.monotonic()
                try:
                    ready = self._conn.poll(self.timeout)
                    msg = self._conn.recv() if ready else None
                except (OSError, EOFError) as exc:
                    code = self._exit_code()
                    self.close()
                    raise WorkerFailed(f"the verifier process exited (exit code {code}) while verifying "
                                       f"item {current}") from exc
                if msg is None:  # past its limit: kill the child, skip this call, go on with a new child
                    self.close()
                    same = [i for i in todo if keys[i] == keys[current]]
                    for i in same:
                        results[i] = ("timeout", None)
                    todo = [i for i in todo if keys[i] != keys[current]]
                    streak += 1
                    on_timeout(current, time.monotonic() - t0, len(same), streak)
                    break
                kind, idx, value = msg
                results[idx] = (kind, value)
                todo.remove(idx)
                streak = 0
        return results  # type: ignore[return-value]

    def __del__(self):  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass


# ---------------------------------------------------------------------- the child
def _child(fd: int) -> None:
    conn = Connection(fd)
    os.dup2(2, 1)  # the verifier's prints go to stderr; the protocol has its own socket
    sys.stdout = sys.stderr
    _, path, cwd, spec = conn.recv()
    sys.path[:] = path
    os.chdir(cwd)
    from workbench.tasks.custom import load_verifier, to_verdict

    try:
        fn = load_verifier(spec)
    except Exception as exc:  # reported by the parent, which already imported it once
        conn.send(("fatal", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready",))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        for idx, record, completion in msg[1]:
            try:
                out = ("ok", idx, to_verdict(fn(record, completion), completion))
            except Exception as exc:
                out = ("error", idx, exc)
            try:
                conn.send(out)
            except Exception as exc:  # an exception that does not pickle
                conn.send(("error", idx, RuntimeError(f"{type(out[2]).__name__}: {out[2]} ({exc})")))


_CHILD_MAIN = "import sys; from workbench.tasks.verifier_worker import _child; _child(int(sys.argv[1]))"
