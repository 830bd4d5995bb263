"""The benchmark scripts run and report what they claim (tiny settings; the figures
themselves are measured by running the scripts, not here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}


def _run(args, timeout=600):
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_gpu_check_script_runs_both_backends_on_a_tiny_config():
    out = _run(["benchmarks/gpu_check.py", "--tiny", "--steps", "2", "--prompts", "2", "--group", "2",
                "--new-tokens", "8", "--prompt-len", "4"])
    assert len(out.strip().splitlines()) == 1                   # one JSON line (progress goes to stderr)
    report = json.loads(out)
    for backend in ("workbench", "trl"):
        r = report[backend]
        assert r["backend"] == backend and r["median_step_s"] > 0 and r["rollout_tok_s"] > 0
        assert len(r["steps"]) == 2 and all(0 < s["tokens"] <= 2 * 2 * 8 for s in r["steps"])
    assert report["ratio_step_time"] == report["workbench"]["median_step_s"] / report["trl"]["median_step_s"]
    assert report["config"]["vllm"] is False and report["trl"]["vllm"] is False


def test_trl_comparison_runs_side_by_side_at_equal_precision():
    out = _run(["benchmarks/vs_trl.py", "--steps", "5", "--warmup", "1", "--prompts", "4", "--group", "2",
                "--max-new-tokens", "6", "--threads", "1", "--json"])
    report = json.loads(out)
    for tool in ("workbench", "trl"):
        r = report[tool]
        assert r["step_s"] > 0 and r["rollout_tok_s"] > 0 and r["update_tok_s"] > 0 and r["peak_rss_mb"] > 0
        assert 0 < r["tokens_per_step"] <= 4 * 2 * 6
        assert r["precision"] == "float32" and r["threads"] == 1     # no bf16 autocast for either tool
        assert r["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert report["precision"] == "float32" and report["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert report["ratio_step_time"] == report["workbench"]["step_s"] / report["trl"]["step_s"]
    assert "trl_defaults" not in report                            # the extra row only on request
