"""Evaluation protocol (docs/metrics.md): n samples per problem at a fixed temperature, the same
sampling seeds at every evaluation point, per-problem (n, c) and mode counts kept so any
k and any subset can be recomputed later. ``Evaluator`` holds a run's base-model results
and banked modes and compares each policy evaluation with them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from workbench.metrics import (
    boundary_summary,
    collapse_summary,
    default_ks,
    matched_collapse,
    mode_stats,
    oversharpening_summary,
    pass_at_k_curve,
    per_problem_logratios,
    sequence_logprobs,
)
from workbench.models.loading import encode_prompts
from workbench.rollout import rollout_from_texts, sample, token_logprobs
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


class Evaluator:
    """A run's evaluations, each compared with the base model's (docs/metrics.md).

    The base model (adapter disabled) is evaluated once per split, at step 0, and its
    distinct correct completions are banked with their exact reference log-probs. Every
    policy evaluation is then compared with it: collapse (matched-m index per problem),
    boundary (problems kept, gained and lost at the largest k) and over-sharpening (the
    log-prob of each banked mode now against the base model's). Results go to the run's
    store and trackers; a resumed run reads the base results and the bank back from the store.

    ``eval_sets``: split -> problems; ``config``: the run's RunConfig (its ``eval`` fields and
    ``rollout.chunk_size``); ``prompt_ids``: problems -> their prompts' token ids;
    ``trackers``: a ``workbench.trackers.Mirror`` or None.
    """

    def __init__(self, task, tokenizer, eval_sets: dict[str, list], config, *, max_new_tokens: int, use_chat: bool,
                 device: Any, prompt_ids: Callable[[list], list[list[int]]], store, run_id: str, trackers=None):
        self.task, self.tokenizer, self.eval_sets, self.config = task, tokenizer, eval_sets, config
        self.max_new_tokens, self.use_chat, self.device, self.prompt_ids = max_new_tokens, use_chat, device, prompt_ids
        self.store, self.run_id, self.trackers = store, run_id, trackers
        self.base: dict[str, dict[str, dict]] = {}     # split -> problem id -> base eval row
        self.bank: dict[str, list[dict]] = {}          # split -> banked base modes

    # ---------------------------------------------------------------- the base model
    def base_todo(self) -> list[str]:
        """The splits the base model still has to be evaluated on (stored ones are read back first)."""
        if len(self.base) == len(self.eval_sets):
            return []
        self.load_base()
        return [split for split in self.eval_sets if split not in self.base]

    def evaluate_base(self, model, splits: Sequence[str]) -> None:
        """Evaluate the base model on ``splits`` (``model`` with its adapter disabled by the
        caller), bank its modes, and store both as step 0's "base" evaluation."""
        for split in splits:
            res = self.evaluate_split(split, model)
            bank = self.bank_modes(split, res, model)
            self.base[split] = {p["problem_id"]: p for p in res.problems}
            self.bank[split] = bank
            summary = dict(res.summary)
            if bank:
                summary["sharpen/num_banked"] = float(len(bank))
            self.store.write_bank(self.run_id, [{**b, "problem_id": f"{split}:{b['problem_id']}"} for b in bank])
            self._record(0, "base", split, summary, res)
        if splits:
            self.store.add_event(self.run_id, 0, "evaluation", {"label": "base"})

    def load_base(self) -> None:
        """Read the base evaluation and the bank back from the store (a resumed run)."""
        evs = self.store.evaluations(self.run_id, label="base")
        if not evs:
            return
        bank = self.store.bank(self.run_id)
        for ev in evs:
            self.base[ev["split"]] = {p["problem_id"]: p for p in self.store.eval_problems(self.run_id, ev["eval_id"])}
            prefix = f"{ev['split']}:"
            self.bank[ev["split"]] = [{**b, "problem_id": b["problem_id"][len(prefix):]}
                                      for b in bank if b["problem_id"].startswith(prefix)]

    def bank_modes(self, split: str, res: EvalResult, model) -> list[dict]:
        """Distinct correct base completions (at most ``eval.bank_cap`` per problem) with their
        exact reference log-prob (teacher-forced on ``model``, the base model)."""
        cap = self.config.eval.bank_cap
        bank = [{"problem_id": pid, "mode_key": key, "completion": text}
                for pid, ex in res.examples.items() for key, text in list(ex.items())[:cap]]
        if bank:
            for b, lp in zip(bank, self.bank_logprobs(split, bank, model)):
                b["ref_logprob"] = float(lp)
        return bank

    # ---------------------------------------------------------------- the policy
    def evaluate_policy(self, model, step: int) -> dict[str, float]:
        """Evaluate ``model`` (the policy, gradients off) on every split, compare it with the
        base model, store each split's result at ``step`` and return the summaries merged
        ('seen' split keys prefixed with ``seen/``)."""
        merged: dict[str, float] = {}
        for split in self.eval_sets:
            res = self.evaluate_split(split, model)
            summary = self.compare(split, res, model)
            self._record(step, "policy", split, summary, res)
            prefix = "" if split == "eval" else f"{split}/"
            merged.update({prefix + k: v for k, v in summary.items()})
        self.store.add_event(self.run_id, step, "evaluation", {"label": "policy"})
        return merged

    def compare(self, split: str, res: EvalResult, model) -> dict[str, float]:
        """``res``'s summary with the comparison to the base model added (collapse/, boundary/,
        sharpen/ keys; None as NaN). Adds to ``res.problems`` each problem's collapse index
        (``collapse_index``, ``_raw``, ``collapse_m``), ``base_c`` and ``bank_logratios``."""
        summary = dict(res.summary)
        base = self.base.get(split, {})
        base_rows = [base.get(p["problem_id"]) for p in res.problems]
        rows_now = [p for p, b in zip(res.problems, base_rows) if b is not None]
        rows_base = [b for b in base_rows if b is not None]
        collapse = [matched_collapse(p, b) for p, b in zip(rows_now, rows_base)]   # matched-m index per problem
        summary.update(collapse_summary(rows_now, rows_base, collapse))
        for p, rec in zip(rows_now, collapse):
            p.update(rec)                   # collapse_index (clipped; the heatmap's), _raw, collapse_m
        k_big = max(k for k in res.pass_at_k())
        summary.update(boundary_summary({pid: (r["n"], r["c"]) for pid, r in base.items()},
                                        {p["problem_id"]: (p["n"], p["c"]) for p in res.problems}, k_big,
                                        report_k=self.config.eval.resolved_boundary_k()))
        for p, b in zip(res.problems, base_rows):
            if b is not None:
                p["base_c"] = b["c"]
        bank = self.bank.get(split) or []
        if bank:
            logp_now = self.bank_logprobs(split, bank, model)
            ids, ref = [b["problem_id"] for b in bank], [b["ref_logprob"] for b in bank]
            summary.update(oversharpening_summary(ids, logp_now, ref))
            per_pid = per_problem_logratios(ids, logp_now, ref)
            for p in res.problems:
                if p["problem_id"] in per_pid:
                    p["bank_logratios"] = per_pid[p["problem_id"]]
        return {k: (float("nan") if v is None else float(v)) for k, v in summary.items()}

    def complete_at(self, step: int) -> bool:
        """Whether a whole policy evaluation (every split) is stored at ``step``. A partial one
        (a process killed between splits) is deleted, so that it is computed again whole."""
        evs = [e for e in self.store.evaluations(self.run_id, label="policy") if e["step"] == step]
        if evs and {e["split"] for e in evs} >= set(self.eval_sets):
            return True
        if evs:
            self.store.delete_evaluations(self.run_id, [e["eval_id"] for e in evs])
        return False

    # ---------------------------------------------------------------- shared
    def evaluate_split(self, split: str, model) -> EvalResult:
        """``evaluate_model`` on one split with the run's evaluation settings."""
        e = self.config.eval
        return evaluate_model(model, self.tokenizer, self.task, self.eval_sets[split], n=e.n, ks=e.ks or None,
                              seed=e.seed, temperature=e.temperature, max_new_tokens=self.max_new_tokens,
                              chunk_size=self.config.rollout.chunk_size, use_chat=self.use_chat,
                              samples_kept=e.samples_kept)

    @torch.no_grad()
    def bank_logprobs(self, split: str, bank: list[dict], model) -> list[float]:
        """Teacher-forced log-prob of each banked completion under ``model`` (temperature 1)."""
        by_id = {p.id: p for p in self.eval_sets[split]}
        out: list[float] = []
        chunk = self.config.rollout.chunk_size
        for start in range(0, len(bank), chunk):
            part = bank[start : start + chunk]
            prompts = self.prompt_ids([by_id[b["problem_id"]] for b in part])
            ro = rollout_from_texts(self.tokenizer, prompts, [b["completion"] for b in part]).to(self.device)
            logp, _ = token_logprobs(model, ro, 1.0)
            out.extend(sequence_logprobs(logp, ro.completion_mask).tolist())
        return out

    def _record(self, step: int, label: str, split: str, summary: dict[str, float], res: EvalResult) -> None:
        self.store.write_evaluation(self.run_id, step, label, split, summary, res.problems, res.samples)
        if self.trackers is not None:
            self.trackers.log_evaluation(step, label, split, summary)
