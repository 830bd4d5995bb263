"""The status line tells progress (elapsed, steps/s, ETA) and the real error of a failed or
crashed run; a crashed process's message is its exception, not the log's last line."""

from __future__ import annotations

import sys
import time

from ui.control import Controller
from ui.runner import log_message

RID = "fake-run"


def test_progress_and_errors_in_the_status_line(fake_store):
    ctl = Controller(fake_store.root)
    fake_store.set_status(RID, "running")
    line = ctl.status_line(RID, ctl.cache.sync(RID)[0])
    assert "elapsed" in line and ("steps/s" in line or "s/step" in line) and "ETA" in line
    assert "step 15/20" in line
    fake_store.add_event(RID, 15, "error", {"message": "the loss is nan at step 16"})
    fake_store.set_status(RID, "failed")
    line = ctl.status_line(RID, ctl.cache.sync(RID)[0])
    assert "the loss is nan at step 16" in line and "ETA" not in line


def test_a_starting_process_shows_how_long_it_has_been_loading(tmp_path):
    ctl = Controller(tmp_path)
    ctl.manager.start("slow", [sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(1.2)
        line = ctl.status_line("slow", None)
        assert "loading the model" in line and (" 1 s" in line or " 2 s" in line or " 3 s" in line), line
    finally:
        ctl.manager.shutdown()


def test_log_message_is_the_exception_not_the_last_line(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("loading the model\nTraceback (most recent call last):\n  File \"x.py\", line 3, in <module>\n"
                   "    step()\nRuntimeError: CUDA out of memory\nwarning: something printed at exit\n")
    assert log_message(log) == "RuntimeError: CUDA out of memory"
    log.write_text("step 3\nerror: task.params.path: no such file\n")
    assert log_message(log) == "task.params.path: no such file"


def test_a_crashed_run_says_so_and_stop_says_it_is_not_running(fake_store):
    """A run whose trainer died (stored 'running', heartbeat written, lock free) is crashed in
    the table and the status line, its error event is the message, and Stop does not pretend."""
    import pytest

    from ui import forms

    fake_store.set_status(RID, "running")
    fake_store.heartbeat(RID)                     # a trainer was here; no process holds the lock now
    fake_store.add_event(RID, 15, "error", {"message": "RuntimeError: out of memory at step 16"})
    ctl = Controller(fake_store.root)
    assert ctl.runs_rows()[0][1] == "crashed"
    line = ctl.status_line(RID, ctl.cache.sync(RID)[0])
    assert "crashed" in line and "out of memory at step 16" in line and "Resume" in line
    with pytest.raises(forms.FormError, match="crashed: no session applies commands"):
        ctl.send(RID, "stop")
