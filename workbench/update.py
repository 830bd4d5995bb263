"""The update: from a batch's advantages to optimiser steps, written once for the LLM
session and the simulator.

    res = update(forward, adv, mask, strategy=..., loss=loss_settings(cfg.loss, strategy),
                 updates=strategy.updates_per_batch(n), max_len=T, descend=optimiser_step,
                 token_seeds=lambda u: [row_seed(seed, "token", step, u)])

Each of the ``updates`` passes: the policy's log-probabilities of the sampled tokens
(``forward(u)``) -> pi_old (given, e.g. a sampler's adjusted distribution, or the first
pass's own forward, detached: on-policy the ratio is then exactly 1 there) -> the
strategy's token calibrations -> ``workbench.losses.policy_loss`` -> clip statistics ->
``descend(loss)`` (backward and one optimiser step, by the caller).

Rows may hold ``blocks`` independent runs stacked along the first dimension (the
simulator's many seeds in one call): each block keeps its own loss aggregation, token
calibrations (seeded per block) and statistics, and the loss back-propagated is the sum
of the blocks' losses, so each block's parameters get exactly its own gradient. Shapes:
N rows (sequences or samples; ``blocks`` equal parts), T generated positions, S blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from workbench.losses import LossParts, aggregate, clip_active, policy_loss
from workbench.metrics import approx_kl, clip_fractions, importance_ratio, log_ratio, masked_mean
from workbench.strategies.base import Strategy, TokenBatch, TokenShaping


def loss_settings(loss_config: Any, strategy: Strategy) -> dict[str, Any]:
    """The loss settings in force: the config's (a ``LossConfig``), the strategy's overrides on top."""
    loss = dict(vars(loss_config))
    loss.update(strategy.loss_overrides)
    return loss


@dataclass
class UpdateResult:
    """What the update passes measured; per-block values are float64 tensors [S]."""

    old_logp: torch.Tensor                  # [N, T] pi_old of the sampled tokens (detached)
    logp: torch.Tensor                      # [N, T] the last pass's log-probabilities, before its step (detached)
    loss: torch.Tensor                      # [S] each block's loss, mean over the passes
    kl_old: torch.Tensor                    # [S] approx KL(pi_old || pi_theta) at the last pass, before its step
    clip: dict[str, torch.Tensor] = field(default_factory=dict)   # [S] clip fractions, mean over the passes
    token_selected: torch.Tensor | None = None                    # [S] tokens the calibrations chose, summed
    grad_norm: float | None = None          # mean over the passes of what ``descend`` returned (None if nothing)
    offpolicy_abs_logratio: float = 0.0     # mean |log pi_theta - log pi_old| before the first step (0 on-policy)


def update(
    forward: Callable[[int], tuple[torch.Tensor, torch.Tensor | None]],
    adv: torch.Tensor,               # [N, T] per-token advantage
    mask: torch.Tensor,              # [N, T] 1 on valid tokens
    *,
    strategy: Strategy,
    loss: dict[str, Any],            # ``loss_settings(...)``
    updates: int,
    max_len: int,
    descend: Callable[[torch.Tensor], float | None],
    token_seeds: Callable[[int], Sequence[int]],
    old_logp: torch.Tensor | None = None,    # [N, T] pi_old; None: on-policy (the first pass's forward)
    ref_logp: torch.Tensor | None = None,    # [N, T] log pi_ref (for the KL term)
    blocks: int = 1,
    statistics: bool = True,
    check: Callable[[int, LossParts], None] | None = None,
) -> UpdateResult:
    """``updates`` optimiser steps on one batch; see the module docstring.

    ``forward(u)`` returns the log-probabilities of the sampled tokens under the current
    policy ([N, T], with grad) and their full-distribution entropy ([N, T], needed only
    when the entropy coefficient is not 0). ``descend(loss)`` back-propagates and steps,
    returning a gradient norm or None. ``token_seeds(u)`` gives one seed per block for the
    token calibrations' random choices at pass u. ``check(u, parts)`` may reject a loss
    (e.g. a non-finite one) before the step. ``statistics=False`` skips the clip fractions and
    the KL to pi_old (left at 0).
    """
    S = blocks
    losses, clips, selected, norms = [], [], [], []
    kl_old = torch.zeros(S, dtype=torch.float64)
    abs_logratio = 0.0
    for u in range(updates):
        logp, ent = forward(u)                                                     # [N, T]
        if old_logp is None:
            old_logp = logp.detach()
        elif u == 0:      # how far off-policy the samples are, before any update
            abs_logratio = float(masked_mean(log_ratio(logp.detach(), old_logp).abs(), mask))
        if u == updates - 1 and statistics:
            kl_old = (torch.tensor([approx_kl(logp.detach(), old_logp, mask)], dtype=torch.float64) if S == 1
                      else approx_kl(logp.detach(), old_logp, mask, blocks=S))
        shaping = TokenShaping()
        if strategy.token:
            shaping = _shape_tokens(strategy, logp.detach(), old_logp, adv, mask, loss, token_seeds(u), S)
            selected.append(shaping.selected)
        parts = policy_loss(logp, old_logp, adv, mask, eps_low=loss["eps_low"], eps_high=loss["eps_high"],
                            aggregation=loss["aggregation"], max_len=max_len, kl_coef=loss["kl_coef"],
                            ref_logp=ref_logp, entropy_coef=loss["entropy_coef"], entropy=ent,
                            **shaping.loss_kwargs())
        if check is not None:
            check(u, parts)
        if statistics:
            ratio = parts.ratio if shaping.unclipped is None else parts.ratio.masked_fill(shaping.unclipped, 1.0)
            fr = clip_fractions(ratio, adv, mask, loss["eps_low"], loss["eps_high"], blocks=S if S > 1 else None)
            clips.append({k: torch.as_tensor(v, dtype=torch.float64).reshape(-1) for k, v in fr.items()})
        if S == 1:
            total, per_block = parts.loss, torch.tensor([parts.loss.item()], dtype=torch.float64)
        else:
            block_losses = aggregate(parts.per_token, mask, loss["aggregation"], max_len, blocks=S)   # [S]
            total, per_block = block_losses.sum(), block_losses.detach().double()
        norm = descend(total)
        if norm is not None:
            norms.append(norm)
        losses.append(per_block)
    res = UpdateResult(old_logp=old_logp, logp=logp.detach(), loss=_mean(losses), kl_old=kl_old,
                       grad_norm=sum(norms) / len(norms) if norms else None,
                       offpolicy_abs_logratio=abs_logratio)
    if clips:
        res.clip = {k: _mean([c[k] for c in clips]) for k in clips[0]}
    if strategy.token:
        res.token_selected = _sum(selected)
    return res


def _mean(values: list[torch.Tensor]) -> torch.Tensor:
    """Elementwise mean of a list, summed left to right as Python's ``sum(...) / len(...)``."""
    return _sum(values) / len(values)


