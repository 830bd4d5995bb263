"""How the cost of a training step grows: the workbench against TRL at equal precision.

    python benchmarks/scaling.py [--threads 1] [--steps 3] [--warmup 1]
    python benchmarks/scaling.py --quick          # one tiny point, both tools (a smoke test)

Each point runs ``benchmarks/vs_trl.py``'s two workers (the same work for both tools:
LoRA r = 16 on all linear layers, float32 weights and matmuls, no KL, one optimiser step
per rollout batch, two_primes prompts) in their own processes, one after the other, and
records the median step time, generated tokens per step and per second, and each
process's peak resident memory (and its growth over the memory held just before the
first step). A point is one seed; the medians are over ``--steps`` steps after warm-up.

The sweeps vary one factor at a time around a default point (not a full grid):

    G (samples per prompt) in 4, 8, 16, 32       embedded model, B = 8, 10 new tokens
    B (prompts per step)   in 8, 32, 64          embedded model, G = 8, 10 new tokens
    max new tokens         in 10, 64, 256        random 10M model, B = 8, G = 4
    model                  embedded, 10M, 50M    B = 8, G = 4, 64 new tokens
    plus the point to watch: the 50M model at 256 new tokens (B = 8, G = 4)

The 10M and 50M models are Llama configurations with random weights and a byte-level
vocabulary (256 bytes + pad + EOS), built from a config into a temporary folder (no
download). A random model rarely samples EOS, so its completions run to the limit: the
length sweep measures the length it says. The embedded model (0.8M parameters, a
25-symbol vocabulary, 128 positions) answers in a few tokens whatever the limit, so it is
not used for long generations.

The workbench runs without skipping the zero-advantage rows in its first update
(``optim.skip_zero_advantage=false``, ``vs_trl.py``'s ``--no-skip`` row): a random model
rarely answers correctly, so nearly every advantage is 0 and the skipped update would do
almost nothing. The table measures how the cost of a full update grows.

Writes the table to stdout (and ``--json`` to a file) and a self-contained plotly figure
(``--html``, default docs/scaling.html).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VS_TRL = ROOT / "benchmarks" / "vs_trl.py"

# Llama shapes: (hidden, layers, intermediate, heads); all with a byte-level vocabulary.
SIZES = {"tiny": (32, 2, 64, 2), "10M": (256, 10, 1024, 4), "50M": (512, 12, 2048, 8)}


def build_random_model(size: str, folder: Path) -> int:
    """Write a random-weight Llama of ``size`` with a byte-level tokenizer to ``folder``; its parameter count."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    hidden, layers, inter, heads = SIZES[size]
    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}    # the 256 bytes
    vocab.update({"<pad>": 256, "<eos>": 257})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<pad>", "<eos>"])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", padding_side="left")
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=512,
                      tie_word_embeddings=True, pad_token_id=256, eos_token_id=257, bos_token_id=None)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def points(quick: bool) -> list[dict]:
    """The sweep: one factor at a time around a default point."""
    if quick:
        return [{"sweep": "quick", "model": "tiny", "prompts": 2, "group": 2, "max_new_tokens": 4}]
    emb = {"model": "embedded", "prompts": 8, "group": 8, "max_new_tokens": 10}
    rnd = {"model": "10M", "prompts": 8, "group": 4, "max_new_tokens": 64}
    out = [{**emb, "sweep": "G", "group": g} for g in (4, 8, 16, 32)]
    out += [{**emb, "sweep": "B", "prompts": b} for b in (8, 32, 64)]
    out += [{**rnd, "sweep": "length", "max_new_tokens": t} for t in (10, 64, 256)]
    out += [{**rnd, "sweep": "model", "model": m} for m in ("embedded", "10M", "50M")]
    out += [{**rnd, "sweep": "watch", "model": "50M", "max_new_tokens": 256}]
    return out


def measure(point: dict, model_dir: str, a: argparse.Namespace) -> dict:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    row = dict(point)
    # the workbench without skipping the zero-advantage rows: a random-weight model rarely
    # answers correctly, so nearly every advantage is 0 and skipping would leave the update
    # almost nothing to do; the sweep measures how the cost of a full update grows
    for tool, worker in (("workbench", "workbench_noskip"), ("trl", "trl")):
        cmd = [sys.executable, str(VS_TRL), "--worker", worker, "--model", model_dir, "--threads", str(a.threads),
               "--steps", str(a.steps), "--warmup", str(a.warmup), "--prompts", str(point["prompts"]),
               "--group", str(point["group"]), "--max-new-tokens", str(point["max_new_tokens"])]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if proc.returncode != 0:
            sys.exit(f"{tool} failed at {point}:\n{proc.stderr[-3000:]}")
        row[tool] = json.loads(proc.stdout.strip().splitlines()[-1])
    wb, trl = row["workbench"], row["trl"]
    if wb["precision"] != trl["precision"]:
        sys.exit(f"precision differs at {point}: workbench {wb['precision']}, TRL {trl['precision']}")
    row["ratio_step_time"] = wb["step_s"] / trl["step_s"]
    row["ratio_per_token"] = wb["step_s_per_1k_tokens"] / trl["step_s_per_1k_tokens"]
    return row


