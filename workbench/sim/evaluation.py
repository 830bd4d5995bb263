"""Evaluation of a simulator policy, with the LLM engine's keys (see workbench/evaluation.py).

The summary is exact: eval/pass@k = mean over problems of 1 - (1 - p)^k, entropies and
mode figures from pi itself. The per-problem rows also carry what the engine stores, an
n-sample draw: n modes per problem drawn by inverse CDF from the *same* uniforms at every
evaluation point (common random numbers), giving integer (n, c) and mode counts, so the
dashboard's recomputed curves and boundary counts work unchanged. Rows add the exact
values (``p_correct``, ``mode_probs``, ``pass_at_n``), and ``mode_entropy`` / ``eff_modes`` /
``top_share`` are the exact ones.  ``collapse_index`` has the engine's definition (matched
number of correct samples m = min(c_base, c_now) of the draws; 1 − D_now(m)/D_base(m) with
D(m) the expected number of distinct correct modes among m correct samples), with D(m)
computed exactly from pi instead of rarefied from the draws.

``boundary/`` counts compare the draws (solved = c >= 1 among n, as in the engine);
``sharpen/`` compares the exact log-probabilities of every correct mode with the base
policy's (all correct modes are "banked").
"""

from __future__ import annotations

import numpy as np

from workbench import keys as K

from workbench.metrics import (
    boundary_summary,
    collapse_record,
    collapse_summary,
    default_ks,
    expected_distinct,
    oversharpening_summary,
)
from workbench.sim import policy as pol


def draw_modes(probs: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw: [P, M] probabilities and [P, n] uniforms -> [P, n] mode indices."""
    cdf = np.cumsum(probs, axis=-1)                                                # [P, M]
    idx = np.stack([np.searchsorted(cdf[p], uniforms[p], side="right") for p in range(len(probs))])  # [P, n]
    return np.minimum(idx, probs.shape[1] - 1)


def exact_matched_collapse(q_now: np.ndarray, q_base: np.ndarray, m: int) -> dict:
    """The engine's matched-sample collapse index (``workbench.metrics.matched_collapse``)
    with the rarefied diversities replaced by their exact value: D(m) = expected number of
    distinct modes among m correct samples, from the correct-mode distributions q ([M]).
    m = min(c_base, c_now) of the n-sample draws, as the engine would take it from these
    rows; undefined (``None``) where m < 2."""
    if m < 2:
        return collapse_record(None, None, m)
    return collapse_record(expected_distinct(q_now, m), expected_distinct(q_base, m), m)


def evaluate_split(probs: np.ndarray, base_probs: np.ndarray, correct: np.ndarray, uniforms: np.ndarray,
                   problem_ids: list[str], base_rows: list[dict] | None) -> tuple[dict, list[dict]]:
    """(summary, per-problem rows) for the problems given (all arrays already restricted to them).

    ``base_rows``: the rows of the base evaluation of the same problems (None for the base
    evaluation itself: then no collapse / boundary / sharpen keys)."""
    P, M = probs.shape
    n = uniforms.shape[1]
    succ = pol.success(probs, correct)                                             # [P]
    h_full = pol.entropy(probs)                                                    # [P]
    h_mode = pol.mode_entropy(probs, correct)                                      # [P]
    q = pol.correct_distribution(probs, correct)                                   # [P, M]
    distinct = pol.expected_distinct(probs, correct, n)                            # [P]
    p_solved = 1.0 - (1.0 - succ) ** n                                             # [P]
    modes = draw_modes(probs, uniforms)                                            # [P, n]
    hit = np.take_along_axis(correct, modes, axis=1)                               # [P, n]
    rows = []
    for i in range(P):
        counts = np.bincount(modes[i][hit[i]], minlength=M)                        # [M]
        defined = bool(correct[i].any())
        rows.append({
            "problem_id": problem_ids[i], "n": n, "c": int(hit[i].sum()), "num_modes": int((counts > 0).sum()),
            "mode_counts": {str(m): int(counts[m]) for m in np.flatnonzero(counts)},
            "mode_entropy": float(h_mode[i]) if defined else None,
            "eff_modes": float(np.exp(h_mode[i])) if defined else None,
            "top_share": float(q[i].max()) if defined else None,
            "parse_errors": 0, "mean_entropy": float(h_full[i]),
            "p_correct": float(succ[i]), "pass_at_n": float(p_solved[i]),
            "expected_distinct_modes": float(distinct[i]),
            "mode_probs": [float(x) for x in probs[i]],
            "correct_modes": [int(m) for m in np.flatnonzero(correct[i])],
            "difficulty": float(1.0 - pol.success(base_probs[i : i + 1], correct[i : i + 1])[0]),
        })
    ks = default_ks(n)
    summary = {K.eval_pass(k): float(np.mean(1.0 - (1.0 - succ) ** k)) for k in ks}
    summary.update({
        K.EVAL_N: float(n),
        K.EVAL_NUM_PROBLEMS: float(P),
        K.EVAL_FRAC_UNSOLVED: float(np.mean((1.0 - succ) ** n)),
        K.EVAL_MEAN_DISTINCT_CORRECT_MODES: float(distinct.sum() / max(p_solved.sum(), 1e-300)),
        K.EVAL_MEAN_EFF_MODES: float(np.nanmean(np.exp(h_mode))) if correct.any() else 0.0,
        K.EVAL_PARSE_ERROR_FRAC: 0.0,
        K.EVAL_MEAN_ENTROPY: float(h_full.mean()),
        K.EVAL_MEAN_LENGTH: 1.0,
        K.EVAL_MEAN_SUCCESS: float(succ.mean()),
    })
    if base_rows is None:
        return summary, rows
    q_base = pol.correct_distribution(base_probs, correct)                         # [P, M]
    collapse = [exact_matched_collapse(q[i], q_base[i], min(r["c"], b["c"])) for i, (r, b) in enumerate(zip(rows, base_rows))]
    for r, b, rec in zip(rows, base_rows, collapse):
        r.update(rec)
        r["base_c"] = b["c"]
    summary.update(collapse_summary(rows, base_rows, collapse))
    summary.update(boundary_summary({b["problem_id"]: (b["n"], b["c"]) for b in base_rows},
                                    {r["problem_id"]: (r["n"], r["c"]) for r in rows}, n, report_k=min(8, n)))
    ids, now, ref = [], [], []
    for i in range(P):
        for m in np.flatnonzero(correct[i]):
            ids.append(problem_ids[i])
            now.append(np.log(probs[i, m]))
            ref.append(np.log(base_probs[i, m]))
    if ids:
        summary.update(oversharpening_summary(ids, np.array(now), np.array(ref)))
        lr = np.array(now) - np.array(ref)
        by_id: dict[str, list[float]] = {}
        for pid, x in zip(ids, lr):
            by_id.setdefault(pid, []).append(float(x))
        for r in rows:
            r["bank_logratios"] = by_id.get(r["problem_id"], [])
    summary = {k: (float("nan") if v is None else float(v)) for k, v in summary.items()}
    return summary, rows
