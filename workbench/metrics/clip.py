"""Clip fractions of the PPO/GRPO clipped surrogate min(r·A, clip(r, 1−ε_low, 1+ε_high)·A).

The clipped branch is the active (smaller) one — and the token's gradient is zero —
exactly when r < 1 − ε_low with A < 0 (low side) or r > 1 + ε_high with A > 0 (high side).
Separate low/high fractions show whether asymmetric clipping (DAPO's clip-higher,
Yu et al. 2025) is doing anything.
"""

from __future__ import annotations

import torch
from torch import Tensor

from workbench.errors import ConfigError


def clip_fractions(ratio: Tensor, adv: Tensor, mask: Tensor, eps_low: float, eps_high: float,
                   blocks: int | None = None) -> dict:
    """Fractions of valid tokens whose clipped branch is active.

    ratio: [N, T] π_θ/π_old per token; adv: [N, T] or [N] (broadcast over T);
    mask: [N, T] valid tokens.  ε may be ``math.inf`` (that side never clips → 0).
    Keys ``train/clip_frac_low``, ``train/clip_frac_high``, ``train/clip_frac`` (their sum;
    the two events are disjoint).  All 0.0 when the mask is empty.  ``blocks = S``: the
    rows are S equal blocks (independent runs stacked); each value is then a float64 [S].
    """
    if not (eps_low >= 0 and eps_high >= 0):  # also rejects NaN
        raise ConfigError(f"clip ε must be ≥ 0 or inf (got eps_low={eps_low}, eps_high={eps_high})")
    if adv.dim() == 1:
        adv = adv[:, None]  # [N, 1]
    adv = adv.expand_as(ratio)  # [N, T]
    mask = mask.to(torch.bool)  # [N, T]
    low = (ratio < 1.0 - eps_low) & (adv < 0) & mask  # [N, T]
    high = (ratio > 1.0 + eps_high) & (adv > 0) & mask  # [N, T]
    if blocks is not None:
        n = mask.reshape(blocks, -1).sum(-1).clamp(min=1).double()  # [S]
        frac_low, frac_high = (x.reshape(blocks, -1).sum(-1).double() / n for x in (low, high))
        return {"train/clip_frac_low": frac_low, "train/clip_frac_high": frac_high,
                "train/clip_frac": frac_low + frac_high}
    n_valid = max(int(mask.sum()), 1)
    frac_low = int(low.sum()) / n_valid
    frac_high = int(high.sum()) / n_valid
    return {
        "train/clip_frac_low": frac_low,
        "train/clip_frac_high": frac_high,
        "train/clip_frac": frac_low + frac_high,
    }