def _sum(values: list) -> torch.Tensor:
    total = values[0]
    for v in values[1:]:
        total = total + v
    return torch.as_tensor(total, dtype=torch.float64).reshape(-1)


def _blocks(x: torch.Tensor, S: int) -> list[torch.Tensor]:
    return list(x.chunk(S, dim=0)) if S > 1 else [x]


def _shape_tokens(strategy: Strategy, logp, old_logp, adv, mask, loss: dict, seeds: Sequence[int],
                  S: int) -> TokenShaping:
    """The strategy's token calibrations, applied to each block with its own seed (a block's
    choices, e.g. its top fraction of tokens, never see another block)."""
    clipped = clip_active(importance_ratio(logp, old_logp)[0], adv, loss["eps_low"], loss["eps_high"])
    if S == 1:
        gen = torch.Generator().manual_seed(int(seeds[0]))
        return strategy.shape_tokens(TokenBatch(logp, old_logp, adv, mask, gen, clipped))
    parts = [strategy.shape_tokens(TokenBatch(*xs, torch.Generator().manual_seed(int(seed)), c))
             for seed, c, *xs in zip(seeds, _blocks(clipped, S), *(_blocks(t, S) for t in (logp, old_logp, adv, mask)))]
    out = TokenShaping(selected=torch.tensor([float(p.selected) for p in parts], dtype=torch.float64))
    for name, fill in (("weight", 1.0), ("extra_coef", 0.0), ("unclipped", False)):
        if any(getattr(p, name) is not None for p in parts):
            like = [getattr(p, name) for p in parts]
            ref = next(t for t in like if t is not None)
            setattr(out, name, torch.cat([t if t is not None else torch.full_like(b, fill, dtype=ref.dtype)
                                          for t, b in zip(like, _blocks(mask, S))]))
    return out
