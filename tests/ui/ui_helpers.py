"""Helpers shared by the dashboard tests and tests/ui/screenshots.py."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"

#: Debian's Chromium, installed by the test set-up (Playwright never downloads a browser here).
CHROMIUM = os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]

#: A new run small enough for a test: the embedded model, B=4, G=4, evaluation n=4 on 8+4 problems.
TINY_RUN = {"group_size": 4, "prompts_per_step": 4, "eval_every": 5, "eval_n": 4,
            "extra": "eval.max_problems=8\neval.seen_problems=4\ncheckpoint_every=0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout: float, what: str, every: float = 0.25):
    """Poll ``cond()`` until it returns a truthy value; fail with ``what`` after ``timeout`` s."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
