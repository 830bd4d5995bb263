"""Execute one notebook with nbclient, in this Python's ``python3`` kernel, and never hang.

    python tests/notebook_runner.py SRC.ipynb DST.ipynb CWD

Used by tests/test_notebooks.py (each notebook in a process of its own) and by hand for
full-size runs. Besides nbclient's own per-cell timeout (``WORKBENCH_NB_CELL_TIMEOUT``,
seconds, default 600), a watchdog looks for a *stalled* cell: one that is executing while
the kernel and its child processes use no CPU and send no message for
``WORKBENCH_NB_STALL`` seconds (default 60). That is a hang whatever the machine's speed (a
slow cell still uses CPU). On a stall, or on any failure, it prints to stderr:

- the cell that was running and how long it ran;
- the kernel's last messages (type, time, a short excerpt);
- the state of the kernel process and of its children (``/proc``: R running, S sleeping,
  T stopped, ...), and what each is waiting on;
- the Python stacks of every thread of the kernel (``faulthandler``, registered on SIGUSR1
  at kernel start-up) and of this process;
- the end of the kernel's own stdout/stderr, which go to a file, never to this process's
  pipes (a kernel writing to a pipe nobody drains blocks, idle, for ever);

then kills the kernel's process group and exits with status 3. Progress lines
(``[nb] cell N ...``) go to stderr as cells start and end.
"""

from __future__ import annotations

import collections
import faulthandler
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbclient
import nbformat

STALL_S = float(os.environ.get("WORKBENCH_NB_STALL", "60"))
CELL_TIMEOUT_S = int(os.environ.get("WORKBENCH_NB_CELL_TIMEOUT", "600"))
STALLED = 3


def log(msg: str) -> None:
    print(f"[nb {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class WatchedClient(nbclient.NotebookClient):
    """A NotebookClient that remembers the kernel's last messages and the running cell."""

    def __init__(self, nb, stacks: Path, **kw):
        # the kernel writes all its threads' stacks to `stacks` on SIGUSR1
        setup = (f"import faulthandler as _fh, signal as _sig; _fh_file = open({str(stacks)!r}, 'w'); "
                 f"_fh.register(_sig.SIGUSR1, file=_fh_file, all_threads=True)")
        super().__init__(nb, extra_arguments=[f"--IPKernelApp.exec_lines={[setup]!r}"], **kw)
        self.messages: collections.deque = collections.deque(maxlen=12)
        self.last_activity = time.monotonic()
        self.running: tuple[int, float] | None = None        # (cell index, start time)
        self.kernel_log: Path | None = None

    def process_message(self, msg, cell, cell_index):
        self.last_activity = time.monotonic()
        content = msg.get("content", {})
        excerpt = content.get("text") or content.get("execution_state") or content.get("ename") or ""
        if not excerpt and "data" in content:
            excerpt = ", ".join(content["data"])
        self.messages.append((time.strftime("%H:%M:%S"), msg.get("msg_type"), str(excerpt)[-200:].strip()))
        return super().process_message(msg, cell, cell_index)

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        if cell.cell_type != "code":
            return cell
        first = (cell.source.strip().splitlines() or [""])[0][:70]
        log(f"cell {cell_index} start: {first}")
        self.running, self.last_activity = (cell_index, time.monotonic()), time.monotonic()
        try:
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        finally:
            log(f"cell {cell_index} done in {time.monotonic() - self.running[1]:.1f} s")
            self.running = None

    def kernel_pid(self) -> int | None:
        proc = getattr(getattr(self.km, "provisioner", None), "process", None)
        return getattr(proc, "pid", None)


def _tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[ppid].append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (all their threads)."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def _describe(pid: int) -> str:
    try:
        comm = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
        state = [ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("State:")][0]
        wchan = Path(f"/proc/{pid}/wchan").read_text() if Path(f"/proc/{pid}/wchan").exists() else "?"
        return f"  pid {pid} {state.split(':', 1)[1].strip()} wchan={wchan or '-'}: {comm}"
    except (OSError, IndexError):
        return f"  pid {pid} (gone)"


def report(client: WatchedClient, stacks: Path, why: str) -> None:
    log(f"FAILED: {why}")
    if client.running is not None:
        idx, start = client.running
        log(f"running cell {idx} for {time.monotonic() - start:.0f} s:\n{client.nb.cells[idx].source[:600]}")
    log("the kernel's last messages:\n" + "\n".join(f"  {t} {kind}: {text}" for t, kind, text in client.messages))
    pid = client.kernel_pid()
    if pid is not None:
        log("kernel processes:\n" + "\n".join(_describe(p) for p in _tree(pid)))
        try:
            os.kill(pid, signal.SIGUSR1)
            time.sleep(2)
            log("kernel stacks:\n" + stacks.read_text()[-6000:])
        except OSError as exc:
            log(f"no kernel stacks: {exc}")
    tail = client.kernel_log.read_bytes()[-2000:].decode(errors="replace") if client.kernel_log else ""
    log("the kernel's own stdout/stderr (last 2000 bytes):\n" + (tail or "  (empty)"))
    log("this process's stacks:")
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)


def watchdog(client: WatchedClient, stacks: Path, done: threading.Event) -> None:
    last_cpu, quiet_since = None, time.monotonic()
    while not done.wait(1.0):
        pid, now = client.kernel_pid(), time.monotonic()
        if pid is None or client.running is None:
            last_cpu, quiet_since = None, now
            continue
        cpu = _cpu_s(_tree(pid))
        if last_cpu is None or cpu - last_cpu > 0.05:      # more than 5% of a core in the last second
            quiet_since = now
        last_cpu, quiet_since = cpu, max(quiet_since, client.last_activity)
        if now - quiet_since > STALL_S:
            report(client, stacks, f"stalled: the kernel used no CPU and sent nothing for {STALL_S:.0f} s "
                                   f"while a cell was running")
            for p in reversed(_tree(pid)):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            os._exit(STALLED)


def main(src: str, dst: str, cwd: str) -> int:
    nb = nbformat.read(src, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    stacks = Path(tempfile.mkstemp(prefix="kernel-stacks-", suffix=".txt")[1])
    # The kernel's own stdout/stderr (ipykernel echoes C-level output there) go to a file:
    # inheriting this process's pipes, a kernel blocks in write() as soon as whoever runs
    # this stops reading them, and then the kernel and the client both wait for ever.
    kernel_log = Path(tempfile.mkstemp(prefix="kernel-output-", suffix=".txt")[1])
    client = WatchedClient(nb, stacks, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                           resources={"metadata": {"path": cwd}})
    client.kernel_log = kernel_log
    done = threading.Event()
    threading.Thread(target=watchdog, args=(client, stacks, done), daemon=True).start()
    try:
        with open(kernel_log, "wb") as out:
            client.execute(stdout=out, stderr=out)
    except Exception as exc:
        report(client, stacks, f"{type(exc).__name__}: {str(exc)[-3000:]}")
        return 1
    finally:
        done.set()
        nbformat.write(nb, dst)
        stacks.unlink(missing_ok=True)
        kernel_log.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
