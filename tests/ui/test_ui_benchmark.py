"""benchmarks/dashboard_refresh.py runs and reports what it claims (tiny settings; the
figure itself comes from running the script with its defaults)."""

from __future__ import annotations

import json
import subprocess
import sys

from ui_helpers import ROOT


def test_refresh_benchmark_runs_on_tiny_settings():
    proc = subprocess.run([sys.executable, "benchmarks/dashboard_refresh.py", "--steps", "9", "--window", "3", "-B", "4",
                           "-G", "2", "--interval", "0.2", "--json"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout)
    assert r["timed_steps"] == {"without": 4, "with": 2}          # windows 1-3 off, 4-6 on, 7-9 off; first steps dropped
    assert r["median_step_s_without"] > 0 and r["ratio"] == r["median_step_s_with"] / r["median_step_s_without"]
    assert r["ticks"] >= 1 and r["poller_cpu_per_wall_s"] >= 0 and r["pairs"] == 1