def table(rows: list[dict]) -> str:
    head = (f"{'sweep':<7} {'model':<9} {'params':>7} {'B':>3} {'G':>3} {'T':>4} | {'wb s':>7} {'trl s':>7} "
            f"{'ratio':>6} {'upd':>4} | {'wb tok/s':>8} {'trl tok/s':>9} | {'wb MB':>6} {'+MB':>5} {'trl MB':>6} {'+MB':>5}")
    lines = [head, "-" * len(head)]
    for r in rows:
        wb, trl = r["workbench"], r["trl"]
        tps = [x["tokens_per_step"] / x["step_s"] for x in (wb, trl)]
        lines.append(
            f"{r['sweep']:<7} {r['model']:<9} {r['params'] / 1e6:>6.1f}M {r['prompts']:>3} {r['group']:>3} "
            f"{r['max_new_tokens']:>4} | {wb['step_s']:>7.3f} {trl['step_s']:>7.3f} {r['ratio_step_time']:>6.2f} "
            f"{'roll' if wb.get('update_forward', '').startswith('through') else 'own':>4} | "
            f"{tps[0]:>8.0f} {tps[1]:>9.0f} | {wb['peak_rss_mb']:>6.0f} {wb['peak_rss_mb'] - wb['rss_before_mb']:>5.0f} "
            f"{trl['peak_rss_mb']:>6.0f} {trl['peak_rss_mb'] - trl['rss_before_mb']:>5.0f}")
    return "\n".join(lines)


def figure(rows: list[dict], path: Path, note: str) -> None:
    """Step time of both tools and their ratio along each sweep, one column per sweep."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    sweeps = [s for s in ("G", "B", "length", "model", "quick") if any(r["sweep"] == s for r in rows)]
    axis = {"G": "group", "B": "prompts", "length": "max_new_tokens", "model": "model", "quick": "model"}
    titles = {"G": "G (B=8, T=10, embedded)", "B": "B (G=8, T=10, embedded)", "length": "max new tokens (10M, B=8, G=4)",
              "model": "model (B=8, G=4, T=64)", "quick": "quick"}
    fig = make_subplots(rows=2, cols=len(sweeps), subplot_titles=[titles[s] for s in sweeps], vertical_spacing=0.12)
    for c, s in enumerate(sweeps, start=1):
        rs = [r for r in rows if r["sweep"] == s]
        x = [str(r[axis[s]]) for r in rs]
        for tool, color in (("workbench", "#1f77b4"), ("trl", "#ff7f0e")):
            fig.add_trace(go.Scatter(x=x, y=[r[tool]["step_s"] for r in rs], name=tool, legendgroup=tool,
                                     showlegend=c == 1, mode="lines+markers", line={"color": color}), row=1, col=c)
        fig.add_trace(go.Scatter(x=x, y=[r["ratio_step_time"] for r in rs], name="workbench / TRL",
                                 legendgroup="ratio", showlegend=c == 1, mode="lines+markers",
                                 line={"color": "#2ca02c"}), row=2, col=c)
        fig.update_yaxes(type="log", row=1, col=c)
        fig.update_yaxes(rangemode="tozero", row=2, col=c)
    fig.update_yaxes(title_text="step time (s)", row=1, col=1)
    fig.update_yaxes(title_text="step-time ratio", row=2, col=1)
    fig.update_layout(title=f"Step time at equal precision (float32), workbench vs TRL: {note}", height=640,
                      width=max(600, 330 * len(sweeps)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(path, include_plotlyjs=True, full_html=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one tiny point with both tools, for a smoke test")
    ap.add_argument("--steps", type=int, default=3, help="measured steps per point (after warm-up)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads per tool")
    ap.add_argument("--only", default="", help="comma-separated sweeps to run (G, B, length, model, watch)")
    ap.add_argument("--json", default="", help="also write the rows to this JSON file")
    ap.add_argument("--html", default=str(ROOT / "docs" / "scaling.html"), help="the figure ('' for none)")
    a = ap.parse_args()
    if a.quick:
        a.steps, a.warmup = 1, 1
    todo = [p for p in points(a.quick) if not a.only or p["sweep"] in a.only.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        built: dict[str, tuple[str, int]] = {}
        for p in todo:
            if p["model"] not in built:
                if p["model"] == "embedded":
                    from safetensors import safe_open

                    from workbench.paths import MODELS_DIR

                    folder = MODELS_DIR / "tiny-primes"
                    with safe_open(str(folder / "model.safetensors"), "pt") as f:
                        n = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())
                    built["embedded"] = (str(folder), n)
                else:
                    folder = Path(tmp) / p["model"]
                    built[p["model"]] = (str(folder), build_random_model(p["model"], folder))
            row = measure(p, built[p["model"]][0], a)
            row["params"] = built[p["model"]][1]
            rows.append(row)
            print(f"{p} ratio {row['ratio_step_time']:.2f}", file=sys.stderr, flush=True)
    wb = rows[0]["workbench"]
    note = (f"{wb['cpu_capability']}, {a.threads} thread(s) per tool, median of {a.steps} steps after {a.warmup}, "
            "one seed")
    print(f"torch {wb['torch']}; {note}; precision {wb['precision']} for both tools")
    print("T: max new tokens; upd: the workbench's first update back-propagated through the rollout (roll) or ran "
          "its own training forward (own, rollout.reuse_forward_mb exceeded), both over every row (no skipping of "
          "zero-advantage rows); tok/s: generated tokens per second of a whole step; MB: peak resident memory, "
          "+MB: its growth during the steps")
    print(table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    if a.html:
        figure(rows, Path(a.html), note)


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


if __name__ == "__main__":
    main()
