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
                "--max-new-tokens", "6", "--threads", "1", "--no-skip", "--separate-forward", "--trl-checkpointing",
                "--json"])
    report = json.loads(out)
    for tool in ("workbench", "trl", "workbench_noskip", "workbench_separate", "trl_checkpointing"):
        r = report[tool]
        assert r["step_s"] > 0 and r["rollout_tok_s"] > 0 and r["update_tok_s"] > 0 and r["peak_rss_mb"] > 0
        assert 0 < r["tokens_per_step"] <= 4 * 2 * 6
        assert r["precision"] == "float32" and r["threads"] == 1     # no bf16 autocast for either tool
        assert r["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert report["precision"] == "float32" and report["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert report["ratio_step_time"] == report["workbench"]["step_s"] / report["trl"]["step_s"]
    assert "trl_defaults" not in report                            # the extra row only on request
    # the first update's forward: over the rows with a non-zero advantage by default (the share
    # skipped is reported), through the rollout without skipping, over every row with neither
    skipped = report["workbench"]["update_rows_skipped"]
    assert 0 <= skipped < 1
    assert report["workbench"]["update_forward"] == ("its own training forward, over the rows with a non-zero advantage"
                                                     if skipped > 0 else "its own training forward")
    assert report["workbench_noskip"]["update_forward"].startswith("through the rollout")
    assert report["workbench_separate"]["update_forward"] == "its own training forward"
    assert report["workbench_noskip"]["update_rows_skipped"] == report["workbench_separate"]["update_rows_skipped"] == 0
    # equal work: TRL's default activation checkpointing (a second forward in the backward) only in its extra row
    assert report["trl"]["activation_checkpointing"] is False is report["workbench"]["activation_checkpointing"]
    assert report["trl_checkpointing"]["activation_checkpointing"] is True


def test_scaling_quick_runs_both_tools_on_a_random_byte_level_model(tmp_path):
    out = _run(["benchmarks/scaling.py", "--quick", "--json", str(tmp_path / "rows.json"),
                "--html", str(tmp_path / "scaling.html")])
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert len(rows) == 1 and rows[0]["model"] == "tiny" and 0 < rows[0]["params"] < 100_000
    r = rows[0]
    for tool in ("workbench", "trl"):
        assert r[tool]["precision"] == "float32" and r[tool]["threads"] == 1
        assert 0 < r[tool]["tokens_per_step"] <= 2 * 2 * 4 and r[tool]["peak_rss_mb"] >= r[tool]["rss_before_mb"] > 0
    assert r["ratio_step_time"] == r["workbench"]["step_s"] / r["trl"]["step_s"]
    assert "quick" in out and "ratio" in out
    assert r["workbench"]["update_forward"].startswith("through the rollout") and " roll |" in out
    html = (tmp_path / "scaling.html").read_text()
    assert "Plotly.newPlot" in html and len(html) > 1_000_000 and '<script src="http' not in html  # self-contained


def test_byte_level_model_encodes_every_byte_and_has_the_asked_size(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from scaling import build_random_model
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from transformers import AutoTokenizer

    n = build_random_model("tiny", tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    text = "2 + 3 = 5?\né"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text.encode()) and max(ids) < 256      # one id per byte
    assert tok.decode(ids) == text and tok.eos_token_id == 257 and tok.pad_token_id == 256
    assert 10_000 < n < 100_000
