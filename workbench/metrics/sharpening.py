"""Over-sharpening, measured exactly on a bank of the base model's correct modes.

At the start, each evaluation problem keeps a bank of the base model's distinct correct
completions.  At every evaluation point each banked completion o is teacher-forced and
log π_θ(o | q) − log π_ref(o | q) is computed exactly (sequence log-prob, no sampling).
A banked mode is *over-sharpened* when its probability fell below the base model's.
This measures directly what papers on RLVR over-sharpening estimate from samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from workbench.errors import ConfigError


def sequence_logprobs(token_logp: Tensor, mask: Tensor) -> Tensor:
    """log π(o | q) = Σ_t log π(o_t | q, o_<t) over valid tokens: [N, T] → [N].

    Positions outside the mask (prompt, padding) never enter, even if −inf there.
    """
    mask = mask.to(torch.bool)  # [N, T]
    return torch.where(mask, token_logp, torch.zeros_like(token_logp)).sum(dim=-1)  # [N]


def _as_float64(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _prepare(problem_ids: Sequence[str], logp_now, logp_ref):
    now, ref = _as_float64(logp_now), _as_float64(logp_ref)  # [N], [N]
    if not (len(problem_ids) == now.size == ref.size):
        raise ConfigError(
            f"over-sharpening needs one problem id and two log-probs per banked mode "
            f"(got {len(problem_ids)} ids, {now.size} now, {ref.size} ref)"
        )
    return now, ref


def per_problem_logratios(
    problem_ids: Sequence[str], logp_now, logp_ref
) -> dict[str, list[float]]:
    """{problem id: [log π_now(o) − log π_ref(o) for its banked modes, in input order]}."""
    now, ref = _prepare(problem_ids, logp_now, logp_ref)
    out: dict[str, list[float]] = {}
    for pid, r in zip(problem_ids, (now - ref).tolist()):
        out.setdefault(pid, []).append(r)
    return out


def oversharpening_summary(problem_ids: Sequence[str], logp_now, logp_ref) -> dict:
    """Over-sharpening over N banked modes; problem_ids [N], logp_now/logp_ref float [N].

    Keys:
      ``sharpen/rate`` fraction of banked modes with log π_now < log π_ref;
      ``sharpen/mass_now``, ``sharpen/mass_ref`` mean over problems of Σ_{o in bank} π(o | q);
      ``sharpen/mean_logratio``, ``sharpen/median_logratio`` over all banked modes;
      ``sharpen/num_modes`` (N), ``sharpen/num_problems``.
    With an empty bank, every value but the counts is ``None``.
    """
    now, ref = _prepare(problem_ids, logp_now, logp_ref)
    if now.size == 0:
        keys = ("rate", "mass_now", "mass_ref", "mean_logratio", "median_logratio")
        return {**{f"sharpen/{k}": None for k in keys}, "sharpen/num_modes": 0, "sharpen/num_problems": 0}
    _, problem = np.unique(np.asarray(problem_ids, dtype=object).astype(str), return_inverse=True)  # [N]
    num_problems = int(problem.max()) + 1
    mass_now = np.bincount(problem, weights=np.exp(now), minlength=num_problems)  # [P]
    mass_ref = np.bincount(problem, weights=np.exp(ref), minlength=num_problems)  # [P]
    logratio = now - ref  # [N]
    return {
        "sharpen/rate": float((now < ref).mean()),
        "sharpen/mass_now": float(mass_now.mean()),
        "sharpen/mass_ref": float(mass_ref.mean()),
        "sharpen/mean_logratio": float(logratio.mean()),
        "sharpen/median_logratio": float(np.median(logratio)),
        "sharpen/num_modes": int(now.size),
        "sharpen/num_problems": num_problems,
    }
