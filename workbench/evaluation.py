"""Evaluation protocol (docs/metrics.md): n samples per problem at a fixed temperature, the same
sampling seeds at every evaluation point, per-problem (n, c) and mode counts kept so any
k and any subset can be recomputed later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from workbench.metrics import default_ks, mode_stats, pass_at_k_curve
from workbench.models.loading import encode_prompts
from workbench.rollout import sample
from workbench.seeding import row_seed


@dataclass
class EvalResult:
    summary: dict[str, float]               # eval/pass@k, eval/mean_entropy, ... (flat, namespaced)
    problems: list[dict]                    # per problem: problem_id, n, c, num_modes, mode_counts, ...
    examples: dict[str, dict[str, str]] = field(default_factory=dict)  # problem -> mode key -> one completion
    samples: list[dict] = field(default_factory=list)                  # a few completions per problem

    def pass_at_k(self) -> dict[int, float]:
        return {int(k.split("@")[1]): v for k, v in self.summary.items() if k.startswith("eval/pass@")}


def eval_seed(seed: int, problem_id: str, j: int) -> int:
    """The seed of sample j of a problem: independent of the step (common random numbers)."""
    return row_seed(seed, "eval", problem_id, j)


@torch.no_grad()
def evaluate_model(
    model,
    tokenizer,
    task,
    problems: Sequence,
    *,
    n: int,
    ks: Sequence[int] | None = None,
    seed: int = 1234,
    temperature: float = 1.0,
    max_new_tokens: int = 32,
    chunk_size: int = 1024,
    use_chat: bool = False,
    processors=(),
    samples_kept: int = 4,
    progress=None,
) -> EvalResult:
    """Sample ``n`` completions for every problem and summarise them.

    ``progress``: an optional callable(done_rows, total_rows) for progress bars.
    """
    was_training = model.training
    model.eval()
    prompt_ids = encode_prompts(tokenizer, task, problems, use_chat)
    rows = [(i, j) for i in range(len(problems)) for j in range(n)]          # problem-major
    texts: list[str] = [""] * len(rows)
    ent_per_problem = np.zeros(len(problems))
    tok_per_problem = np.zeros(len(problems))
    decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
    chunk_size = max(n, chunk_size - chunk_size % n)     # whole problems per chunk: one prefill per problem
    for start in range(0, len(rows), chunk_size):
        chunk = rows[start : start + chunk_size]
        ro = sample(model, [prompt_ids[i] for i, _ in chunk],
                    [eval_seed(seed, problems[i].id, j) for i, j in chunk],
                    max_new_tokens=max_new_tokens, eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id,
                    temperature=temperature, processors=processors, decode=decode, group_size=n)
        texts[start : start + len(chunk)] = ro.texts
        row_ent = (ro.entropy * ro.completion_mask).sum(-1).double().cpu().numpy()   # [n_chunk]
        row_tok = ro.completion_mask.sum(-1).double().cpu().numpy()
        idx = np.array([i for i, _ in chunk])
        np.add.at(ent_per_problem, idx, row_ent)
        np.add.at(tok_per_problem, idx, row_tok)
        if progress is not None:
            progress(start + len(chunk), len(rows))
    if was_training:
        model.train()
    ent_sum, tok_count = float(ent_per_problem.sum()), float(tok_per_problem.sum())

    verdicts = task.verify_batch([problems[i] for i, _ in rows], texts)
    per_problem, examples, samples = [], {}, []
    for i, prob in enumerate(problems):
        vs = verdicts[i * n : (i + 1) * n]
        ts = texts[i * n : (i + 1) * n]
        ms = mode_stats([v.mode_key if v.correct else None for v in vs])
        ex: dict[str, str] = {}
        for v, t in zip(vs, ts):
            if v.correct and v.mode_key not in ex:
                ex[v.mode_key] = t
        examples[prob.id] = ex
        per_problem.append({
            "problem_id": prob.id, "n": n, "c": int(ms["c"]), "num_modes": int(ms["num_modes"]),
            "mode_counts": ms["counts"], "mode_entropy": ms["mode_entropy"], "eff_modes": ms["eff_modes"],
            "top_share": ms["top_share"], "parse_errors": sum(not v.parsed for v in vs),
            "mean_entropy": float(ent_per_problem[i] / max(tok_per_problem[i], 1.0)),
            "difficulty": getattr(prob, "difficulty", 0),
        })
        for v, t in list(zip(vs, ts))[:samples_kept]:
            samples.append({"problem_id": prob.id, "completion": t, "reward": float(v.reward),
                            "correct": bool(v.correct), "mode_key": v.mode_key})
    summary = summarize(per_problem, n, ks)
    summary["eval/mean_entropy"] = ent_sum / max(tok_count, 1.0)
    summary["eval/mean_length"] = tok_count / max(len(rows), 1)
    return EvalResult(summary, per_problem, examples, samples)


def summarize(per_problem: list[dict], n: int, ks: Sequence[int] | None = None) -> dict[str, float]:
    """Dataset-level figures from per-problem rows (pure; reused on stored rows)."""
    ns = np.array([p["n"] for p in per_problem])
    cs = np.array([p["c"] for p in per_problem])
    ks = list(ks) if ks else default_ks(n)
    curve = pass_at_k_curve(ns, cs, ks) if len(per_problem) else {k: float("nan") for k in ks}
    solved = [p for p in per_problem if p["c"] > 0]
    out = {f"eval/pass@{k}": float(v) for k, v in curve.items()}
    out.update({
        "eval/n": float(n),
        "eval/num_problems": float(len(per_problem)),
        "eval/frac_unsolved": float(np.mean(cs == 0)) if len(cs) else float("nan"),
        "eval/mean_distinct_correct_modes": float(np.mean([p["num_modes"] for p in solved])) if solved else 0.0,
        "eval/mean_eff_modes": float(np.mean([p["eff_modes"] for p in solved])) if solved else 0.0,
        "eval/parse_error_frac": float(sum(p.get("parse_errors", 0) for p in per_problem) / max(ns.sum(), 1)),
    })
    return out
