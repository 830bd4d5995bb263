"""The clipped policy-gradient surrogate every strategy feeds.

Per token:  l = -min(rho*A, clip(rho, 1-eps_low, 1+eps_high)*A) + beta*KL_k3(pi||pi_ref) - lambda_H*H
with rho = pi_theta / pi_old, pi_old the distribution the token was sampled from.
Token calibrations may gate the surrogate per token, replace it by the unclipped -rho*A
on chosen tokens, and add c_t*|log rho| there (KL-Cov).
Shapes: N sequences, T generated positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.metrics.kl import importance_ratio, kl_k3


@dataclass
class LossParts:
    loss: torch.Tensor          # scalar, what is back-propagated
    pg: torch.Tensor            # scalar, aggregated surrogate term alone
    ratio: torch.Tensor         # [N, T] importance ratio (detached)
    per_token: torch.Tensor     # [N, T] the loss per token before aggregation (with grad)


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, how: str, max_len: int,
              blocks: int | None = None) -> torch.Tensor:
    """Reduce a [N, T] per-token loss to a scalar (``blocks = S``: the rows are S equal
    blocks, independent runs stacked, each reduced on its own → [S]).

    - ``token_mean`` (DAPO): sum over all valid tokens / their count. Long sequences weigh
      more in total, each token equally.
    - ``seq_mean_token_mean`` (original GRPO): mean per sequence, then over sequences. Each
      sequence weighs the same, so a token of a short sequence weighs more: biased toward
      short correct and long wrong answers (the bias Dr. GRPO points out).
    - ``seq_sum_const`` (Dr. GRPO): sum over tokens / (N * max_len) with the generation
      budget as constant: no length normalisation, so no length bias.
    """
    m = mask.to(per_token.dtype)                                          # [N, T]
    S = blocks or 1

    def total(x: torch.Tensor) -> torch.Tensor:                           # [] or [S]
        return x.sum() if blocks is None else x.reshape(S, -1).sum(-1)

    if how == "token_mean":
        return total(per_token * m) / total(m).clamp(min=1.0)
    if how == "seq_mean_token_mean":
        per_seq = (per_token * m).sum(-1) / m.sum(-1).clamp(min=1.0)      # [N]
        return per_seq.mean() if blocks is None else per_seq.reshape(S, -1).mean(-1)
    if how == "seq_sum_const":
        return total(per_token * m) / (per_token.shape[0] // S * max(max_len, 1))
    raise ValueError(f"unknown aggregation {how!r}")


def policy_loss(
    logp: torch.Tensor,          # [N, T] log pi_theta of sampled tokens (with grad)
    old_logp: torch.Tensor,      # [N, T] log pi_old (sampling distribution)
    adv: torch.Tensor,           # [N, T] per-token advantage
    mask: torch.Tensor,          # [N, T] 1 on valid tokens
    *,
    eps_low: float,
    eps_high: float,
    aggregation: str,
    max_len: int,
    kl_coef: float = 0.0,
    ref_logp: torch.Tensor | None = None,   # [N, T] log pi_ref (no grad)
    entropy_coef: float = 0.0,
    entropy: torch.Tensor | None = None,    # [N, T] full-distribution entropy (with grad)
    token_weight: torch.Tensor | None = None,  # [N, T] per-token gradient gate (e.g. Clip-Cov), 1 = keep
    unclipped: torch.Tensor | None = None,     # [N, T] bool: these tokens take the unclipped -rho*A (KL-Cov)
    abs_logratio_coef: torch.Tensor | None = None,  # [N, T] c_t of an added c_t*|log pi_theta - log pi_old| (KL-Cov)
    extra: torch.Tensor | None = None,         # [N, T] any other per-token loss term
) -> LossParts:
    ratio, log_ratio = importance_ratio(logp, old_logp)                   # [N, T] each
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)           # inf eps = no clipping
    pg_tok = -torch.minimum(ratio * adv, clipped * adv)                   # [N, T]
    if unclipped is not None:
        pg_tok = torch.where(unclipped.bool(), -ratio * adv, pg_tok)
    if abs_logratio_coef is not None:  # d|x|/dx at x = 0 is 0: no gradient while rho == 1
        pg_tok = pg_tok + abs_logratio_coef * log_ratio.abs()
    if token_weight is not None:
        pg_tok = pg_tok * token_weight
    per_token = pg_tok
    if kl_coef > 0:
        if ref_logp is None:
            raise ValueError("kl_coef > 0 needs ref_logp")
        per_token = per_token + kl_coef * kl_k3(logp, ref_logp)
    if entropy_coef != 0:
        if entropy is None:
            raise ValueError("entropy_coef != 0 needs the entropy")
        per_token = per_token - entropy_coef * entropy
    if extra is not None:
        per_token = per_token + extra
    loss = aggregate(per_token, mask, aggregation, max_len)
    pg = aggregate(pg_tok.detach(), mask, aggregation, max_len)
    return LossParts(loss=loss, pg=pg, ratio=ratio.detach(), per_token=per_token)


def clip_active(ratio: torch.Tensor, adv: torch.Tensor, eps_low: float, eps_high: float) -> torch.Tensor:
    """[N, T] bool: tokens whose PPO-clipped branch is the one in force (ratio outside the
    range on the side where clipping removes the gradient: above 1+eps_high with A > 0,
    below 1-eps_low with A < 0)."""
    return ((ratio > 1.0 + eps_high) & (adv > 0)) | ((ratio < 1.0 - eps_low) & (adv < 0))
