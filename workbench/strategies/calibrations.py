"""Calibrations: advantages [B, G] -> advantages [B, G], composable in order (docs/strategies.md).

c = number of samples with reward > 0 in the group (after the reward transform), G the
group size. Each piece is pure: it returns a new tensor and leaves its input alone.
"""

from __future__ import annotations

import math

import torch

from workbench.strategies.base import register


def successes(rewards: torch.Tensor) -> torch.Tensor:
    """c per group: [B] (float) from [B, G] rewards."""
    return (rewards > 0).float().sum(dim=1)


@register("calibration", "negative_only")
def negative_only(adv: torch.Tensor, rewards: torch.Tensor, batch, p) -> torch.Tensor:
    """GRPO-N (the two-stage dynamic paper: exploitation first, exploration after): keep
    A_i where A_i < 0, zero the rest. Only relative negative gradients remain, which push
    mass away from wrong samples without concentrating it on the sampled correct ones.
    With binary rewards only mixed groups contribute; all-wrong groups give nothing
    (unlike ``nsr``, which pushes down every wrong sample)."""
    return torch.where(adv < 0, adv, torch.zeros_like(adv))


@register("calibration", "inverse_success")
def inverse_success(adv: torch.Tensor, rewards: torch.Tensor, batch, p) -> torch.Tensor:
    """IAC, inverse-success advantage calibration (the sharpening-collapse paper, which
    traces over-sharpening to finite-batch sampling bias): for A_i > 0,
    A_i <- A_i * (G - c)^alpha; negatives unchanged. Rarely solved problems, whose few
    correct samples are the most informative about unexplored modes, get more weight;
    nearly solved ones (c -> G) almost none.

    (choice) ``renormalize`` (default off): divide the factors by their mean over the
    batch's positive samples, so the effective step size does not grow by up to (G-1)^alpha.
    Degenerate: c = G gives factor 0, but such a group has no positive advantage under a
    group baseline anyway; c = 0 has no positive sample.
    """
    G = rewards.shape[1]
    factor = (G - successes(rewards)).clamp(min=0).pow(p.alpha)[:, None].expand_as(adv)   # [B, G]
    pos = adv > 0
    if p.renormalize and bool(pos.any()):
        factor = factor / factor[pos].mean().clamp(min=1e-12)
    return torch.where(pos, adv * factor, adv)


def log_beta(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log B(a, b) = lgamma(a) + lgamma(b) - lgamma(a + b), in float64 (no overflow)."""
    return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)


def log_boundary_utility(c, G, k: int, a0: float = 1.0, b0: float = 1.0) -> torch.Tensor:
    """log u_k(c; G) (float64); finite even where u_k itself underflows (k = 1024, c = G = 512)."""
    c = torch.as_tensor(c, dtype=torch.float64)
    G = torch.as_tensor(G, dtype=torch.float64)
    a, b = c + a0, G - c + b0
    return math.log(k) + log_beta(a, b + k - 1) - log_beta(a, b)


def boundary_utility(c, G, k: int, a0: float = 1.0, b0: float = 1.0) -> torch.Tensor:
    """u_k(c; G) = E[k (1-p)^(k-1)] under the posterior p ~ Beta(c + a0, G - c + b0)
    = k * B(c + a0, G - c + b0 + k - 1) / B(c + a0, G - c + b0), computed in log space.

    The posterior mean slope of Pass@k = 1 - (1-p)^k with respect to p: how much one more
    unit of success probability on this problem would raise its Pass@k. c and G may be
    tensors (broadcast) and non-integer (decayed history counts).
    """
    return torch.exp(log_boundary_utility(c, G, k, a0, b0))


@register("calibration", "bbg")
def bbg(adv: torch.Tensor, rewards: torch.Tensor, batch, p) -> torch.Tensor:
    """Bayesian Boundary Gating (the overtraining paper: diversity collapse as overtraining
    of already-solved problems). With prior Beta(a0, b0) and posterior
    p ~ Beta(c + a0, G - c + b0), the boundary utility u_k(c; G) (``boundary_utility``) is
    the expected gain in Pass@k per unit of success probability.

    - Gate: groups with u_k < tau * (G + 1) get no gradient (solved problems, whose Pass@k
      cannot rise, stop being sharpened).
    - (choice) Active groups with c >= 1: advantages times w = u_k(c) / u_k(1), so the
      weight is 1 for a group with a single success and falls as c grows.
    - (choice) All-fail groups (c = 0), where a group-normalised advantage is zero, are
      trained with a signed REINFORCE term A_i = -w0 (w0 = 1), pushing mass off the
      sampled wrong answers.
    - (choice) ``history``: c and G are counted over the problem's past rollouts as well,
      with weight gamma^(steps before the current one) — the previous step's group weighs
      gamma, the current group 1 — and the gate then uses that G.
    Defaults k = 16, tau = 0.01 are choices (the paper leaves them to the user).
    """
    G = rewards.shape[1]
    c = successes(rewards).double()                                                 # [B]
    n = torch.full_like(c, float(G))                                                # [B]
    if p.history and batch.history is not None:
        # the current group is step batch.step (weight 1); an entry k steps before it weighs gamma^k
        past = torch.tensor([batch.history.decayed(pid, p.gamma, step=batch.step) if pid in batch.history
                             else (0.0, 0.0) for pid in batch.problem_ids], dtype=torch.float64)   # [B, 2] (c_eff, n_eff)
        c, n = c + past[:, 0], n + past[:, 1]
    log_u = log_boundary_utility(c, n, p.k, p.a0, p.b0)                             # [B]
    log_u1 = log_boundary_utility(torch.ones_like(n), n, p.k, p.a0, p.b0)           # [B]
    active = log_u >= torch.log(p.tau * (n + 1)) if p.tau > 0 else torch.ones_like(n, dtype=torch.bool)  # [B]
    w = torch.exp(log_u - log_u1).to(adv.dtype)                                     # [B]
    current_fail = successes(rewards) == 0                                          # [B]
    out = adv * w[:, None]                                                          # [B, G]
    out = torch.where(current_fail[:, None], torch.full_like(adv, -p.w0), out)
    return torch.where(active[:, None], out, torch.zeros_like(adv))


@register("calibration", "zero_success_only")
def zero_success_only(adv: torch.Tensor, rewards: torch.Tensor, batch, p) -> torch.Tensor:
    """Zero-success-only updates (the overtraining paper's intervention): only all-fail
    groups (c = 0) are updated, with A_i = -1 on every rollout; all other groups masked.
    Solved and partly solved problems are left as the base model had them."""
    fail = successes(rewards) == 0                                                  # [B]
    return torch.where(fail[:, None], torch.full_like(adv, -1.0), torch.zeros_like(adv))


@register("calibration", "bucket_mask")
def bucket_mask(adv: torch.Tensor, rewards: torch.Tensor, batch, p) -> torch.Tensor:
    """Bucket masking (the overtraining paper): drop groups whose success fraction
    c/G >= theta (0.75, i.e. >= 6 of 8), which are the ones being overtrained."""
    G = rewards.shape[1]
    keep = successes(rewards) / G < p.theta                                         # [B]
    return torch.where(keep[:, None], adv, torch.zeros_like(adv))
